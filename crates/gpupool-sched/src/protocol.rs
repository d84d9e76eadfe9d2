//! The annotations of `docs/kubernetes.md`: node inventory (written by the node agent) and
//! per-container assignment (written by the scheduler at bind).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Node annotation with the node's cards.
pub const INVENTORY_ANNOTATION: &str = "gpupool.io/inventory";
/// Pod annotation with the devices chosen for each container.
pub const ASSIGNMENT_ANNOTATION: &str = "gpupool.io/assignment";
/// Protocol version written and accepted.
pub const VERSION: u32 = 1;

/// One card of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardInfo {
    /// `GPU-…` UUID.
    pub uuid: String,
    /// Model name as NVML reports it.
    pub model: String,
    /// Device memory, MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// Streaming multiprocessors.
    #[serde(default)]
    pub sms: u32,
    /// NUMA node (-1 = unknown).
    #[serde(default = "unknown_numa")]
    pub numa: i32,
    /// Usable.
    pub healthy: bool,
    /// vGPUs the card may hold at once.
    pub slots: u32,
    /// Cards with the same group share the best interconnect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

fn unknown_numa() -> i32 {
    -1
}

/// A node's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Protocol version.
    pub version: u32,
    /// When the agent wrote it (RFC 3339).
    #[serde(default)]
    pub updated: String,
    /// The cards.
    pub cards: Vec<CardInfo>,
    /// Host memory the node offers for spill past device memory, MiB (absent: none).
    #[serde(default, rename = "spillMiB", skip_serializing_if = "Option::is_none")]
    pub spill_mib: Option<u64>,
}

/// One device given to a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedDevice {
    /// Card UUID.
    pub uuid: String,
    /// Memory limit, MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// Compute, percent: reserved and capped (0: neither, 100: the card alone).
    pub cores: u32,
    /// 0 high, 1 low.
    #[serde(default)]
    pub priority: u32,
    /// Spill to host memory past the memory limit, MiB (0: none).
    #[serde(default, rename = "spillMiB", skip_serializing_if = "is_zero")]
    pub spill_mib: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl AssignedDevice {
    /// The compute cap, percent; `None` when there is none (0 cores: HAMi's default, or the
    /// whole card).
    pub fn compute_cap(&self) -> Option<u32> {
        (1..100).contains(&self.cores).then_some(self.cores)
    }
}

/// The devices of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedContainer {
    /// Container name.
    pub name: String,
    /// Its devices.
    pub devices: Vec<AssignedDevice>,
}

/// A pod's assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Protocol version.
    pub version: u32,
    /// The node it was bound to.
    pub node: String,
    /// Per container with vGPUs.
    pub containers: Vec<AssignedContainer>,
    /// When the scheduler assigned it (Unix time, nanoseconds): the node agent serves pods
    /// with equal requests in this order, the order the kubelet receives them in.
    #[serde(
        default,
        rename = "assignedNs",
        skip_serializing_if = "Option::is_none"
    )]
    pub assigned_ns: Option<u64>,
}

/// Whether `s` is a DNS label (RFC 1123, as Kubernetes checks container names): 1–63 of
/// `a-z`, `0-9`, `-`, not starting or ending with `-`. Container names in assignments must be: they become
/// part of file names on the node.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS subdomain (RFC 1123, as Kubernetes checks resource-name prefixes such
/// as `nvidia.com`): dot-separated [`is_dns_label`]s, 253 characters at most.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A malformed annotation.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// Not the JSON the protocol defines.
    #[error("annotation {annotation}: {why}")]
    Malformed {
        /// The annotation's name.
        annotation: &'static str,
        /// What is wrong.
        why: String,
    },
}

fn malformed(annotation: &'static str, why: impl ToString) -> ProtocolError {
    ProtocolError::Malformed {
        annotation,
        why: why.to_string(),
    }
}

impl Inventory {
    /// Parses and checks an inventory annotation.
    pub fn parse(text: &str) -> Result<Inventory, ProtocolError> {
        let inv: Inventory =
            serde_json::from_str(text).map_err(|e| malformed(INVENTORY_ANNOTATION, e))?;
        if inv.version != VERSION {
            return Err(malformed(
                INVENTORY_ANNOTATION,
                format!("version {} (this gpupool reads {VERSION})", inv.version),
            ));
        }
        for (i, c) in inv.cards.iter().enumerate() {
            if !c.uuid.starts_with("GPU-") || c.memory_mib == 0 || c.slots == 0 {
                return Err(malformed(
                    INVENTORY_ANNOTATION,
                    format!(
                        "card {i} ({:?}): needs a GPU-… uuid, memoryMiB > 0 and slots > 0",
                        c.uuid
                    ),
                ));
            }
            if inv.cards[..i].iter().any(|o| o.uuid == c.uuid) {
                return Err(malformed(
                    INVENTORY_ANNOTATION,
                    format!("card {:?} listed twice", c.uuid),
                ));
            }
        }
        Ok(inv)
    }

    /// The annotation's text.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("plain data")
    }
}

