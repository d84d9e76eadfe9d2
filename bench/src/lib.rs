//! What both benchmark programs share: opening the driver the way NVIDIA's runtime does and
//! getting a current context on device 0.

use std::ffi::{c_char, c_void, CString};

type Gpa = unsafe extern "C" fn(*const c_char, *mut *mut c_void, i32, u64, *mut i32) -> u32;

/// The driver, resolved through `cuGetProcAddress_v2`.
pub struct Driver {
    gpa: Gpa,
}

impl Driver {
    /// Opens `libcuda.so.1`, initialises it and makes device 0's primary context current.
    pub fn open() -> Driver {
        // SAFETY: loading the driver and calling documented entry points with valid arguments.
        unsafe {
            let h = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW);
            assert!(!h.is_null(), "no libcuda.so.1");
            let gpa: Gpa = std::mem::transmute(libc::dlsym(h, c"cuGetProcAddress_v2".as_ptr()));
            let d = Driver { gpa };
            let init: unsafe extern "C" fn(u32) -> u32 = std::mem::transmute(d.get("cuInit", 2000));
            let retain: unsafe extern "C" fn(*mut *mut c_void, i32) -> u32 =
                std::mem::transmute(d.get("cuDevicePrimaryCtxRetain", 7000));
            let set: unsafe extern "C" fn(*mut c_void) -> u32 =
                std::mem::transmute(d.get("cuCtxSetCurrent", 4000));
            assert_eq!(init(0), 0);
            let mut ctx = std::ptr::null_mut();
            assert_eq!(retain(&mut ctx, 0), 0);
            assert_eq!(set(ctx), 0);
            d
        }
    }

    /// The function `name` as of CUDA `version` (panics if the driver lacks it).
    pub fn get(&self, name: &str, version: i32) -> *mut c_void {
        let c = CString::new(name).unwrap();
        let (mut p, mut st) = (std::ptr::null_mut(), 0);
        // SAFETY: valid name and out pointers.
        let rc = unsafe { (self.gpa)(c.as_ptr(), &mut p, version, 0, &mut st) };
        assert!(rc == 0 && !p.is_null(), "{name}");
        p
    }

    /// Loads a simulated module image and returns its kernel `name`.
    pub fn simulated_kernel(&self, image: &str, name: &str) -> *mut c_void {
        // SAFETY: documented entry points with valid arguments.
        unsafe {
            let load: unsafe extern "C" fn(*mut *mut c_void, *const c_void) -> u32 =
                std::mem::transmute(self.get("cuModuleLoadData", 2000));
            let function: unsafe extern "C" fn(
                *mut *mut c_void,
                *mut c_void,
                *const c_char,
            ) -> u32 = std::mem::transmute(self.get("cuModuleGetFunction", 2000));
            let image = CString::new(image).unwrap();
            let mut module = std::ptr::null_mut();
            assert_eq!(load(&mut module, image.as_ptr().cast()), 0, "module");
            let name = CString::new(name).unwrap();
            let mut f = std::ptr::null_mut();
            assert_eq!(function(&mut f, module, name.as_ptr()), 0, "kernel");
            f
        }
    }
}

/// `cuLaunchKernel`'s signature.
pub type Launch = unsafe extern "C" fn(
    *mut c_void,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    *mut c_void,
    *mut *mut c_void,
    *mut *mut c_void,
) -> u32;
