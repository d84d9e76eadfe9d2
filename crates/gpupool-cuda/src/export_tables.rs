//! The driver's private export tables (`cuGetExportTable`) that NVIDIA's runtime needs, and the
//! runtime's integrity check (HMAC-MD2 over process and device facts), answered by any library
//! that stands in for the driver (the simulated GPU, the remote-GPU client). Layouts are
//! described in the CUDA driver facts of the project's shared documentation.
//!
//! The library passes a [`Host`] on every [`get_export_table`] call: how to reach its contexts,
//! devices and version.

use crate::cu::{CUcontext, CUdevice, CUmodule, CUuuid};
use crate::md2::hmac_md2;
use crate::result::*;
use crate::spinlock::{ForkLock, SpinLock};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};

/// What the export tables need from the library that answers them.
pub struct Host {
    /// Prefix of trace lines (e.g. `gpupool simulated GPU`).
    pub label: &'static str,
    /// Whether to trace table requests and slot calls on stderr.
    pub tracing: fn() -> bool,
    /// The calling thread's current context (null when none).
    pub current_context: fn() -> CUcontext,
    /// Retains `dev`'s primary context.
    pub primary_retain: fn(CUdevice) -> Result<CUcontext, u32>,
    /// The driver version `cuDriverGetVersion` answers.
    pub driver_version: fn() -> i32,
    /// The visible devices' facts the integrity check hashes (`None` before `cuInit`).
    pub devices: fn() -> Option<Vec<DeviceFacts>>,
    /// `cuModuleLoadData`: loads the kernels of a fat binary (or its wrapper) the runtime
    /// registered, into the current context.
    pub load_module: unsafe fn(*mut CUmodule, *const c_void) -> u32,
    /// `cuCtxGetId`: a context's unique id (null: the current context).
    pub context_id: unsafe fn(CUcontext, *mut u64) -> u32,
}

/// One visible device as the integrity check hashes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceFacts {
    /// `cuDeviceGetUuid`.
    pub uuid: [u8; 16],
    /// PCI domain, bus and device numbers (`cuDeviceGetAttribute`).
    pub pci: [i32; 3],
}

static HOST: AtomicPtr<Host> = AtomicPtr::new(std::ptr::null_mut());

fn host() -> Option<&'static Host> {
    // SAFETY: only ever set from a `&'static Host`.
    unsafe { HOST.load(Relaxed).as_ref() }
}

fn tracing() -> bool {
    host().is_some_and(|h| (h.tracing)())
}

fn label() -> &'static str {
    host().map_or("gpupool", |h| h.label)
}

/// A table of function pointers (and, for most tables, its size in slot 0).
#[repr(C)]
pub struct Table<const N: usize>([*const c_void; N]);
// SAFETY: the tables are immutable after construction.
unsafe impl<const N: usize> Sync for Table<N> {}

/// Export-table slots without a known contract: each traces its call and answers `$answer`.
macro_rules! stubs {
    ($answer:expr; $($name:ident = $label:literal),* $(,)?) => {$(
        #[doc = concat!("Export-table slot ", $label, ": traced, answers `", stringify!($answer), "`.")]
        unsafe extern "C" fn $name() -> u32 {
            if tracing() {
                eprintln!("{}: export table slot {} called", label(), $label);
            }
            $answer
        }
    )*};
}

