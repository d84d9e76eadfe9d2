//! What `gpupool top` draws: the cards with memory bars and utilisation, then every tenant on
//! each card (memory used against its limit, compute achieved against its cap, throttling,
//! refused allocations), sorted and scrolled. Pure drawing from a snapshot, so tests render it
//! into a buffer.

use gpupool_config::format_size;
use gpupool_observe::snapshot::{InfoSnapshot, TenantDevice, TenantEntry};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Gauge, Paragraph, Row, Table};
use ratatui::Frame;

/// Order of the tenant rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// Most device memory first.
    Memory,
    /// Highest achieved compute share first.
    Compute,
    /// By tenant name.
    Name,
}

impl SortKey {
    /// The next key (the `s` key cycles).
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Memory => SortKey::Compute,
            SortKey::Compute => SortKey::Name,
            SortKey::Name => SortKey::Memory,
        }
    }
}

/// What the user chose: order and scroll position of the tenant rows.
#[derive(Debug, Clone, Copy)]
pub struct ViewState {
    /// Row order.
    pub sort: SortKey,
    /// Tenant rows scrolled off the top.
    pub offset: usize,
}

/// One tenant row: a tenant on one card.
pub fn rows(snap: &InfoSnapshot, sort: SortKey) -> Vec<(&TenantEntry, &TenantDevice)> {
    let mut rows: Vec<_> = snap
        .tenants
        .iter()
        .flat_map(|t| t.devices.iter().map(move |d| (t, d)))
        .collect();
    match sort {
        SortKey::Memory => rows.sort_by_key(|r| std::cmp::Reverse(r.1.used_bytes)),
        SortKey::Compute => rows.sort_by_key(|r| std::cmp::Reverse(r.1.compute_percent)),
        SortKey::Name => rows.sort_by(|a, b| a.0.name.cmp(&b.0.name)),
    }
    rows
}

fn percent(p: Option<u32>) -> String {
    p.map_or_else(|| "-".into(), |p| format!("{p}%"))
}

