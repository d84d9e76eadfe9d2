//! A pod's vGPU requests (HAMi-compatible resource names, per container) and its placement
//! policy (annotations), with errors that name the container and resource or annotation.

use crate::quantity::{Format, Quantity};
use std::collections::BTreeMap;
use thiserror::Error;

/// A container's promise of `mib` on a card split into device memory and spill to host memory
/// under the memory oversubscription factor `over` (the scheduler promises at most `over` ×
/// the card): `mib / over` on the device (at least 1 MiB), the rest spilled. The node agent
/// writes limits so; the scheduler counts the spill against the node's host memory so.
pub fn split_promise(mib: u64, over: f64) -> (u64, u64) {
    if over <= 1.0 {
        return (mib, 0);
    }
    let device = ((mib as f64 / over).floor() as u64).clamp(1, mib.max(1));
    (device, mib.saturating_sub(device))
}

/// Device memory a vGPU asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// MiB.
    Mib(u64),
    /// Percent of the card.
    Percent(u32),
    /// The whole card (neither memory resource given).
    Whole,
}

/// One container's vGPU request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRequest {
    /// Container name.
    pub name: String,
    /// vGPUs, each on a different card.
    pub count: u32,
    /// Memory per vGPU.
    pub memory: Memory,
    /// Compute per vGPU, percent: guaranteed and cap; 0 (the default, as in HAMi) caps nothing
    /// and reserves nothing; 100 takes the card to itself.
    pub cores: u32,
    /// 0 high, 1 low.
    pub priority: u32,
    /// Host memory per vGPU usable past its device memory (spill), MiB; not placed on cards.
    pub spill_mib: u64,
}

impl ContainerRequest {
    /// Host memory its vGPUs may spill to at most, MiB, on cards of at most `card_mib`
    /// under the oversubscription factor `over`: the asked spill plus the part of each
    /// promise past `1 / over`.
    pub fn spill_bound(&self, card_mib: u64, over: f64) -> u64 {
        let over_part = split_promise(self.memory_on(card_mib), over).1;
        (self.count as u64).saturating_mul(self.spill_mib.saturating_add(over_part))
    }

    /// Memory this request takes on a card of `card_mib`.
    pub fn memory_on(&self, card_mib: u64) -> u64 {
        match self.memory {
            Memory::Mib(m) => m,
            Memory::Percent(p) => card_mib * p as u64 / 100,
            Memory::Whole => card_mib,
        }
    }
}

/// The resource names, under a configurable domain (`nvidia.com` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceNames {
    /// vGPU count.
    pub gpu: String,
    /// Memory, MiB.
    pub memory: String,
    /// Memory, percent.
    pub memory_percent: String,
    /// Spill to host memory past the device memory, MiB.
    pub memory_spill: String,
    /// Compute, percent.
    pub cores: String,
    /// Priority.
    pub priority: String,
}

impl ResourceNames {
    /// The names under `domain`.
    pub fn new(domain: &str) -> ResourceNames {
        ResourceNames {
            gpu: format!("{domain}/gpu"),
            memory: format!("{domain}/gpumem"),
            memory_percent: format!("{domain}/gpumem-percentage"),
            memory_spill: format!("{domain}/gpumem-spill"),
            cores: format!("{domain}/gpucores"),
            priority: format!("{domain}/priority"),
        }
    }
}

impl Default for ResourceNames {
    fn default() -> ResourceNames {
        ResourceNames::new("nvidia.com")
    }
}

/// A request or annotation that cannot be honoured as written.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    /// A resource of a container.
    #[error("container {container:?}: {resource}={value:?}: {why}")]
    Resource {
        /// The container.
        container: String,
        /// The resource name.
        resource: String,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// A pod annotation.
    #[error("annotation {annotation}={value:?}: {why}")]
    Annotation {
        /// The annotation.
        annotation: String,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
}

/// What a resource counts, for messages.
#[derive(Clone, Copy)]
enum Unit {
    Count,
    Mib,
    Percent,
    Priority,
}

impl Unit {
    fn words(self) -> &'static str {
        match self {
            Unit::Count => "vGPUs",
            Unit::Mib => "MiB",
            Unit::Percent => "percent",
            Unit::Priority => "(0 high, 1 low)",
        }
    }
}