// Slots the runtime has not been seen to need.
stubs!(
    CUDA_SUCCESS;
    stub_ci_3 = "CUDART_INTERFACE[3]",
    stub_ci_4 = "CUDART_INTERFACE[4]",
    stub_ci_5 = "CUDART_INTERFACE[5]",
    stub_ci_7 = "CUDART_INTERFACE[7]",
    stub_ci_9 = "CUDART_INTERFACE[9]",
    stub_ci_10 = "CUDART_INTERFACE[10]",
    stub_ci_11 = "CUDART_INTERFACE[11]",
    stub_ci_12 = "CUDART_INTERFACE[12]",
    stub_ci_13 = "CUDART_INTERFACE[13]",
    stub_ci_14 = "CUDART_INTERFACE[14]",
    stub_ci_15 = "CUDART_INTERFACE[15]",
    stub_hooks_1 = "RUNTIME_CALLBACK_HOOKS[1]",
    stub_hooks_3 = "RUNTIME_CALLBACK_HOOKS[3]",
    stub_hooks_4 = "RUNTIME_CALLBACK_HOOKS[4]",
    stub_hooks_5 = "RUNTIME_CALLBACK_HOOKS[5]",
    stub_hooks_7 = "RUNTIME_CALLBACK_HOOKS[7]",
    stub_tls_1 = "TOOLS_TLS[1]",
    stub_tls_3 = "TOOLS_TLS[3]",
    stub_checks_1 = "CONTEXT_CHECKS[1]",
    stub_checks_3 = "CONTEXT_CHECKS[3]",
    stub_integrity_2 = "INTEGRITY_CHECK[2]",
);

// Slots whose contract is not known, where the driver's answer is not needed.
stubs!(
    CUDA_ERROR_NOT_SUPPORTED;
    unsupported_identity_1 = "CONTEXT_IDENTITY[1]",
    unsupported_identity_2 = "CONTEXT_IDENTITY[2]",
    unsupported_identity_3 = "CONTEXT_IDENTITY[3]",
    unsupported_device_data_1 = "DEVICE_DATA[1]",
    unsupported_device_data_2 = "DEVICE_DATA[2]",
    unsupported_device_data_3 = "DEVICE_DATA[3]",
);

/// DEVICE_DATA slot 4: `(void **data, size_t *bytes)`, a byte string of the driver's that
/// cuBLASLt reads while choosing half-precision kernels. None here: both outputs cleared and
/// `CUDA_ERROR_NOT_SUPPORTED`, on which cuBLASLt uses its own defaults (it crashes when the
/// whole table is missing).
unsafe extern "C" fn device_data(data: *mut *const c_void, bytes: *mut usize) -> u32 {
    if tracing() {
        eprintln!("{}: DEVICE_DATA[4]: none", label());
    }
    // SAFETY: the caller's out pointers, each written only when non-null.
    unsafe {
        if let Some(d) = data.as_mut() {
            *d = std::ptr::null();
        }
        if let Some(b) = bytes.as_mut() {
            *b = 0;
        }
    }
    CUDA_ERROR_NOT_SUPPORTED
}

/// TOOLS_TLS slot 2: the calling thread's current context (null when none). cuBLASLt asks
/// it before each matrix product and passes the answer to CONTEXT_IDENTITY slot 4.
unsafe extern "C" fn tools_current_context(out: *mut CUcontext) -> u32 {
    if tracing() {
        eprintln!("{}: TOOLS_TLS[2]: current context", label());
    }
    let Some(h) = host() else {
        return CUDA_ERROR_NOT_INITIALIZED;
    };
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: the caller's out pointer, checked non-null.
    unsafe { *out = (h.current_context)() };
    CUDA_SUCCESS
}

/// CONTEXT_IDENTITY slot 4: a context's unique id, as `cuCtxGetId` gives it (the runtime
/// linked into cuDNN and cuBLASLt keys its per-context state by it).
unsafe extern "C" fn context_identity(ctx: CUcontext, out: *mut u64) -> u32 {
    if tracing() {
        eprintln!("{}: CONTEXT_IDENTITY[4]: id of context {ctx:?}", label());
    }
    match host() {
        // SAFETY: the caller's pointers, passed on as `cuCtxGetId` takes them.
        Some(h) => unsafe { (h.context_id)(ctx, out) },
        None => CUDA_ERROR_NOT_INITIALIZED,
    }
}

