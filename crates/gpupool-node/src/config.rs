//! The agent's settings: a YAML file (`--config`), then flags over it, then validation that names
//! the bad input.

use crate::error::{NodeError, Result};
use gpupool_sched::protocol::is_dns_subdomain;
use gpupool_sched::signing::AssignmentKey;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the audit does with a container whose processes use more device memory than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditPolicy {
    /// Log it, raise a Kubernetes event and count it in a metric.
    Report,
    /// Report it, then kill the container's processes on that card.
    Kill,
}

impl AuditPolicy {
    /// Parses `report` / `kill`.
    pub fn parse(s: &str) -> std::result::Result<AuditPolicy, String> {
        match s {
            "report" => Ok(AuditPolicy::Report),
            "kill" => Ok(AuditPolicy::Kill),
            _ => Err(format!("audit policy {s:?}: expected report or kill")),
        }
    }
}

/// Settings of `gpupool node`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// This node's name in Kubernetes (`spec.nodeName` of its pods).
    pub node_name: String,
    /// The kubelet's device-plugin folder (its `kubelet.sock`, our socket next to it).
    pub kubelet_dir: PathBuf,
    /// Domain of the resource names (`nvidia.com` → `nvidia.com/gpu`, …).
    pub resource_domain: String,
    /// vGPU slots per card (how many containers may share one card).
    pub split: u32,
    /// The agent's folder on the host: allocations, tenant folders, card coordination files.
    pub state_dir: PathBuf,
    /// `libgpupool.so` on the host (mounted into every vGPU container).
    pub library: PathBuf,
    /// How often the inventory annotation is rewritten.
    pub inventory_refresh: Duration,
    /// How often cards are checked for health.
    pub health_interval: Duration,
    /// How often the audit compares NVML's memory per process with the limits.
    pub audit_interval: Duration,
    /// What the audit does with a container over its limit.
    pub audit_policy: AuditPolicy,
    /// Return CDI device names (`nvidia.com/gpu=<uuid>`) besides `NVIDIA_VISIBLE_DEVICES`.
    pub cdi: bool,
    /// Device memory charged per context inside containers (0 on real GPUs).
    pub context_memory: u64,
    /// What the audit allows each process beyond its allocations where contexts are not
    /// charged; `None`: each card's context size, measured when the agent starts.
    pub audit_context_allowance: Option<u64>,
    /// Where processes' cgroups are read (`<procRoot>/<pid>/cgroup`; the host's `/proc` with
    /// `hostPID: true`).
    pub proc_root: PathBuf,
    /// The key the scheduler signs assignments with; `None`: unsigned assignments are trusted
    /// (the operator's explicit choice).
    pub assignment_key: Option<AssignmentKey>,
    /// The scheduler's memory oversubscription factor (1 = none): a container promised `M` of
    /// a card gets `M / factor` of device memory and the rest as spill to host memory, so the
    /// promises of a full card fit it physically.
    pub memory_oversubscription: f64,
    /// Checkpoint processes idle this long to make room on a full card for a tenant that
    /// waits for it; `None`: never.
    pub checkpoint_idle_after: Option<Duration>,
    /// How long an allocation that finds the card full waits for that room.
    pub room_wait: Duration,
    /// Host memory the node offers for spill past device memory (bytes); `None`: half of the
    /// machine's memory.
    pub spill_memory: Option<u64>,
}

impl NodeConfig {
    /// The defaults for `node_name`.
    pub fn defaults(node_name: &str) -> NodeConfig {
        NodeConfig {
            node_name: node_name.to_string(),
            kubelet_dir: PathBuf::from("/var/lib/kubelet/device-plugins"),
            resource_domain: "nvidia.com".into(),
            split: 10,
            state_dir: PathBuf::from("/var/lib/gpupool"),
            library: PathBuf::from("/usr/local/gpupool/lib/libgpupool.so"),
            inventory_refresh: Duration::from_secs(30),
            health_interval: Duration::from_secs(5),
            audit_interval: Duration::from_secs(10),
            audit_policy: AuditPolicy::Report,
            cdi: false,
            context_memory: 0,
            audit_context_allowance: None,
            proc_root: PathBuf::from("/proc"),
            assignment_key: None,
            memory_oversubscription: 1.0,
            checkpoint_idle_after: None,
            room_wait: Duration::from_secs(30),
            spill_memory: None,
        }
    }

