//! `gpupool info`: devices with memory, utilisation and processes, and the tenants (memory limit
//! and usage, compute cap and achieved share, processes) whose regions live in the machine's
//! tenants folder.

use crate::artefacts::sim_library;
use crate::cmd_run::tenants_dir;
use crate::nvml_client::{read_devices, DeviceEntry};
use crate::sim_env::{SimArgs, SimEnv};
use anyhow::Result;
use clap::Args;
use gpupool_config::format_size;
use gpupool_region::untrusted::read_small_file;
use gpupool_region::Region;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

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

/// A tenant's usage of one device.
#[derive(Serialize, Debug)]
pub struct TenantDevice {
    /// Device UUID.
    pub uuid: String,
    /// Limit (null = none recorded).
    pub limit_bytes: Option<u64>,
    /// Used by all the tenant's processes.
    pub used_bytes: u64,
    /// Host memory standing in for device memory past the limit (spill), all processes.
    pub spilled_bytes: u64,
    /// Allocations refused because of the limit.
    pub denied: u64,
    /// Compute limit in percent (null = none).
    pub compute_limit_percent: Option<u32>,
    /// Guaranteed compute share in percent (null = none).
    pub compute_request_percent: Option<u32>,
    /// Share of the device's time its processes' kernels ran recently (NVML samples; null
    /// when NVML has none).
    pub compute_percent: Option<u32>,
    /// Time launches waited for their turn under the compute limit, in all.
    pub throttled_ms: u64,
}

/// One tenant.
#[derive(Serialize, Debug)]
pub struct TenantEntry {
    /// Tenant name (its folder).
    pub name: String,
    /// Per device.
    pub devices: Vec<TenantDevice>,
    /// Pids of its live processes.
    pub pids: Vec<u32>,
    /// Those of them checkpointed (their device memory moved to the host) or being locked.
    pub checkpointed_pids: Vec<u32>,
    /// Times one of its processes was checkpointed to make room for another tenant.
    pub checkpoints: u64,
    /// The Kubernetes container it serves, when the node agent recorded it (`<name>.owner.json`
    /// beside the folder, where the container cannot write).
    pub owner: Option<Owner>,
}

/// The Kubernetes container a tenant serves.
#[derive(Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
}

/// The whole snapshot.
#[derive(Serialize, Debug)]
pub struct InfoSnapshot {
    /// Devices, from NVML.
    pub devices: Vec<DeviceEntry>,
    /// Tenants, from their regions.
    pub tenants: Vec<TenantEntry>,
    /// Containers the node agent's audit found above their memory limit (empty elsewhere).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub over_limit: Vec<OverLimitEntry>,
}

/// A container the node agent's audit found above its memory limit on a card.
#[derive(Serialize, Debug, Clone)]
pub struct OverLimitEntry {
    /// The container's owner.
    pub owner: Owner,
    /// Card UUID.
    pub uuid: String,
    /// Audit rounds that found it over.
    pub rounds: u64,
    /// NVML's memory of its processes on the card at the last finding.
    pub used_bytes: u64,
    /// Its limit there.
    pub limit_bytes: u64,
}

/// Reads every tenant region in `dir`.
pub fn read_tenants(dir: &Path) -> Vec<TenantEntry> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    names.sort();
    for path in names {
        // A private copy: a tenant's folder is the tenant's to write, and nothing in it may
        // crash, hang or mislead this reader (no mapping, no lock, no symlink followed).
        let Ok(region) = Region::snapshot(&path.join("region")) else {
            continue;
        };
        let devices = region
            .devices()
            .iter()
            .enumerate()
            .map(|(i, u)| TenantDevice {
                uuid: gpupool_cuda::uuid::format_gpu_uuid(u),
                limit_bytes: Some(region.limit(i)).filter(|l| *l > 0),
                used_bytes: region.used(i),
                spilled_bytes: region.spilled(i),
                denied: region.denied(i),
                compute_limit_percent: region
                    .compute(i)
                    .map(|c| c.limit_pct.load(Relaxed))
                    .filter(|p| *p > 0),
                compute_request_percent: region
                    .compute(i)
                    .map(|c| c.request_pct.load(Relaxed))
                    .filter(|p| *p > 0),
                compute_percent: None,
                throttled_ms: region
                    .compute(i)
                    .map_or(0, |c| c.throttled_ns.load(Relaxed) / 1_000_000),
            })
            .collect();
        out.push(TenantEntry {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            devices,
            pids: region.processes().iter().map(|p| p.host_pid).collect(),
            checkpointed_pids: region
                .idle_views()
                .iter()
                .filter(|p| p.state != gpupool_region::CHECKPOINT_RUNNING)
                .map(|p| p.host_pid)
                .collect(),
            checkpoints: region.checkpoints(),
            owner: read_small_file(&gpupool_node::tenant::owner_file(&path), 64 << 10)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok()),
        });
    }
    out
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
    let devices = read_machine(sim)?;
    let mut tenants = read_tenants(tenants);
    attach_compute_shares(&mut tenants, &devices);
    Ok(InfoSnapshot {
        devices,
        tenants,
        over_limit: Vec::new(),
    })
}

/// Sums the NVML SM share of each tenant's processes on each device.
fn attach_compute_shares(tenants: &mut [TenantEntry], devices: &[DeviceEntry]) {
    for t in tenants {
        for td in &mut t.devices {
            let Some(d) = devices.iter().find(|d| d.uuid == td.uuid) else {
                continue;
            };
            let shares: Vec<u32> = d
                .processes
                .iter()
                .filter(|p| t.pids.contains(&p.pid))
                .filter_map(|p| p.sm_percent)
                .collect();
            if !shares.is_empty() {
                td.compute_percent = Some(shares.iter().sum::<u32>().min(100));
            }
        }
    }
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
                crate::nvml_client::MIG_NOT_SHARED.replace("INDEX", &d.index.to_string())
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

/// A tenant's use of a device: device memory, and host memory past the limit when any.
pub fn used_and_spilled(d: &TenantDevice) -> String {
    if d.spilled_bytes == 0 {
        format_size(d.used_bytes)
    } else {
        format!(
            "{} +{} host",
            format_size(d.used_bytes),
            format_size(d.spilled_bytes)
        )
    }
}