/// Loads a module from what the runtime registered (a fat-binary wrapper or a fat binary).
unsafe fn load_registered(slot: u32, out: *mut CUmodule, image: *const c_void) -> u32 {
    if tracing() {
        eprintln!(
            "{}: CUDART_INTERFACE[{slot}]: module from a fat binary",
            label()
        );
    }
    if out.is_null() || image.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    match host() {
        // SAFETY: the runtime passes what its program registered.
        Some(h) => unsafe { (h.load_module)(out, image) },
        None => CUDA_ERROR_NOT_INITIALIZED,
    }
}

/// CUDART_INTERFACE slot 1: `(CUmodule*, fat-binary wrapper)`.
unsafe extern "C" fn cudart_module_1(out: *mut CUmodule, wrapper: *const c_void) -> u32 {
    // SAFETY: as the runtime calls it.
    unsafe { load_registered(1, out, wrapper) }
}

/// CUDART_INTERFACE slot 6: `(CUmodule*, fat-binary wrapper, …)`.
unsafe extern "C" fn cudart_module_6(
    out: *mut CUmodule,
    wrapper: *const c_void,
    _a: *mut c_void,
    _b: *mut c_void,
    _c: u32,
) -> u32 {
    // SAFETY: as the runtime calls it.
    unsafe { load_registered(6, out, wrapper) }
}

/// CUDART_INTERFACE slot 8: `(fat binary, CUmodule*, …)`.
unsafe extern "C" fn cudart_module_8(
    fatbin: *const c_void,
    out: *mut CUmodule,
    _a: *mut c_void,
    _b: *mut c_void,
    _c: u32,
) -> u32 {
    // SAFETY: as the runtime calls it.
    unsafe { load_registered(8, out, fatbin) }
}

/// CUDART_INTERFACE slot 2: retain the primary context of `dev`.
unsafe extern "C" fn cudart_primary_ctx(out: *mut CUcontext, dev: CUdevice) -> u32 {
    if tracing() {
        eprintln!(
            "{}: CUDART_INTERFACE[2]: primary context of device {dev}",
            label()
        );
    }
    match host().map_or(Err(CUDA_ERROR_NOT_INITIALIZED), |h| (h.primary_retain)(dev)) {
        Ok(c) => {
            if !out.is_null() {
                // SAFETY: caller's out pointer.
                unsafe { *out = c };
            }
            CUDA_SUCCESS
        }
        Err(e) => e,
    }
}

/// RUNTIME_CALLBACK_HOOKS' first buffer (its lock is taken around `fork`).
static HOOK_BUF_A: SpinLock<[u32; 1024]> = SpinLock::new([0; 1024]);
/// RUNTIME_CALLBACK_HOOKS' second buffer (its lock is taken around `fork`).
static HOOK_BUF_B: SpinLock<[u8; 14]> = SpinLock::new([0; 14]);

/// RUNTIME_CALLBACK_HOOKS slot 2: a buffer of 1024 u32.
unsafe extern "C" fn hooks_buffer_a(buf: *mut *mut c_void, n: *mut usize) -> u32 {
    let p = HOOK_BUF_A.lock().as_mut_ptr();
    // SAFETY: caller's out pointers; the static buffer lives forever.
    unsafe {
        if !buf.is_null() {
            *buf = p.cast();
        }
        if !n.is_null() {
            *n = 1024;
        }
    }
    CUDA_SUCCESS
}

/// RUNTIME_CALLBACK_HOOKS slot 6: a buffer of 14 bytes.
unsafe extern "C" fn hooks_buffer_b(buf: *mut *mut c_void, n: *mut usize) -> u32 {
    let p = HOOK_BUF_B.lock().as_mut_ptr();
    // SAFETY: as above.
    unsafe {
        if !buf.is_null() {
            *buf = p.cast();
        }
        if !n.is_null() {
            *n = 14;
        }
    }
    CUDA_SUCCESS
}

type ClsKey = (usize, usize);
/// Context-local storage (its lock is taken around `fork`).
static CLS: SpinLock<Option<HashMap<ClsKey, usize>>> = SpinLock::new(None);