    /// Host memory offered for spill, MiB: as configured, else half of `MemTotal` in
    /// `/proc/meminfo` (0 when unreadable).
    pub fn spill_memory_mib(&self) -> u64 {
        match self.spill_memory {
            Some(b) => b >> 20,
            None => std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|t| mem_total_kib(&t))
                .map_or(0, |kib| kib / 1024 / 2),
        }
    }

    /// The room wait written into limits files (ns; 0 while checkpoints are off).
    pub fn room_wait_ns(&self) -> u64 {
        match self.checkpoint_idle_after {
            Some(_) => self.room_wait.as_nanos().min(u64::MAX as u128) as u64,
            None => 0,
        }
    }

    /// The resource the plugin registers (`<domain>/gpu`).
    pub fn resource_name(&self) -> String {
        format!("{}/gpu", self.resource_domain)
    }

    /// Folder of the allocation records.
    pub fn allocations_dir(&self) -> PathBuf {
        self.state_dir.join("allocations")
    }

    /// Folder of the tenant folders (one per container).
    pub fn tenants_dir(&self) -> PathBuf {
        self.state_dir.join("tenants")
    }

    /// Folder of the per-card coordination files shared by every tenant of the node.
    pub fn cards_dir(&self) -> PathBuf {
        self.state_dir.join("cards")
    }

    /// The file holding `/etc/ld.so.preload` for containers.
    pub fn preload_file(&self) -> PathBuf {
        self.state_dir.join("ld.so.preload")
    }

    /// Applies a YAML configuration file's settings (unknown keys are errors).
    pub fn apply_file(&mut self, path: &Path) -> Result<()> {
        let text =
            std::fs::read_to_string(path).map_err(|e| NodeError::file("config file", path, e))?;
        self.apply_yaml(&text)
            .map_err(|e| NodeError::Config(format!("config file {}: {e}", path.display())))
    }

    /// Applies YAML text (the config file's format, documented in `docs/kubernetes.md`).
    pub fn apply_yaml(&mut self, text: &str) -> Result<()> {
        let file: FileConfig =
            serde_yaml::from_str(text).map_err(|e| NodeError::Config(e.to_string()))?;
        if let Some(v) = file.node_name {
            self.node_name = v;
        }
        if let Some(v) = file.kubelet_dir {
            self.kubelet_dir = v;
        }
        if let Some(v) = file.resource_domain {
            self.resource_domain = v;
        }
        if let Some(v) = file.split {
            self.split = v;
        }
        if let Some(v) = file.state_dir {
            self.state_dir = v;
        }
        if let Some(v) = file.library {
            self.library = v;
        }
        let duration = |key: &str, v: &str| {
            gpupool_config_duration(v)
                .map_err(|why| NodeError::Config(format!("{key}: {v:?}: {why}")))
        };
        if let Some(v) = file.inventory_refresh {
            self.inventory_refresh = duration("inventoryRefresh", &v)?;
        }
        if let Some(v) = file.health_interval {
            self.health_interval = duration("healthInterval", &v)?;
        }
        if let Some(v) = file.audit_interval {
            self.audit_interval = duration("auditInterval", &v)?;
        }
        if let Some(v) = file.audit_policy {
            self.audit_policy = v;
        }
        if let Some(v) = file.cdi {
            self.cdi = v;
        }
        if let Some(v) = file.proc_root {
            self.proc_root = v;
        }
        if let Some(v) = file.memory_oversubscription {
            self.memory_oversubscription = v;
        }
        if let Some(v) = file.checkpoint_idle_after {
            self.checkpoint_idle_after = Some(duration("checkpointIdleAfter", &v)?);
        }
        if let Some(v) = file.room_wait {
            self.room_wait = duration("roomWait", &v)?;
        }
        if let Some(v) = file.spill_memory {
            self.spill_memory = Some(
                gpupool_config::parse_size(&v)
                    .map_err(|e| NodeError::Config(format!("spillMemory: {v:?}: {e}")))?,
            );
        }
        if let Some(v) = file.audit_context_allowance {
            self.audit_context_allowance =
                Some(gpupool_config::parse_size(&v).map_err(|e| {
                    NodeError::Config(format!("auditContextAllowance: {v:?}: {e}"))
                })?);
        }
        Ok(())
    }

    /// Checks every setting; the error names the setting and its value.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(NodeError::Config)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.node_name.is_empty() {
            return Err(
                "node name is empty: pass --node-name or set NODE_NAME (the downward API's spec.nodeName)"
                    .into(),
            );
        }
        if !is_dns_subdomain(&self.resource_domain) {
            return Err(format!(
                "resource domain {:?}: expected a DNS name such as nvidia.com",
                self.resource_domain
            ));
        }
        if !(1..=64).contains(&self.split) {
            return Err(format!(
                "split {}: expected 1 to 64 vGPUs per card",
                self.split
            ));
        }
        for (key, path) in [
            ("kubeletDir", &self.kubelet_dir),
            ("stateDir", &self.state_dir),
            ("library", &self.library),
            ("procRoot", &self.proc_root),
        ] {
            if !path.is_absolute() {
                return Err(format!(
                    "{key} {}: expected an absolute path",
                    path.display()
                ));
            }
        }
        let over = self.memory_oversubscription;
        if !(1.0..=16.0).contains(&over) {
            return Err(format!(
                "memoryOversubscription {over}: expected a factor from 1 to 16 (the scheduler's)"
            ));
        }
        if let Some(d) = self.checkpoint_idle_after {
            if d < Duration::from_secs(1) {
                return Err(format!("checkpointIdleAfter {d:?}: expected 1s to 1h"));
            }
        }
        if self.room_wait > Duration::from_nanos(gpupool_config::limits::MAX_ROOM_WAIT_NS) {
            return Err(format!(
                "roomWait {:?}: expected at most 10m",
                self.room_wait
            ));
        }
        for (key, d) in [
            ("inventoryRefresh", self.inventory_refresh),
            ("healthInterval", self.health_interval),
            ("auditInterval", self.audit_interval),
        ] {
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                return Err(format!("{key} {d:?}: expected 100ms to 1h"));
            }
        }
        Ok(())
    }
}

