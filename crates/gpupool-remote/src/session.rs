//! One client's session on the GPU server: decodes its requests, checks every handle and device
//! address against what this session created, calls the driver, and answers. A session runs in
//! its own process (with the interception library preloaded for the tenant's limits), so all a
//! client owned is freed when it goes away.

/// The driver function `$f` the session resolved, or an early `Ok($missing)` from the
/// enclosing decoder when the driver lacks it.
macro_rules! extra_or {
    ($session:expr, $f:ident, $missing:expr) => {
        match $session.extra.$f {
            Some(f) => f,
            None => return Ok($missing),
        }
    };
}

mod copies;
mod graphs;
mod image_loads;
pub mod ipc;
mod linker;

use crate::calls::custom::{self, LAUNCH_COOPERATIVE, LAUNCH_EX};
use crate::calls::Class;
use crate::driver_extra::Extra;
use crate::handles::Handles;
use crate::kernel_args::KernelArgs;
use crate::launch_ex::{
    all_travel, all_travel_in_launch, attribute_travels, read_attributes, LaunchShape,
};
use crate::protocol::*;
use crate::session_nvml::NvmlServer;
use crate::table_server::{self, c_string, Table, TableSession};
use crate::wire::{DecodeError, Reader, Writer};
use gpupool_cuda::cu::*;
use gpupool_cuda::result::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{c_void, CStr};
use std::io::{self, Read, Write};

/// What one client has on the server, and the driver it calls.
pub struct Session {
    /// Table-driven driver functions.
    pub table: Table,
    extra: Extra,
    nvml: NvmlServer,
    /// The handles the client may pass: the driver's and the client's names for them.
    handles: Handles,
    /// Device allocations: base address → size.
    ranges: BTreeMap<u64, u64>,
    /// Virtual address ranges reserved with `cuMemAddressReserve`: base address → size.
    reserved: BTreeMap<u64, u64>,
    /// Device variables of loaded modules and libraries: base address → size.
    globals: BTreeMap<u64, u64>,
    /// The module or library each device variable belongs to.
    global_owners: HashMap<u64, (Class, u64)>,
    /// Modules taken from a library (`cuLibraryGetModule`): unloading any library forgets
    /// their variables, as which library each came from is not known.
    library_modules: HashSet<u64>,
    /// The client's names that stand for a module's function (`CUfunction`), not a library's
    /// kernel (`CUkernel`).
    module_functions: HashSet<u64>,
    /// JIT link states.
    links: linker::Links,
    /// Interprocess handles exported and memory opened.
    ipc: ipc::Ipc,
    /// The context current on the session's thread (`u64::MAX`: unknown).
    current: u64,
    /// First error of an asynchronous call since the last reply.
    deferred: u32,
    /// Log each failing call on stderr (`GPUPOOL_REMOTE_TRACE` in the server's environment).
    pub trace: bool,
    /// The images the server keeps for this client, if it keeps any.
    pub images: Option<crate::image_cache::ImageCache>,
    /// Writes the images this client asked the server to keep (started at the first).
    keeper: Option<crate::image_cache::Keeper>,
    /// The kept images listed to the client, held until the session ends.
    pinned: Option<crate::image_pins::PinnedImages>,
}

/// Whether `[ptr, ptr + len)` lies inside one of `ranges` (base → size).
fn inside(ranges: &BTreeMap<u64, u64>, ptr: u64, len: u64) -> bool {
    let Some((&base, &size)) = ranges.range(..=ptr).next_back() else {
        return false;
    };
    match (ptr.checked_add(len), base.checked_add(size)) {
        (Some(end), Some(limit)) => end <= limit && (len > 0 || ptr < limit),
        _ => false,
    }
}

impl Session {
    /// A session calling the driver functions `resolve` finds.
    pub fn new(resolve: &dyn Fn(&CStr) -> *mut c_void) -> Session {
        Session {
            table: Table::resolve(resolve),
            extra: Extra::resolve(resolve),
            nvml: NvmlServer::resolve(resolve),
            handles: Handles::default(),
            ranges: BTreeMap::new(),
            reserved: BTreeMap::new(),
            globals: BTreeMap::new(),
            global_owners: HashMap::new(),
            library_modules: HashSet::new(),
            module_functions: HashSet::new(),
            links: linker::Links::default(),
            ipc: ipc::Ipc::from_env(),
            current: u64::MAX,
            deferred: CUDA_SUCCESS,
            trace: false,
            images: None,
            keeper: None,
            pinned: None,
        }
    }

    /// Runs `f` (an allocation) with the session thread's stream-capture mode relaxed. The
    /// session thread runs every capture its client began, so in a capture's global mode the
    /// driver would refuse allocations; a client allocates during a capture in relaxed mode
    /// (PyTorch's allocator does; the thread's mode is kept on the client) or for a graph's
    /// staging buffers.
    fn relaxed<R>(&self, f: impl FnOnce() -> R) -> R {
        const RELAXED: u32 = 2;
        let Some(exchange) = self.extra.cuThreadExchangeStreamCaptureMode else {
            return f();
        };
        let mut mode = RELAXED;
        // SAFETY: a local in/out value.
        let swapped = unsafe { exchange(&mut mode) } == CUDA_SUCCESS;
        let out = f();
        if swapped {
            // SAFETY: as above; puts the thread's mode back.
            unsafe { exchange(&mut mode) };
        }
        out
    }

    /// Whether `h` is a handle of `class` this session created (null and, for streams, the
    /// special streams 1 and 2 are always valid).
    pub fn valid(&self, class: Class, h: u64) -> bool {
        self.real(class, h).is_some()
    }

    /// The driver's handle behind the client's handle `h` of `class` (see [`Handles::real`]).
    pub fn real(&self, class: Class, h: u64) -> Option<u64> {
        self.handles.real(class, h)
    }

    /// The driver's function or kernel behind the client's `f` (see [`Handles::function`]).
    fn function(&self, f: u64) -> Result<u64, u32> {
        self.handles.function(f)
    }

    /// Whether `[ptr, ptr + len)` lies inside one of this session's device allocations,
    /// reserved virtual address ranges or device variables of its loaded modules.
    pub fn owns(&self, ptr: u64, len: u64) -> bool {
        inside(&self.ranges, ptr, len)
            || inside(&self.reserved, ptr, len)
            || inside(&self.globals, ptr, len)
            || self.ipc.holds(ptr, len)
    }

    /// Forgets the device variables of a module or library that was unloaded.
    fn unloaded(&mut self, class: Class, h: u64) {
        let from_library = class == Class::Library;
        let gone: Vec<u64> = self
            .global_owners
            .iter()
            .filter(|(_, &(c, o))| {
                (c, o) == (class, h)
                    || (from_library && c == Class::Module && self.library_modules.contains(&o))
            })
            .map(|(&base, _)| base)
            .collect();
        for base in gone {
            self.global_owners.remove(&base);
            self.globals.remove(&base);
        }
        if class == Class::Module {
            self.library_modules.remove(&h);
        }
    }

    /// Ends what outlives the client's calls: waits until the images the client asked to keep
    /// are written, unpins the images listed to it and removes its interprocess handles from
    /// the tenant's registry.
    pub fn finish(&mut self) {
        self.ipc.finish();
        if let Some(mut k) = self.keeper.take() {
            k.finish();
        }
        self.pinned = None;
    }

    /// Starts the driver and describes it for the client.
    pub fn welcome(&mut self) -> Welcome {
        let refuse = |status: u32, message: String| Welcome {
            status,
            message,
            driver_version: 0,
            devices: Vec::new(),
        };
        let (Some(init), Some(version), Some(count), Some(get), Some(uuid), Some(attr)) = (
            self.extra.cuInit,
            self.extra.cuDriverGetVersion,
            self.extra.cuDeviceGetCount,
            self.extra.cuDeviceGet,
            self.extra.cuDeviceGetUuid,
            self.extra.cuDeviceGetAttribute,
        ) else {
            return refuse(
                STATUS_UNAVAILABLE,
                "the GPU server has no CUDA driver (libcuda.so.1 not found)".into(),
            );
        };
        // SAFETY: driver calls with valid out pointers.
        unsafe {
            let rc = init(0);
            if rc != CUDA_SUCCESS {
                return refuse(
                    STATUS_UNAVAILABLE,
                    format!("cuInit failed on the GPU server with CUresult {rc}"),
                );
            }
            let mut v = 0;
            version(&mut v);
            let mut n = 0;
            count(&mut n);
            let mut devices = Vec::new();
            for i in 0..n.clamp(0, 64) {
                let mut d = 0;
                if get(&mut d, i) != CUDA_SUCCESS {
                    continue;
                }
                let mut u = CUuuid { bytes: [0; 16] };
                uuid(&mut u, d);
                let mut pci = [0i32; 3];
                // PCI domain, bus and device ids.
                for (slot, a) in pci.iter_mut().zip([50, 33, 34]) {
                    attr(slot, a, d);
                }
                devices.push(DeviceFacts {
                    uuid: u.bytes.map(|b| b as u8),
                    pci,
                });
            }
            Welcome {
                status: STATUS_OK,
                message: String::new(),
                driver_version: v,
                devices,
            }
        }
    }