fn cls_ctx(ctx: CUcontext) -> usize {
    if ctx.is_null() {
        host().map_or(0, |h| (h.current_context)() as usize)
    } else {
        ctx as usize
    }
}

/// CONTEXT_LOCAL_STORAGE slot 0: put.
unsafe extern "C" fn cls_put(
    ctx: CUcontext,
    key: *mut c_void,
    value: *mut c_void,
    _dtor: *mut c_void,
) -> u32 {
    let k = (cls_ctx(ctx), key as usize);
    CLS.lock()
        .get_or_insert_with(HashMap::new)
        .insert(k, value as usize);
    CUDA_SUCCESS
}

/// CONTEXT_LOCAL_STORAGE slot 1: delete.
unsafe extern "C" fn cls_delete(ctx: CUcontext, key: *mut c_void) -> u32 {
    let k = (cls_ctx(ctx), key as usize);
    CLS.lock().get_or_insert_with(HashMap::new).remove(&k);
    CUDA_SUCCESS
}

/// CONTEXT_LOCAL_STORAGE slot 2: get.
unsafe extern "C" fn cls_get(out: *mut *mut c_void, ctx: CUcontext, key: *mut c_void) -> u32 {
    let k = (cls_ctx(ctx), key as usize);
    let v = CLS.lock().get_or_insert_with(HashMap::new).get(&k).copied();
    match v {
        Some(v) => {
            if !out.is_null() {
                // SAFETY: caller's out pointer.
                unsafe { *out = v as *mut c_void };
            }
            CUDA_SUCCESS
        }
        None => CUDA_ERROR_INVALID_VALUE,
    }
}

/// CONTEXT_CHECKS slot 2.
unsafe extern "C" fn context_check(_ctx: CUcontext, out: *mut u32, out2: *mut *mut c_void) -> u32 {
    // SAFETY: caller's out pointers.
    unsafe {
        if !out.is_null() {
            *out = 0;
        }
        if !out2.is_null() {
            *out2 = std::ptr::null_mut();
        }
    }
    CUDA_SUCCESS
}

/// INTEGRITY_CHECK slot 1.
unsafe extern "C" fn integrity_check(version: u32, unix_seconds: u64, out: *mut [u64; 2]) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let answer = match version % 10 {
        0 => SELF_TEST_ANSWER,
        // The runtime (11.x checks it, 12.x and 13.x do not) expects the low byte of the
        // table's size slot in the top byte of the second self-test answer.
        1 => [
            SELF_TEST_ANSWER[0] & 0x00ff_ffff_ffff_ffff
                | (INTEGRITY_CHECK.0[0] as u64 & 0xff) << 56,
            SELF_TEST_ANSWER[1],
        ],
        _ => integrity_hash(version, unix_seconds),
    };
    if tracing() {
        eprintln!(
            "{}: integrity check version {version} time {unix_seconds} -> {answer:x?}",
            label()
        );
    }
    // SAFETY: caller's out pointer to two u64.
    unsafe { *out = answer };
    CUDA_SUCCESS
}

/// The fixed answer to the first self-test version (`version % 10 == 0`).
const SELF_TEST_ANSWER: [u64; 2] = [0x3341181c03cb675c, 0x8ed383aa1f4cd1e8];

const INTEGRITY_KEY: [u8; 16] = [
    0x14, 0x6a, 0xdd, 0xae, 0x53, 0xa9, 0xa7, 0x52, 0xaa, 0x08, 0x41, 0x36, 0x0b, 0xf5, 0x5a, 0x9f,
];

