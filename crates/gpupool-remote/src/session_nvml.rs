//! NVML on the GPU server, for the client's `libnvidia-ml.so.1`: devices travel as indexes,
//! and every answer comes from the server's NVML, which the interception library in the
//! session process turns into the tenant's view (its limit as the total, its own processes).

use crate::calls::custom::{self, NvmlString, NvmlValues};
use crate::driver_extra::NvmlFunctions;
use crate::wire::{DecodeError, Reader, Writer};
use gpupool_cuda::nvml::{
    nvmlDevice_t, nvmlMemory_t, nvmlMemory_v2_t, nvmlPciInfo_t, nvmlProcessInfo_v2_t,
    nvmlUtilization_t,
};
use gpupool_cuda::result::*;
use std::ffi::{c_char, c_void, CStr};

/// `nvmlMemory_v2`: the version field NVML expects in `nvmlMemory_v2_t`.
pub const NVML_MEMORY_V2: u32 = std::mem::size_of::<nvmlMemory_v2_t>() as u32 | (2 << 24);

/// The server's NVML, started on first use.
pub struct NvmlServer {
    functions: NvmlFunctions,
    /// `nvmlInit_v2`'s result, once called.
    init: Option<u32>,
}

macro_rules! function {
    ($s:ident . $f:ident) => {
        match $s.functions.$f {
            Some(f) => f,
            None => return Ok(NVML_ERROR_FUNCTION_NOT_FOUND),
        }
    };
}

