//! The simulated machine as this process sees it: the spec (shared through the state folder),
//! the physical-memory region shared by every process, this process's slot in it, and the
//! devices made visible by `CUDA_VISIBLE_DEVICES`.

use gpupool_config::{SimDevice, SimSpec};
use gpupool_cuda::result::*;
use gpupool_region::{ProcessIdentity, Region, SlotHandle};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Env variable: the spec (`2x80GiB`, `1xH100`…); default `1xH100`.
pub const ENV_SPEC: &str = "GPUPOOL_SIM_SPEC";
/// Env variable: the state folder shared by all processes of one simulated machine.
pub const ENV_STATE: &str = "GPUPOOL_SIM_STATE";
/// Env variable: log every `cuGetProcAddress` and unimplemented export-table call to stderr.
pub const ENV_TRACE: &str = "GPUPOOL_SIM_TRACE";
/// Driver version the simulator reports (CUDA 13.0, so every runtime up to 13.0 accepts it).
pub const DRIVER_VERSION: i32 = 13000;

/// One device as a process sees it.
pub struct Device {
    /// Index in the spec (the "physical" index, NVML's index).
    pub physical: usize,
    /// Its description.
    pub spec: SimDevice,
    /// UUID bytes.
    pub uuid: [u8; 16],
    /// Index of the device in the shared region.
    pub region_index: usize,
    /// Its timeline, shared by every process of the machine.
    pub timeline: crate::timeline::Timeline,
}

/// The machine.
pub struct Machine {
    /// All devices of the spec, in physical order.
    pub all: Vec<Device>,
    /// Physical indices visible to this process, in CUDA ordinal order.
    pub visible: Vec<usize>,
    /// Physical memory accounting shared by all processes.
    pub region: Region,
    /// This process's slot.
    pub slot: SlotHandle,
    /// Pid of the process that built the machine (and owns `slot`).
    pub pid: u32,
    /// Fault injection: a file named after a device's UUID in this folder makes NVML calls on
    /// that device fail with `NVML_ERROR_GPU_IS_LOST` (see `docs/simulator.md`).
    pub faults: PathBuf,
}

impl Device {
    /// Whether a fault was injected for this device (`<state>/faults/<GPU-uuid>` exists).
    pub fn faulted(&self, faults: &std::path::Path) -> bool {
        faults
            .join(gpupool_cuda::uuid::format_gpu_uuid(&self.uuid))
            .exists()
    }
}