/// One resource's value, read as a Kubernetes quantity (`6000`, `6k`, `1.5k`, `6e3` as the API
/// server stores them). `gpumem` with a binary suffix (`6Gi`, `1536Mi`) is a byte size and must
/// be a whole number of MiB; every other value is a count of its unit.
fn resource_value(text: &str, unit: Unit) -> Result<u64, String> {
    let q = Quantity::parse(text.trim()).map_err(|e| e.to_string())?;
    let shown = |q: &Quantity| {
        let plain = q.plain();
        if plain == text.trim() {
            String::new()
        } else {
            format!("{plain} ")
        }
    };
    if q.is_negative() {
        return Err(format!("{}is negative", shown(&q)));
    }
    let Some(whole) = q.whole() else {
        return Err(format!(
            "{}is not a whole number of {}",
            shown(&q),
            unit.words()
        ));
    };
    let whole = match (unit, q.format) {
        (Unit::Mib, Format::BinarySi) => {
            const MIB: i128 = 1 << 20;
            if whole % MIB != 0 {
                return Err(format!(
                    "{whole} bytes is not a whole number of MiB (a plain number is MiB; a binary suffix such as Gi is a byte size)"
                ));
            }
            whole / MIB
        }
        _ => whole,
    };
    u64::try_from(whole).map_err(|_| "too large".to_string())
}

/// Reads a container's vGPU request from its resource limits; `None` when it asks for none.
pub fn container_request(
    names: &ResourceNames,
    container: &str,
    resources: &BTreeMap<String, String>,
) -> Result<Option<ContainerRequest>, RequestError> {
    let get = |r: &str, unit: Unit, min: u64, max: u64| -> Result<Option<u64>, RequestError> {
        let Some(v) = resources.get(r) else {
            return Ok(None);
        };
        let bad = |why: &str| RequestError::Resource {
            container: container.into(),
            resource: r.into(),
            value: v.clone(),
            why: why.into(),
        };
        let n = resource_value(v, unit).map_err(|why| bad(&why))?;
        if n < min || n > max {
            return Err(bad(&format!(
                "{n} {}: must be from {min} to {max}",
                unit.words()
            )));
        }
        Ok(Some(n))
    };
    let count = get(&names.gpu, Unit::Count, 0, 64)?;
    let mib = get(&names.memory, Unit::Mib, 1, u32::MAX as u64)?;
    let pct = get(&names.memory_percent, Unit::Percent, 1, 100)?;
    let cores = get(&names.cores, Unit::Percent, 0, 100)?;
    let priority = get(&names.priority, Unit::Priority, 0, 1)?;
    let spill = get(&names.memory_spill, Unit::Mib, 0, u32::MAX as u64)?;
    let asks = mib.is_some() || pct.is_some() || cores.is_some();
    let count = match count {
        // Memory or cores without a count: one vGPU, as in HAMi.
        None if asks => 1,
        None => return Ok(None),
        Some(0) if asks => {
            return Err(RequestError::Resource {
                container: container.into(),
                resource: names.gpu.clone(),
                value: resources[&names.gpu].clone(),
                why: "GPU memory or cores are asked for with 0 vGPUs".into(),
            })
        }
        Some(0) => return Ok(None),
        Some(n) => n as u32,
    };
    let memory = match (mib, pct) {
        (Some(_), Some(_)) => {
            return Err(RequestError::Resource {
                container: container.into(),
                resource: names.memory_percent.clone(),
                value: resources[&names.memory_percent].clone(),
                why: format!(
                    "give {} or {}, not both",
                    names.memory, names.memory_percent
                ),
            })
        }
        (Some(m), None) => Memory::Mib(m),
        (None, Some(p)) => Memory::Percent(p as u32),
        (None, None) => Memory::Whole,
    };
    Ok(Some(ContainerRequest {
        name: container.into(),
        count,
        memory,
        cores: cores.unwrap_or(0) as u32,
        priority: priority.unwrap_or(0) as u32,
        spill_mib: spill.unwrap_or(0),
    }))
}

/// Binpack (prefer fuller) or spread (prefer emptier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Packing {
    /// Fill up before using more.
    #[default]
    Binpack,
    /// Keep load even.
    Spread,
}

/// How a pod's cards are chosen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Among nodes.
    pub node: Packing,
    /// Among cards of a node.
    pub gpu: Packing,
    /// Multi-card requests on one NUMA node.
    pub numa: bool,
    /// Only cards whose model contains one of these.
    pub use_types: Vec<String>,
    /// Never cards whose model contains one of these.
    pub avoid_types: Vec<String>,
    /// Only these cards.
    pub use_uuids: Vec<String>,
    /// Never these cards.
    pub avoid_uuids: Vec<String>,
}