impl Assignment {
    /// Parses an assignment annotation.
    pub fn parse(text: &str) -> Result<Assignment, ProtocolError> {
        let a: Assignment =
            serde_json::from_str(text).map_err(|e| malformed(ASSIGNMENT_ANNOTATION, e))?;
        if a.version != VERSION {
            return Err(malformed(
                ASSIGNMENT_ANNOTATION,
                format!("version {} (this gpupool reads {VERSION})", a.version),
            ));
        }
        for c in &a.containers {
            if !is_dns_label(&c.name) {
                return Err(malformed(
                    ASSIGNMENT_ANNOTATION,
                    format!("container name {:?} is not a DNS label", c.name),
                ));
            }
            for d in &c.devices {
                let why = if d.uuid.is_empty()
                    || !d
                        .uuid
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                {
                    Some(format!("card {:?} is not a card UUID", d.uuid))
                } else if d.memory_mib == 0 {
                    Some(format!("container {}: memoryMiB 0 on {}", c.name, d.uuid))
                } else if d.cores > 100 {
                    Some(format!(
                        "container {}: cores {} on {} (0-100)",
                        c.name, d.cores, d.uuid
                    ))
                } else if d.priority > 1 {
                    Some(format!(
                        "container {}: priority {} (0 or 1)",
                        c.name, d.priority
                    ))
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(malformed(ASSIGNMENT_ANNOTATION, why));
                }
            }
        }
        Ok(a)
    }

    /// The annotation's text.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("plain data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_checked_as_kubernetes_does() {
        for ok in ["nvidia.com", "gpupool.io", "a", "x-1.y-2.example"] {
            assert!(is_dns_subdomain(ok), "{ok}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["abc"; 64].join(".");
        for bad in [
            "",
            "Nvidia.com",
            "nvidia.com/",
            "-a.com",
            "a-.com",
            "a..com",
            ".com",
            "a b",
            &long_label,
            &long_name,
        ] {
            assert!(!is_dns_subdomain(bad), "{bad:?}");
        }
        assert!(is_dns_label("main-1") && !is_dns_label("a.b") && !is_dns_label("../x"));
    }

    #[test]
    fn the_documented_inventory_parses_and_round_trips() {
        let text = r#"{"version":1,"updated":"2026-11-26T15:00:00Z","cards":[
            {"uuid":"GPU-1","model":"NVIDIA H100 80GB HBM3","memoryMiB":81559,"sms":132,
             "numa":0,"healthy":true,"slots":10,"group":"nvlink-0"}]}"#;
        let inv = Inventory::parse(text).unwrap();
        assert_eq!(inv.cards[0].memory_mib, 81559);
        assert_eq!(Inventory::parse(&inv.to_annotation()).unwrap(), inv);
    }

    #[test]
    fn bad_inventories_name_the_annotation() {
        for bad in [
            "",
            "{}",
            r#"{"version":2,"cards":[]}"#,
            r#"{"version":1,"cards":[{"uuid":"x","model":"m","memoryMiB":1,"healthy":true,"slots":1}]}"#,
            r#"{"version":1,"cards":[{"uuid":"GPU-1","model":"m","memoryMiB":0,"healthy":true,"slots":1}]}"#,
            r#"{"version":1,"cards":[{"uuid":"GPU-1","model":"m","memoryMiB":1,"healthy":true,"slots":1},
                                     {"uuid":"GPU-1","model":"m","memoryMiB":1,"healthy":true,"slots":1}]}"#,
        ] {
            let e = Inventory::parse(bad).unwrap_err().to_string();
            assert!(e.contains(INVENTORY_ANNOTATION), "{bad}: {e}");
        }
    }

    #[test]
    fn assignments_round_trip() {
        let a = Assignment {
            version: VERSION,
            assigned_ns: Some(1_795_000_000_000_000_000),
            node: "n1".into(),
            containers: vec![AssignedContainer {
                name: "main".into(),
                devices: vec![AssignedDevice {
                    uuid: "GPU-1".into(),
                    memory_mib: 4096,
                    cores: 30,
                    priority: 0,
                    spill_mib: 0,
                }],
            }],
        };
        assert_eq!(Assignment::parse(&a.to_annotation()).unwrap(), a);
        assert!(Assignment::parse(r#"{"version":1}"#).is_err());
        // Names and values that would reach file names or limits files are checked.
        let bad = |f: &dyn Fn(&mut Assignment)| {
            let mut b = a.clone();
            f(&mut b);
            Assignment::parse(&b.to_annotation())
                .unwrap_err()
                .to_string()
        };
        assert!(bad(&|b| b.containers[0].name = "../etc".into()).contains("../etc"));
        assert!(bad(&|b| b.containers[0].devices[0].uuid = "GPU-1/..".into()).contains("GPU-1/.."));
        assert!(bad(&|b| b.containers[0].devices[0].memory_mib = 0).contains("memoryMiB 0"));
        assert!(bad(&|b| b.containers[0].devices[0].cores = 101).contains("cores 101"));
        assert!(bad(&|b| b.containers[0].devices[0].priority = 7).contains("priority 7"));
    }
}
