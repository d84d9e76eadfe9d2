//! Simulated-GPU specs: `2x80GiB`, `1xH100`, `H100+2xT4`, `2x16GiB:sms=40,ctx=300MiB,gran=2MiB`.
//!
//! Grammar: `group ('+' group)*`; `group = [COUNT 'x'] (MODEL | SIZE) [':' key=value (',' key=value)*]`.
//! Keys: `sms` (multiprocessor count), `ctx` (memory a context costs), `gran` (allocation
//! granularity), `name` (device name), `cc` (compute capability), `slice` (time slice), `mig`
//! (`on`: the card reports MIG mode enabled, as `nvidia-smi -mig 1` leaves it).

use crate::size::{parse_size, SizeError};
use thiserror::Error;

/// At most this many simulated devices (and so many per tenant region).
pub const MAX_DEVICES: usize = 16;

/// One simulated GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDevice {
    /// Device name as CUDA and NVML report it.
    pub name: String,
    /// Total device memory in bytes.
    pub memory: u64,
    /// Number of streaming multiprocessors.
    pub sms: u32,
    /// Compute capability (major, minor).
    pub compute_capability: (u32, u32),
    /// Device memory a context costs when created.
    pub context_memory: u64,
    /// Allocation granularity: every allocation is rounded up to a multiple of it.
    pub granularity: u64,
    /// Time slice in nanoseconds: kernels of different contexts take turns on the device for at
    /// most this long each.
    pub time_slice_ns: u64,
    /// MIG mode enabled (NVML reports it; the card is then split into instances, which gpupool
    /// does not share).
    pub mig: bool,
}

/// A whole simulated machine: the devices in CUDA ordinal order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSpec {
    /// The devices.
    pub devices: Vec<SimDevice>,
}

/// Why a spec was rejected; every variant names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// Nothing given.
    #[error("empty simulated-GPU spec (expected e.g. 2x80GiB or 1xH100)")]
    Empty,
    /// A group's count was malformed or zero.
    #[error("simulated-GPU spec {spec:?}: bad device count {count:?}")]
    BadCount {
        /// The whole spec.
        spec: String,
        /// The count part.
        count: String,
    },
    /// Neither a known model nor a size.
    #[error("simulated-GPU spec {spec:?}: {what:?} is neither a known model (H100, H200, A100, A100-40GB, L4, T4) nor a memory size ({err})")]
    BadModel {
        /// The whole spec.
        spec: String,
        /// The model part.
        what: String,
        /// Why it is not a size.
        err: SizeError,
    },
    /// An option was malformed.
    #[error("simulated-GPU spec {spec:?}: bad option {option:?}: {why}")]
    BadOption {
        /// The whole spec.
        spec: String,
        /// The option text.
        option: String,
        /// What is wrong with it.
        why: String,
    },
    /// Too many devices in total.
    #[error(
        "simulated-GPU spec {spec:?} asks for {count} devices; at most {MAX_DEVICES} are supported"
    )]
    TooMany {
        /// The whole spec.
        spec: String,
        /// Devices asked for.
        count: usize,
    },
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Default context cost of a simulated device.
pub const DEFAULT_CONTEXT_MEMORY: u64 = 256 * MIB;
/// Default allocation granularity of a simulated device.
pub const DEFAULT_GRANULARITY: u64 = 2 * MIB;
/// Default time slice between contexts on a simulated device (2 ms).
pub const DEFAULT_TIME_SLICE_NS: u64 = 2_000_000;

fn model(name: &str) -> Option<SimDevice> {
    let (full, memory, sms, cc) = match name.to_ascii_uppercase().as_str() {
        "H100" => ("NVIDIA H100 80GB HBM3", 81_559 * MIB, 132, (9, 0)),
        "H200" => ("NVIDIA H200", 143_771 * MIB, 132, (9, 0)),
        "A100" | "A100-80GB" => ("NVIDIA A100-SXM4-80GB", 81_920 * MIB, 108, (8, 0)),
        "A100-40GB" => ("NVIDIA A100-SXM4-40GB", 40_960 * MIB, 108, (8, 0)),
        "L4" => ("NVIDIA L4", 23_034 * MIB, 58, (8, 9)),
        "T4" => ("Tesla T4", 15_360 * MIB, 40, (7, 5)),
        _ => return None,
    };
    Some(SimDevice {
        name: full.to_string(),
        memory,
        sms,
        compute_capability: cc,
        context_memory: DEFAULT_CONTEXT_MEMORY,
        granularity: DEFAULT_GRANULARITY,
        time_slice_ns: DEFAULT_TIME_SLICE_NS,
        mig: false,
    })
}