    /// Serves requests until the client closes the connection. A malformed request is answered
    /// with [`REFUSED`] and its reason, and ends the session.
    pub fn serve(&mut self, mut reader: impl Read, mut writer: impl Write) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut reply = Writer::default();
        loop {
            let len = match read_frame_reusing(&mut reader, &mut buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => {
                    let _ = refuse(&mut writer, &e.to_string());
                    return Err(e);
                }
            };
            // The frame's length first, patched once the reply is written: one write each.
            reply.buf.clear();
            reply.put(&0u32);
            match self.handle(&buf[..len], &mut reply) {
                Ok(true) => {
                    let n = (reply.buf.len() - 4) as u32;
                    reply.buf[..4].copy_from_slice(&n.to_le_bytes());
                    writer.write_all(&reply.buf)?;
                    writer.flush()?;
                }
                Ok(false) => {}
                Err(e) => {
                    let _ = refuse(&mut writer, &e.to_string());
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
    }

    /// Runs one request; writes its reply into `reply` and returns whether one is due.
    pub fn handle(&mut self, body: &[u8], reply: &mut Writer) -> Result<bool, DecodeError> {
        let mut r = Reader::new(body);
        let head = RequestHead::get(&mut r)?;
        let sync = head.flags & FLAG_SYNC != 0;
        // Results are written straight after the result and deferred fields, patched below:
        // bulk data (device to host copies) is not copied once more.
        let base = reply.buf.len();
        reply.put(&CUDA_SUCCESS);
        reply.put(&CUDA_SUCCESS);
        let rc = if custom::is_nvml(head.call) {
            self.nvml.call(head.call, &mut r, reply)?
        } else if head.call == custom::ACK {
            r.end()?;
            CUDA_SUCCESS
        } else if head.context != self.current && !self.switch_context(head.context) {
            CUDA_ERROR_INVALID_CONTEXT
        } else {
            match table_server::call(self, head.call, &mut r, reply)? {
                Some(rc) => rc,
                None => self.custom(head.call, &mut r, reply)?,
            }
        };
        if crate::calls::changes_contexts(head.call) {
            self.current = u64::MAX;
        }
        if self.trace && rc != CUDA_SUCCESS {
            eprintln!(
                "gpupool serve: call {} failed with CUresult {rc}",
                head.call
            );
        }
        if !sync {
            reply.buf.truncate(base);
            if rc != CUDA_SUCCESS && self.deferred == CUDA_SUCCESS {
                self.deferred = rc;
            }
            return Ok(false);
        }
        // An NVML answer or an acknowledgement leaves a CUDA error for the next CUDA call.
        let deferred = if custom::leaves_deferred(head.call) {
            CUDA_SUCCESS
        } else {
            std::mem::replace(&mut self.deferred, CUDA_SUCCESS)
        };
        reply.buf[base..base + 4].copy_from_slice(&rc.to_le_bytes());
        reply.buf[base + 4..base + 8].copy_from_slice(&deferred.to_le_bytes());
        if rc != CUDA_SUCCESS {
            reply.buf.truncate(base + 8);
        }
        Ok(true)
    }

    fn switch_context(&mut self, ctx: u64) -> bool {
        if !self.valid(Class::Context, ctx) {
            return false;
        }
        let Some(set) = self.extra.cuCtxSetCurrent else {
            return false;
        };
        // SAFETY: a context this session created, or null.
        if unsafe { set(ctx as usize as CUcontext) } != CUDA_SUCCESS {
            return false;
        }
        self.current = ctx;
        true
    }

    /// The client's stream handle `h` as the driver's stream (0: the null stream).
    fn stream_of(&self, h: u64) -> Result<CUstream, u32> {
        match self.real(Class::Stream, h) {
            Some(real) => Ok(real as usize as CUstream),
            None => Err(CUDA_ERROR_INVALID_HANDLE),
        }
    }

    fn stream(&self, r: &mut Reader<'_>) -> Result<Result<Option<CUstream>, u32>, DecodeError> {
        Ok(r.get_opt::<u64>("stream")?
            .map(|h| self.stream_of(h))
            .transpose())
    }

    /// Refuses a copy between the session's buffers and the device on a stream being captured:
    /// the graph would keep the address of a buffer the session frees when the call returns,
    /// and read or write it whenever the graph runs.
    fn refuse_captured_host_copy(&self, s: Option<CUstream>) -> Option<u32> {
        let s = s?;
        let is_capturing = self.extra.cuStreamIsCapturing?;
        let mut status = 0u32;
        // SAFETY: a stream of the session and a local out value.
        let rc = unsafe { is_capturing(s, &mut status) };
        (rc != CUDA_SUCCESS || status != 0).then_some(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)
    }

    fn custom(
        &mut self,
        id: u16,
        r: &mut Reader<'_>,
        outs: &mut Writer,
    ) -> Result<u32, DecodeError> {
        macro_rules! driver {
            ($f:ident) => {
                extra_or!(self, $f, CUDA_ERROR_NOT_FOUND)
            };
        }
        macro_rules! stream {
            () => {
                match self.stream(r)? {
                    Ok(s) => s,
                    Err(e) => return Ok(e),
                }
            };
        }
        let not_owned = CUDA_ERROR_INVALID_VALUE;
        // SAFETY (every driver call below): arguments are decoded values, buffers owned by the
        // session of the lengths passed, and addresses / handles checked to be this session's.
        let rc = match id {
            custom::MEM_ALLOC | custom::MEM_ALLOC_MANAGED => {
                let size: u64 = r.get("size")?;
                let flags: u32 = if id == custom::MEM_ALLOC_MANAGED {
                    r.get("flags")?
                } else {
                    0
                };
                r.end()?;
                let mut p: CUdeviceptr = 0;
                let rc = if id == custom::MEM_ALLOC {
                    let alloc = driver!(cuMemAlloc_v2);
                    self.relaxed(|| unsafe { alloc(&mut p, size as usize) })
                } else {
                    let alloc = driver!(cuMemAllocManaged);
                    self.relaxed(|| unsafe { alloc(&mut p, size as usize, flags) })
                };
                self.allocated(rc, p, size, outs)
            }
            custom::MEM_ALLOC_PITCH => {
                let (w, h, elem): (u64, u64, u32) =
                    (r.get("width")?, r.get("height")?, r.get("element size")?);
                r.end()?;
                let (mut p, mut pitch) = (0, 0usize);
                let alloc = driver!(cuMemAllocPitch_v2);
                let rc = self
                    .relaxed(|| unsafe { alloc(&mut p, &mut pitch, w as usize, h as usize, elem) });
                let size = (pitch as u64).saturating_mul(h);
                let rc = self.allocated(rc, p, size, outs);
                outs.put(&(pitch as u64));
                rc
            }
            custom::MEM_ALLOC_ASYNC => {
                let size: u64 = r.get("size")?;
                let pool: u64 = r.get("pool")?;
                let s = stream!().unwrap_or(std::ptr::null_mut());
                r.end()?;
                if pool != 0 && !self.valid(Class::Pool, pool) {
                    return Ok(CUDA_ERROR_INVALID_HANDLE);
                }
                let mut p = 0;
                let rc = if pool == 0 {
                    unsafe { driver!(cuMemAllocAsync)(&mut p, size as usize, s) }
                } else {
                    unsafe {
                        driver!(cuMemAllocFromPoolAsync)(
                            &mut p,
                            size as usize,
                            pool as usize as CUmemoryPool,
                            s,
                        )
                    }
                };
                self.allocated(rc, p, size, outs)
            }
            custom::MEM_FREE => {
                let p: u64 = r.get("address")?;
                let s = stream!();
                r.end()?;
                if !self.ranges.contains_key(&p) {
                    return Ok(not_owned);
                }
                let rc = match s {
                    None => unsafe { driver!(cuMemFree_v2)(p) },
                    Some(s) => unsafe { driver!(cuMemFreeAsync)(p, s) },
                };
                if rc == CUDA_SUCCESS {
                    self.ranges.remove(&p);
                }
                rc
            }
            custom::COPY_HTOD => {
                let dst: u64 = r.get("destination")?;
                let s = stream!();
                let data = r.get_bytes("data")?;
                r.end()?;
                if !self.owns(dst, data.len() as u64) {
                    return Ok(not_owned);
                }
                if let Some(refused) = self.refuse_captured_host_copy(s) {
                    return Ok(refused);
                }
                let src = data.as_ptr() as *const c_void;
                match s {
                    None => unsafe { driver!(cuMemcpyHtoD_v2)(dst, src, data.len()) },
                    Some(s) => unsafe {
                        // Pageable source: the driver has staged it when the call returns.
                        driver!(cuMemcpyHtoDAsync_v2)(dst, src, data.len(), s)
                    },
                }
            }
            custom::COPY_DTOH => {
                let src: u64 = r.get("source")?;
                let len: u64 = r.get("length")?;
                let s = stream!();
                r.end()?;
                if len > CHUNK as u64 {
                    return Ok(CUDA_ERROR_INVALID_VALUE);
                }
                if !self.owns(src, len) {
                    return Ok(not_owned);
                }
                if let Some(refused) = self.refuse_captured_host_copy(s) {
                    return Ok(refused);
                }
                let n = len as usize;
                let (sync_copy, async_copy, wait) = (
                    driver!(cuMemcpyDtoH_v2),
                    driver!(cuMemcpyDtoHAsync_v2),
                    driver!(cuStreamSynchronize),
                );
                let copy = |dst: *mut u8| match s {
                    None => unsafe { sync_copy(dst.cast(), src, n) },
                    Some(s) => unsafe {
                        let rc = async_copy(dst.cast(), src, n, s);
                        if rc == CUDA_SUCCESS {
                            wait(s)
                        } else {
                            rc
                        }
                    },
                };
                // SAFETY: a successful copy wrote all n bytes.
                unsafe { outs.put_bytes_in_place(n, copy) }
            }
            custom::COPY_DTOD => {
                let (dst, src, len): (u64, u64, u64) =
                    (r.get("destination")?, r.get("source")?, r.get("length")?);
                let s = stream!();
                r.end()?;
                if !self.owns(dst, len) || !self.owns(src, len) {
                    return Ok(not_owned);
                }
                match s {
                    None => unsafe { driver!(cuMemcpyDtoD_v2)(dst, src, len as usize) },
                    Some(s) => unsafe { driver!(cuMemcpyDtoDAsync_v2)(dst, src, len as usize, s) },
                }
            }
            custom::COPY_3D => return self.copy_3d(r, outs),
            custom::MEMSET => return self.memset(r),
            custom::IMAGE_INDEX => {
                r.end()?;
                self.image_index(outs);
                CUDA_SUCCESS
            }
            custom::MODULE_LOAD | custom::LIBRARY_LOAD => return self.load_image(id, r, outs),
            custom::DEVICE_ATTRIBUTES => {
                let dev: CUdevice = r.get("device")?;
                r.end()?;
                let get = driver!(cuDeviceGetAttribute);
                let mut answers = Vec::new();
                for attrib in 1..=custom::DEVICE_ATTRIBUTES_ASKED {
                    let mut v = 0i32;
                    // SAFETY: a local out value; the driver checks the device and attribute.
                    let rc = unsafe { get(&mut v, attrib, dev) };
                    if rc == CUDA_ERROR_INVALID_DEVICE || rc == CUDA_ERROR_NOT_INITIALIZED {
                        return Ok(rc);
                    }
                    answers.push((rc, v));
                }
                outs.put(&(answers.len() as u32));
                for (rc, v) in answers {
                    outs.put(&rc);
                    outs.put(&v);
                }
                CUDA_SUCCESS
            }
            custom::MODULE_GET_FUNCTION | custom::LIBRARY_GET_KERNEL => {
                let m: u64 = r.get("module")?;
                let name = r.get_bytes("name")?;
                r.end()?;
                let name = std::ffi::CString::new(name).map_err(|_| DecodeError {
                    what: "kernel name",
                    at: 0,
                })?;
                let of_module = id == custom::MODULE_GET_FUNCTION;
                let f = match self.driver_function(of_module, m, &name) {
                    Ok(f) => f as usize as CUfunction,
                    Err(e) => return Ok(e),
                };
                self.handles.insert(Class::Function, f as usize as u64);
                outs.put(&(f as usize as u64));
                if of_module {
                    self.param_layout(f, outs);
                } else {
                    self.kernel_param_layout(f as usize as CUkernel, outs);
                }
                CUDA_SUCCESS
            }
            custom::LIBRARY_ENUMERATE_KERNELS => {
                let (l, n): (u64, u32) = (r.get("library")?, r.get("kernel count")?);
                r.end()?;
                let l = match self.handles.resolve(Class::Library, l) {
                    Ok(l) => l,
                    Err(e) => return Ok(e),
                };
                if n == 0 || n > custom::MAX_ENUMERATED_KERNELS {
                    return Ok(CUDA_ERROR_INVALID_VALUE);
                }
                let mut kernels: Vec<CUkernel> = vec![std::ptr::null_mut(); n as usize];
                let enumerate = driver!(cuLibraryEnumerateKernels);
                let rc = unsafe { enumerate(kernels.as_mut_ptr(), n, l as usize as CUlibrary) };
                if rc == CUDA_SUCCESS {
                    outs.put(&n);
                    for k in kernels {
                        let k = k as usize as u64;
                        // A kernel the client named goes by its name.
                        match self.handles.name_of(Class::Function, k) {
                            Some(name) => outs.put(&name),
                            None => {
                                if k != 0 {
                                    self.handles.insert(Class::Function, k);
                                }
                                outs.put(&k)
                            }
                        }
                    }
                }
                rc
            }
            custom::CAPTURE_INFO => {
                let s = stream!();
                r.end()?;
                let (mut status, mut capture, mut n) = (0u32, 0u64, 0usize);
                let mut graph: CUgraph = std::ptr::null_mut();
                let mut deps: *const CUgraphNode = std::ptr::null();
                let info = driver!(cuStreamGetCaptureInfo_v2);
                let stream = s.unwrap_or(std::ptr::null_mut());
                let rc = unsafe {
                    info(
                        stream,
                        &mut status,
                        &mut capture,
                        &mut graph,
                        &mut deps,
                        &mut n,
                    )
                };
                if rc != CUDA_SUCCESS {
                    return Ok(rc);
                }
                if n > custom::MAX_NODE_DEPENDENCIES as usize || (n > 0 && deps.is_null()) {
                    return Ok(CUDA_ERROR_NOT_SUPPORTED);
                }
                // SAFETY: the driver's array of n nodes, valid until the stream's next call.
                let nodes = if n == 0 {
                    &[][..]
                } else {
                    unsafe { std::slice::from_raw_parts(deps, n) }
                };
                outs.put(&status);
                outs.put(&capture);
                outs.put(&(graph as usize as u64));
                outs.put(&(n as u32));
                if !graph.is_null() {
                    self.handles.insert(Class::Graph, graph as usize as u64);
                }
                for &node in nodes {
                    self.handles.insert(Class::GraphNode, node as usize as u64);
                    outs.put(&(node as usize as u64));
                }
                rc
            }
            custom::GRAPH_GET_NODES => {
                let (g, room): (u64, u32) = (r.get("graph")?, r.get("node count")?);
                r.end()?;
                if g == 0 || !self.valid(Class::Graph, g) {
                    return Ok(CUDA_ERROR_INVALID_HANDLE);
                }
                if room > custom::MAX_LISTED_NODES {
                    return Ok(CUDA_ERROR_INVALID_VALUE);
                }
                let get_nodes = driver!(cuGraphGetNodes);
                let graph = g as usize as CUgraph;
                let mut nodes: Vec<CUgraphNode> = vec![std::ptr::null_mut(); room as usize];
                let mut n = room as usize;
                let list = if room == 0 {
                    std::ptr::null_mut()
                } else {
                    nodes.as_mut_ptr()
                };
                let rc = unsafe { get_nodes(graph, list, &mut n) };
                if rc == CUDA_SUCCESS {
                    // A count alone may exceed what one reply lists; nodes never exceed room.
                    outs.put(&(n as u64));
                    for &node in nodes.iter().take(n.min(room as usize)) {
                        self.handles.insert(Class::GraphNode, node as usize as u64);
                        outs.put(&(node as usize as u64));
                    }
                }
                rc
            }
            custom::KERNEL_GET_FUNCTION => {
                let k: u64 = r.get("kernel")?;
                r.end()?;
                let k = match self.function(k) {
                    Ok(k) => k,
                    Err(e) => return Ok(e),
                };
                let mut f: CUfunction = std::ptr::null_mut();
                let rc = unsafe { driver!(cuKernelGetFunction)(&mut f, k as usize as CUkernel) };
                if rc == CUDA_SUCCESS {
                    self.handles.insert(Class::Function, f as usize as u64);
                    outs.put(&(f as usize as u64));
                    self.param_layout(f, outs);
                }
                rc
            }
            custom::NAME_KERNEL | custom::NAME_FUNCTION => return self.name_function(id, r),
            custom::PARAM_LAYOUT => {
                let given: u64 = r.get("function")?;
                r.end()?;
                let f = match self.function(given) {
                    Ok(f) => f,
                    Err(e) => return Ok(e),
                };
                if self.handles.is_name(Class::Function, given)
                    && !self.module_functions.contains(&given)
                {
                    self.kernel_param_layout(f as usize as CUkernel, outs);
                } else {
                    self.param_layout(f as usize as CUfunction, outs);
                }
                CUDA_SUCCESS
            }
            custom::OCCUPANCY_CLUSTERS => return self.occupancy_clusters(r, outs),
            custom::GET_GLOBAL => return self.get_global(r, outs),
            custom::LINK_CREATE
            | custom::LINK_ADD
            | custom::LINK_COMPLETE
            | custom::LINK_DESTROY => return self.link(id, r, outs),
            custom::IPC_GET_MEM_HANDLE
            | custom::IPC_OPEN_MEM_HANDLE
            | custom::IPC_CLOSE_MEM_HANDLE
            | custom::IPC_GET_EVENT_HANDLE
            | custom::IPC_OPEN_EVENT_HANDLE => return self.ipc(id, r, outs),
            custom::TENSOR_MAP => {
                return crate::tensor_map::serve(r, outs, &self.extra, |a| self.owns(a, 1))
            }
            custom::STREAM_SET_ATTRIBUTE => {
                let s = stream!();
                let (attr, value): (u32, [u8; 64]) = (r.get("attribute")?, r.get("value")?);
                r.end()?;
                if !attribute_travels(attr) {
                    return Ok(CUDA_ERROR_NOT_SUPPORTED);
                }
                let set = driver!(cuStreamSetAttribute);
                // SAFETY: a stream of this session; the value lives across the call.
                unsafe { set(s.unwrap_or(std::ptr::null_mut()), attr, &value) }
            }
            custom::LAUNCH => return self.launch(r),
            custom::GRAPH_ADD_KERNEL_NODE => return self.graph_add_kernel_node(r, outs),
            custom::GRAPH_ADD_NODE => return self.graph_add_node(r, outs),
            custom::MEM_ADDRESS_RESERVE => {
                let (size, align, hint, flags): (u64, u64, u64, u64) = (
                    r.get("size")?,
                    r.get("alignment")?,
                    r.get("address")?,
                    r.get("flags")?,
                );
                r.end()?;
                let mut p = 0;
                let rc = unsafe {
                    driver!(cuMemAddressReserve)(&mut p, size as usize, align as usize, hint, flags)
                };
                if rc == CUDA_SUCCESS {
                    self.reserved.insert(p, size.max(1));
                    outs.put(&p);
                }
                rc
            }
            custom::MEM_ADDRESS_FREE => {
                let (p, size): (u64, u64) = (r.get("address")?, r.get("size")?);
                r.end()?;
                if !self.reserved.contains_key(&p) {
                    return Ok(not_owned);
                }
                let rc = unsafe { driver!(cuMemAddressFree)(p, size as usize) };
                if rc == CUDA_SUCCESS {
                    self.reserved.remove(&p);
                }
                rc
            }
            custom::MEM_SET_ACCESS => {
                let (p, size, n): (u64, u64, u32) = (
                    r.get("address")?,
                    r.get("size")?,
                    r.get("descriptor count")?,
                );
                if n > 64 {
                    return Err(DecodeError {
                        what: "descriptor count",
                        at: 16,
                    });
                }
                let descs: Vec<[u32; 3]> = (0..n)
                    .map(|_| r.get("access descriptor"))
                    .collect::<Result<_, _>>()?;
                r.end()?;
                if !self.owns(p, size) {
                    return Ok(not_owned);
                }
                unsafe { driver!(cuMemSetAccess)(p, size as usize, descs.as_ptr(), descs.len()) }
            }
            custom::POINTER_ATTRIBUTES => {
                let p: u64 = r.get("address")?;
                let n: u32 = r.get("attribute count")?;
                if n > 64 {
                    return Err(DecodeError {
                        what: "attribute count",
                        at: 8,
                    });
                }
                let mut attrs: Vec<i32> = (0..n)
                    .map(|_| r.get("attribute"))
                    .collect::<Result<_, _>>()?;
                r.end()?;
                if !self.owns(p, 1) {
                    return Ok(not_owned);
                }
                let mut values = vec![[0u8; 16]; n as usize];
                let mut ptrs: Vec<*mut c_void> =
                    values.iter_mut().map(|v| v.as_mut_ptr().cast()).collect();
                let rc = unsafe {
                    driver!(cuPointerGetAttributes)(n, attrs.as_mut_ptr(), ptrs.as_mut_ptr(), p)
                };
                if rc == CUDA_SUCCESS {
                    for v in &values {
                        outs.put(v);
                    }
                }
                rc
            }
            custom::POOL_GET_ATTRIBUTE | custom::POOL_SET_ATTRIBUTE => {
                let pool: u64 = r.get("pool")?;
                let attr: u32 = r.get("attribute")?;
                let mut value: [u8; 8] = if id == custom::POOL_SET_ATTRIBUTE {
                    r.get("value")?
                } else {
                    [0; 8]
                };
                r.end()?;
                if pool == 0 || !self.valid(Class::Pool, pool) {
                    return Ok(CUDA_ERROR_INVALID_HANDLE);
                }
                let pool = pool as usize as CUmemoryPool;
                let v = value.as_mut_ptr().cast();
                if id == custom::POOL_SET_ATTRIBUTE {
                    unsafe { driver!(cuMemPoolSetAttribute)(pool, attr, v) }
                } else {
                    let rc = unsafe { driver!(cuMemPoolGetAttribute)(pool, attr, v) };
                    outs.put(&value);
                    rc
                }
            }
            custom::DEVICE_NAME | custom::DEVICE_PCI_BUS_ID => {
                let dev: i32 = r.get("device")?;
                r.end()?;
                let mut buf = [0 as std::ffi::c_char; 256];
                let f = if id == custom::DEVICE_NAME {
                    driver!(cuDeviceGetName)
                } else {
                    driver!(cuDeviceGetPCIBusId)
                };
                let rc = unsafe { f(buf.as_mut_ptr(), buf.len() as i32 - 1, dev) };
                // SAFETY: the buffer's last byte stays NUL.
                let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
                outs.put_bytes(s.to_bytes());
                rc
            }
            _ => {
                return Err(DecodeError {
                    what: "call number (unknown call)",
                    at: 0,
                })
            }
        };
        Ok(rc)
    }

    fn allocated(&mut self, rc: u32, p: u64, size: u64, outs: &mut Writer) -> u32 {
        if rc == CUDA_SUCCESS {
            self.ranges.insert(p, size.max(1));
            outs.put(&p);
        }
        rc
    }

    /// Appends the kernel's parameter sizes (`u32::MAX` when the driver cannot tell).
    /// A function's parameter sizes (count then sizes; `u32::MAX`: the driver cannot tell).
    fn param_layout(&self, f: CUfunction, outs: &mut Writer) {
        match self.extra.cuFuncGetParamInfo {
            // SAFETY: a function handle from the driver; valid out pointers.
            Some(info) => put_layout(outs, |i, off, size| unsafe { info(f, i, off, size) }),
            None => outs.put(&u32::MAX),
        }
    }

    /// A kernel's parameter sizes, as [`Session::param_layout`].
    fn kernel_param_layout(&self, k: CUkernel, outs: &mut Writer) {
        match self.extra.cuKernelGetParamInfo {
            // SAFETY: a kernel handle from the driver; valid out pointers.
            Some(info) => put_layout(outs, |i, off, size| unsafe { info(k, i, off, size) }),
            None => outs.put(&u32::MAX),
        }
    }

    /// `cuOccupancyMaxActiveClusters` / `cuOccupancyMaxPotentialClusterSize`.
    fn occupancy_clusters(
        &mut self,
        r: &mut Reader<'_>,
        outs: &mut Writer,
    ) -> Result<u32, DecodeError> {
        let which: u8 = r.get("cluster query")?;
        let shape = LaunchShape::read(r)?;
        let attrs = read_attributes(r)?;
        r.end()?;
        let query = match which {
            custom::CLUSTERS_ACTIVE => self.extra.cuOccupancyMaxActiveClusters,
            custom::CLUSTERS_POTENTIAL_SIZE => self.extra.cuOccupancyMaxPotentialClusterSize,
            _ => {
                return Err(DecodeError {
                    what: "cluster query",
                    at: 0,
                })
            }
        };
        let (f, s) = match self.launch_handles(&shape) {
            Ok(h) => h,
            Err(e) => return Ok(e),
        };
        if let Err(e) = all_travel(&attrs) {
            return Ok(e);
        }
        let Some(query) = query else {
            return Ok(CUDA_ERROR_NOT_FOUND);
        };
        let config = shape.config(s, &attrs);
        let mut n = 0i32;
        // SAFETY: a function of this session; the configuration and its attributes live
        // across the call.
        let rc = unsafe { query(&mut n, f, &config) };
        if rc == CUDA_SUCCESS {
            outs.put(&n);
        }
        Ok(rc)
    }

    /// `cuModuleGetGlobal_v2` / `cuLibraryGetGlobal`: the variable's address is this
    /// session's until its module or library is unloaded.
    fn get_global(&mut self, r: &mut Reader<'_>, outs: &mut Writer) -> Result<u32, DecodeError> {
        let of: u8 = r.get("global owner kind")?;
        let h: u64 = r.get("module")?;
        let name = c_string(r.get_bytes("name")?, "variable name")?;
        r.end()?;
        let class = match of {
            custom::GLOBAL_OF_MODULE => Class::Module,
            custom::GLOBAL_OF_LIBRARY => Class::Library,
            _ => {
                return Err(DecodeError {
                    what: "global owner kind",
                    at: 0,
                })
            }
        };
        let h = match self.handles.resolve(class, h) {
            Ok(h) => h,
            Err(e) => return Ok(e),
        };
        let (mut base, mut size): (CUdeviceptr, usize) = (0, 0);
        // SAFETY: a module or library of this session; a NUL-terminated name; out pointers
        // to locals.
        let rc = unsafe {
            match class {
                Class::Module => match self.extra.cuModuleGetGlobal_v2 {
                    Some(get) => get(&mut base, &mut size, h as usize as CUmodule, name.as_ptr()),
                    None => CUDA_ERROR_NOT_FOUND,
                },
                _ => match self.extra.cuLibraryGetGlobal {
                    Some(get) => get(&mut base, &mut size, h as usize as CUlibrary, name.as_ptr()),
                    None => CUDA_ERROR_NOT_FOUND,
                },
            }
        };
        if rc == CUDA_SUCCESS {
            self.globals.insert(base, size as u64);
            self.global_owners.insert(base, (class, h));
            outs.put(&base);
            outs.put(&(size as u64));
        }
        Ok(rc)
    }

    /// The driver's function `name` of the client's module (`of_module`) or library `owner`
    /// (`cuModuleGetFunction` / `cuLibraryGetKernel`), or the error: the driver's, or the
    /// one the module or library stands for.
    fn driver_function(&self, of_module: bool, owner: u64, name: &CStr) -> Result<u64, u32> {
        let class = if of_module {
            Class::Module
        } else {
            Class::Library
        };
        let owner = self.handles.resolve(class, owner)? as usize;
        let mut f: *mut c_void = std::ptr::null_mut();
        let out = &mut f as *mut *mut c_void;
        // SAFETY: a module or library of this session, a C string, a local out value.
        let rc = unsafe {
            match (
                of_module,
                self.extra.cuModuleGetFunction,
                self.extra.cuLibraryGetKernel,
            ) {
                (true, Some(get), _) => get(out.cast(), owner as CUmodule, name.as_ptr()),
                (false, _, Some(get)) => get(out.cast(), owner as CUlibrary, name.as_ptr()),
                _ => CUDA_ERROR_NOT_FOUND,
            }
        };
        match rc {
            CUDA_SUCCESS => Ok(f as usize as u64),
            e => Err(e),
        }
    }

    /// [`custom::NAME_KERNEL`] (`cuLibraryGetKernel`) and [`custom::NAME_FUNCTION`]
    /// (`cuModuleGetFunction`) without a reply: the client's name stands for the driver's
    /// kernel or function, or for the driver's error (the library's or module's own, if the
    /// driver refused it), returned where the name is used.
    fn name_function(&mut self, id: u16, r: &mut Reader<'_>) -> Result<u32, DecodeError> {
        let (owner, name, given): (u64, &[u8], u64) = (
            r.get("library")?,
            r.get_bytes("name")?,
            r.get("kernel name")?,
        );
        r.end()?;
        let name = c_string(name, "kernel name")?;
        if !self.handles.name_free(Class::Function, given) {
            return Ok(CUDA_ERROR_INVALID_VALUE);
        }
        let of_module = id == custom::NAME_FUNCTION;
        let rc = match self.driver_function(of_module, owner, &name) {
            Ok(f) => {
                if f != 0 {
                    self.handles.name(Class::Function, given, f);
                }
                CUDA_SUCCESS
            }
            Err(e) => e,
        };
        if of_module {
            self.module_functions.insert(given);
        }
        if rc != CUDA_SUCCESS {
            self.handles.refuse(Class::Function, given, rc);
        }
        Ok(CUDA_SUCCESS)
    }

    /// The function and stream of a launch shape, if both are this session's.
    fn launch_handles(&self, shape: &LaunchShape) -> Result<(CUfunction, CUstream), u32> {
        let f = self.function(shape.function)?;
        Ok((f as usize as CUfunction, self.stream_of(shape.stream)?))
    }

    fn launch(&mut self, r: &mut Reader<'_>) -> Result<u32, DecodeError> {
        let shape = LaunchShape::read(r)?;
        let kind: u8 = r.get("launch kind")?;
        let mut attrs = Vec::new();
        if kind == LAUNCH_EX {
            attrs = read_attributes(r)?;
        } else if kind > LAUNCH_EX {
            return Err(DecodeError {
                what: "launch kind",
                at: 0,
            });
        }
        let mut args = KernelArgs::read(r)?;
        r.end()?;
        let (f, s) = match self.launch_handles(&shape) {
            Ok(h) => h,
            Err(e) => return Ok(e),
        };
        if let Err(e) = all_travel_in_launch(&attrs) {
            return Ok(e);
        }
        for a in attrs.iter_mut() {
            if let Some(e) = a.event() {
                match self.real(Class::Event, e) {
                    Some(real) if e != 0 => *a = a.with_event(real),
                    _ => return Ok(CUDA_ERROR_INVALID_HANDLE),
                }
            }
        }
        let (params_ptr, extra_ptr) = args.pointers();
        let ([gx, gy, gz], [bx, by, bz], shared) = (shape.grid, shape.block, shape.shared);
        // SAFETY: a function this session loaded; parameter pointers into the request, which
        // outlives the call.
        Ok(unsafe {
            if kind == LAUNCH_EX {
                let config = shape.config(s, &attrs);
                match self.extra.cuLaunchKernelEx {
                    Some(l) => l(&config, f, params_ptr, extra_ptr),
                    None => CUDA_ERROR_NOT_FOUND,
                }
            } else if kind == LAUNCH_COOPERATIVE {
                match self.extra.cuLaunchCooperativeKernel {
                    Some(l) => l(f, gx, gy, gz, bx, by, bz, shared, s, params_ptr),
                    None => CUDA_ERROR_NOT_FOUND,
                }
            } else {
                match self.extra.cuLaunchKernel {
                    Some(l) => l(f, gx, gy, gz, bx, by, bz, shared, s, params_ptr, extra_ptr),
                    None => CUDA_ERROR_NOT_FOUND,
                }
            }
        })
    }
}

/// Answers a refused message and its reason.
pub fn refuse(w: &mut impl Write, reason: &str) -> io::Result<()> {
    let mut body = Writer::default();
    body.put(&REFUSED);
    body.put(&0u32);
    body.put_bytes(reason.as_bytes());
    write_frame(w, &body.buf)?;
    w.flush()
}

/// Writes the parameter sizes `info` tells (it answers an error past the last parameter).
fn put_layout(outs: &mut Writer, info: impl Fn(usize, &mut usize, &mut usize) -> u32) {
    let mut sizes = Vec::new();
    for i in 0..256 {
        let (mut off, mut size) = (0usize, 0usize);
        if info(i, &mut off, &mut size) != CUDA_SUCCESS {
            break;
        }
        sizes.push(size as u32);
    }
    outs.put(&(sizes.len() as u32));
    for s in sizes {
        outs.put(&s);
    }
}

impl TableSession for Session {
    fn table(&self) -> &Table {
        &self.table
    }

    fn owns(&self, ptr: u64, len: u64) -> bool {
        Session::owns(self, ptr, len)
    }

    fn handle_of(&self, class: Class, h: u64) -> Result<u64, u32> {
        self.real(class, h).ok_or_else(|| {
            self.handles
                .refusal(class, h)
                .unwrap_or(CUDA_ERROR_INVALID_HANDLE)
        })
    }

    fn forget_refused(&mut self, class: Class, name: u64) -> bool {
        self.handles.forget_refusal(class, name)
    }

    fn fresh(&self, class: Class, name: u64) -> bool {
        class.named_by_client() && self.handles.name_free(class, name)
    }

    fn name(&mut self, class: Class, name: u64, real: u64) {
        self.handles.name(class, name, real);
    }

    fn remember(&mut self, class: Class, h: u64) {
        // The table creates modules only from libraries; loads are hand-written.
        if class == Class::Module {
            self.library_modules.insert(h);
        }
        self.handles.insert(class, h);
    }

    fn forget(&mut self, class: Class, h: u64) {
        if matches!(class, Class::Module | Class::Library) {
            self.unloaded(class, h);
        }
        self.handles.remove(class, h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

    static COPIED: AtomicU64 = AtomicU64::new(0);
    const BASE: u64 = 0x7000_0000;

    unsafe extern "C" fn set_current(_: CUcontext) -> u32 {
        CUDA_SUCCESS
    }
    thread_local! {
        /// The stand-in driver's capture mode of this thread, and the mode the last
        /// allocation on this thread ran in.
        static CAPTURE_MODE: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((0, 0)) };
    }

    unsafe extern "C" fn exchange_capture_mode(mode: *mut u32) -> u32 {
        CAPTURE_MODE.with(|m| {
            let (now, last) = m.get();
            // SAFETY: the session's in/out value.
            unsafe { m.set((std::mem::replace(&mut *mode, now), last)) };
        });
        CUDA_SUCCESS
    }
    unsafe extern "C" fn alloc(p: *mut CUdeviceptr, _size: usize) -> u32 {
        CAPTURE_MODE.with(|m| m.set((m.get().0, m.get().0)));
        // SAFETY: the session's out pointer.
        unsafe { *p = BASE };
        CUDA_SUCCESS
    }
    unsafe extern "C" fn htod(_d: CUdeviceptr, _s: *const c_void, n: usize) -> u32 {
        COPIED.fetch_add(n as u64, SeqCst);
        CUDA_SUCCESS
    }

    const RESERVED: u64 = 0x9000_0000;
    static FREED: AtomicU64 = AtomicU64::new(0);
    static CREATE_PROPS: std::sync::Mutex<Option<[u8; 32]>> = std::sync::Mutex::new(None);

    unsafe extern "C" fn reserve(p: *mut CUdeviceptr, _: usize, _: usize, _: u64, _: u64) -> u32 {
        // SAFETY: the session's out pointer (always a local).
        unsafe { *p = RESERVED };
        CUDA_SUCCESS
    }
    unsafe extern "C" fn address_free(p: CUdeviceptr, _: usize) -> u32 {
        FREED.store(p, SeqCst);
        CUDA_SUCCESS
    }
    /// The size the test creates with (what the fuzzer sends is not recorded).
    const CREATE_SIZE: usize = (2 << 20) + 12345;

    unsafe extern "C" fn create(h: *mut u64, size: usize, prop: *const [u8; 32], _: u64) -> u32 {
        if prop.is_null() || h.is_null() || size != CREATE_SIZE {
            return CUDA_ERROR_INVALID_VALUE;
        }
        // SAFETY: the session's non-null pointers.
        unsafe {
            *CREATE_PROPS.lock().unwrap() = Some(*prop);
            *h = 0x55;
        }
        CUDA_SUCCESS
    }

    const LIBRARY: u64 = 0x4400;
    const LIBRARY_MODULE: u64 = 0x5500;
    const LIBRARY_VARIABLE: u64 = 0xa000_0000;
    const MODULE_VARIABLE: u64 = 0xb000_0000;

    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn library_load(
        out: *mut CUlibrary,
        image: *const c_void,
        _: *mut c_void,
        _: *mut *mut c_void,
        _: u32,
        _: *mut c_void,
        _: *mut *mut c_void,
        _: u32,
    ) -> u32 {
        // SAFETY: the session's image (at least 4 bytes in these tests) and out pointer.
        unsafe {
            if std::slice::from_raw_parts(image as *const u8, 4) == b"bad\0" {
                return CUDA_ERROR_INVALID_IMAGE;
            }
            *out = LIBRARY as usize as CUlibrary
        };
        CUDA_SUCCESS
    }
    unsafe extern "C" fn library_get_module(out: *mut CUmodule, _: CUlibrary) -> u32 {
        // SAFETY: the session's out pointer.
        unsafe { *out = LIBRARY_MODULE as usize as CUmodule };
        CUDA_SUCCESS
    }
    unsafe extern "C" fn unload(_: *mut c_void) -> u32 {
        CUDA_SUCCESS
    }
    unsafe extern "C" fn get_global(
        p: *mut CUdeviceptr,
        size: *mut usize,
        owner: *mut c_void,
        _: *const std::ffi::c_char,
    ) -> u32 {
        // SAFETY: the session's out pointers.
        unsafe {
            *p = if owner as u64 == LIBRARY {
                LIBRARY_VARIABLE
            } else {
                MODULE_VARIABLE
            };
            *size = 256;
        }
        CUDA_SUCCESS
    }

    /// A session on a stand-in driver: contexts, allocation at BASE, host-to-device copies,
    /// address reservations at RESERVED, physical allocations, a library with a module and a
    /// variable in each.
    fn session() -> Session {
        Session::new(&|name: &CStr| match name.to_bytes() {
            b"cuLibraryLoadData" => library_load as *mut c_void,
            b"cuModuleLoadData" => module_load as *mut c_void,
            b"cuModuleGetFunction" => module_get_function as *mut c_void,
            b"cuFuncGetParamInfo" => function_param_info as *mut c_void,
            b"cuLibraryGetModule" => library_get_module as *mut c_void,
            b"cuLibraryUnload" | b"cuModuleUnload" => unload as *mut c_void,
            b"cuLibraryGetGlobal" | b"cuModuleGetGlobal_v2" => get_global as *mut c_void,
            b"cuCtxSetCurrent" => set_current as *mut c_void,
            b"cuMemAlloc_v2" => alloc as *mut c_void,
            b"cuThreadExchangeStreamCaptureMode" => exchange_capture_mode as *mut c_void,
            b"cuMemcpyHtoD_v2" => htod as *mut c_void,
            b"cuMemAddressReserve" => reserve as *mut c_void,
            b"cuMemAddressFree" => address_free as *mut c_void,
            b"cuMemCreate" => create as *mut c_void,
            b"cuStreamIsCapturing" => is_capturing as *mut c_void,
            b"cuMemcpyHtoDAsync_v2" => htod_async as *mut c_void,
            b"cuMemcpyDtoHAsync_v2" => dtoh_async as *mut c_void,
            b"cuMemcpyDtoH_v2" => dtoh as *mut c_void,
            b"cuStreamSynchronize" => stream_sync as *mut c_void,
            b"cuGraphAddMemAllocNode" => add_mem_alloc_node as *mut c_void,
            b"cuGraphAddMemFreeNode" => add_mem_free_node as *mut c_void,
            b"cuStreamCreate" => stream_create as *mut c_void,
            b"cuLibraryGetKernel" => library_get_kernel as *mut c_void,
            b"cuKernelGetParamInfo" => kernel_param_info as *mut c_void,
            b"cuKernelGetFunction" => kernel_get_function as *mut c_void,
            b"cuEventCreate" => event_create as *mut c_void,
            b"cuStreamQuery" => stream_query as *mut c_void,
            b"cuStreamDestroy_v2" => stream_destroy as *mut c_void,
            b"cuLinkCreate_v2" => link_create as *mut c_void,
            b"cuLinkAddData_v2" => link_add_data as *mut c_void,
            b"cuLinkComplete" => link_complete as *mut c_void,
            b"cuLinkDestroy" => link_destroy as *mut c_void,
            b"cuLaunchKernelEx" => launch_ex as *mut c_void,
            _ => std::ptr::null_mut(),
        })
    }

    /// Copies to or from host memory on a stream, whatever their direction.
    static STREAM_COPIES: AtomicU64 = AtomicU64::new(0);
    /// The stand-in driver's stream being captured: the per-thread stream.
    const CAPTURED_STREAM: u64 = 2;

    unsafe extern "C" fn is_capturing(s: CUstream, status: *mut u32) -> u32 {
        // SAFETY: the session's out pointer.
        unsafe { *status = u32::from(s as u64 == CAPTURED_STREAM) };
        CUDA_SUCCESS
    }
    unsafe extern "C" fn htod_async(
        _: CUdeviceptr,
        _: *const c_void,
        _: usize,
        _: CUstream,
    ) -> u32 {
        STREAM_COPIES.fetch_add(1, SeqCst);
        CUDA_SUCCESS
    }
    unsafe extern "C" fn dtoh_async(_: *mut c_void, _: CUdeviceptr, _: usize, _: CUstream) -> u32 {
        STREAM_COPIES.fetch_add(1, SeqCst);
        CUDA_SUCCESS
    }
    unsafe extern "C" fn dtoh(_: *mut c_void, _: CUdeviceptr, _: usize) -> u32 {
        CUDA_SUCCESS
    }
    unsafe extern "C" fn stream_sync(_: CUstream) -> u32 {
        CUDA_SUCCESS
    }

    /// The stand-in driver's handles: streams and events from here up, one apart.
    static DRIVER_HANDLES: AtomicU64 = AtomicU64::new(0xd000);
    /// The last stream the stand-in driver was asked about or destroyed.
    static DRIVER_SAW: AtomicU64 = AtomicU64::new(0);

    unsafe extern "C" fn stream_create(s: *mut CUstream, _: u32) -> u32 {
        // SAFETY: the session's out value.
        unsafe { *s = DRIVER_HANDLES.fetch_add(1, SeqCst) as usize as CUstream };
        CUDA_SUCCESS
    }
    unsafe extern "C" fn event_create(e: *mut CUevent, _: u32) -> u32 {
        // SAFETY: the session's out value.
        unsafe { *e = DRIVER_HANDLES.fetch_add(1, SeqCst) as usize as CUevent };
        CUDA_SUCCESS
    }
    unsafe extern "C" fn stream_query(s: CUstream) -> u32 {
        DRIVER_SAW.store(s as u64, SeqCst);
        CUDA_SUCCESS
    }
    unsafe extern "C" fn stream_destroy(s: CUstream) -> u32 {
        DRIVER_SAW.store(s as u64, SeqCst);
        CUDA_SUCCESS
    }

    /// The stand-in driver's one kernel: `k`, with an 8-byte and a 4-byte parameter.
    const KERNEL: u64 = 0x6600;

    unsafe extern "C" fn library_get_kernel(
        out: *mut CUkernel,
        _: CUlibrary,
        name: *const std::ffi::c_char,
    ) -> u32 {
        // SAFETY: the session's C string and out value.
        if unsafe { CStr::from_ptr(name) }.to_bytes() != b"k" {
            return CUDA_ERROR_NOT_FOUND;
        }
        unsafe { *out = KERNEL as usize as CUkernel };
        CUDA_SUCCESS
    }
    unsafe extern "C" fn kernel_param_info(
        k: CUkernel,
        i: usize,
        off: *mut usize,
        size: *mut usize,
    ) -> u32 {
        if k as u64 != KERNEL || i > 1 {
            return CUDA_ERROR_INVALID_VALUE;
        }
        // SAFETY: the session's out values.
        unsafe { (*off, *size) = ([0, 8][i], [8, 4][i]) };
        CUDA_SUCCESS
    }
    unsafe extern "C" fn kernel_get_function(out: *mut CUfunction, k: CUkernel) -> u32 {
        if k as u64 != KERNEL {
            return CUDA_ERROR_INVALID_HANDLE;
        }
        // SAFETY: the session's out value.
        unsafe { *out = 0x7700 as CUfunction };
        CUDA_SUCCESS
    }

    /// The stand-in driver's module (loaded from any image but `bad`) and its one function,
    /// `f`, with a 4-byte parameter.
    const MODULE: u64 = 0x5500;
    const MODULE_FUNCTION: u64 = 0x5580;

    unsafe extern "C" fn module_load(out: *mut CUmodule, image: *const c_void) -> u32 {
        // SAFETY: the session's image (at least 4 bytes in these tests) and out pointer.
        unsafe {
            if std::slice::from_raw_parts(image as *const u8, 4) == b"bad\0" {
                return CUDA_ERROR_INVALID_IMAGE;
            }
            *out = MODULE as usize as CUmodule
        };
        CUDA_SUCCESS
    }
    unsafe extern "C" fn module_get_function(
        out: *mut CUfunction,
        m: CUmodule,
        name: *const std::ffi::c_char,
    ) -> u32 {
        // SAFETY: the session's C string and out value.
        if m as u64 != MODULE || unsafe { CStr::from_ptr(name) }.to_bytes() != b"f" {
            return CUDA_ERROR_NOT_FOUND;
        }
        unsafe { *out = MODULE_FUNCTION as usize as CUfunction };
        CUDA_SUCCESS
    }
    unsafe extern "C" fn function_param_info(
        f: CUfunction,
        i: usize,
        off: *mut usize,
        size: *mut usize,
    ) -> u32 {
        if f as u64 != MODULE_FUNCTION || i > 0 {
            return CUDA_ERROR_INVALID_VALUE;
        }
        // SAFETY: the session's out values.
        unsafe { (*off, *size) = (0, 4) };
        CUDA_SUCCESS
    }

    #[test]
    fn modules_and_functions_named_by_the_client_need_no_reply() {
        let mut s = session();
        let load = |name: u64, image: &[u8]| {
            request(custom::MODULE_LOAD, |w| {
                w.put(&custom::IMAGE_INLINE);
                w.put(&name);
                w.put_bytes(image);
            })
        };
        let function = |m: u64, f: u64| {
            request(custom::NAME_FUNCTION, |w| {
                w.put(&m);
                w.put_bytes(b"f");
                w.put(&f);
            })
        };
        let layout = |f: u64| request(custom::PARAM_LAYOUT, |w| w.put(&f));
        let unload = |m: u64| request(120, |w| w.put(&m));
        let [good, bad] = [0x40, 0x80].map(|n| 0xfeed_0000_0000_0000u64 + n);
        assert_eq!(result(&mut s, &load(good, b"code\0")), CUDA_SUCCESS);
        assert_eq!(s.real(Class::Module, good), Some(MODULE));
        assert_eq!(result(&mut s, &function(good, good + 8)), CUDA_SUCCESS);
        assert_eq!(s.real(Class::Function, good + 8), Some(MODULE_FUNCTION));
        // The function's sizes, as `cuFuncGetParamInfo` gives them (not a kernel's).
        let mut reply = Writer::default();
        assert!(s.handle(&layout(good + 8), &mut reply).unwrap());
        assert_eq!(reply.buf[..4], CUDA_SUCCESS.to_le_bytes());
        assert_eq!(reply.buf[8..], [1, 0, 0, 0, 4, 0, 0, 0], "one parameter: 4");
        // A module the driver refused: accepted when sent, its error where its functions are
        // used; unloading it only forgets it.
        assert_eq!(result(&mut s, &load(bad, b"bad\0")), CUDA_SUCCESS);
        assert_eq!(result(&mut s, &function(bad, bad + 8)), CUDA_SUCCESS);
        assert_eq!(result(&mut s, &layout(bad + 8)), CUDA_ERROR_INVALID_IMAGE);
        assert_eq!(result(&mut s, &unload(bad)), CUDA_SUCCESS);
        assert_eq!(
            result(&mut s, &function(bad, bad + 16)),
            CUDA_SUCCESS,
            "sent after the unload"
        );
        assert_eq!(result(&mut s, &layout(bad + 16)), CUDA_ERROR_INVALID_HANDLE);
        // Names in use are not taken again.
        assert_eq!(
            result(&mut s, &load(good, b"code\0")),
            CUDA_ERROR_INVALID_VALUE
        );
        assert_eq!(
            result(&mut s, &function(good, good + 8)),
            CUDA_ERROR_INVALID_VALUE
        );
        assert_eq!(result(&mut s, &unload(good)), CUDA_SUCCESS);
        assert_eq!(s.real(Class::Module, good), None);
    }

    #[test]
    fn kernels_the_client_names_go_by_their_names_and_refusals_wait_for_their_use() {
        let mut s = session();
        let answer = |s: &mut Session, body: &[u8]| {
            let mut reply = Writer::default();
            assert!(s.handle(body, &mut reply).unwrap());
            reply.buf
        };
        let load = request(custom::LIBRARY_LOAD, |w| {
            w.put(&custom::IMAGE_INLINE);
            w.put(&0u64);
            w.put_bytes(b"code\0");
        });
        let out = answer(&mut s, &load);
        assert_eq!(out[..4], CUDA_SUCCESS.to_le_bytes());
        let library = u64::from_le_bytes(out[8..16].try_into().unwrap());
        let name = |library: u64, kernel: &[u8], given: u64| {
            request(custom::NAME_KERNEL, |w| {
                w.put(&library);
                w.put_bytes(kernel);
                w.put(&given);
            })
        };
        let layout = |given: u64| request(custom::PARAM_LAYOUT, |w| w.put(&given));
        let function = |given: u64| request(custom::KERNEL_GET_FUNCTION, |w| w.put(&given));
        let (k, missing, foreign) = (
            0xfeed_0000_0000_0040u64,
            0xfeed_0000_0000_0080,
            0xfeed_0000_0000_00c0,
        );

        // A name the driver knows: the session's handle stands for the driver's kernel.
        assert_eq!(result(&mut s, &name(library, b"k", k)), CUDA_SUCCESS);
        assert_eq!(s.real(Class::Function, k), Some(KERNEL));
        let out = answer(&mut s, &layout(k));
        assert_eq!(out[..4], CUDA_SUCCESS.to_le_bytes());
        assert_eq!(
            out[8..],
            [2, 0, 0, 0, 8, 0, 0, 0, 4, 0, 0, 0],
            "two parameters: 8, 4"
        );
        assert_eq!(result(&mut s, &function(k)), CUDA_SUCCESS);

        // Names the driver refused, or of a library the session never loaded: accepted when
        // sent (never a deferred error), refused with the driver's error where used.
        assert_eq!(
            result(&mut s, &name(library, b"nope", missing)),
            CUDA_SUCCESS
        );
        assert_eq!(result(&mut s, &name(0x4000, b"k", foreign)), CUDA_SUCCESS);
        for (given, rc) in [
            (missing, CUDA_ERROR_NOT_FOUND),
            (foreign, CUDA_ERROR_INVALID_HANDLE),
        ] {
            assert_eq!(result(&mut s, &layout(given)), rc);
            assert_eq!(result(&mut s, &function(given)), rc);
            assert_eq!(s.real(Class::Function, given), None);
        }
        assert_eq!(
            result(&mut s, &layout(0xfeed_0000_0000_1000)),
            CUDA_ERROR_INVALID_HANDLE,
            "a name never given"
        );

        // A name in use (named or refused), the special values and the driver's own handles
        // are never taken again.
        for (given, why) in [
            (k, "named"),
            (missing, "refused"),
            (2, "special"),
            (0x7700, "the driver's"),
        ] {
            assert_eq!(
                result(&mut s, &name(library, b"k", given)),
                CUDA_ERROR_INVALID_VALUE,
                "{why}"
            );
        }
        assert_eq!(s.real(Class::Function, k), Some(KERNEL));
    }

    #[test]
    fn libraries_named_by_the_client_load_without_a_reply_and_refusals_wait_for_use() {
        use crate::image_cache::{key_of, ImageCache};
        let root = std::env::temp_dir().join(format!("gpupool-named-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut s = session();
        let cache = ImageCache::for_client(&root, "alpha", 1 << 20).unwrap();
        let [good, bad, damaged, missing] =
            [&b"good"[..], b"bad", b"damaged", b"missing"].map(key_of);
        cache.put(&good, b"code\0");
        cache.put(&bad, b"bad\0");
        cache.put(&damaged, b"bad\0");
        s.images = Some(cache.clone());
        let mut reply = Writer::default();
        assert!(s
            .handle(&request(custom::IMAGE_INDEX, |_| {}), &mut reply)
            .unwrap());
        assert_eq!(reply.buf[..4], CUDA_SUCCESS.to_le_bytes());
        assert_eq!(reply.buf[8..10], [1, 1], "kept, and pinned");
        assert_eq!(reply.buf[10..14], 3u32.to_le_bytes());
        let listed: HashMap<[u8; 32], u64> = reply.buf[14..]
            .chunks(40)
            .map(|e| {
                (
                    e[..32].try_into().unwrap(),
                    u64::from_le_bytes(e[32..].try_into().unwrap()),
                )
            })
            .collect();
        assert_eq!(listed, HashMap::from([(good, 5), (bad, 4), (damaged, 4)]));

        let load = |call: u16, source: u8, name: u64, key: [u8; 32], len: u64| {
            request(call, |w| {
                w.put(&source);
                w.put(&name);
                w.put(&key);
                w.put(&len);
            })
        };
        let [l1, l2, l3, l4] = [0x40, 0x80, 0xc0, 0x100].map(|n| 0xfeed_0000_0000_0000u64 + n);
        let lib = custom::LIBRARY_LOAD;
        assert_eq!(
            result(&mut s, &load(lib, custom::IMAGE_CACHED, l1, good, 5)),
            CUDA_SUCCESS
        );
        assert_eq!(s.real(Class::Library, l1), Some(LIBRARY));
        // Refused by the driver, or not kept: accepted when sent, refused where used.
        assert_eq!(
            result(&mut s, &load(lib, custom::IMAGE_CACHED, l2, bad, 4)),
            CUDA_SUCCESS
        );
        assert_eq!(
            result(&mut s, &load(lib, custom::IMAGE_CACHED, l3, missing, 5)),
            CUDA_SUCCESS
        );
        let kernel = |l: u64, k: u64| {
            request(custom::NAME_KERNEL, |w| {
                w.put(&l);
                w.put_bytes(b"k");
                w.put(&k);
            })
        };
        let global = |l: u64| {
            request(custom::GET_GLOBAL, |w| {
                w.put(&custom::GLOBAL_OF_LIBRARY);
                w.put(&l);
                w.put_bytes(b"table");
            })
        };
        let module = |l: u64| {
            request(127, |w| {
                w.put(&1u8);
                w.put(&l);
            })
        };
        let unload = |l: u64| request(126, |w| w.put(&l));
        assert!(
            !cache.index().contains(&bad),
            "an image that no longer loads is forgotten"
        );
        for (l, rc) in [(l2, CUDA_ERROR_INVALID_IMAGE), (l3, CUDA_ERROR_NOT_FOUND)] {
            let k = l + 8;
            assert_eq!(result(&mut s, &kernel(l, k)), CUDA_SUCCESS);
            let layout = request(custom::PARAM_LAYOUT, |w| w.put(&k));
            assert_eq!(result(&mut s, &layout), rc, "its kernel");
            assert_eq!(result(&mut s, &global(l)), rc, "its variable");
            assert_eq!(result(&mut s, &module(l)), rc, "its module");
            assert_eq!(result(&mut s, &unload(l)), CUDA_SUCCESS, "unloaded");
            assert_eq!(result(&mut s, &global(l)), CUDA_ERROR_INVALID_HANDLE);
        }
        // The library that loaded works by its name, and only by it.
        assert_eq!(result(&mut s, &kernel(l1, l1 + 8)), CUDA_SUCCESS);
        assert_eq!(s.real(Class::Function, l1 + 8), Some(KERNEL));
        assert_eq!(result(&mut s, &global(l1)), CUDA_SUCCESS);
        assert!(s.owns(LIBRARY_VARIABLE, 256));
        assert_eq!(result(&mut s, &global(LIBRARY)), CUDA_ERROR_INVALID_HANDLE);
        // Names never taken twice.
        for (call, source, name, why) in [
            (lib, custom::IMAGE_CACHED, l1, "in use"),
            (lib, custom::IMAGE_CACHED, 2, "special"),
        ] {
            assert_eq!(
                result(&mut s, &load(call, source, name, good, 5)),
                CUDA_ERROR_INVALID_VALUE,
                "{why}"
            );
        }
        // Waited for: a kept image that no longer loads is asked for again.
        assert_eq!(
            result(&mut s, &load(lib, custom::IMAGE_CACHED, 0, damaged, 4)),
            CUDA_ERROR_NOT_FOUND
        );
        assert_eq!(cache.index(), vec![good], "the damaged one forgotten too");
        assert_eq!(result(&mut s, &unload(l1)), CUDA_SUCCESS);
        assert_eq!(s.real(Class::Library, l1), None);
        assert!(!s.owns(LIBRARY_VARIABLE, 256), "its variable went with it");
        // A named library whose image travels, to be kept: loaded, then kept.
        let fresh = key_of(b"fresh");
        let keep = request(lib, |w| {
            w.put(&custom::IMAGE_KEEP);
            w.put(&l4);
            w.put(&fresh);
            w.put_bytes(b"code\0");
        });
        assert_eq!(result(&mut s, &keep), CUDA_SUCCESS);
        assert_eq!(s.real(Class::Library, l4), Some(LIBRARY));
        s.finish();
        assert!(cache.index().contains(&fresh), "kept");
        drop(s);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn streams_and_events_go_by_the_client_s_names_and_only_those() {
        let mut s = session();
        let create = |call: u16, name: u64| {
            request(call, |w| {
                w.put(&name);
                w.put(&0u32);
            })
        };
        let on_stream = |call: u16, h: u64| request(call, |w| w.put(&h));
        let (stream, event) = (0x5eed_0000_0040u64, 0x5eed_0000_0080u64);
        assert_eq!(result(&mut s, &create(80, stream)), CUDA_SUCCESS);
        assert_eq!(result(&mut s, &create(92, event)), CUDA_SUCCESS);
        let real = s.real(Class::Stream, stream).unwrap();
        assert!((0xd000..0xe000).contains(&real), "{real:#x}");

        assert_eq!(result(&mut s, &on_stream(84, stream)), CUDA_SUCCESS);
        assert_eq!(
            DRIVER_SAW.load(SeqCst),
            real,
            "the driver gets its own handle"
        );
        for (name, why) in [(real, "the driver's handle"), (event, "an event's name")] {
            assert_eq!(
                result(&mut s, &on_stream(84, name)),
                CUDA_ERROR_INVALID_HANDLE,
                "{why}"
            );
        }
        for (name, why) in [(stream, "a name in use"), (2, "the per-thread stream")] {
            assert_eq!(
                result(&mut s, &create(80, name)),
                CUDA_ERROR_INVALID_VALUE,
                "{why}"
            );
        }
        assert_eq!(
            s.real(Class::Stream, stream),
            Some(real),
            "a refused name leaves the stream it names alone"
        );

        DRIVER_SAW.store(0, SeqCst);
        assert_eq!(result(&mut s, &on_stream(82, stream)), CUDA_SUCCESS);
        assert_eq!(DRIVER_SAW.load(SeqCst), real);
        assert_eq!(
            result(&mut s, &on_stream(84, stream)),
            CUDA_ERROR_INVALID_HANDLE,
            "a destroyed stream's name"
        );
        assert_eq!(
            result(&mut s, &create(80, stream)),
            CUDA_SUCCESS,
            "a destroyed stream's name is free again"
        );
        assert_ne!(s.real(Class::Stream, stream), Some(real));
    }

    #[test]
    fn host_copies_on_a_stream_being_captured_are_refused() {
        let mut s = session();
        let alloc = request(custom::MEM_ALLOC, |w| w.put(&4096u64));
        assert_eq!(result(&mut s, &alloc), CUDA_SUCCESS);
        let to_device = |stream: u64| {
            request(custom::COPY_HTOD, |w| {
                w.put(&BASE);
                w.put_opt(Some(&stream));
                w.put_bytes(&[7u8; 16]);
            })
        };
        let to_host = |stream: u64| {
            request(custom::COPY_DTOH, |w| {
                w.put(&BASE);
                w.put(&16u64);
                w.put_opt(Some(&stream));
            })
        };
        // The legacy stream is not being captured: both copies reach the driver.
        assert_eq!(result(&mut s, &to_device(1)), CUDA_SUCCESS);
        assert_eq!(result(&mut s, &to_host(1)), CUDA_SUCCESS);
        assert_eq!(STREAM_COPIES.load(SeqCst), 2);
        for copy in [to_device(CAPTURED_STREAM), to_host(CAPTURED_STREAM)] {
            assert_eq!(result(&mut s, &copy), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        }
        assert_eq!(
            STREAM_COPIES.load(SeqCst),
            2,
            "no captured copy reached the driver"
        );
    }

    /// Where the stand-in driver's allocation nodes put their memory.
    const GRAPH_MEMORY: u64 = 0xc000_0000;
    /// Free nodes that reached the stand-in driver.
    static FREE_NODES: AtomicU64 = AtomicU64::new(0);

    unsafe extern "C" fn add_mem_alloc_node(
        n: *mut CUgraphNode,
        _: CUgraph,
        _: *const CUgraphNode,
        _: usize,
        p: *mut CUDA_MEM_ALLOC_NODE_PARAMS_v1_st,
    ) -> u32 {
        // SAFETY: the session's pointers.
        unsafe {
            let p = &mut *p;
            if p.poolProps.location.id != 0 || p.bytesize != 4096 {
                return CUDA_ERROR_INVALID_VALUE;
            }
            p.dptr = GRAPH_MEMORY;
            *n = 0x31 as CUgraphNode;
        }
        CUDA_SUCCESS
    }
    unsafe extern "C" fn add_mem_free_node(
        n: *mut CUgraphNode,
        _: CUgraph,
        _: *const CUgraphNode,
        _: usize,
        _: CUdeviceptr,
    ) -> u32 {
        FREE_NODES.fetch_add(1, SeqCst);
        // SAFETY: the session's out pointer.
        unsafe { *n = 0x32 as CUgraphNode };
        CUDA_SUCCESS
    }

    #[test]
    fn graph_memory_nodes_free_only_the_session_s_memory_and_lend_it_their_address() {
        let mut s = session();
        const GRAPH: u64 = 0x77;
        s.handles.insert(Class::Graph, GRAPH);
        let node = |graph: u64, kind: u8, args: &dyn Fn(&mut Writer)| {
            request(custom::GRAPH_ADD_NODE, |w| {
                w.put(&graph);
                w.put(&0u32);
                w.put(&kind);
                args(w);
            })
        };
        let alloc = |graph: u64, bytes: u64| {
            node(graph, custom::NODE_MEM_ALLOC, &|w: &mut Writer| {
                w.put(&0i32);
                w.put(&bytes);
            })
        };
        let free = |ptr: u64| node(GRAPH, custom::NODE_MEM_FREE, &|w: &mut Writer| w.put(&ptr));
        assert_eq!(
            result(&mut s, &free(GRAPH_MEMORY)),
            CUDA_ERROR_INVALID_VALUE
        );
        assert_eq!(FREE_NODES.load(SeqCst), 0, "not its memory: not asked");
        assert_eq!(result(&mut s, &alloc(GRAPH, 0)), CUDA_ERROR_INVALID_VALUE);
        assert_eq!(
            result(&mut s, &alloc(0x78, 4096)),
            CUDA_ERROR_INVALID_HANDLE
        );
        assert!(!s.owns(GRAPH_MEMORY, 1));
        let mut reply = Writer::default();
        assert!(s.handle(&alloc(GRAPH, 4096), &mut reply).unwrap());
        let mut r = Reader::new(&reply.buf);
        assert_eq!(r.get::<u32>("rc").unwrap(), CUDA_SUCCESS);
        assert_eq!(r.get::<u32>("deferred").unwrap(), CUDA_SUCCESS);
        assert_eq!(r.get::<u64>("node").unwrap(), 0x31);
        assert_eq!(r.get::<u64>("address").unwrap(), GRAPH_MEMORY);
        assert!(s.owns(GRAPH_MEMORY, 4096) && !s.owns(GRAPH_MEMORY, 4097));
        assert_eq!(result(&mut s, &free(GRAPH_MEMORY)), CUDA_SUCCESS);
        assert_eq!(FREE_NODES.load(SeqCst), 1);
    }

    /// The event the stand-in `cuLaunchKernelEx` found in its first attribute.
    static LAUNCH_EVENT: AtomicU64 = AtomicU64::new(0);

    unsafe extern "C" fn launch_ex(
        c: *const gpupool_cuda::launch::RawLaunchConfig,
        _: CUfunction,
        _: *mut *mut c_void,
        _: *mut *mut c_void,
    ) -> u32 {
        // SAFETY: the session's configuration with its attributes.
        let attrs = unsafe { (*c).attributes() }.unwrap_or_default();
        let e = attrs.first().and_then(|a| a.event()).unwrap_or(0);
        LAUNCH_EVENT.store(e, SeqCst);
        CUDA_SUCCESS
    }

    #[test]
    fn launch_events_go_by_the_client_s_names_and_only_those() {
        let mut s = session();
        let event = 0x5eed_0000_00c0u64;
        let create = request(92, |w| {
            w.put(&event);
            w.put(&0u32);
        });
        assert_eq!(result(&mut s, &create), CUDA_SUCCESS);
        let real = s.real(Class::Event, event).unwrap();
        let f = 0x7700u64;
        s.handles.insert(Class::Function, f);
        let launch = |id: u32, e: u64| {
            request(custom::LAUNCH, |w| {
                LaunchShape {
                    function: f,
                    grid: [1; 3],
                    block: [1; 3],
                    shared: 0,
                    stream: 0,
                }
                .write(w);
                w.put(&LAUNCH_EX);
                let mut value = [0u8; 64];
                value[..8].copy_from_slice(&e.to_le_bytes());
                let attr = gpupool_cuda::launch::RawLaunchAttribute {
                    id,
                    pad: [0; 4],
                    value,
                };
                crate::launch_ex::write_attributes(w, &[attr]);
                crate::kernel_args::write(w, &[], None);
            })
        };
        for id in [7, 12] {
            LAUNCH_EVENT.store(0, SeqCst);
            assert_eq!(result(&mut s, &launch(id, event)), CUDA_SUCCESS, "{id}");
            assert_eq!(
                LAUNCH_EVENT.load(SeqCst),
                real,
                "the driver gets its own event"
            );
            for (e, why) in [
                (real, "the driver's handle"),
                (0, "null"),
                (0x1234, "unknown"),
            ] {
                assert_eq!(
                    result(&mut s, &launch(id, e)),
                    CUDA_ERROR_INVALID_HANDLE,
                    "{id}: {why}"
                );
            }
        }
        // A device-updatable node attribute (13) carries no event and does not travel.
        assert_eq!(result(&mut s, &launch(13, event)), CUDA_ERROR_NOT_SUPPORTED);
    }

    /// Link states the stand-in linker made.
    static LINK_STATES: AtomicU64 = AtomicU64::new(0x9000);
    /// What the stand-in linker links.
    const LINKED: &[u8] = b"linked image";

    /// Writes `text` into the log given by options `buffer` / `size`, if any.
    unsafe fn stand_in_log(n: u32, o: *mut u32, v: *mut *mut c_void, buffer: u32, text: &[u8]) {
        // SAFETY: the session's option arrays of `n` entries.
        let (o, v) = unsafe {
            (
                std::slice::from_raw_parts(o, n as usize),
                std::slice::from_raw_parts_mut(v, n as usize),
            )
        };
        let (Some(b), Some(sz)) = (
            o.iter().position(|&x| x == buffer),
            o.iter().position(|&x| x == buffer + 1),
        ) else {
            return;
        };
        let cap = v[sz] as usize;
        let n = text.len().min(cap - 1);
        // SAFETY: the session's log buffer of `cap` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), v[b].cast::<u8>(), n);
            *v[b].cast::<u8>().add(n) = 0;
        }
        v[sz] = (n + 1) as *mut c_void;
    }
    unsafe extern "C" fn link_create(
        n: u32,
        o: *mut u32,
        v: *mut *mut c_void,
        out: *mut CUlinkState,
    ) -> u32 {
        // SAFETY: the session's arguments.
        unsafe {
            stand_in_log(n, o, v, 3, b"created");
            *out = LINK_STATES.fetch_add(0x10, std::sync::atomic::Ordering::Relaxed) as usize
                as CUlinkState;
        }
        CUDA_SUCCESS
    }
    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn link_add_data(
        _: CUlinkState,
        kind: u32,
        data: *mut c_void,
        size: usize,
        _: *const std::ffi::c_char,
        _: u32,
        _: *mut u32,
        _: *mut *mut c_void,
    ) -> u32 {
        // SAFETY: the session's input of `size` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) };
        if kind == 1 && bytes == b"ptx" {
            CUDA_SUCCESS
        } else {
            CUDA_ERROR_INVALID_PTX
        }
    }
    unsafe extern "C" fn link_complete(
        _: CUlinkState,
        image: *mut *mut c_void,
        size: *mut usize,
    ) -> u32 {
        // SAFETY: the session's out values.
        unsafe {
            *image = LINKED.as_ptr() as *mut c_void;
            *size = LINKED.len();
        }
        CUDA_SUCCESS
    }
    unsafe extern "C" fn link_destroy(_: CUlinkState) -> u32 {
        CUDA_SUCCESS
    }

    #[test]
    fn link_states_carry_numbers_only_and_their_logs_come_back() {
        let mut s = session();
        let create = |options: &[(u32, u64)], info: u32| {
            request(custom::LINK_CREATE, |w| {
                w.put(&(options.len() as u32));
                for (o, v) in options {
                    w.put(o);
                    w.put(v);
                }
                w.put(&info);
                w.put(&0u32);
                w.put(&1u8);
            })
        };
        // Options pointing at the client's memory, or logs passed as numbers, are refused.
        for bad in [
            (17, 0x1000),
            (18, 0x1000),
            (19, 4),
            (3, 0x1000),
            (4, 64),
            (99, 0),
        ] {
            assert_eq!(
                result(&mut s, &create(&[bad], 0)),
                CUDA_ERROR_INVALID_VALUE,
                "{bad:?}"
            );
        }
        let mut reply = Writer::default();
        assert!(s
            .handle(&create(&[(0, 32), (12, 1)], 64), &mut reply)
            .unwrap());
        let mut r = Reader::new(&reply.buf);
        let words: (u32, u32, u32) = (
            r.get("rc").unwrap(),
            r.get("deferred").unwrap(),
            r.get("driver").unwrap(),
        );
        assert_eq!(words, (CUDA_SUCCESS, CUDA_SUCCESS, CUDA_SUCCESS));
        assert_eq!(r.get_bytes("info").unwrap(), b"created");
        assert_eq!(r.get_bytes("error").unwrap(), b"");
        let _wall: u32 = r.get("wall").unwrap();
        let handle: u64 = r.get("handle").unwrap();
        let add = |h: u64, name: &[u8], data: &[u8]| {
            request(custom::LINK_ADD, |w| {
                w.put(&h);
                w.put(&1u32);
                w.put_bytes(name);
                w.put(&0u32);
                w.put_bytes(data);
            })
        };
        assert_eq!(
            result(&mut s, &add(handle + 8, b"a", b"ptx")),
            CUDA_ERROR_INVALID_HANDLE
        );
        let mut bad_kind = add(handle, b"a", b"ptx");
        // The input kind follows the request head and the state.
        let at = crate::protocol::REQUEST_HEAD + 8;
        bad_kind[at..at + 4].copy_from_slice(&6u32.to_le_bytes());
        assert_eq!(result(&mut s, &bad_kind), CUDA_ERROR_INVALID_VALUE);
        assert_eq!(
            result(&mut s, &add(handle, b"a\0b", b"ptx")),
            CUDA_ERROR_INVALID_VALUE
        );
        // The driver's refusal comes back inside a reply that succeeds, with the logs.
        let mut reply = Writer::default();
        assert!(s.handle(&add(handle, b"a", b"bad"), &mut reply).unwrap());
        let mut r = Reader::new(&reply.buf[8..]);
        assert_eq!(r.get::<u32>("driver").unwrap(), CUDA_ERROR_INVALID_PTX);
        let complete = |h: u64| request(custom::LINK_COMPLETE, |w| w.put(&h));
        let mut reply = Writer::default();
        assert!(s.handle(&complete(handle), &mut reply).unwrap());
        let mut r = Reader::new(&reply.buf[8..]);
        assert_eq!(r.get::<u32>("driver").unwrap(), CUDA_SUCCESS);
        r.get_bytes("info").unwrap();
        r.get_bytes("error").unwrap();
        r.get::<u32>("wall").unwrap();
        assert_eq!(r.get_bytes("image").unwrap(), LINKED);
        let destroy = |h: u64| request(custom::LINK_DESTROY, |w| w.put(&h));
        assert_eq!(result(&mut s, &destroy(handle)), CUDA_SUCCESS);
        assert_eq!(result(&mut s, &destroy(handle)), CUDA_ERROR_INVALID_HANDLE);
        assert_eq!(result(&mut s, &complete(handle)), CUDA_ERROR_INVALID_HANDLE);
        // A session holds a bounded number of states.
        for _ in 0..custom::MAX_LINK_STATES {
            assert_eq!(result(&mut s, &create(&[], 0)), CUDA_SUCCESS);
        }
        assert_eq!(result(&mut s, &create(&[], 0)), CUDA_ERROR_OUT_OF_MEMORY);
    }

    fn request(call: u16, args: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        RequestHead {
            call,
            flags: FLAG_SYNC,
            context: 0,
        }
        .put(&mut w);
        args(&mut w);
        w.buf
    }

    fn result(s: &mut Session, body: &[u8]) -> u32 {
        let mut reply = Writer::default();
        assert!(s.handle(body, &mut reply).unwrap());
        u32::from_le_bytes(reply.buf[..4].try_into().unwrap())
    }

    #[test]
    fn only_the_session_s_own_addresses_and_handles_reach_the_driver() {
        let mut s = session();
        let copy = |dst: u64, n: usize, stream: Option<u64>| {
            request(custom::COPY_HTOD, |w| {
                w.put(&dst);
                w.put_opt(stream.as_ref());
                w.put_bytes(&vec![7u8; n]);
            })
        };
        assert_eq!(
            result(&mut s, &copy(BASE, 16, None)),
            CUDA_ERROR_INVALID_VALUE
        );
        assert_eq!(COPIED.load(SeqCst), 0, "nothing allocated yet: not copied");
        let alloc = request(custom::MEM_ALLOC, |w| w.put(&4096u64));
        assert_eq!(result(&mut s, &alloc), CUDA_SUCCESS);
        assert_eq!(result(&mut s, &copy(BASE + 4080, 16, None)), CUDA_SUCCESS);
        assert_eq!(COPIED.load(SeqCst), 16);
        for (dst, n) in [(BASE + 4081, 16), (BASE - 1, 4), (u64::MAX - 3, 8)] {
            assert_eq!(
                result(&mut s, &copy(dst, n, None)),
                CUDA_ERROR_INVALID_VALUE
            );
        }
        assert_eq!(
            result(&mut s, &copy(BASE, 16, Some(0xdead_0000))),
            CUDA_ERROR_INVALID_HANDLE,
            "a stream the session never created"
        );
        let free = request(custom::MEM_FREE, |w| {
            w.put(&(BASE + 8));
            w.put_opt::<u64>(None);
        });
        assert_eq!(
            result(&mut s, &free),
            CUDA_ERROR_INVALID_VALUE,
            "not a base"
        );
        let destroy = request(82, |w| w.put(&0x1234u64));
        assert_eq!(result(&mut s, &destroy), CUDA_ERROR_INVALID_HANDLE);
        assert_eq!(COPIED.load(SeqCst), 16);
        let kernel = request(custom::LIBRARY_GET_KERNEL, |w| {
            w.put(&0x4000u64);
            w.put_bytes(b"k");
        });
        assert_eq!(result(&mut s, &kernel), CUDA_ERROR_INVALID_HANDLE);
        let function = request(custom::KERNEL_GET_FUNCTION, |w| w.put(&0x4000u64));
        assert_eq!(result(&mut s, &function), CUDA_ERROR_INVALID_HANDLE);
        let unload = request(126, |w| w.put(&0x4000u64));
        assert_eq!(result(&mut s, &unload), CUDA_ERROR_INVALID_HANDLE);
    }

    #[test]
    fn device_variables_are_the_session_s_until_their_library_is_unloaded() {
        let mut s = session();
        let global = |of: u8, h: u64| {
            request(custom::GET_GLOBAL, |w| {
                w.put(&of);
                w.put(&h);
                w.put_bytes(b"table");
            })
        };
        assert_eq!(
            result(&mut s, &global(custom::GLOBAL_OF_LIBRARY, LIBRARY)),
            CUDA_ERROR_INVALID_HANDLE,
            "not loaded by this session"
        );
        let load = request(custom::LIBRARY_LOAD, |w| {
            w.put(&custom::IMAGE_INLINE);
            w.put(&0u64);
            w.put_bytes(b"code\0");
        });
        assert_eq!(result(&mut s, &load), CUDA_SUCCESS);
        assert_eq!(
            result(&mut s, &global(custom::GLOBAL_OF_LIBRARY, LIBRARY)),
            CUDA_SUCCESS
        );
        let module = request(127, |w| {
            w.put(&1u8);
            w.put(&LIBRARY);
        });
        assert_eq!(result(&mut s, &module), CUDA_SUCCESS);
        assert_eq!(
            result(&mut s, &global(custom::GLOBAL_OF_MODULE, LIBRARY_MODULE)),
            CUDA_SUCCESS
        );
        assert!(s.owns(LIBRARY_VARIABLE, 256) && s.owns(MODULE_VARIABLE + 255, 1));
        assert!(!s.owns(LIBRARY_VARIABLE + 255, 2), "past the variable");
        let mut reply = Writer::default();
        assert!(
            s.handle(&global(7, LIBRARY), &mut reply).is_err(),
            "an unknown owner kind is malformed"
        );
        let unload = request(126, |w| w.put(&LIBRARY));
        assert_eq!(result(&mut s, &unload), CUDA_SUCCESS);
        assert!(
            !s.owns(LIBRARY_VARIABLE, 1) && !s.owns(MODULE_VARIABLE, 1),
            "the library's variables and those of its modules are gone"
        );
    }

    #[test]
    fn stream_attributes_carrying_events_or_foreign_streams_are_refused() {
        let mut s = session();
        let set = |stream: u64, attr: u32| {
            request(custom::STREAM_SET_ATTRIBUTE, |w| {
                w.put_opt(Some(&stream));
                w.put(&attr);
                w.put(&[0u8; 64]);
            })
        };
        assert_eq!(result(&mut s, &set(0, 7)), CUDA_ERROR_NOT_SUPPORTED);
        assert_eq!(
            result(&mut s, &set(0xdead_0000, 3)),
            CUDA_ERROR_INVALID_HANDLE
        );
        assert_eq!(
            result(&mut s, &set(0, 3)),
            CUDA_ERROR_NOT_FOUND,
            "a plain attribute reaches the driver, which lacks the function"
        );
    }

    #[test]
    fn reserved_ranges_are_the_session_s_and_properties_carry_no_pointer() {
        let mut s = session();
        assert!(!s.owns(RESERVED, 1));
        let reserve = request(custom::MEM_ADDRESS_RESERVE, |w| {
            for v in [1u64 << 21, 0, 0, 0] {
                w.put(&v);
            }
        });
        assert_eq!(result(&mut s, &reserve), CUDA_SUCCESS);
        assert!(s.owns(RESERVED + (1 << 21) - 1, 1));
        assert!(!s.owns(RESERVED + (1 << 21) - 1, 2), "past the reservation");
        let access = |n: u32| {
            request(custom::MEM_SET_ACCESS, |w| {
                w.put(&RESERVED);
                w.put(&(1u64 << 21));
                w.put(&n);
                for _ in 0..n {
                    w.put(&[1u32, 0, 3]);
                }
            })
        };
        let mut reply = Writer::default();
        assert!(
            s.handle(&access(65), &mut reply).is_err(),
            "too many descriptors is malformed"
        );
        let free = |p: u64| {
            request(custom::MEM_ADDRESS_FREE, |w| {
                w.put(&p);
                w.put(&(1u64 << 21));
            })
        };
        assert_eq!(
            result(&mut s, &free(RESERVED + 4096)),
            CUDA_ERROR_INVALID_VALUE
        );
        assert_eq!(FREED.load(SeqCst), 0, "not a reservation: not freed");
        assert_eq!(result(&mut s, &free(RESERVED)), CUDA_SUCCESS);
        assert_eq!(FREED.load(SeqCst), RESERVED);
        assert!(!s.owns(RESERVED, 1));

        let mut props = [0xabu8; 32];
        props[..4].copy_from_slice(&1u32.to_le_bytes());
        let create = request(70, |w| {
            w.put(&1u8);
            w.put(&(CREATE_SIZE as u64));
            w.put_opt(Some(&props));
            w.put(&0u64);
        });
        assert_eq!(result(&mut s, &create), CUDA_SUCCESS);
        let seen = CREATE_PROPS.lock().unwrap().unwrap();
        assert_eq!(&seen[16..24], &[0u8; 8], "the security pointer is cleared");
        assert_eq!(&seen[..16], &props[..16]);
        assert!(s.valid(Class::Generic, 0x55));
        let release = request(71, |w| w.put(&0x66u64));
        assert_eq!(result(&mut s, &release), CUDA_ERROR_INVALID_HANDLE);
    }

    #[test]
    fn allocations_run_in_relaxed_capture_mode_and_the_mode_comes_back() {
        let mut s = session();
        // The thread in global mode (0), as a capture the client began leaves it.
        CAPTURE_MODE.with(|m| m.set((0, 0)));
        let alloc = request(custom::MEM_ALLOC, |w| w.put(&64u64));
        assert_eq!(result(&mut s, &alloc), CUDA_SUCCESS);
        assert_eq!(
            CAPTURE_MODE.with(|m| m.get()),
            (0, 2),
            "allocated in relaxed mode (2), global again after"
        );
    }

    #[test]
    fn asynchronous_errors_come_back_with_the_next_reply() {
        let mut s = session();
        let mut bad = Writer::default();
        RequestHead {
            call: custom::COPY_HTOD,
            flags: 0,
            context: 0,
        }
        .put(&mut bad);
        bad.put(&1u64);
        bad.put_opt::<u64>(None);
        bad.put_bytes(&[1, 2]);
        let mut reply = Writer::default();
        assert!(!s.handle(&bad.buf, &mut reply).unwrap(), "no reply");
        let mut reply = Writer::default();
        assert!(s.handle(&request(custom::ACK, |_| {}), &mut reply).unwrap());
        assert_eq!(
            &reply.buf[..8],
            &[0u8; 8],
            "an acknowledgement leaves the error for the next call"
        );
        let alloc = request(custom::MEM_ALLOC, |w| w.put(&64u64));
        let mut reply = Writer::default();
        s.handle(&alloc, &mut reply).unwrap();
        let mut r = Reader::new(&reply.buf);
        assert_eq!(r.get::<u32>("rc").unwrap(), CUDA_SUCCESS);
        assert_eq!(r.get::<u32>("deferred").unwrap(), CUDA_ERROR_INVALID_VALUE);
        let mut reply = Writer::default();
        s.handle(&alloc, &mut reply).unwrap();
        assert_eq!(&reply.buf[4..8], &0u32.to_le_bytes(), "reported once");
    }

    fn any_call() -> impl Strategy<Value = u16> {
        let known: Vec<u16> = table_server::IDS
            .iter()
            .chain(custom::ALL.iter())
            .copied()
            .collect();
        prop_oneof![proptest::sample::select(known), any::<u16>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Fuzzes the decoder: any call number with any argument bytes is answered or refused
        /// as malformed, never a panic, and nothing reaches the driver unchecked.
        #[test]
        fn any_request_is_answered_or_refused(
            call in any_call(),
            flags in 0u16..2,
            args in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut s = session();
            let mut w = Writer::default();
            RequestHead { call, flags, context: 0 }.put(&mut w);
            w.buf.extend_from_slice(&args);
            let mut reply = Writer::default();
            let _ = s.handle(&w.buf, &mut reply);
            let _ = s.handle(&w.buf[..w.buf.len() / 2], &mut reply);
        }
    }

    #[test]
    fn ids_are_unique() {
        let mut all: Vec<u16> = table_server::IDS.to_vec();
        all.extend(custom::ALL);
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