impl Machine {
    /// Waits while this process is locked or checkpointed (on each of its CUDA calls).
    pub fn wait_while_checkpointed(&self) {
        while self.region.own_checkpoint_state(self.slot) != gpupool_region::CHECKPOINT_RUNNING {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Device by CUDA ordinal.
    pub fn device(&self, ordinal: i32) -> Option<&Device> {
        let phys = *self.visible.get(usize::try_from(ordinal).ok()?)?;
        self.all.get(phys)
    }

    /// Reserves `bytes` of physical memory on a device (by ordinal-resolved device).
    pub fn reserve(&self, dev: &Device, bytes: u64) -> Result<(), u32> {
        self.region
            .try_reserve(self.slot, dev.region_index, bytes, dev.spec.memory)
            .map_err(|_| CUDA_ERROR_OUT_OF_MEMORY)
    }

    /// Returns `bytes` of physical memory.
    pub fn unreserve(&self, dev: &Device, bytes: u64) {
        self.region.release(self.slot, dev.region_index, bytes);
    }

    /// Physical memory used on a device by all processes. Slots of dead processes are reaped
    /// first (at most every 200 ms), so a killed process's memory is back within that time.
    pub fn used(&self, dev: &Device) -> u64 {
        static LAST_REAP_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if now.saturating_sub(LAST_REAP_MS.swap(now, std::sync::atomic::Ordering::Relaxed)) >= 200 {
            self.region.reap_dead();
        }
        self.region.used(dev.region_index)
    }
}

/// Deterministic UUID of simulated device `index` of a machine whose state folder is `state`.
fn device_uuid(state: &std::path::Path, index: usize) -> [u8; 16] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in state
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .chain(&(index as u64).to_le_bytes())
    {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&h.to_be_bytes());
    out[8..].copy_from_slice(&(h.rotate_left(29) ^ index as u64).to_be_bytes());
    out[6] = (out[6] & 0x0f) | 0x40;
    out
}

/// Why the simulated machine cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The state folder cannot be made or used.
    #[error("simulated GPU state folder {}: {source}", path.display())]
    StateFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A spec (from the environment or the state folder's `spec` file) does not parse.
    #[error("{origin}: {source}")]
    Spec {
        /// Where it came from.
        origin: String,
        /// Why it does not parse.
        source: gpupool_config::SpecError,
    },
    /// The environment asks for another machine than the state folder holds.
    #[error(
        "{ENV_SPEC}={wanted} differs from the spec of the simulated machine in {} ({stored}); use another {ENV_STATE} or remove that folder",
        folder.display()
    )]
    SpecMismatch {
        /// The spec asked for.
        wanted: String,
        /// The spec stored.
        stored: String,
        /// The state folder.
        folder: PathBuf,
    },
    /// The state folder's `spec` file cannot be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    SpecFile {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The shared memory accounting cannot be opened or joined.
    #[error("simulated GPU memory accounting: {0}")]
    Region(#[from] gpupool_region::RegionError),
    /// A device's timeline cannot be opened.
    #[error(transparent)]
    Timeline(#[from] crate::timeline::TimelineError),
}

fn state_dir() -> Result<PathBuf, MachineError> {
    match std::env::var_os(ENV_STATE) {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => {
            // SAFETY: getuid has no preconditions.
            let dir =
                std::env::temp_dir().join(format!("gpupool-sim-{}", unsafe { libc::getuid() }));
            gpupool_region::untrusted::ensure_private_dir(&dir).map_err(|source| {
                MachineError::StateFolder {
                    path: dir.clone(),
                    source,
                }
            })?;
            Ok(dir)
        }
    }
}

/// Reads the spec from the state folder, writing it there first if this is the first process.
fn load_spec(state: &std::path::Path) -> Result<SimSpec, MachineError> {
    std::fs::create_dir_all(state).map_err(|source| MachineError::StateFolder {
        path: state.to_path_buf(),
        source,
    })?;
    let spec_file = state.join("spec");
    let spec_file_error = |action, source| MachineError::SpecFile {
        action,
        path: spec_file.clone(),
        source,
    };
    let wanted = std::env::var(ENV_SPEC)
        .ok()
        .filter(|s| !s.trim().is_empty());
    let parsed_wanted = match &wanted {
        Some(s) => Some(SimSpec::parse(s).map_err(|source| MachineError::Spec {
            origin: ENV_SPEC.to_string(),
            source,
        })?),
        None => None,
    };
    match std::fs::read_to_string(&spec_file) {
        Ok(stored) => {
            let stored_spec =
                SimSpec::parse(stored.trim()).map_err(|source| MachineError::Spec {
                    origin: spec_file.display().to_string(),
                    source,
                })?;
            if let Some(w) = parsed_wanted {
                if w != stored_spec {
                    return Err(MachineError::SpecMismatch {
                        wanted: wanted.unwrap_or_default(),
                        stored: stored.trim().to_string(),
                        folder: state.to_path_buf(),
                    });
                }
            }
            Ok(stored_spec)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let spec =
                parsed_wanted.unwrap_or_else(|| SimSpec::parse("1xH100").expect("built-in spec"));
            let tmp = state.join(format!("spec.{}", std::process::id()));
            std::fs::write(&tmp, spec.to_spec_string())
                .and_then(|_| std::fs::rename(&tmp, &spec_file))
                .map_err(|e| spec_file_error("write", e))?;
            // Another process may have won the race with a different spec: re-read.
            load_spec(state)
        }
        Err(e) => Err(spec_file_error("read", e)),
    }
}

/// Parses `CUDA_VISIBLE_DEVICES` the way the real driver does: indices or UUID prefixes,
/// stopping at the first entry that matches nothing.
pub fn visible_devices(env: Option<&str>, uuids: &[[u8; 16]]) -> Vec<usize> {
    let Some(list) = env else {
        return (0..uuids.len()).collect();
    };
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim) {
        let found = if let Ok(i) = entry.parse::<usize>() {
            (i < uuids.len()).then_some(i)
        } else if entry.starts_with("GPU-") && entry.len() > 4 {
            uuids
                .iter()
                .position(|u| gpupool_cuda::uuid::format_gpu_uuid(u).starts_with(entry))
        } else {
            None
        };
        match found {
            Some(i) if !out.contains(&i) => out.push(i),
            _ => break,
        }
    }
    out
}

