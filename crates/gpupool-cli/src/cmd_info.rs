//! `gpupool info`: devices with memory, utilisation and processes, and the tenants (memory limit
//! and usage, compute cap and achieved share, processes) whose regions live in the machine's
//! tenants folder.

use crate::artefacts::sim_library;
use crate::cmd_run::tenants_dir;
use crate::sim_env::{SimArgs, SimEnv};
use anyhow::Result;
use clap::Args;
use gpupool_config::format_size;
use gpupool_observe::nvml::{read_devices, DeviceEntry};
use gpupool_observe::snapshot::{used_and_spilled, InfoSnapshot};
use std::path::Path;

/// Arguments of `gpupool info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The machine to look at.
    #[command(flatten)]
    pub machine: SimArgs,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Takes a snapshot (devices through NVML, tenants through their regions).
pub fn snapshot(sim: Option<&SimEnv>) -> Result<InfoSnapshot> {
    snapshot_of(sim, &tenants_dir(sim.map(|s| s.state.as_path())))
}

/// Reads the devices through NVML; `None` for the real GPUs, else the simulated machine (whose
/// env is set in this process on the first call).
pub fn read_machine(sim: Option<&SimEnv>) -> Result<Vec<DeviceEntry>> {
    match sim {
        Some(s) => {
            static ENV: std::sync::Once = std::sync::Once::new();
            ENV.call_once(|| {
                for (k, v) in s.env() {
                    // Only this process's own NVML client reads them; set once, by the first
                    // snapshot, before the exporter's or top's threads read anything.
                    std::env::set_var(k, v);
                }
            });
            read_devices(Some(&sim_library()?))
        }
        None => read_devices(None),
    }
}

/// A snapshot whose tenants are the folders in `tenants` (the node agent keeps its own).
pub fn snapshot_of(sim: Option<&SimEnv>, tenants: &Path) -> Result<InfoSnapshot> {
    Ok(gpupool_observe::snapshot::snapshot_of(
        read_machine(sim)?,
        tenants,
    ))
}

/// Prints the snapshot.
pub fn run(a: InfoArgs) -> Result<()> {
    let sim = a.machine.prepare()?;
    let snap = snapshot(sim.as_ref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&snap)?);
        return Ok(());
    }
    let pct = |p: Option<u32>| p.map_or_else(|| "-".to_string(), |p| format!("{p}%"));
    println!(
        "{:<4} {:<28} {:>12} {:>12} {:>12} {:>5}  UUID",
        "GPU", "NAME", "TOTAL", "USED", "FREE", "UTIL"
    );
    for d in &snap.devices {
        if let Some(e) = &d.error {
            println!("{:<4} unreadable: {e}", d.index);
            continue;
        }
        println!(
            "{:<4} {:<28} {:>12} {:>12} {:>12} {:>5}  {}",
            d.index,
            d.name,
            format_size(d.total_bytes),
            format_size(d.used_bytes),
            format_size(d.free_bytes),
            pct(d.utilization_percent),
            d.uuid
        );
        if d.mig {
            println!(
                "     MIG mode enabled: {}",
                gpupool_observe::nvml::MIG_NOT_SHARED.replace("INDEX", &d.index.to_string())
            );
        }
        for p in &d.processes {
            println!(
                "       pid {:<10} {:>12} {:>5}",
                p.pid,
                format_size(p.used_bytes),
                pct(p.sm_percent)
            );
        }
    }
    if !snap.tenants.is_empty() {
        println!(
            "\n{:<20} {:<42} {:>12} {:>12} {:>7} {:>9} {:>9}  PIDS",
            "TENANT", "GPU", "LIMIT", "USED", "DENIED", "COMPUTE", "CAP"
        );
        for t in &snap.tenants {
            for d in &t.devices {
                println!(
                    "{:<20} {:<42} {:>12} {:>12} {:>7} {:>9} {:>9}  {:?}",
                    t.name,
                    d.uuid,
                    d.limit_bytes.map(format_size).unwrap_or_else(|| "-".into()),
                    used_and_spilled(d),
                    d.denied,
                    pct(d.compute_percent),
                    pct(d.compute_limit_percent),
                    t.pids
                );
            }
            if !t.checkpointed_pids.is_empty() {
                println!(
                    "{:<20} checkpointed (memory on the host until the next CUDA call): {:?}",
                    "", t.checkpointed_pids
                );
            }
        }
    }
    Ok(())
}