/// Draws the whole view.
pub fn draw(frame: &mut Frame, snap: &InfoSnapshot, view: &ViewState) {
    let cards = snap.devices.len() as u16;
    let [head, bars, table, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(cards.max(1) + 2),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let used: u64 = snap.devices.iter().map(|d| d.used_bytes).sum();
    let total: u64 = snap.devices.iter().map(|d| d.total_bytes).sum();
    frame.render_widget(
        Paragraph::new(format!(
            "gpupool top — {} cards, {} tenants, {} of {} in use",
            snap.devices.len(),
            snap.tenants.len(),
            format_size(used),
            format_size(total)
        ))
        .style(Style::default().add_modifier(Modifier::BOLD)),
        head,
    );

    let block = Block::default().borders(Borders::ALL).title("cards");
    let inner = block.inner(bars);
    frame.render_widget(block, bars);
    let lines = Layout::vertical(vec![Constraint::Length(1); snap.devices.len()]).split(inner);
    for (d, area) in snap.devices.iter().zip(lines.iter()) {
        let ratio = if d.total_bytes == 0 {
            0.0
        } else {
            (d.used_bytes as f64 / d.total_bytes as f64).clamp(0.0, 1.0)
        };
        let label = format!(
            "GPU{} {}  {} / {}  util {}",
            d.index,
            d.name,
            format_size(d.used_bytes),
            format_size(d.total_bytes),
            percent(d.utilization_percent)
        );
        frame.render_widget(
            Gauge::default()
                .ratio(ratio)
                .label(label)
                .gauge_style(Style::default().fg(Color::Green).bg(Color::Black)),
            *area,
        );
    }

    let header = Row::new([
        "TENANT",
        "GPU",
        "MEMORY USED / LIMIT",
        "COMPUTE / CAP",
        "THROTTLED",
        "DENIED",
        "PIDS",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let all = rows(snap, view.sort);
    let offset = view.offset.min(all.len().saturating_sub(1));
    let body: Vec<Row> = all
        .iter()
        .skip(offset)
        .map(|(t, d)| {
            let gpu = snap
                .devices
                .iter()
                .find(|x| x.uuid == d.uuid)
                .map_or_else(|| d.uuid.clone(), |x| format!("GPU{}", x.index));
            let limit = d.limit_bytes.map_or_else(|| "none".into(), format_size);
            Row::new([
                Cell::from(t.name.clone()),
                Cell::from(gpu),
                Cell::from(format!(
                    "{} / {}",
                    gpupool_observe::snapshot::used_and_spilled(d),
                    limit
                )),
                Cell::from(format!(
                    "{} / {}",
                    percent(d.compute_percent),
                    percent(d.compute_limit_percent)
                )),
                Cell::from(format!("{:.1} s", d.throttled_ms as f64 / 1000.0)),
                Cell::from(d.denied.to_string()),
                Cell::from(format!("{:?}", t.pids)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(20),
        Constraint::Length(6),
        Constraint::Length(24),
        Constraint::Length(14),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Min(6),
    ];
    let title = format!(
        "tenants (sorted by {:?}, {} of {})",
        view.sort,
        all.len().saturating_sub(offset),
        all.len()
    )
    .to_lowercase();
    frame.render_widget(
        Table::new(body, widths)
            .header(header)
            .block(Block::default().borders(Borders::ALL).title(title)),
        table,
    );
    frame.render_widget(
        Paragraph::new(Line::from("q quit   ↑/↓ scroll   s sort")),
        help,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpupool_observe::nvml::{DeviceEntry, ProcessEntry};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    const GIB: u64 = 1 << 30;

    fn tenant(name: &str, used: u64, compute: Option<u32>, denied: u64) -> TenantEntry {
        TenantEntry {
            name: name.into(),
            devices: vec![TenantDevice {
                uuid: "GPU-1".into(),
                limit_bytes: Some(4 * GIB),
                used_bytes: used,
                spilled_bytes: 0,
                denied,
                compute_limit_percent: Some(30),
                compute_request_percent: None,
                compute_percent: compute,
                throttled_ms: 2500,
            }],
            pids: vec![41],
            checkpointed_pids: vec![],
            checkpoints: 0,
            owner: None,
        }
    }

    fn snap() -> InfoSnapshot {
        InfoSnapshot {
            devices: vec![DeviceEntry {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-1".into(),
                total_bytes: 80 * GIB,
                used_bytes: 20 * GIB,
                free_bytes: 60 * GIB,
                utilization_percent: Some(45),
                processes: vec![ProcessEntry {
                    pid: 41,
                    used_bytes: GIB,
                    sm_percent: Some(20),
                }],
                mig: false,
                error: None,
            }],
            over_limit: Vec::new(),
            tenants: vec![
                tenant("small", GIB, Some(10), 0),
                tenant("big", 3 * GIB, Some(28), 7),
                tenant("alpha", 2 * GIB, None, 0),
            ],
        }
    }

    fn screen(view: ViewState) -> Vec<String> {
        let mut term = Terminal::new(TestBackend::new(110, 16)).unwrap();
        term.draw(|f| draw(f, &snap(), &view)).unwrap();
        let buf = term.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect()
    }

    fn row_of(lines: &[String], name: &str) -> usize {
        lines
            .iter()
            .position(|l| l.contains(&format!("│{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", lines.join("\n")))
    }

    #[test]
    fn shows_cards_and_tenants_with_their_limits() {
        let lines = screen(ViewState {
            sort: SortKey::Memory,
            offset: 0,
        });
        let all = lines.join("\n");
        assert!(all.contains("1 cards, 3 tenants"), "{all}");
        assert!(
            all.contains("GPU0 NVIDIA H100 80GB HBM3  20.00 GiB / 80.00 GiB  util 45%"),
            "{all}"
        );
        let big = &lines[row_of(&lines, "big")];
        assert!(big.contains("3.00 GiB / 4.00 GiB"), "{big}");
        assert!(big.contains("28% / 30%"), "{big}");
        assert!(big.contains("2.5 s") && big.contains(" 7 "), "{big}");
        assert!(lines[row_of(&lines, "alpha")].contains("- / 30%"));
    }

    #[test]
    fn rows_sort_and_scroll() {
        let by_memory = screen(ViewState {
            sort: SortKey::Memory,
            offset: 0,
        });
        assert!(row_of(&by_memory, "big") < row_of(&by_memory, "alpha"));
        assert!(row_of(&by_memory, "alpha") < row_of(&by_memory, "small"));
        let by_name = screen(ViewState {
            sort: SortKey::Name,
            offset: 0,
        });
        assert!(row_of(&by_name, "alpha") < row_of(&by_name, "big"));
        let by_compute = screen(ViewState {
            sort: SortKey::Compute,
            offset: 0,
        });
        assert!(row_of(&by_compute, "big") < row_of(&by_compute, "small"));
        let scrolled = screen(ViewState {
            sort: SortKey::Memory,
            offset: 1,
        });
        assert!(!scrolled.join("\n").contains("│big "));
        assert!(scrolled.join("\n").contains("2 of 3"));
    }
}
