//! The one table of forwarded driver calls. [`for_each_call!`] hands the table to a generator
//! macro: the client library turns each entry into an exported C function that encodes the call,
//! the server session into a decoder that checks every argument and calls the driver. Calls whose
//! arguments need more than the kinds below (copies, launches, module images, allocations) are
//! numbered in [`custom`] and written by hand on both sides.
//!
//! Entry: `MODE ID NAME(KIND ARG: TYPE, …) [then CLIENT_HOOK];`
//!
//! - MODE `sync` waits for the reply; `cached` too, once per argument values (answers that
//!   never change: device and function attributes, occupancy); `local` too, when the client
//!   function the client library exports under that name cannot answer by itself; `async` is
//!   batched and its error deferred; `deferred` too, behind a client function that checks the
//!   arguments first (as `local`, the table's function is not exported).
//! - KIND `val` (by value), `out` (`*mut TYPE`, returned), `inp` (`*const TYPE`, sent; may be
//!   null), `prop` (like `inp`, an allocation or pool properties structure whose Windows
//!   security pointer at bytes 16..24 the server clears), `cstr` (a C string), `dev` (a device address the session must own),
//!   `h(CLASS)` (a handle the session gave out), `new(CLASS)` (`*mut TYPE`, a handle the call
//!   creates), `named(CLASS)` (`*mut TYPE`, a handle the call creates under a name the client
//!   chose and handed out at once: see [`Class::named_by_client`]), `del(CLASS)` (a handle the
//!   call destroys).
//! - `then HOOK`: a client-side function called with the arguments after success.
//!
//! Ids 1 to 19 change the session's current context.

/// Whether call `id` changes contexts (creates, destroys, resets or reconfigures one): ids 1
/// to 19. After one, the session no longer knows its current context and the client forgets
/// what it kept about contexts.
pub fn changes_contexts(id: u16) -> bool {
    (1..20).contains(&id)
}

/// Handle classes the session tracks; a handle is only passed to the driver in its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `CUcontext`.
    Context,
    /// `CUstream` (0, 1 and 2 are the special streams).
    Stream,
    /// `CUevent`.
    Event,
    /// `CUmodule`.
    Module,
    /// `CUfunction`, and `CUkernel` (which the driver takes wherever a function goes).
    Function,
    /// `CUlibrary`.
    Library,
    /// `CUarray`.
    Array,
    /// `CUmipmappedArray`.
    Mipmap,
    /// `CUmemoryPool`.
    Pool,
    /// `CUmemGenericAllocationHandle` (physical memory of the virtual memory API).
    Generic,
    /// `CUgraph`.
    Graph,
    /// `CUgraphNode`.
    GraphNode,
    /// `CUgraphExec`.
    GraphExec,
}

impl Class {
    /// Whether the client names handles of this class itself (streams and events always,
    /// libraries and modules NVIDIA's runtime loads from a program's images): it creates
    /// them without waiting for the server, which maps each name to the driver's handle.
    pub fn named_by_client(self) -> bool {
        matches!(
            self,
            Class::Stream | Class::Event | Class::Library | Class::Module
        )
    }
}

/// First name the client gives a stream, event, library or kernel; names are multiples of
/// [`CLIENT_NAME_STEP`] from here: never 0, 1 or 2 (the special streams), and in the upper
/// half of the address space, where no driver handle (a user-space address) lies.
pub const FIRST_CLIENT_NAME: u64 = 0xfeed_0000_0000_0000;

/// Distance between two names the client gives.
pub const CLIENT_NAME_STEP: u64 = 0x40;