impl SimSpec {
    /// Parses a spec string.
    pub fn parse(spec: &str) -> Result<SimSpec, SpecError> {
        let trimmed = spec.trim();
        if trimmed.is_empty() {
            return Err(SpecError::Empty);
        }
        let mut devices = Vec::new();
        for group in trimmed.split('+') {
            let (count, device) = parse_group(spec, group.trim())?;
            if devices.len() + count > MAX_DEVICES {
                return Err(SpecError::TooMany {
                    spec: spec.to_string(),
                    count: devices.len() + count,
                });
            }
            devices.extend(std::iter::repeat_n(device, count));
        }
        Ok(SimSpec { devices })
    }

    /// The canonical text of this spec; `SimSpec::parse(&s.to_spec_string()) == Ok(s)`.
    pub fn to_spec_string(&self) -> String {
        self.devices
            .iter()
            .map(|d| {
                format!(
                    "1x{}:name={},sms={},cc={}.{},ctx={},gran={},slice={}ns,mig={}",
                    d.memory,
                    d.name,
                    d.sms,
                    d.compute_capability.0,
                    d.compute_capability.1,
                    d.context_memory,
                    d.granularity,
                    d.time_slice_ns,
                    if d.mig { "on" } else { "off" }
                )
            })
            .collect::<Vec<_>>()
            .join("+")
    }
}

fn parse_group(spec: &str, group: &str) -> Result<(usize, SimDevice), SpecError> {
    let (body, options) = match group.split_once(':') {
        Some((b, o)) => (b.trim(), Some(o)),
        None => (group, None),
    };
    let (count, what) = match body.split_once(['x', 'X']) {
        Some((c, rest)) if !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit()) => {
            let n: usize = c.parse().map_err(|_| SpecError::BadCount {
                spec: spec.into(),
                count: c.into(),
            })?;
            (n, rest.trim())
        }
        _ => (1, body),
    };
    if count == 0 {
        return Err(SpecError::BadCount {
            spec: spec.into(),
            count: "0".into(),
        });
    }
    let mut device = match model(what) {
        Some(d) => d,
        None => {
            let memory = parse_size(what).map_err(|err| SpecError::BadModel {
                spec: spec.into(),
                what: what.into(),
                err,
            })?;
            if memory < 64 * MIB {
                return Err(SpecError::BadOption {
                    spec: spec.into(),
                    option: what.into(),
                    why: "a simulated device needs at least 64MiB".into(),
                });
            }
            SimDevice {
                name: format!("gpupool Simulated GPU {}GiB", memory.div_ceil(GIB)),
                memory,
                sms: 108,
                compute_capability: (8, 0),
                context_memory: DEFAULT_CONTEXT_MEMORY,
                granularity: DEFAULT_GRANULARITY,
                time_slice_ns: DEFAULT_TIME_SLICE_NS,
                mig: false,
            }
        }
    };
    for option in options.into_iter().flat_map(|o| o.split(',')) {
        apply_option(spec, option.trim(), &mut device)?;
    }
    if device.context_memory >= device.memory {
        return Err(SpecError::BadOption {
            spec: spec.into(),
            option: "ctx".into(),
            why: "context memory must be smaller than the device memory".into(),
        });
    }
    Ok((count, device))
}