/// `MemTotal` of `/proc/meminfo`'s text, KiB.
fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

fn gpupool_config_duration(v: &str) -> std::result::Result<Duration, String> {
    gpupool_config::parse_duration_ns(v)
        .map(Duration::from_nanos)
        .map_err(|e| e.why.to_string())
}

/// The YAML file: every key optional, camelCase, unknown keys refused.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConfig {
    node_name: Option<String>,
    kubelet_dir: Option<PathBuf>,
    resource_domain: Option<String>,
    split: Option<u32>,
    state_dir: Option<PathBuf>,
    library: Option<PathBuf>,
    inventory_refresh: Option<String>,
    health_interval: Option<String>,
    audit_interval: Option<String>,
    audit_policy: Option<AuditPolicy>,
    cdi: Option<bool>,
    proc_root: Option<PathBuf>,
    audit_context_allowance: Option<String>,
    memory_oversubscription: Option<f64>,
    checkpoint_idle_after: Option<String>,
    room_wait: Option<String>,
    spill_memory: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_settings_apply_and_bad_ones_are_named() {
        let mut c = NodeConfig::defaults("n1");
        c.apply_yaml(
            "split: 4\nresourceDomain: example.com\ninventoryRefresh: 10s\nauditPolicy: kill\n",
        )
        .unwrap();
        assert_eq!(c.split, 4);
        assert_eq!(c.resource_name(), "example.com/gpu");
        assert_eq!(c.inventory_refresh, Duration::from_secs(10));
        assert_eq!(c.audit_policy, AuditPolicy::Kill);
        c.validate().unwrap();

        let e = c.apply_yaml("splitt: 4\n").unwrap_err().to_string();
        assert!(e.contains("splitt"), "{e}");
        let e = c
            .apply_yaml("inventoryRefresh: soon\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("inventoryRefresh") && e.contains("soon"), "{e}");
        let e = c
            .apply_yaml("auditPolicy: maybe\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("maybe"), "{e}");
        let e = c.apply_yaml("split: -1\n").unwrap_err().to_string();
        assert!(e.contains("split"), "{e}");

        c.split = 0;
        assert!(c.validate().unwrap_err().to_string().contains("split 0"));
        c.split = 10;
        c.resource_domain = "Nvidia Com".into();
        assert!(c.validate().unwrap_err().to_string().contains("Nvidia Com"));
        c.resource_domain = "nvidia.com".into();
        c.state_dir = "relative".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("stateDir relative"));
        c.state_dir = "/var/lib/gpupool".into();
        c.node_name.clear();
        assert!(c.validate().unwrap_err().to_string().contains("node name"));
        c.node_name = "n1".into();

        assert_eq!(
            c.room_wait_ns(),
            0,
            "no room wait while checkpoints are off"
        );
        c.apply_yaml("checkpointIdleAfter: 2m\nroomWait: 45s\n")
            .unwrap();
        assert_eq!(c.checkpoint_idle_after, Some(Duration::from_secs(120)));
        assert_eq!(c.room_wait_ns(), 45_000_000_000);
        c.validate().unwrap();
        c.room_wait = Duration::from_secs(3600);
        assert!(c.validate().unwrap_err().to_string().contains("roomWait"));
        c.room_wait = Duration::from_secs(30);
        c.checkpoint_idle_after = Some(Duration::from_millis(10));
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("checkpointIdleAfter"));
        let e = c
            .apply_yaml("checkpointIdleAfter: often\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("checkpointIdleAfter") && e.contains("often"),
            "{e}"
        );
    }

    #[test]
    fn spill_memory_is_configured_or_half_the_machine_s() {
        let mut c = NodeConfig::defaults("n1");
        assert_eq!(
            mem_total_kib("MemFree: 1 kB\nMemTotal:       24576000 kB\n"),
            Some(24_576_000)
        );
        assert_eq!(mem_total_kib("garbage"), None);
        let half = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| mem_total_kib(&t))
            .unwrap()
            / 2048;
        assert_eq!(c.spill_memory_mib(), half);
        c.apply_yaml("spillMemory: 64GiB\n").unwrap();
        assert_eq!(c.spill_memory_mib(), 64 << 10);
        let e = c.apply_yaml("spillMemory: lots\n").unwrap_err().to_string();
        assert!(e.contains("spillMemory") && e.contains("lots"), "{e}");
    }

    #[test]
    fn durations_take_minutes() {
        assert_eq!(
            gpupool_config_duration("2m").unwrap(),
            Duration::from_secs(120)
        );
        assert!(gpupool_config_duration("10").is_err());
    }
}
