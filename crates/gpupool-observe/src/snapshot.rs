//! A snapshot of a machine: its cards (NVML) and the tenants whose regions live in a tenants
//! folder (memory limit and usage, spill, compute cap and achieved share, processes,
//! checkpoints), as `gpupool info`, `top`, the exporter and the node agent show them.

use crate::nvml::DeviceEntry;
use gpupool_config::format_size;
use gpupool_region::untrusted::read_small_file;
use gpupool_region::Region;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

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

/// Where the owner of the tenant folder `tenant_dir` is recorded: beside it (`<name>.owner.json`),
/// where the container cannot write.
pub fn owner_file(tenant_dir: &Path) -> PathBuf {
    let mut name = tenant_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".owner.json");
    tenant_dir.with_file_name(name)
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
            owner: read_small_file(&owner_file(&path), 64 << 10)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok()),
        });
    }
    out
}

/// The snapshot of `devices` (as NVML read them) and the tenants in the folder `tenants`.
pub fn snapshot_of(devices: Vec<DeviceEntry>, tenants: &Path) -> InfoSnapshot {
    let mut tenants = read_tenants(tenants);
    attach_compute_shares(&mut tenants, &devices);
    InfoSnapshot {
        devices,
        tenants,
        over_limit: Vec::new(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use gpupool_region::ProcessIdentity;

    #[test]
    fn tenants_are_read_from_their_regions_with_owner_and_checkpoints() {
        let dir = std::env::temp_dir().join(format!("gpupool-observe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let tenant = dir.join("t1");
        std::fs::create_dir_all(&tenant).unwrap();
        let region = Region::open(&tenant.join("region")).unwrap();
        let dev = region.device_index([3; 16]).unwrap();
        region.set_limit(dev, 4 << 30);
        let me = ProcessIdentity::current();
        let slot = region.claim_slot(me).unwrap();
        region.try_reserve(slot, dev, 1 << 30, 4 << 30).unwrap();
        assert!(region.begin_lock(me.host_pid, 1));
        assert!(region.finish_checkpoint(me.host_pid));
        std::fs::write(
            owner_file(&tenant),
            r#"{"namespace": "team", "pod": "infer", "container": "main"}"#,
        )
        .unwrap();
        // Not a tenant: a folder without a region, and a plain file.
        std::fs::create_dir_all(dir.join("empty")).unwrap();
        let tenants = read_tenants(&dir);
        assert_eq!(tenants.len(), 1, "{tenants:?}");
        let t = &tenants[0];
        assert_eq!((t.name.as_str(), t.pids.clone()), ("t1", vec![me.host_pid]));
        assert_eq!(
            (t.checkpointed_pids.clone(), t.checkpoints),
            (vec![me.host_pid], 1)
        );
        assert_eq!(t.owner.as_ref().unwrap().pod, "infer");
        assert_eq!(t.devices[0].used_bytes, 1 << 30);
        assert_eq!(t.devices[0].limit_bytes, Some(4 << 30));
        assert_eq!(used_and_spilled(&t.devices[0]), "1.00 GiB");
        let text = crate::metrics::render(&snapshot_of(Vec::new(), &dir), "node-1");
        for series in [
            "gpupool_tenant_memory_used_bytes{",
            "gpupool_tenant_checkpoints_total{",
            "gpupool_tenant_checkpointed_processes{",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
        assert!(text.contains(r#"pod="infer""#), "{text}");
        region.release_slot(slot);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