fn integrity_hash(version: u32, unix_seconds: u64) -> [u64; 2] {
    let mut msg = Vec::with_capacity(64);
    let driver_version = host().map_or(0, |h| (h.driver_version)());
    msg.extend_from_slice(&(driver_version as u32).to_le_bytes());
    msg.extend_from_slice(&version.to_le_bytes());
    // SAFETY: getpid / pthread_self have no preconditions.
    msg.extend_from_slice(&(unsafe { libc::getpid() } as u32).to_le_bytes());
    msg.extend_from_slice(&(unsafe { libc::pthread_self() } as u32).to_le_bytes());
    msg.extend_from_slice(&(&CUDART_INTERFACE as *const _ as u64).to_le_bytes());
    msg.extend_from_slice(&(&INTEGRITY_CHECK as *const _ as u64).to_le_bytes());
    msg.extend_from_slice(&(INTEGRITY_CHECK.0[1] as u64).to_le_bytes());
    msg.extend_from_slice(&unix_seconds.to_le_bytes());
    for d in host().and_then(|h| (h.devices)()).unwrap_or_default() {
        msg.extend_from_slice(&d.uuid);
        for n in d.pci {
            msg.extend_from_slice(&n.to_le_bytes());
        }
    }
    let h = hmac_md2(&INTEGRITY_KEY, &msg);
    [
        u64::from_le_bytes(h[..8].try_into().unwrap_or_default()),
        u64::from_le_bytes(h[8..].try_into().unwrap_or_default()),
    ]
}

const fn f(p: *const ()) -> *const c_void {
    p as *const c_void
}

const fn size(n: usize) -> *const c_void {
    (n * std::mem::size_of::<usize>()) as *const c_void
}

static CUDART_INTERFACE: Table<16> = Table([
    size(16),
    f(cudart_module_1 as *const ()),
    f(cudart_primary_ctx as *const ()),
    f(stub_ci_3 as *const ()),
    f(stub_ci_4 as *const ()),
    f(stub_ci_5 as *const ()),
    f(cudart_module_6 as *const ()),
    f(stub_ci_7 as *const ()),
    f(cudart_module_8 as *const ()),
    f(stub_ci_9 as *const ()),
    f(stub_ci_10 as *const ()),
    f(stub_ci_11 as *const ()),
    f(stub_ci_12 as *const ()),
    f(stub_ci_13 as *const ()),
    f(stub_ci_14 as *const ()),
    f(stub_ci_15 as *const ()),
]);
static RUNTIME_CALLBACK_HOOKS: Table<8> = Table([
    size(8),
    f(stub_hooks_1 as *const ()),
    f(hooks_buffer_a as *const ()),
    f(stub_hooks_3 as *const ()),
    f(stub_hooks_4 as *const ()),
    f(stub_hooks_5 as *const ()),
    f(hooks_buffer_b as *const ()),
    f(stub_hooks_7 as *const ()),
]);
static TOOLS_TLS: Table<4> = Table([
    size(4),
    f(stub_tls_1 as *const ()),
    f(tools_current_context as *const ()),
    f(stub_tls_3 as *const ()),
]);
static CONTEXT_LOCAL_STORAGE: Table<3> = Table([
    f(cls_put as *const ()),
    f(cls_delete as *const ()),
    f(cls_get as *const ()),
]);
static CONTEXT_CHECKS: Table<4> = Table([
    size(4),
    f(stub_checks_1 as *const ()),
    f(context_check as *const ()),
    f(stub_checks_3 as *const ()),
]);
/// Size, three slots of unknown contract, then the context id.
static CONTEXT_IDENTITY: Table<5> = Table([
    size(5),
    f(unsupported_identity_1 as *const ()),
    f(unsupported_identity_2 as *const ()),
    f(unsupported_identity_3 as *const ()),
    f(context_identity as *const ()),
]);
/// Size, three slots of unknown contract, then the data query.
static DEVICE_DATA: Table<5> = Table([
    size(5),
    f(unsupported_device_data_1 as *const ()),
    f(unsupported_device_data_2 as *const ()),
    f(unsupported_device_data_3 as *const ()),
    f(device_data as *const ()),
]);
/// Three slots and a size of 24 bytes, as on driver 580: the 11.x runtime folds the size into the
/// answer it expects for its second self-test version (see [`integrity_check`]).
static INTEGRITY_CHECK: Table<3> = Table([
    size(3),
    f(integrity_check as *const ()),
    f(stub_integrity_2 as *const ()),
]);