/// Numbers of the hand-written calls.
pub mod custom {
    /// `cuMemAlloc_v2`.
    pub const MEM_ALLOC: u16 = 200;
    /// `cuMemAllocPitch_v2`.
    pub const MEM_ALLOC_PITCH: u16 = 201;
    /// `cuMemAllocAsync` / `cuMemAllocFromPoolAsync`.
    pub const MEM_ALLOC_ASYNC: u16 = 202;
    /// `cuMemFree_v2` / `cuMemFreeAsync`.
    pub const MEM_FREE: u16 = 203;
    /// Host to device copy (data in the request).
    pub const COPY_HTOD: u16 = 204;
    /// Device to host copy (data in the reply).
    pub const COPY_DTOH: u16 = 205;
    /// Device to device copy.
    pub const COPY_DTOD: u16 = 206;
    /// 2D / 3D copy (host sides packed densely).
    pub const COPY_3D: u16 = 207;
    /// Any `cuMemsetD*`.
    pub const MEMSET: u16 = 208;
    /// `cuModuleLoadData`: a source (`IMAGE_*`), a name (0: the driver's handle comes back),
    /// the key for a kept image, then the image or its length. A module NVIDIA's runtime
    /// registers may carry a name the client gave it and need no reply, as a library can
    /// ([`LIBRARY_LOAD`]).
    pub const MODULE_LOAD: u16 = 209;
    /// `cuModuleGetFunction` (with the kernel's parameter layout).
    pub const MODULE_GET_FUNCTION: u16 = 210;
    /// `cuLaunchKernel` and its variants ([`LAUNCH_PLAIN`], [`LAUNCH_COOPERATIVE`],
    /// [`LAUNCH_EX`] with its attributes).
    pub const LAUNCH: u16 = 211;
    /// Launch kind: `cuLaunchKernel`.
    pub const LAUNCH_PLAIN: u8 = 0;
    /// Launch kind: `cuLaunchCooperativeKernel`.
    pub const LAUNCH_COOPERATIVE: u8 = 1;
    /// Launch kind: `cuLaunchKernelEx`.
    pub const LAUNCH_EX: u8 = 2;
    /// `cuPointerGetAttributes`.
    pub const POINTER_ATTRIBUTES: u16 = 212;
    /// `cuMemPoolGetAttribute`.
    pub const POOL_GET_ATTRIBUTE: u16 = 213;
    /// `cuMemPoolSetAttribute`.
    pub const POOL_SET_ATTRIBUTE: u16 = 214;
    /// `cuDeviceGetName`.
    pub const DEVICE_NAME: u16 = 215;
    /// `cuDeviceGetPCIBusId`.
    pub const DEVICE_PCI_BUS_ID: u16 = 216;
    /// `cuMemAllocManaged`.
    pub const MEM_ALLOC_MANAGED: u16 = 217;
    /// `cuMemAddressReserve`.
    pub const MEM_ADDRESS_RESERVE: u16 = 218;
    /// `cuMemAddressFree`.
    pub const MEM_ADDRESS_FREE: u16 = 219;
    /// `cuMemSetAccess` (the access descriptors in the request).
    pub const MEM_SET_ACCESS: u16 = 220;
    /// `cuGraphAddKernelNode` (and `_v2`): dependencies, function, shape and arguments.
    pub const GRAPH_ADD_KERNEL_NODE: u16 = 221;
    /// A no-op answered once every request before it ran: the client's flow control for
    /// calls sent without waiting. Its reply leaves their deferred error for the next call.
    pub const ACK: u16 = 222;
    /// `cuLibraryLoadData` (the image in the request; options are the server's business).
    /// Like [`MODULE_LOAD`]: an image source, a name (0: the driver's handle comes back),
    /// the key for a kept image, then the image or its length. A library loaded from an image
    /// pinned for the session may carry a name the client gave it and need no reply; a load
    /// the driver refuses then refuses the library's uses, with the driver's error.
    pub const LIBRARY_LOAD: u16 = 223;
    /// `cuLibraryGetKernel` (with the kernel's parameter layout).
    pub const LIBRARY_GET_KERNEL: u16 = 224;
    /// `cuKernelGetFunction` (with the function's parameter layout).
    pub const KERNEL_GET_FUNCTION: u16 = 225;
    /// `cuOccupancyMaxActiveClusters` / `cuOccupancyMaxPotentialClusterSize` (a launch shape
    /// with its attributes, and which of the two).
    pub const OCCUPANCY_CLUSTERS: u16 = 226;
    /// [`OCCUPANCY_CLUSTERS`]: `cuOccupancyMaxActiveClusters`.
    pub const CLUSTERS_ACTIVE: u8 = 0;
    /// [`OCCUPANCY_CLUSTERS`]: `cuOccupancyMaxPotentialClusterSize`.
    pub const CLUSTERS_POTENTIAL_SIZE: u8 = 1;
    /// `cuModuleGetGlobal_v2` / `cuLibraryGetGlobal`: a device variable's address and size,
    /// which the session then accepts in copies while its module or library stays loaded.
    pub const GET_GLOBAL: u16 = 227;
    /// [`GET_GLOBAL`] of a module.
    pub const GLOBAL_OF_MODULE: u8 = 0;
    /// [`GET_GLOBAL`] of a library.
    pub const GLOBAL_OF_LIBRARY: u8 = 1;
    /// `cuStreamSetAttribute` (attributes whose values are plain numbers).
    pub const STREAM_SET_ATTRIBUTE: u16 = 228;
    /// `cuTensorMapEncode*` / `cuTensorMapReplaceAddress` (see `tensor_map`).
    pub const TENSOR_MAP: u16 = 229;
    /// `cuLibraryEnumerateKernels`: up to a count of a library's kernels, which the session
    /// then accepts as handles.
    pub const LIBRARY_ENUMERATE_KERNELS: u16 = 236;
    /// `cuStreamGetCaptureInfo_v2`: a stream's capture status, id, graph and the nodes its
    /// next work depends on (at most [`MAX_NODE_DEPENDENCIES`]), which the session then
    /// accepts as handles.
    pub const CAPTURE_INFO: u16 = 237;
    /// `cuGraphGetNodes`: how many nodes a graph has, or up to a count of them, which the
    /// session then accepts as handles.
    pub const GRAPH_GET_NODES: u16 = 238;
    /// `cuGraphAddEmptyNode`, `cuGraphAddMemsetNode`, `cuGraphAddChildGraphNode`,
    /// `cuGraphAddMemAllocNode` and `cuGraphAddMemFreeNode`: the graph, dependencies, a
    /// `NODE_*` kind and its parameters.
    pub const GRAPH_ADD_NODE: u16 = 239;
    /// `cuLibraryGetKernel` without a round trip: the library, the kernel's name and the name
    /// the client gave the kernel handle. Sent without waiting; a kernel the driver refuses
    /// is refused, with the driver's error, where it is used (never a deferred error).
    pub const NAME_KERNEL: u16 = 240;
    /// A function's or kernel's parameter sizes, as `LIBRARY_GET_KERNEL` answers them (the
    /// first launch of a kernel named with [`NAME_KERNEL`] asks).
    pub const PARAM_LAYOUT: u16 = 241;
    /// The images the server keeps for this client: a flag, whether it keeps any; another,
    /// whether they are pinned for the session (see `image_pins`); a count, then each
    /// image's key and length (0 unless pinned).
    pub const IMAGE_INDEX: u16 = 242;
    /// Every device attribute from 1 to [`DEVICE_ATTRIBUTES_ASKED`] of one device (a
    /// `CUdevice`): a count, then each attribute's result and value.
    pub const DEVICE_ATTRIBUTES: u16 = 243;
    /// `cuModuleGetFunction` without a round trip, as [`NAME_KERNEL`] for a module the client
    /// named: the module, the function's name and the name the client gave the function.
    pub const NAME_FUNCTION: u16 = 244;
    /// `cuLinkCreate_v2`: the options that carry numbers (a count, then each option and
    /// value), the capacities of the info and error logs (0: not asked) and whether the wall
    /// time is asked. Every `LINK_*` reply succeeds as a call and carries the driver's result,
    /// the logs so far and the wall time (`f32` bits), then the call's own results: here the
    /// link state, which the session then accepts in the other `LINK_*` calls.
    pub const LINK_CREATE: u16 = 245;
    /// `cuLinkAddData_v2` (and `cuLinkAddFile_v2`, the file read by the client): the link
    /// state, the input kind, the input's name, its options that carry numbers, its bytes.
    pub const LINK_ADD: u16 = 246;
    /// `cuLinkComplete`: the link state; the reply adds the linked image.
    pub const LINK_COMPLETE: u16 = 247;
    /// `cuLinkDestroy` (sent without waiting): the link state.
    pub const LINK_DESTROY: u16 = 248;
    /// `cuIpcGetMemHandle`: an allocation of the session; the reply is the client's handle
    /// (64 bytes naming an entry of the tenant's registry, never the driver's handle).
    pub const IPC_GET_MEM_HANDLE: u16 = 249;
    /// `cuIpcOpenMemHandle_v2`: a client's handle and the flags; the reply is the address and
    /// the size of what was opened, which the session then accepts as its memory.
    pub const IPC_OPEN_MEM_HANDLE: u16 = 250;
    /// `cuIpcCloseMemHandle`: an address `IPC_OPEN_MEM_HANDLE` gave; the reply is how many
    /// opens of it are left.
    pub const IPC_CLOSE_MEM_HANDLE: u16 = 251;
    /// `cuIpcGetEventHandle`: an event of the session; the reply is the client's handle.
    pub const IPC_GET_EVENT_HANDLE: u16 = 252;
    /// `cuIpcOpenEventHandle`: a client's handle and the name the client gives the event.
    pub const IPC_OPEN_EVENT_HANDLE: u16 = 253;
    /// Most link states a session holds at once.
    pub const MAX_LINK_STATES: usize = 64;
    /// The highest attribute [`DEVICE_ATTRIBUTES`] answers (CUDA 13.0 knows 147).
    pub const DEVICE_ATTRIBUTES_ASKED: i32 = 191;
    /// [`MODULE_LOAD`] / [`LIBRARY_LOAD`] source: the image follows.
    pub const IMAGE_INLINE: u8 = 0;
    /// Source: the image's key, then the image; the server keeps it under that key for this
    /// client's next loads.
    pub const IMAGE_KEEP: u8 = 1;
    /// Source: only the image's key and length follow (`CUDA_ERROR_NOT_FOUND` when the
    /// server no longer keeps it: the client sends it again).
    pub const IMAGE_CACHED: u8 = 2;
    /// Node kind: an empty node.
    pub const NODE_EMPTY: u8 = 0;
    /// Node kind: a memset node (its destination must be the session's memory).
    pub const NODE_MEMSET: u8 = 1;
    /// Node kind: a child graph node (a graph of the session).
    pub const NODE_CHILD: u8 = 2;
    /// Node kind: a memory allocation node (device ordinal, bytes; the reply adds its
    /// address, which the session then accepts as its memory).
    pub const NODE_MEM_ALLOC: u8 = 3;
    /// Node kind: a memory free node (an address of the session's memory).
    pub const NODE_MEM_FREE: u8 = 4;
    /// Node kind: a copy between the session's device memory and arrays (a `copy3d::Copy3d`
    /// with no host side: the server cannot reach the client's memory when the graph runs).
    pub const NODE_MEMCPY: u8 = 5;
    /// Most nodes [`GRAPH_GET_NODES`] returns.
    pub const MAX_LISTED_NODES: u32 = 1 << 16;
    /// Most kernels [`LIBRARY_ENUMERATE_KERNELS`] returns.
    pub const MAX_ENUMERATED_KERNELS: u32 = 1 << 16;
    /// Most dependencies of one graph node.
    pub const MAX_NODE_DEPENDENCIES: u32 = 64;
    /// NVML: the number of devices.
    pub const NVML_COUNT: u16 = 230;
    /// NVML: a string (`NvmlString`) of a device or the system.
    pub const NVML_STRING: u16 = 231;
    /// NVML: a device's memory, as the tenant sees it (v1 and v2 fields).
    pub const NVML_MEMORY: u16 = 232;
    /// NVML: the compute processes on a device.
    pub const NVML_PROCESSES: u16 = 233;
    /// NVML: a device's PCI information (`nvmlPciInfo_t` bytes).
    pub const NVML_PCI: u16 = 234;
    /// NVML: a pair of numbers (`NvmlValues`) of a device or the system.
    pub const NVML_VALUES: u16 = 235;
    /// Whether `id` is an NVML call (answered without a CUDA context).
    pub fn is_nvml(id: u16) -> bool {
        (NVML_COUNT..=NVML_VALUES).contains(&id)
    }
    /// Whether the reply to `id` leaves the deferred error of earlier calls in place.
    pub fn leaves_deferred(id: u16) -> bool {
        is_nvml(id) || id == ACK
    }
    /// Every hand-written call.
    pub const ALL: [u16; 54] = [
        MEM_ALLOC,
        MEM_ALLOC_PITCH,
        MEM_ALLOC_ASYNC,
        MEM_FREE,
        COPY_HTOD,
        COPY_DTOH,
        COPY_DTOD,
        COPY_3D,
        MEMSET,
        MODULE_LOAD,
        MODULE_GET_FUNCTION,
        LAUNCH,
        POINTER_ATTRIBUTES,
        POOL_GET_ATTRIBUTE,
        POOL_SET_ATTRIBUTE,
        DEVICE_NAME,
        DEVICE_PCI_BUS_ID,
        MEM_ALLOC_MANAGED,
        MEM_ADDRESS_RESERVE,
        MEM_ADDRESS_FREE,
        MEM_SET_ACCESS,
        GRAPH_ADD_KERNEL_NODE,
        ACK,
        LIBRARY_LOAD,
        LIBRARY_GET_KERNEL,
        KERNEL_GET_FUNCTION,
        OCCUPANCY_CLUSTERS,
        GET_GLOBAL,
        STREAM_SET_ATTRIBUTE,
        TENSOR_MAP,
        LIBRARY_ENUMERATE_KERNELS,
        CAPTURE_INFO,
        GRAPH_GET_NODES,
        GRAPH_ADD_NODE,
        NAME_KERNEL,
        PARAM_LAYOUT,
        IMAGE_INDEX,
        DEVICE_ATTRIBUTES,
        NAME_FUNCTION,
        LINK_CREATE,
        LINK_ADD,
        LINK_COMPLETE,
        LINK_DESTROY,
        IPC_GET_MEM_HANDLE,
        IPC_OPEN_MEM_HANDLE,
        IPC_CLOSE_MEM_HANDLE,
        IPC_GET_EVENT_HANDLE,
        IPC_OPEN_EVENT_HANDLE,
        NVML_COUNT,
        NVML_STRING,
        NVML_MEMORY,
        NVML_PROCESSES,
        NVML_PCI,
        NVML_VALUES,
    ];