fn build() -> Result<Machine, MachineError> {
    let state = state_dir()?;
    let spec = load_spec(&state)?;
    let region = Region::open(&state.join("memory.region"))?;
    let mut all = Vec::new();
    for (i, d) in spec.devices.into_iter().enumerate() {
        let uuid = device_uuid(&state, i);
        let region_index = region.device_index(uuid)?;
        region.set_limit(region_index, d.memory);
        let timeline =
            crate::timeline::Timeline::open(&state.join(format!("timeline-{i}")), d.time_slice_ns)?;
        all.push(Device {
            physical: i,
            spec: d,
            uuid,
            region_index,
            timeline,
        });
    }
    let uuids: Vec<_> = all.iter().map(|d| d.uuid).collect();
    let visible = visible_devices(
        std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
        &uuids,
    );
    let slot = region.claim_slot(ProcessIdentity::current())?;
    Ok(Machine {
        all,
        visible,
        region,
        slot,
        pid: std::process::id(),
        faults: state.join("faults"),
    })
}

static MACHINE: OnceLock<Result<Machine, MachineError>> = OnceLock::new();

/// At normal exit the process's memory goes back, as the real driver frees it.
/// (A forked child that exits must not release its parent's memory.)
extern "C" fn release_at_exit() {
    if let Some(Ok(m)) = MACHINE.get() {
        // SAFETY: getpid has no preconditions.
        if m.pid == unsafe { libc::getpid() } as u32 {
            m.region.release_slot(m.slot);
        }
    }
}

/// The machine, built on first use; an unusable spec or state folder is reported once on stderr.
pub fn machine() -> Result<&'static Machine, u32> {
    let m = MACHINE.get_or_init(|| {
        let r = build();
        match &r {
            Err(e) => eprintln!("gpupool simulated GPU: {e}"),
            // SAFETY: registering a plain extern "C" function.
            Ok(_) => unsafe {
                libc::atexit(release_at_exit);
            },
        }
        r
    });
    m.as_ref().map_err(|_| CUDA_ERROR_NO_DEVICE)
}

/// Whether launches are only checked, not queued (`GPUPOOL_SIM_LAUNCH=none`): a driver whose
/// launch returns at once and whose kernels take no GPU time (events all read one time), so
/// that a benchmark of the library's launch hooks measures them rather than the timeline's
/// file-backed lock. Any other value is the normal simulator.
pub fn null_launches() -> bool {
    static N: OnceLock<bool> = OnceLock::new();
    *N.get_or_init(|| std::env::var("GPUPOOL_SIM_LAUNCH").as_deref() == Ok("none"))
}

/// Whether tracing is on (without building the machine).
pub fn tracing() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os(ENV_TRACE).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_devices_follow_cuda_rules() {
        let uuids = [[1u8; 16], [2u8; 16], [3u8; 16]];
        assert_eq!(visible_devices(None, &uuids), vec![0, 1, 2]);
        assert_eq!(visible_devices(Some("2,0"), &uuids), vec![2, 0]);
        assert_eq!(
            visible_devices(Some("1,7,0"), &uuids),
            vec![1],
            "stops at the first bad entry"
        );
        assert_eq!(visible_devices(Some(""), &uuids), Vec::<usize>::new());
        let u = gpupool_cuda::uuid::format_gpu_uuid(&uuids[2]);
        assert_eq!(visible_devices(Some(&u[..12]), &uuids), vec![2]);
    }

    #[test]
    fn uuids_differ_per_device_and_machine() {
        let a = device_uuid(std::path::Path::new("/a"), 0);
        assert_ne!(a, device_uuid(std::path::Path::new("/a"), 1));
        assert_ne!(a, device_uuid(std::path::Path::new("/b"), 0));
    }
}
