//! The driver's process checkpointing (`cuCheckpointProcess*`, driver 550 and later) loaded from
//! `libcuda.so.1`, for the checkpoint controller.

use anyhow::{anyhow, bail, Result};
use gpupool_node::checkpoint::CheckpointDriver;
use std::ffi::{c_void, CString};

/// `CUcheckpointLockArgs` (and, zeroed, the other steps' argument blocks): a timeout and
/// reserved words.
#[repr(C)]
struct Args {
    timeout_ms: u32,
    reserved0: u32,
    reserved1: [u64; 7],
}

impl Args {
    fn with_timeout(timeout_ms: u32) -> Args {
        Args {
            timeout_ms,
            reserved0: 0,
            reserved1: [0; 7],
        }
    }
}

type Step = unsafe extern "C" fn(pid: i32, args: *mut Args) -> u32;

/// The four steps, resolved from the driver.
pub struct DriverCheckpoints {
    lock: Step,
    checkpoint: Step,
    restore: Step,
    unlock: Step,
}

impl DriverCheckpoints {
    /// Loads the driver (`library`, else `libcuda.so.1`) and initialises it; fails when the
    /// driver lacks checkpointing.
    pub fn load(library: Option<&std::path::Path>) -> Result<DriverCheckpoints> {
        let name = match library {
            Some(p) => CString::new(p.as_os_str().as_encoded_bytes())?,
            None => CString::from(c"libcuda.so.1"),
        };
        // SAFETY: dlopen of a library path / soname.
        let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW) };
        if h.is_null() {
            bail!("cannot load libcuda.so.1 (no NVIDIA driver, and no simulated one on LD_LIBRARY_PATH)");
        }
        let sym = |name: &str| -> Result<*mut c_void> {
            let c = CString::new(name)?;
            // SAFETY: live handle, NUL-terminated name.
            let p = unsafe { libc::dlsym(h, c.as_ptr()) };
            if p.is_null() {
                Err(anyhow!(
                    "the driver has no {name}: checkpoints need driver 550 or later"
                ))
            } else {
                Ok(p)
            }
        };
        type Init = unsafe extern "C" fn(u32) -> u32;
        // SAFETY: cuInit has this signature.
        let init: Init = unsafe { std::mem::transmute(sym("cuInit")?) };
        // SAFETY: plain call.
        let rc = unsafe { init(0) };
        if rc != 0 {
            bail!("cuInit failed: CUresult {rc}");
        }
        // SAFETY: each symbol has the `Step` signature (pid, argument block).
        let step = |name: &str| -> Result<Step> {
            let p = sym(name)?;
            Ok(unsafe { std::mem::transmute::<*mut c_void, Step>(p) })
        };
        Ok(DriverCheckpoints {
            lock: step("cuCheckpointProcessLock")?,
            checkpoint: step("cuCheckpointProcessCheckpoint")?,
            restore: step("cuCheckpointProcessRestore")?,
            unlock: step("cuCheckpointProcessUnlock")?,
        })
    }
}

fn call(step: Step, pid: u32, timeout_ms: u32) -> Result<(), u32> {
    let Ok(pid) = i32::try_from(pid) else {
        return Err(gpupool_cuda::result::CUDA_ERROR_INVALID_VALUE);
    };
    let mut args = Args::with_timeout(timeout_ms);
    // SAFETY: a valid argument block for the duration of the call.
    match unsafe { step(pid, &mut args) } {
        0 => Ok(()),
        rc => Err(rc),
    }
}

impl CheckpointDriver for DriverCheckpoints {
    fn lock(&self, pid: u32, timeout_ms: u32) -> Result<(), u32> {
        call(self.lock, pid, timeout_ms)
    }
    fn checkpoint(&self, pid: u32) -> Result<(), u32> {
        call(self.checkpoint, pid, 0)
    }
    fn restore(&self, pid: u32) -> Result<(), u32> {
        call(self.restore, pid, 0)
    }
    fn unlock(&self, pid: u32) -> Result<(), u32> {
        call(self.unlock, pid, 0)
    }
}
