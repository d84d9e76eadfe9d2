//! Writing a limits file: the typed form of what [`crate::TenantConfig`] reads from one, so a
//! writer (the node agent) never spells a key by hand.

use std::fmt::Write;
use std::path::PathBuf;

/// One device's entries: keyed by card UUID (`GPU-…`) or CUDA ordinal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLimits {
    /// `GPU-<uuid>` or an ordinal.
    pub key: String,
    /// Device memory limit, MiB.
    pub memory_mib: u64,
    /// Host memory usable past the limit, MiB (0: none).
    pub spill_mib: u64,
    /// Compute limit, percent (`None`: none).
    pub compute: Option<u32>,
}

/// A whole limits file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LimitsFile {
    /// First comment line: who wrote it.
    pub comment: String,
    /// The tenant's region file.
    pub region: Option<PathBuf>,
    /// The folder of per-card coordination files.
    pub card_dir: Option<PathBuf>,
    /// This tenant's folder name in `card_dir`.
    pub card_tenant: Option<String>,
    /// Device memory charged per context (bytes).
    pub context_memory: u64,
    /// Per device.
    pub devices: Vec<DeviceLimits>,
    /// Low priority.
    pub low_priority: bool,
    /// How long an allocation that finds the card full waits for room (ns; 0: none).
    pub room_wait_ns: u64,
}

impl LimitsFile {
    /// The file's text, as [`crate::TenantConfig::from_sources`] reads it.
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        for line in self.comment.lines() {
            let _ = writeln!(t, "# {line}");
        }
        if let Some(r) = &self.region {
            let _ = writeln!(t, "region = {}", r.display());
        }
        if let Some(d) = &self.card_dir {
            let _ = writeln!(t, "card_dir = {}", d.display());
        }
        if let Some(n) = &self.card_tenant {
            let _ = writeln!(t, "card_tenant = {n}");
        }
        let _ = writeln!(t, "context_memory = {}", self.context_memory);
        for d in &self.devices {
            let _ = writeln!(t, "memory.{} = {}MiB", d.key, d.memory_mib);
            if d.spill_mib > 0 {
                let _ = writeln!(t, "spill.{} = {}MiB", d.key, d.spill_mib);
            }
            if let Some(c) = d.compute {
                let _ = writeln!(t, "compute.{} = {c}", d.key);
            }
        }
        if self.low_priority {
            t.push_str("priority = low\n");
        }
        if self.room_wait_ns > 0 {
            let _ = writeln!(t, "room_wait = {}ms", self.room_wait_ns.div_ceil(1_000_000));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TenantConfig;
    use std::path::Path;

    #[test]
    fn what_is_written_is_what_is_read() {
        let file = LimitsFile {
            comment: "written by a test".into(),
            region: Some("/run/t/region".into()),
            card_dir: Some("/run/cards".into()),
            card_tenant: Some("k8s-abc-main".into()),
            context_memory: 300 << 20,
            devices: vec![
                DeviceLimits {
                    key: "0".into(),
                    memory_mib: 4096,
                    spill_mib: 1024,
                    compute: Some(30),
                },
                DeviceLimits {
                    key: "1".into(),
                    memory_mib: 2048,
                    spill_mib: 0,
                    compute: None,
                },
            ],
            low_priority: true,
            room_wait_ns: 2_500_000_000,
        };
        let cfg =
            TenantConfig::from_sources(&[], Some((Path::new("/l"), &file.to_text()))).unwrap();
        assert_eq!(cfg.memory_limit(0), Some(4096 << 20));
        assert_eq!(cfg.spill_of(0, None), 1024 << 20);
        assert_eq!(
            (cfg.memory_limit(1), cfg.spill_of(1, None)),
            (Some(2048 << 20), 0)
        );
        assert_eq!(
            (cfg.compute_limit(0), cfg.compute_limit(1)),
            (Some(30), None)
        );
        assert_eq!(cfg.region.as_deref(), Some(Path::new("/run/t/region")));
        assert_eq!(cfg.card_tenant.as_deref(), Some("k8s-abc-main"));
        assert_eq!(cfg.context_memory, 300 << 20);
        assert_eq!(cfg.priority, crate::Priority::Low);
        assert_eq!(cfg.room_wait_ns, 2_500_000_000);
    }
}