    /// Which string [`NVML_STRING`] asks for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u32)]
    pub enum NvmlString {
        /// `nvmlDeviceGetName`.
        Name = 0,
        /// `nvmlDeviceGetUUID`.
        Uuid = 1,
        /// `nvmlSystemGetDriverVersion`.
        DriverVersion = 2,
        /// `nvmlSystemGetNVMLVersion`.
        NvmlVersion = 3,
    }

    /// Which numbers [`NVML_VALUES`] asks for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u32)]
    pub enum NvmlValues {
        /// `nvmlDeviceGetCudaComputeCapability`: major, minor.
        ComputeCapability = 0,
        /// `nvmlDeviceGetUtilizationRates`: gpu, memory.
        Utilization = 1,
        /// `nvmlSystemGetCudaDriverVersion`: version, 0.
        CudaDriverVersion = 2,
        /// `nvmlDeviceGetTemperature` (GPU sensor): degrees, 0.
        Temperature = 3,
    }

    /// Most processes [`NVML_PROCESSES`] returns.
    pub const NVML_MAX_PROCESSES: u32 = 256;
}

/// Hands the table of table-driven calls to the generator macro `$m`. Hooks name the client
/// library's functions (`crate::` is the crate that expands the table).
#[macro_export]
#[allow(clippy::crate_in_macro_def)]
macro_rules! for_each_call {
    ($m:ident) => {
        $m! {
            sync 1 cuDevicePrimaryCtxRetain(new(Context) ctx: CUcontext, val dev: CUdevice);
            sync 2 cuDevicePrimaryCtxRelease_v2(val dev: CUdevice);
            sync 3 cuDevicePrimaryCtxRelease(val dev: CUdevice);
            sync 4 cuDevicePrimaryCtxReset_v2(val dev: CUdevice);
            sync 5 cuDevicePrimaryCtxReset(val dev: CUdevice);
            sync 6 cuCtxCreate_v2(new(Context) ctx: CUcontext, val flags: u32, val dev: CUdevice) then crate::context::created;
            sync 7 cuCtxDestroy_v2(del(Context) ctx: CUcontext) then crate::context::destroyed;
            sync 8 cuDevicePrimaryCtxSetFlags_v2(val dev: CUdevice, val flags: u32);
            sync 9 cuDevicePrimaryCtxSetFlags(val dev: CUdevice, val flags: u32);

            local 20 cuDeviceGetAttribute(out v: i32, val attrib: i32, val dev: CUdevice);
            cached 21 cuDeviceTotalMem_v2(out bytes: usize, val dev: CUdevice);
            cached 22 cuDeviceComputeCapability(out major: i32, out minor: i32, val dev: CUdevice);
            cached 23 cuDeviceGetUuid(out uuid: CUuuid, val dev: CUdevice);
            cached 24 cuDeviceGetUuid_v2(out uuid: CUuuid, val dev: CUdevice);
            cached 25 cuDeviceGetP2PAttribute(out v: i32, val attrib: i32, val src: CUdevice, val dst: CUdevice);
            cached 26 cuDeviceCanAccessPeer(out v: i32, val dev: CUdevice, val peer: CUdevice);
            cached 27 cuDeviceGetTexture1DLinearMaxWidth(out v: usize, val fmt: u32, val chans: u32, val dev: CUdevice);
            sync 28 cuDeviceGetLuid(out luid: [u8; 8], out mask: u32, val dev: CUdevice);
            sync 29 cuDeviceGetByPCIBusId(out dev: CUdevice, cstr id: c_char);
            local 30 cuDevicePrimaryCtxGetState(val dev: CUdevice, out flags: u32, out active: i32);
            sync 31 cuDeviceGetDefaultMemPool(new(Pool) pool: CUmemoryPool, val dev: CUdevice);
            sync 32 cuDeviceGetMemPool(new(Pool) pool: CUmemoryPool, val dev: CUdevice);
            sync 33 cuDeviceSetMemPool(val dev: CUdevice, h(Pool) pool: CUmemoryPool);
            sync 34 cuDeviceGetGraphMemAttribute(val dev: CUdevice, val attr: u32, out value: u64);
            sync 35 cuDeviceGraphMemTrim(val dev: CUdevice);

            local 40 cuCtxGetDevice(out dev: CUdevice);
            sync 41 cuCtxSynchronize() then crate::memory::synced;
            sync 42 cuCtxGetFlags(out flags: u32);
            sync 43 cuCtxSetFlags(val flags: u32);
            local 44 cuCtxGetId(h(Context) ctx: CUcontext, out id: u64);
            sync 45 cuCtxGetApiVersion(h(Context) ctx: CUcontext, out v: u32);
            sync 46 cuCtxGetLimit(out v: usize, val limit: u32);
            sync 47 cuCtxSetLimit(val limit: u32, val v: usize);
            sync 48 cuCtxGetCacheConfig(out c: u32);
            sync 49 cuCtxSetCacheConfig(val c: u32);
            sync 50 cuCtxGetStreamPriorityRange(out least: i32, out greatest: i32);
            sync 51 cuCtxEnablePeerAccess(h(Context) peer: CUcontext, val flags: u32);
            sync 52 cuCtxDisablePeerAccess(h(Context) peer: CUcontext);

            sync 60 cuMemGetInfo_v2(out free: usize, out total: usize);
            sync 61 cuMemGetAddressRange_v2(out base: CUdeviceptr, out size: usize, dev ptr: CUdeviceptr);
            sync 62 cuMemPoolCreate(new(Pool) pool: CUmemoryPool, prop props: [u8; 88]);
            sync 63 cuMemPoolDestroy(del(Pool) pool: CUmemoryPool);
            sync 64 cuMemPoolTrimTo(h(Pool) pool: CUmemoryPool, val keep: usize);
            sync 65 cuArrayCreate_v2(new(Array) a: CUarray, inp desc: [u8; 24]);
            sync 66 cuArray3DCreate_v2(new(Array) a: CUarray, inp desc: [u8; 40]);
            sync 67 cuArrayDestroy(del(Array) a: CUarray);
            sync 68 cuMipmappedArrayCreate(new(Mipmap) a: CUmipmappedArray, inp desc: [u8; 40], val levels: u32);
            sync 69 cuMipmappedArrayDestroy(del(Mipmap) a: CUmipmappedArray);

            sync 70 cuMemCreate(new(Generic) h: u64, val size: usize, prop prop: [u8; 32], val flags: u64);
            sync 71 cuMemRelease(del(Generic) h: u64);
            cached 72 cuMemGetAllocationGranularity(out g: usize, prop prop: [u8; 32], val option: u32);
            sync 73 cuMemMap(dev ptr: CUdeviceptr, val size: usize, val offset: usize, h(Generic) h: u64, val flags: u64);
            sync 74 cuMemUnmap(dev ptr: CUdeviceptr, val size: usize);
            sync 75 cuMemGetAccess(out flags: u64, inp loc: [u8; 8], dev ptr: CUdeviceptr);
            sync 76 cuMemGetAllocationPropertiesFromHandle(out prop: [u8; 32], h(Generic) h: u64);
            sync 77 cuMemRetainAllocationHandle(new(Generic) h: u64, dev addr: *mut c_void);

            deferred 80 cuStreamCreate(named(Stream) s: CUstream, val flags: u32);
            deferred 81 cuStreamCreateWithPriority(named(Stream) s: CUstream, val flags: u32, val prio: i32);
            async 82 cuStreamDestroy_v2(del(Stream) s: CUstream);
            sync 83 cuStreamSynchronize(h(Stream) s: CUstream) then crate::memory::synced_on;
            sync 84 cuStreamQuery(h(Stream) s: CUstream);
            sync 85 cuStreamGetPriority(h(Stream) s: CUstream, out p: i32);
            sync 86 cuStreamGetFlags(h(Stream) s: CUstream, out f: u32);
            sync 87 cuStreamGetId(h(Stream) s: CUstream, out id: u64);
            sync 88 cuStreamGetCtx(h(Stream) s: CUstream, out c: CUcontext);
            sync 89 cuStreamGetDevice(h(Stream) s: CUstream, out d: CUdevice);
            local 90 cuStreamIsCapturing(h(Stream) s: CUstream, out status: u32);
            async 91 cuStreamWaitEvent(h(Stream) s: CUstream, h(Event) e: CUevent, val flags: u32);
            deferred 92 cuEventCreate(named(Event) e: CUevent, val flags: u32);
            async 93 cuEventDestroy_v2(del(Event) e: CUevent);
            async 94 cuEventRecord(h(Event) e: CUevent, h(Stream) s: CUstream);
            async 95 cuEventRecordWithFlags(h(Event) e: CUevent, h(Stream) s: CUstream, val flags: u32);
            sync 96 cuEventSynchronize(h(Event) e: CUevent) then crate::memory::synced_on;
            sync 97 cuEventQuery(h(Event) e: CUevent);
            sync 98 cuEventElapsedTime(out ms: f32, h(Event) a: CUevent, h(Event) b: CUevent);
            sync 99 cuEventElapsedTime_v2(out ms: f32, h(Event) a: CUevent, h(Event) b: CUevent);

            sync 100 cuGraphCreate(new(Graph) g: CUgraph, val flags: u32);
            sync 101 cuGraphDestroy(del(Graph) g: CUgraph) then crate::graph_host::graph_destroyed;
            sync 102 cuGraphInstantiateWithFlags(new(GraphExec) e: CUgraphExec, h(Graph) g: CUgraph, val flags: u64) then crate::graph_host::instantiated;
            deferred 103 cuGraphLaunch(h(GraphExec) e: CUgraphExec, h(Stream) s: CUstream);
            sync 104 cuGraphExecDestroy(del(GraphExec) e: CUgraphExec) then crate::graph_host::exec_destroyed;
            async 105 cuGraphUpload(h(GraphExec) e: CUgraphExec, h(Stream) s: CUstream);
            sync 106 cuStreamBeginCapture_v2(h(Stream) s: CUstream, val mode: u32) then crate::stream::capture_begun;
            local 107 cuStreamEndCapture(h(Stream) s: CUstream, new(Graph) g: CUgraph);
            sync 108 cuGraphNodeGetType(h(GraphNode) node: CUgraphNode, out kind: u32);

            sync 120 cuModuleUnload(del(Module) m: CUmodule) then crate::variables::module_unloaded;
            cached 121 cuFuncGetAttribute(out v: i32, val attrib: i32, h(Function) f: CUfunction);
            local 122 cuFuncSetAttribute(h(Function) f: CUfunction, val attrib: i32, val v: i32) then crate::conn::forget_cached_for_function;
            sync 123 cuFuncSetCacheConfig(h(Function) f: CUfunction, val config: u32);
            cached 124 cuOccupancyMaxActiveBlocksPerMultiprocessor(out n: i32, h(Function) f: CUfunction, val block: i32, val shared: usize);
            cached 125 cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(out n: i32, h(Function) f: CUfunction, val block: i32, val shared: usize, val flags: u32);
            sync 126 cuLibraryUnload(del(Library) l: CUlibrary) then crate::variables::library_unloaded;
            sync 127 cuLibraryGetModule(new(Module) m: CUmodule, h(Library) l: CUlibrary);
            cached 128 cuKernelGetAttribute(out v: i32, val attrib: i32, h(Function) k: CUkernel, val dev: CUdevice);
            local 129 cuKernelSetAttribute(val attrib: i32, val v: i32, h(Function) k: CUkernel, val dev: CUdevice) then crate::conn::forget_cached_for_kernel;
            sync 130 cuKernelSetCacheConfig(h(Function) k: CUkernel, val config: u32, val dev: CUdevice);
            sync 131 cuKernelGetParamInfo(h(Function) k: CUkernel, val index: usize, out offset: usize, out size: usize);
            cached 132 cuOccupancyAvailableDynamicSMemPerBlock(out bytes: usize, h(Function) f: CUfunction, val blocks: i32, val block: i32);
            cached 133 cuFuncGetParamInfo(h(Function) f: CUfunction, val index: usize, out offset: usize, out size: usize);
            sync 134 cuLibraryGetKernelCount(out n: u32, h(Library) l: CUlibrary);
            sync 135 cuStreamGetAttribute(h(Stream) s: CUstream, val attr: u32, out v: [u8; 64]);
            sync 136 cuStreamCopyAttributes(h(Stream) dst: CUstream, h(Stream) src: CUstream);
        }
    };
}

/// Bytes of a `cuPointerGetAttribute` value (`None`: an attribute this protocol does not carry).
pub fn pointer_attribute_size(attr: i32) -> Option<usize> {
    Some(match attr {
        1 | 3 | 4 | 7 | 11 | 12 | 14 | 17 | 18 | 19 | 20 => 8,
        2 | 6 | 8 | 9 | 10 | 13 | 15 | 16 => 4,
        5 => 16,
        _ => return None,
    })
}

/// Bytes of a `cuMemPoolGetAttribute` value: the reuse flags are `int`, the rest 64-bit.
pub fn pool_attribute_size(attr: u32) -> usize {
    if (1..=3).contains(&attr) {
        4
    } else {
        8
    }
}
