//! `gpupool top`: a live terminal view of the cards and tenants (drawn by `top_view`), or one
//! snapshot for scripts (`--once`, `--once --json`).

use crate::cmd_info::snapshot;
use crate::sim_env::SimArgs;
use crate::top_view::{draw, SortKey, ViewState};
use anyhow::{bail, Context, Result};
use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use std::time::{Duration, Instant};

/// Arguments of `gpupool top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// The machine to look at.
    #[command(flatten)]
    pub machine: SimArgs,
    /// Time between refreshes (e.g. `1s`, `500ms`).
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    pub interval: String,
    /// Tenant order (the `s` key changes it).
    #[arg(long, value_enum, default_value = "memory")]
    pub sort: SortKey,
    /// Print one view (or, with `--json`, one snapshot) and exit.
    #[arg(long)]
    pub once: bool,
    /// With `--once`: the snapshot as JSON (schema in docs/metrics.md).
    #[arg(long, requires = "once")]
    pub json: bool,
    /// With `--once`: width of the printed view.
    #[arg(long, default_value_t = 120, value_name = "COLUMNS")]
    pub width: u16,
}

/// Runs `top`.
pub fn run(a: TopArgs) -> Result<()> {
    let interval = gpupool_config::parse_duration_ns(&a.interval)
        .map_err(|e| anyhow::anyhow!("--interval {:?}: {e}", a.interval))?;
    if interval < 100_000_000 {
        bail!("--interval {:?}: must be at least 100ms", a.interval);
    }
    let sim = a.machine.prepare()?;
    let mut view = ViewState {
        sort: a.sort,
        offset: 0,
    };
    if a.once {
        let snap = snapshot(sim.as_ref())?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&snap)?);
        } else {
            print!("{}", render_text(&snap, &view, a.width));
        }
        return Ok(());
    }
    let mut terminal = ratatui::try_init().context("opening the terminal")?;
    let result = (|| -> Result<()> {
        let mut snap = snapshot(sim.as_ref())?;
        let mut taken = Instant::now();
        loop {
            terminal.draw(|f| draw(f, &snap, &view))?;
            let wait = Duration::from_nanos(interval).saturating_sub(taken.elapsed());
            if event::poll(wait)? {
                if let Event::Key(k) = event::read()? {
                    if k.kind != KeyEventKind::Press {
                        continue;
                    }
                    match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Down | KeyCode::Char('j') => view.offset += 1,
                        KeyCode::Up | KeyCode::Char('k') => {
                            view.offset = view.offset.saturating_sub(1)
                        }
                        KeyCode::Char('s') => view.sort = view.sort.next(),
                        _ => {}
                    }
                    let rows = crate::top_view::rows(&snap, view.sort).len();
                    view.offset = view.offset.min(rows.saturating_sub(1));
                }
            } else {
                snap = snapshot(sim.as_ref())?;
                taken = Instant::now();
            }
        }
    })();
    ratatui::restore();
    result
}

/// The view drawn once into a buffer and returned as text (`--once`).
pub fn render_text(
    snap: &gpupool_observe::snapshot::InfoSnapshot,
    view: &ViewState,
    width: u16,
) -> String {
    let height = (snap.devices.len() + snap.tenants.iter().map(|t| t.devices.len()).sum::<usize>())
        as u16
        + 10;
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(width.max(60), height))
            .expect("a test backend never fails");
    let _ = terminal.draw(|f| draw(f, snap, view));
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
