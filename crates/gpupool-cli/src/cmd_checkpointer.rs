//! `gpupool checkpointer`: the checkpoint controller for hosts without the node agent. When a
//! tenant started with `gpupool run --wait-for-room` finds its card full, idle processes of the
//! card's other tenants are checkpointed (their device memory moves to the host) and restored at
//! their next CUDA call or once the card has room again.

use crate::checkpoint_driver::DriverCheckpoints;
use crate::cmd_run::tenants_dir;
use crate::sim_env::SimArgs;
use anyhow::{Context, Result};
use clap::Args;
use gpupool_node::checkpoint::{describe, Controller, Settings};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `gpupool checkpointer`.
#[derive(Args, Debug)]
pub struct CheckpointerArgs {
    /// A process without CUDA work for this long may be checkpointed to make room.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub idle_after: String,
    /// How often tenants are looked at.
    #[arg(long, value_name = "DURATION", default_value = "250ms")]
    pub interval: String,
    /// The tenants' folder (default: the one `gpupool run` uses on this machine).
    #[arg(long, value_name = "DIR")]
    pub tenants: Option<PathBuf>,
    /// The machine to act on.
    #[command(flatten)]
    pub machine: SimArgs,
}

fn duration(flag: &str, v: &str, min: Duration) -> Result<Duration> {
    let d = gpupool_config::parse_duration_ns(v)
        .map(Duration::from_nanos)
        .with_context(|| format!("{flag} {v:?}"))?;
    if d < min {
        anyhow::bail!("{flag} {v:?}: expected at least {min:?}");
    }
    Ok(d)
}

/// Runs the controller until killed.
pub fn run(a: CheckpointerArgs) -> Result<()> {
    let idle_after = duration("--idle-after", &a.idle_after, Duration::from_millis(100))?;
    let interval = duration("--interval", &a.interval, Duration::from_millis(10))?;
    let sim = a.machine.prepare()?;
    let library = match &sim {
        Some(s) => {
            for (k, v) in s.env() {
                // Set before any thread exists; read by the simulated driver loaded below.
                std::env::set_var(k, v);
            }
            Some(crate::artefacts::sim_library()?)
        }
        None => None,
    };
    let driver = DriverCheckpoints::load(library.as_deref())?;
    let tenants = a
        .tenants
        .unwrap_or_else(|| tenants_dir(sim.as_ref().map(|s| s.state.as_path())));
    eprintln!(
        "gpupool checkpointer: tenants in {}, idle after {idle_after:?}",
        tenants.display()
    );
    let mut controller = Controller::new(Settings::new(idle_after), Arc::new(driver), &tenants);
    loop {
        for e in controller.round(gpupool_cuda::clock::monotonic_ns()) {
            eprintln!("gpupool checkpointer: {}", describe(&e));
        }
        std::thread::sleep(interval);
    }
}