impl Policy {
    /// Whether the pod restricts the cards by model or UUID.
    pub fn has_selectors(&self) -> bool {
        !(self.use_types.is_empty()
            && self.avoid_types.is_empty()
            && self.use_uuids.is_empty()
            && self.avoid_uuids.is_empty())
    }
}

/// Annotation: node packing.
pub const NODE_POLICY: &str = "gpupool.io/node-policy";
/// Annotation: card packing.
pub const GPU_POLICY: &str = "gpupool.io/gpu-policy";
/// Annotation: NUMA locality.
pub const NUMA: &str = "gpupool.io/numa";
/// Annotation: card models to use.
pub const USE_TYPE: &str = "gpupool.io/use-gpu-type";
/// Annotation: card models to avoid.
pub const AVOID_TYPE: &str = "gpupool.io/avoid-gpu-type";
/// Annotation: card UUIDs to use.
pub const USE_UUID: &str = "gpupool.io/use-gpu-uuid";
/// Annotation: card UUIDs to avoid.
pub const AVOID_UUID: &str = "gpupool.io/avoid-gpu-uuid";

/// Every placement annotation a pod may give, with the gpupool annotation it is read as:
/// gpupool's own, and HAMi's (a pod giving both names with different values is refused).
const PLACEMENT_ANNOTATIONS: [(&str, &str); 14] = [
    (NODE_POLICY, NODE_POLICY),
    (GPU_POLICY, GPU_POLICY),
    (NUMA, NUMA),
    (USE_TYPE, USE_TYPE),
    (AVOID_TYPE, AVOID_TYPE),
    (USE_UUID, USE_UUID),
    (AVOID_UUID, AVOID_UUID),
    ("hami.io/node-scheduler-policy", NODE_POLICY),
    ("hami.io/gpu-scheduler-policy", GPU_POLICY),
    ("nvidia.com/numa-bind", NUMA),
    ("nvidia.com/use-gputype", USE_TYPE),
    ("nvidia.com/nouse-gputype", AVOID_TYPE),
    ("nvidia.com/use-gpuuuid", USE_UUID),
    ("nvidia.com/nouse-gpuuuid", AVOID_UUID),
];

/// The pod's placement annotations under gpupool's names, each with the name and value the
/// pod gave.
fn placement_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<BTreeMap<&'static str, (&str, &str)>, RequestError> {
    let mut out: BTreeMap<&'static str, (&str, &str)> = BTreeMap::new();
    for (k, v) in annotations {
        let Some(&(_, ours)) = PLACEMENT_ANNOTATIONS.iter().find(|(name, _)| name == k) else {
            continue;
        };
        if let Some((other, w)) = out.get(ours) {
            if w.trim() != v.trim() {
                return Err(RequestError::Annotation {
                    annotation: k.clone(),
                    value: v.clone(),
                    why: format!("conflicts with {other}={w:?}"),
                });
            }
        }
        out.insert(ours, (k, v));
    }
    Ok(out)
}