const ID_CUDART_INTERFACE: [u8; 16] = [
    0x6b, 0xd5, 0xfb, 0x6c, 0x5b, 0xf4, 0xe7, 0x4a, 0x89, 0x87, 0xd9, 0x39, 0x12, 0xfd, 0x9d, 0xf9,
];
const ID_RUNTIME_CALLBACK_HOOKS: [u8; 16] = [
    0xa0, 0x94, 0x79, 0x8c, 0x2e, 0x74, 0x2e, 0x74, 0x93, 0xf2, 0x08, 0x00, 0x20, 0x0c, 0x0a, 0x66,
];
const ID_TOOLS_TLS: [u8; 16] = [
    0x42, 0xd8, 0x5a, 0x81, 0x23, 0xf6, 0xcb, 0x47, 0x82, 0x98, 0xf6, 0xe7, 0x8a, 0x3a, 0xec, 0xdc,
];
const ID_CONTEXT_LOCAL_STORAGE: [u8; 16] = [
    0xc6, 0x93, 0x33, 0x6e, 0x11, 0x21, 0xdf, 0x11, 0xa8, 0xc3, 0x68, 0xf3, 0x55, 0xd8, 0x95, 0x93,
];
const ID_CONTEXT_CHECKS: [u8; 16] = [
    0x26, 0x3e, 0x88, 0x60, 0x7c, 0xd2, 0x61, 0x43, 0x92, 0xf6, 0xbb, 0xd5, 0x00, 0x6d, 0xfa, 0x7e,
];
const ID_CONTEXT_IDENTITY: [u8; 16] = [
    0x21, 0x31, 0x8c, 0x60, 0x97, 0x14, 0x32, 0x48, 0x8c, 0xa6, 0x41, 0xff, 0x73, 0x24, 0xc8, 0xf2,
];
const ID_DEVICE_DATA: [u8; 16] = [
    0x17, 0x34, 0xdc, 0x26, 0x80, 0x0d, 0x47, 0x45, 0x87, 0x26, 0xc0, 0xf1, 0xe7, 0xdd, 0x8b, 0xca,
];
const ID_INTEGRITY_CHECK: [u8; 16] = [
    0xd4, 0x08, 0x20, 0x55, 0xbd, 0xe6, 0x70, 0x4b, 0x8d, 0x34, 0xba, 0x12, 0x3c, 0x66, 0xe1, 0xf2,
];