fn zeroed<T>() -> T {
    // SAFETY: only used for NVML's plain C structures, for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}

impl NvmlServer {
    /// NVML found with `resolve` (a `dlsym`).
    pub fn resolve(resolve: &dyn Fn(&CStr) -> *mut c_void) -> NvmlServer {
        NvmlServer {
            functions: NvmlFunctions::resolve(resolve),
            init: None,
        }
    }

    fn started(&mut self) -> u32 {
        let functions = &self.functions;
        *self
            .init
            .get_or_insert_with(|| match functions.nvmlInit_v2 {
                // SAFETY: no arguments.
                Some(init) => unsafe { init() },
                None => NVML_ERROR_LIBRARY_NOT_FOUND,
            })
    }

    fn device(&self, index: u32) -> Result<nvmlDevice_t, u32> {
        let get = self
            .functions
            .nvmlDeviceGetHandleByIndex_v2
            .ok_or(NVML_ERROR_FUNCTION_NOT_FOUND)?;
        let mut h: nvmlDevice_t = std::ptr::null_mut();
        // SAFETY: a valid out pointer; NVML checks the index.
        match unsafe { get(index, &mut h) } {
            NVML_SUCCESS => Ok(h),
            e => Err(e),
        }
    }

    /// Decodes and answers NVML call `id`.
    pub fn call(
        &mut self,
        id: u16,
        r: &mut Reader<'_>,
        outs: &mut Writer,
    ) -> Result<u32, DecodeError> {
        let index: Option<u32> = match id {
            custom::NVML_COUNT => None,
            custom::NVML_STRING | custom::NVML_VALUES => {
                let what: u32 = r.get("what")?;
                let index: u32 = r.get("device index")?;
                r.end()?;
                return self.query(id, what, index, outs);
            }
            _ => Some(r.get("device index")?),
        };
        r.end()?;
        let rc = self.started();
        if rc != NVML_SUCCESS {
            return Ok(rc);
        }
        let dev = match index.map(|i| self.device(i)).transpose() {
            Ok(d) => d.unwrap_or(std::ptr::null_mut()),
            Err(e) => return Ok(e),
        };
        // SAFETY (every NVML call below): a handle NVML gave out and valid out pointers.
        Ok(match id {
            custom::NVML_COUNT => {
                let mut n = 0;
                let rc = unsafe { function!(self.nvmlDeviceGetCount_v2)(&mut n) };
                outs.put(&n);
                rc
            }
            custom::NVML_MEMORY => {
                let mut m: nvmlMemory_t = zeroed();
                let rc = unsafe { function!(self.nvmlDeviceGetMemoryInfo)(dev, &mut m) };
                let mut m2: nvmlMemory_v2_t = zeroed();
                m2.version = NVML_MEMORY_V2;
                let rc2 = match self.functions.nvmlDeviceGetMemoryInfo_v2 {
                    Some(f) => unsafe { f(dev, &mut m2) },
                    None => NVML_ERROR_FUNCTION_NOT_FOUND,
                };
                if rc2 != NVML_SUCCESS {
                    (m2.total, m2.reserved, m2.free, m2.used) = (m.total, 0, m.free, m.used);
                }
                for v in [
                    m.total,
                    m.free,
                    m.used,
                    m2.total,
                    m2.reserved,
                    m2.free,
                    m2.used,
                ] {
                    outs.put(&v);
                }
                rc
            }
            custom::NVML_PROCESSES => {
                let mut n = custom::NVML_MAX_PROCESSES;
                let mut list: Vec<nvmlProcessInfo_v2_t> = vec![zeroed(); n as usize];
                let f = function!(self.nvmlDeviceGetComputeRunningProcesses_v3);
                let rc = unsafe { f(dev, &mut n, list.as_mut_ptr()) };
                let n = if rc == NVML_SUCCESS {
                    n.min(custom::NVML_MAX_PROCESSES)
                } else {
                    0
                };
                outs.put(&n);
                for p in &list[..n as usize] {
                    outs.put(&p.pid);
                    outs.put(&p.usedGpuMemory);
                }
                rc
            }
            custom::NVML_PCI => {
                let mut p: nvmlPciInfo_t = zeroed();
                let rc = unsafe { function!(self.nvmlDeviceGetPciInfo_v3)(dev, &mut p) };
                // SAFETY: a plain C structure, read as its bytes.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        (&p as *const nvmlPciInfo_t).cast::<u8>(),
                        std::mem::size_of::<nvmlPciInfo_t>(),
                    )
                };
                outs.put_bytes(bytes);
                rc
            }
            _ => {
                return Err(DecodeError {
                    what: "call number (unknown NVML call)",
                    at: 0,
                })
            }
        })
    }

    /// Strings and number pairs, of the system (any index) or of device `index`.
    fn query(
        &mut self,
        id: u16,
        what: u32,
        index: u32,
        outs: &mut Writer,
    ) -> Result<u32, DecodeError> {
        let bad = DecodeError {
            what: "NVML query",
            at: 12,
        };
        let (known, system) = if id == custom::NVML_STRING {
            (
                what <= NvmlString::NvmlVersion as u32,
                what >= NvmlString::DriverVersion as u32,
            )
        } else {
            (
                what <= NvmlValues::Temperature as u32,
                what == NvmlValues::CudaDriverVersion as u32,
            )
        };
        if !known {
            return Err(bad);
        }
        let rc = self.started();
        if rc != NVML_SUCCESS {
            return Ok(rc);
        }
        let dev = if system {
            std::ptr::null_mut()
        } else {
            match self.device(index) {
                Ok(d) => d,
                Err(e) => return Ok(e),
            }
        };
        // SAFETY (every NVML call below): a handle NVML gave out and valid out pointers.
        if id == custom::NVML_STRING {
            let mut buf = [0 as c_char; 96];
            let len = buf.len() as u32 - 1;
            let rc = match what {
                0 => unsafe { function!(self.nvmlDeviceGetName)(dev, buf.as_mut_ptr(), len) },
                1 => unsafe { function!(self.nvmlDeviceGetUUID)(dev, buf.as_mut_ptr(), len) },
                2 => unsafe { function!(self.nvmlSystemGetDriverVersion)(buf.as_mut_ptr(), len) },
                _ => unsafe { function!(self.nvmlSystemGetNVMLVersion)(buf.as_mut_ptr(), len) },
            };
            // SAFETY: the buffer's last byte stays NUL.
            outs.put_bytes(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_bytes());
            return Ok(rc);
        }
        let (mut a, mut b) = (0i32, 0i32);
        let rc = match what {
            0 => unsafe { function!(self.nvmlDeviceGetCudaComputeCapability)(dev, &mut a, &mut b) },
            1 => {
                let mut u: nvmlUtilization_t = zeroed();
                let rc = unsafe { function!(self.nvmlDeviceGetUtilizationRates)(dev, &mut u) };
                (a, b) = (u.gpu as i32, u.memory as i32);
                rc
            }
            2 => unsafe { function!(self.nvmlSystemGetCudaDriverVersion)(&mut a) },
            _ => {
                let mut t = 0u32;
                // Sensor 0: the GPU's.
                let rc = unsafe { function!(self.nvmlDeviceGetTemperature)(dev, 0, &mut t) };
                a = t as i32;
                rc
            }
        };
        outs.put(&a);
        outs.put(&b);
        Ok(rc)
    }
}