impl Policy {
    /// The pod's policy: its annotations over `defaults`.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        defaults: &Policy,
    ) -> Result<Policy, RequestError> {
        let mut p = defaults.clone();
        let bad = |a: &str, v: &str, why: &str| RequestError::Annotation {
            annotation: a.into(),
            value: v.into(),
            why: why.into(),
        };
        let packing = |a: &str, v: &str| match v.trim() {
            "binpack" => Ok(Packing::Binpack),
            // HAMi's topology-aware card policy: binpack, as multi-card requests are always
            // kept in one interconnect group where one can hold them.
            "topology-aware" if a == "hami.io/gpu-scheduler-policy" => Ok(Packing::Binpack),
            "spread" => Ok(Packing::Spread),
            _ => Err(bad(a, v, "expected binpack or spread")),
        };
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        for (ours, (k, v)) in placement_annotations(annotations)? {
            match ours {
                NODE_POLICY => p.node = packing(k, v)?,
                GPU_POLICY => p.gpu = packing(k, v)?,
                NUMA => {
                    p.numa = match v.trim() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(k, v, "expected true or false")),
                    }
                }
                USE_TYPE => p.use_types = list(v),
                AVOID_TYPE => p.avoid_types = list(v),
                USE_UUID | AVOID_UUID => {
                    let l = list(v);
                    if let Some(u) = l.iter().find(|u| !u.starts_with("GPU-")) {
                        return Err(bad(k, v, &format!("{u:?} is not a GPU-… UUID")));
                    }
                    if ours == USE_UUID {
                        p.use_uuids = l;
                    } else {
                        p.avoid_uuids = l;
                    }
                }
                _ => {}
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn hami_resources_make_a_request() {
        let n = ResourceNames::default();
        let r = container_request(
            &n,
            "main",
            &res(&[
                ("nvidia.com/gpu", "2"),
                ("nvidia.com/gpumem", "4096"),
                ("nvidia.com/gpucores", "30"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (r.count, r.memory, r.cores, r.priority),
            (2, Memory::Mib(4096), 30, 0)
        );
        let pct = container_request(
            &n,
            "c",
            &res(&[
                ("nvidia.com/gpu", "1"),
                ("nvidia.com/gpumem-percentage", "25"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(pct.memory_on(80_000), 20_000);
        assert_eq!(
            container_request(&n, "c", &res(&[("cpu", "2")])).unwrap(),
            None
        );
        let other = ResourceNames::new("gpupool.io");
        assert!(
            container_request(&other, "c", &res(&[("gpupool.io/gpu", "1")]))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn quantities_in_every_form_the_api_server_stores() {
        let n = ResourceNames::default();
        let one = |mem: &str, cores: &str| {
            container_request(
                &n,
                "c",
                &res(&[
                    ("nvidia.com/gpu", "1"),
                    ("nvidia.com/gpumem", mem),
                    ("nvidia.com/gpucores", cores),
                ]),
            )
        };
        for (mem, mib) in [
            ("6k", 6000),
            ("8k", 8000),
            ("1500", 1500),
            ("6e3", 6000),
            ("+6", 6),
            ("06", 6),
            ("6Gi", 6144),
            ("2Gi", 2048),
            ("1536Mi", 1536),
            ("1Ti", 1 << 20),
        ] {
            let r = one(mem, "1e1").unwrap().unwrap();
            assert_eq!((r.memory, r.cores), (Memory::Mib(mib), 10), "{mem}");
        }
        for (mem, cores, needle) in [
            ("1536Ki", "10", "1572864 bytes is not a whole number of MiB"),
            ("500m", "10", "0.5 is not a whole number of MiB"),
            ("10", "2500m", "2.5 is not a whole number of percent"),
            ("10", "1k", "1000 percent: must be from 0 to 100"),
            ("-1", "10", "is negative"),
            ("6K", "10", "unknown suffix \"K\""),
            ("6 k", "10", "not a Kubernetes quantity"),
            ("5Pi", "10", "must be from 1 to 4294967295"),
        ] {
            let e = one(mem, cores).unwrap_err().to_string();
            assert!(
                e.contains(needle) && e.contains("container \"c\""),
                "{mem} {cores}: {e}"
            );
        }
    }

    #[test]
    fn bad_requests_name_container_and_resource() {
        let n = ResourceNames::default();
        for (pairs, needle) in [
            (&[("nvidia.com/gpu", "two")][..], "nvidia.com/gpu"),
            (
                &[("nvidia.com/gpu", "0"), ("nvidia.com/gpumem", "10")][..],
                "with 0 vGPUs",
            ),
            (
                &[("nvidia.com/gpu", "1"), ("nvidia.com/gpucores", "150")][..],
                "nvidia.com/gpucores",
            ),
            (
                &[
                    ("nvidia.com/gpu", "1"),
                    ("nvidia.com/gpumem", "10"),
                    ("nvidia.com/gpumem-percentage", "5"),
                ][..],
                "not both",
            ),
            (
                &[("nvidia.com/gpu", "1"), ("nvidia.com/priority", "5")][..],
                "nvidia.com/priority",
            ),
        ] {
            let e = container_request(&n, "web", &res(pairs))
                .unwrap_err()
                .to_string();
            assert!(e.contains("web") && e.contains(needle), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn hami_defaults_one_vgpu_and_no_compute() {
        let n = ResourceNames::default();
        let one = |pairs: &[(&str, &str)]| container_request(&n, "c", &res(pairs)).unwrap();
        // gpumem alone: one vGPU, no compute reserved or capped.
        let r = one(&[("nvidia.com/gpumem", "3000")]).unwrap();
        assert_eq!((r.count, r.memory, r.cores), (1, Memory::Mib(3000), 0));
        let r = one(&[("nvidia.com/gpucores", "40")]).unwrap();
        assert_eq!((r.count, r.memory, r.cores), (1, Memory::Whole, 40));
        let r = one(&[("nvidia.com/gpu", "2"), ("nvidia.com/gpucores", "0")]).unwrap();
        assert_eq!((r.count, r.cores), (2, 0));
        assert_eq!(one(&[("nvidia.com/gpu", "0")]), None);
    }

    #[test]
    fn a_spill_allowance_is_read_in_mib() {
        let n = ResourceNames::default();
        let one = |pairs: &[(&str, &str)]| container_request(&n, "c", &res(pairs));
        let r = one(&[
            ("nvidia.com/gpumem", "3000"),
            ("nvidia.com/gpumem-spill", "2Gi"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((r.memory, r.spill_mib), (Memory::Mib(3000), 2048));
        let r = one(&[("nvidia.com/gpumem", "3000")]).unwrap().unwrap();
        assert_eq!(r.spill_mib, 0);
        let e = one(&[
            ("nvidia.com/gpumem", "1"),
            ("nvidia.com/gpumem-spill", "-5"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("gpumem-spill") && e.contains("negative"), "{e}");
    }

    #[test]
    fn hami_annotations_are_read_as_ours() {
        let p = Policy::from_annotations(
            &res(&[
                ("hami.io/node-scheduler-policy", "spread"),
                ("hami.io/gpu-scheduler-policy", "spread"),
                ("nvidia.com/numa-bind", "true"),
                ("nvidia.com/use-gputype", "A100,H100"),
                ("nvidia.com/nouse-gputype", "T4"),
                ("nvidia.com/use-gpuuuid", "GPU-a,GPU-b"),
                ("nvidia.com/nouse-gpuuuid", "GPU-c"),
            ]),
            &Policy::default(),
        )
        .unwrap();
        assert_eq!(
            (p.node, p.gpu, p.numa),
            (Packing::Spread, Packing::Spread, true)
        );
        assert_eq!(p.use_types, vec!["A100", "H100"]);
        assert_eq!(p.avoid_types, vec!["T4"]);
        assert_eq!(p.use_uuids, vec!["GPU-a", "GPU-b"]);
        assert_eq!(p.avoid_uuids, vec!["GPU-c"]);
        let spread = Policy {
            gpu: Packing::Spread,
            ..Policy::default()
        };
        let topo = Policy::from_annotations(
            &res(&[("hami.io/gpu-scheduler-policy", "topology-aware")]),
            &spread,
        )
        .unwrap();
        assert_eq!(topo.gpu, Packing::Binpack);
        // The same setting under both names: equal values are fine, different ones refused.
        assert!(Policy::from_annotations(
            &res(&[
                (GPU_POLICY, "spread"),
                ("hami.io/gpu-scheduler-policy", "spread")
            ]),
            &Policy::default(),
        )
        .is_ok());
        let e = Policy::from_annotations(
            &res(&[(USE_TYPE, "A100"), ("nvidia.com/use-gputype", "H100")]),
            &Policy::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(USE_TYPE) && e.contains("nvidia.com/use-gputype") && e.contains("conflicts"),
            "{e}"
        );
        let e =
            Policy::from_annotations(&res(&[("nvidia.com/use-gpuuuid", "0")]), &Policy::default())
                .unwrap_err()
                .to_string();
        assert!(e.contains("nvidia.com/use-gpuuuid"), "{e}");
    }

    #[test]
    fn policy_from_annotations() {
        let p = Policy::from_annotations(
            &res(&[
                (GPU_POLICY, "spread"),
                (NUMA, "true"),
                (USE_TYPE, "H100, A100"),
                (AVOID_UUID, "GPU-1"),
            ]),
            &Policy::default(),
        )
        .unwrap();
        assert_eq!(p.gpu, Packing::Spread);
        assert_eq!(p.node, Packing::Binpack);
        assert!(p.numa);
        assert_eq!(p.use_types, vec!["H100", "A100"]);
        assert_eq!(p.avoid_uuids, vec!["GPU-1"]);
        for (k, v) in [(NODE_POLICY, "pack"), (NUMA, "yes"), (USE_UUID, "1234")] {
            let e = Policy::from_annotations(&res(&[(k, v)]), &Policy::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(k), "{e}");
        }
    }
}