fn apply_option(spec: &str, option: &str, device: &mut SimDevice) -> Result<(), SpecError> {
    let bad = |why: String| SpecError::BadOption {
        spec: spec.into(),
        option: option.into(),
        why,
    };
    let (key, value) = option
        .split_once('=')
        .ok_or_else(|| bad("expected key=value".into()))?;
    let value = value.trim();
    match key.trim() {
        "sms" => {
            device.sms = value
                .parse()
                .ok()
                .filter(|&n: &u32| (1..=1024).contains(&n))
                .ok_or_else(|| bad("sms must be an integer from 1 to 1024".into()))?
        }
        "ctx" => device.context_memory = parse_size(value).map_err(|e| bad(e.to_string()))?,
        "gran" => {
            let g = parse_size(value).map_err(|e| bad(e.to_string()))?;
            if !g.is_power_of_two() || g < 4096 {
                return Err(bad(
                    "granularity must be a power of two of at least 4KiB".into()
                ));
            }
            device.granularity = g;
        }
        "cc" => {
            let parsed = value
                .split_once('.')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
            device.compute_capability =
                parsed.ok_or_else(|| bad("cc must look like 9.0".into()))?;
        }
        "mig" => {
            device.mig = match value {
                "on" | "1" | "true" => true,
                "off" | "0" | "false" => false,
                _ => return Err(bad("mig must be on or off".into())),
            }
        }
        "slice" => {
            let ns = crate::duration::parse_duration_ns(value).map_err(|e| bad(e.to_string()))?;
            if !(10_000..=1_000_000_000).contains(&ns) {
                return Err(bad("time slice must be from 10us to 1s".into()));
            }
            device.time_slice_ns = ns;
        }
        "name" => {
            if value.is_empty() || value.len() > 95 || value.contains(['+', ':', ',']) {
                return Err(bad("name must be 1..95 characters without + : ,".into()));
            }
            device.name = value.to_string();
        }
        other => {
            return Err(bad(format!(
                "unknown key {other:?} (sms, ctx, gran, cc, slice, name, mig)"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_counts_models_and_sizes() {
        let s = SimSpec::parse("2x80GiB").unwrap();
        assert_eq!(s.devices.len(), 2);
        assert_eq!(s.devices[0].memory, 80 * GIB);
        let s = SimSpec::parse("1xH100").unwrap();
        assert_eq!(s.devices[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(s.devices[0].sms, 132);
        let s = SimSpec::parse("H100+2xT4").unwrap();
        assert_eq!(s.devices.len(), 3);
        assert_eq!(s.devices[2].name, "Tesla T4");
    }

    #[test]
    fn parses_options() {
        let s = SimSpec::parse("2x16GiB:sms=40,ctx=300MiB,gran=64KiB,slice=500us,name=Test GPU")
            .unwrap();
        assert_eq!(s.devices[0].time_slice_ns, 500_000);
        assert_eq!(s.devices[1].sms, 40);
        assert_eq!(s.devices[1].context_memory, 300 * MIB);
        assert_eq!(s.devices[1].granularity, 64 << 10);
        assert_eq!(s.devices[1].name, "Test GPU");
        assert!(!s.devices[0].mig);
        let s = SimSpec::parse("A100:mig=on+A100").unwrap();
        assert_eq!((s.devices[0].mig, s.devices[1].mig), (true, false));
        assert_eq!(SimSpec::parse(&s.to_spec_string()), Ok(s));
        let e = SimSpec::parse("A100:mig=maybe").unwrap_err().to_string();
        assert!(e.contains("mig=maybe") && e.contains("on or off"), "{e}");
    }

    #[test]
    fn rejects_malformed_specs() {
        for bad in [
            "",
            "0x8GiB",
            "2xfoo",
            "2x8GiB:sms",
            "2x8GiB:sms=0",
            "2x8GiB:gran=3MiB",
            "1x8GiB:slice=5us",
            "1x8GiB:slice=fast",
            "1x8GiB:ctx=9GiB",
            "17x1GiB",
            "2x8GiB:color=red",
            "1x1MiB",
            "x8GiB",
        ] {
            let err = SimSpec::parse(bad).expect_err(bad);
            assert!(!err.to_string().is_empty());
        }
        let msg = SimSpec::parse("2xfoo").unwrap_err().to_string();
        assert!(msg.contains("foo"), "{msg}");
    }

    proptest! {
        #[test]
        fn canonical_form_round_trips(n in 1usize..4, gib in 1u64..200, sms in 1u32..300, us in 10u64..100_000) {
            let spec = SimSpec::parse(&format!("{n}x{gib}GiB:sms={sms},slice={us}us")).unwrap();
            prop_assert_eq!(SimSpec::parse(&spec.to_spec_string()), Ok(spec));
        }

        #[test]
        fn never_panics(s in "\\PC{0,30}") {
            let _ = SimSpec::parse(&s);
        }
    }
}