/// `cuGetExportTable`, answered for the library described by `host`.
///
/// # Safety
/// `out` and `id` are null or valid as `cuGetExportTable` documents them.
pub unsafe fn get_export_table(
    host: &'static Host,
    out: *mut *const c_void,
    id: *const CUuuid,
) -> u32 {
    HOST.store(host as *const Host as *mut Host, Relaxed);
    if out.is_null() || id.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: caller passes a 16-byte uuid.
    let bytes: [u8; 16] = unsafe { (*id).bytes.map(|b| b as u8) };
    if tracing() {
        eprintln!(
            "{}: export table {} requested",
            label(),
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
    }
    let table: *const c_void = match bytes {
        ID_CUDART_INTERFACE => &CUDART_INTERFACE as *const _ as *const c_void,
        ID_RUNTIME_CALLBACK_HOOKS => &RUNTIME_CALLBACK_HOOKS as *const _ as *const c_void,
        ID_TOOLS_TLS => &TOOLS_TLS as *const _ as *const c_void,
        ID_CONTEXT_LOCAL_STORAGE => &CONTEXT_LOCAL_STORAGE as *const _ as *const c_void,
        ID_CONTEXT_CHECKS => &CONTEXT_CHECKS as *const _ as *const c_void,
        ID_CONTEXT_IDENTITY => &CONTEXT_IDENTITY as *const _ as *const c_void,
        ID_INTEGRITY_CHECK => &INTEGRITY_CHECK as *const _ as *const c_void,
        ID_DEVICE_DATA => &DEVICE_DATA as *const _ as *const c_void,
        _ => {
            if tracing() {
                eprintln!(
                    "{}: unknown export table {}",
                    label(),
                    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
                );
            }
            // SAFETY: non-null out pointer.
            unsafe { *out = std::ptr::null() };
            return CUDA_ERROR_NOT_FOUND;
        }
    };
    // SAFETY: non-null out pointer.
    unsafe { *out = table };
    CUDA_SUCCESS
}

/// This module's locks, in the order they nest (for fork handlers).
pub fn fork_locks() -> [&'static dyn ForkLock; 3] {
    [&CLS, &HOOK_BUF_A, &HOOK_BUF_B]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_test_answers_are_fixed() {
        let mut out = [0u64; 2];
        // SAFETY: valid out pointer.
        unsafe { integrity_check(12090, 0, &mut out) };
        assert_eq!(out, [0x3341181c03cb675c, 0x8ed383aa1f4cd1e8]);
        // SAFETY: valid out pointer.
        unsafe { integrity_check(12091, 0, &mut out) };
        assert_eq!(out, [0x1841181c03cb675c, 0x8ed383aa1f4cd1e8]);
    }

    static TEST_HOST: Host = Host {
        label: "test",
        tracing: || false,
        current_context: || 0x50 as CUcontext,
        primary_retain: |_| Err(CUDA_ERROR_NOT_INITIALIZED),
        driver_version: || 13000,
        devices: || None,
        load_module: test_load,
        context_id: test_context_id,
    };

    /// The table the test host answers for `id` (asserting it is known).
    fn table_of(id: [u8; 16]) -> *const c_void {
        let id = CUuuid {
            bytes: id.map(|b| b as std::ffi::c_char),
        };
        let mut table = std::ptr::null();
        // SAFETY: valid pointers.
        assert_eq!(
            unsafe { get_export_table(&TEST_HOST, &mut table, &id) },
            CUDA_SUCCESS
        );
        table
    }

    /// Every context's id is its address plus one.
    unsafe fn test_context_id(ctx: CUcontext, out: *mut u64) -> u32 {
        // SAFETY: the slot's caller passes a valid out pointer.
        unsafe { *out = ctx as u64 + 1 };
        CUDA_SUCCESS
    }

    #[test]
    fn the_context_identity_table_answers_context_ids() {
        let table = table_of(ID_CONTEXT_IDENTITY);
        // SAFETY: slot 0 is the table's size; slots 1 to 4 are functions.
        unsafe {
            let slots = table as *const *const c_void;
            assert_eq!(*(slots as *const usize), 5 * 8);
            let unknown: unsafe extern "C" fn() -> u32 = std::mem::transmute(*slots.add(2));
            assert_eq!(unknown(), CUDA_ERROR_NOT_SUPPORTED);
            let get_id: unsafe extern "C" fn(CUcontext, *mut u64) -> u32 =
                std::mem::transmute(*slots.add(4));
            let mut out = 0u64;
            assert_eq!(get_id(0x40 as CUcontext, &mut out), CUDA_SUCCESS);
            assert_eq!(out, 0x41);
        }
    }

    #[test]
    fn the_tools_table_names_the_current_context() {
        let table = table_of(ID_TOOLS_TLS);
        // SAFETY: slot 2 takes an out pointer to a context.
        unsafe {
            let current: unsafe extern "C" fn(*mut CUcontext) -> u32 =
                std::mem::transmute(*(table as *const *const c_void).add(2));
            let mut c: CUcontext = std::ptr::null_mut();
            assert_eq!(current(&mut c), CUDA_SUCCESS);
            assert_eq!(c as usize, 0x50);
            assert_eq!(current(std::ptr::null_mut()), CUDA_ERROR_INVALID_VALUE);
        }
    }

    #[test]
    fn the_device_data_table_offers_nothing() {
        let table = table_of(ID_DEVICE_DATA);
        // SAFETY: slot 4 takes two out pointers.
        unsafe {
            let query: unsafe extern "C" fn(*mut *const c_void, *mut usize) -> u32 =
                std::mem::transmute(*(table as *const *const c_void).add(4));
            let (mut data, mut bytes) = (8 as *const c_void, 8usize);
            assert_eq!(query(&mut data, &mut bytes), CUDA_ERROR_NOT_SUPPORTED);
            assert!(data.is_null());
            assert_eq!(bytes, 0);
        }
    }

    /// The image the last module load was given.
    static LOADED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    unsafe fn test_load(out: *mut CUmodule, image: *const c_void) -> u32 {
        LOADED.store(image as usize, Relaxed);
        // SAFETY: the slot checked the pointer.
        unsafe { *out = 0x77 as CUmodule };
        CUDA_SUCCESS
    }

    #[test]
    fn unknown_tables_are_not_found() {
        let probe = CUuuid {
            bytes: [
                0xf8u8, 0xcf, 0xf9, 0x51, 0x21, 0x46, 0x8b, 0x4e, 0xb9, 0xe2, 0xfb, 0x46, 0x9e,
                0x7c, 0x0d, 0xd9,
            ]
            .map(|b| b as std::ffi::c_char),
        };
        let mut out = std::ptr::null();
        // SAFETY: valid pointers.
        assert_eq!(
            unsafe { get_export_table(&TEST_HOST, &mut out, &probe) },
            CUDA_ERROR_NOT_FOUND
        );
        let id = CUuuid {
            bytes: ID_CUDART_INTERFACE.map(|b| b as std::ffi::c_char),
        };
        // SAFETY: valid pointers.
        assert_eq!(
            unsafe { get_export_table(&TEST_HOST, &mut out, &id) },
            CUDA_SUCCESS
        );
        // SAFETY: slot 0 of CUDART_INTERFACE is its size.
        assert_eq!(unsafe { *(out as *const usize) }, 16 * 8);
    }

    #[test]
    fn module_slots_load_what_the_runtime_registered() {
        let table = table_of(ID_CUDART_INTERFACE);
        let slot = |i: usize| unsafe { *(table as *const *const c_void).add(i) };
        type ModuleFirst = unsafe extern "C" fn(*mut CUmodule, *const c_void) -> u32;
        type ModuleFirstExt = unsafe extern "C" fn(
            *mut CUmodule,
            *const c_void,
            *mut c_void,
            *mut c_void,
            u32,
        ) -> u32;
        type ImageFirstExt = unsafe extern "C" fn(
            *const c_void,
            *mut CUmodule,
            *mut c_void,
            *mut c_void,
            u32,
        ) -> u32;
        let image = [0u64; 4];
        let p = image.as_ptr() as *const c_void;
        let none = std::ptr::null_mut();
        // SAFETY: the slots' signatures; valid pointers.
        unsafe {
            let one: ModuleFirst = std::mem::transmute(slot(1));
            let six: ModuleFirstExt = std::mem::transmute(slot(6));
            let eight: ImageFirstExt = std::mem::transmute(slot(8));
            let calls: [&dyn Fn(&mut CUmodule) -> u32; 3] =
                [&|m| one(m, p), &|m| six(m, p, none, none, 0), &|m| {
                    eight(p, m, none, none, 0)
                }];
            for (i, call) in calls.iter().enumerate() {
                LOADED.store(0, Relaxed);
                let mut m: CUmodule = std::ptr::null_mut();
                assert_eq!(call(&mut m), CUDA_SUCCESS, "slot {i}");
                assert_eq!(m as usize, 0x77, "slot {i}");
                assert_eq!(LOADED.load(Relaxed), p as usize, "slot {i}");
            }
            assert_eq!(one(std::ptr::null_mut(), p), CUDA_ERROR_INVALID_VALUE);
        }
    }
}
