//! Driver symbol versioning: which exported symbol answers `cuGetProcAddress(name, version, flags)`.
//!
//! The runtime asks for *base* names (`cuMemAlloc`) with the CUDA version it was built for; the
//! driver answers with the newest variant introduced at or before that version
//! (`cuMemAlloc_v2` from 3.2 on), and with the per-thread-default-stream variant (`_ptds` for
//! synchronous calls, `_ptsz` for stream-ordered ones) when the flags ask for it. The tables
//! below come from `cuda.h` (12.9 / 13.0) and the requests recorded in
//! `shared/data/cudart-*-driver-requests.txt`.

/// Which per-thread-default-stream suffix a function has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerThread {
    /// `_ptds`: synchronous copies and sets.
    Ptds,
    /// `_ptsz`: stream-ordered calls.
    Ptsz,
}

/// `(base name, version introduced, symbol)`, oldest first per name.
pub const VERSIONED: &[(&str, u32, &str)] = &[
    ("cuDeviceTotalMem", 3020, "cuDeviceTotalMem_v2"),
    ("cuCtxCreate", 3020, "cuCtxCreate_v2"),
    ("cuCtxCreate", 11040, "cuCtxCreate_v3"),
    ("cuCtxCreate", 12050, "cuCtxCreate_v4"),
    ("cuModuleGetGlobal", 3020, "cuModuleGetGlobal_v2"),
    ("cuMemGetInfo", 3020, "cuMemGetInfo_v2"),
    ("cuMemAlloc", 3020, "cuMemAlloc_v2"),
    ("cuMemAllocPitch", 3020, "cuMemAllocPitch_v2"),
    ("cuMemFree", 3020, "cuMemFree_v2"),
    ("cuMemGetAddressRange", 3020, "cuMemGetAddressRange_v2"),
    ("cuMemAllocHost", 3020, "cuMemAllocHost_v2"),
    (
        "cuMemHostGetDevicePointer",
        3020,
        "cuMemHostGetDevicePointer_v2",
    ),
    ("cuMemcpyHtoD", 3020, "cuMemcpyHtoD_v2"),
    ("cuMemcpyDtoH", 3020, "cuMemcpyDtoH_v2"),
    ("cuMemcpyDtoD", 3020, "cuMemcpyDtoD_v2"),
    ("cuMemcpyDtoA", 3020, "cuMemcpyDtoA_v2"),
    ("cuMemcpyAtoD", 3020, "cuMemcpyAtoD_v2"),
    ("cuMemcpyHtoA", 3020, "cuMemcpyHtoA_v2"),
    ("cuMemcpyAtoH", 3020, "cuMemcpyAtoH_v2"),
    ("cuMemcpyAtoA", 3020, "cuMemcpyAtoA_v2"),
    ("cuMemcpyHtoAAsync", 3020, "cuMemcpyHtoAAsync_v2"),
    ("cuMemcpyAtoHAsync", 3020, "cuMemcpyAtoHAsync_v2"),
    ("cuMemcpy2D", 3020, "cuMemcpy2D_v2"),
    ("cuMemcpy2DUnaligned", 3020, "cuMemcpy2DUnaligned_v2"),
    ("cuMemcpy3D", 3020, "cuMemcpy3D_v2"),
    ("cuMemcpyHtoDAsync", 3020, "cuMemcpyHtoDAsync_v2"),
    ("cuMemcpyDtoHAsync", 3020, "cuMemcpyDtoHAsync_v2"),
    ("cuMemcpyDtoDAsync", 3020, "cuMemcpyDtoDAsync_v2"),
    ("cuMemcpy2DAsync", 3020, "cuMemcpy2DAsync_v2"),
    ("cuMemcpy3DAsync", 3020, "cuMemcpy3DAsync_v2"),
    ("cuMemsetD8", 3020, "cuMemsetD8_v2"),
    ("cuMemsetD16", 3020, "cuMemsetD16_v2"),
    ("cuMemsetD32", 3020, "cuMemsetD32_v2"),
    ("cuMemsetD2D8", 3020, "cuMemsetD2D8_v2"),
    ("cuMemsetD2D16", 3020, "cuMemsetD2D16_v2"),
    ("cuMemsetD2D32", 3020, "cuMemsetD2D32_v2"),
    ("cuArrayCreate", 3020, "cuArrayCreate_v2"),
    ("cuArrayGetDescriptor", 3020, "cuArrayGetDescriptor_v2"),
    ("cuArray3DCreate", 3020, "cuArray3DCreate_v2"),
    ("cuArray3DGetDescriptor", 3020, "cuArray3DGetDescriptor_v2"),
    ("cuTexRefSetAddress", 3020, "cuTexRefSetAddress_v2"),
    ("cuTexRefGetAddress", 3020, "cuTexRefGetAddress_v2"),
    ("cuTexRefSetAddress2D", 3020, "cuTexRefSetAddress2D_v2"),
    ("cuTexRefSetAddress2D", 4010, "cuTexRefSetAddress2D_v3"),
    (
        "cuGraphicsResourceGetMappedPointer",
        3020,
        "cuGraphicsResourceGetMappedPointer_v2",
    ),
    ("cuCtxDestroy", 4000, "cuCtxDestroy_v2"),
    ("cuCtxPopCurrent", 4000, "cuCtxPopCurrent_v2"),
    ("cuCtxPushCurrent", 4000, "cuCtxPushCurrent_v2"),
    ("cuStreamDestroy", 4000, "cuStreamDestroy_v2"),
    ("cuEventDestroy", 4000, "cuEventDestroy_v2"),
    ("cuLinkCreate", 6050, "cuLinkCreate_v2"),
    ("cuLinkAddData", 6050, "cuLinkAddData_v2"),
    ("cuLinkAddFile", 6050, "cuLinkAddFile_v2"),
    ("cuMemHostRegister", 6050, "cuMemHostRegister_v2"),
    (
        "cuGraphicsResourceSetMapFlags",
        6050,
        "cuGraphicsResourceSetMapFlags_v2",
    ),
    ("cuStreamBeginCapture", 10010, "cuStreamBeginCapture_v2"),
    ("cuIpcOpenMemHandle", 11000, "cuIpcOpenMemHandle_v2"),
    (
        "cuDevicePrimaryCtxRelease",
        11000,
        "cuDevicePrimaryCtxRelease_v2",
    ),
    (
        "cuDevicePrimaryCtxReset",
        11000,
        "cuDevicePrimaryCtxReset_v2",
    ),
    (
        "cuDevicePrimaryCtxSetFlags",
        11000,
        "cuDevicePrimaryCtxSetFlags_v2",
    ),
    ("cuGraphInstantiate", 11000, "cuGraphInstantiate_v2"),
    ("cuStreamGetCaptureInfo", 11030, "cuStreamGetCaptureInfo_v2"),
    ("cuStreamGetCaptureInfo", 12030, "cuStreamGetCaptureInfo_v3"),
    ("cuDeviceGetUuid", 11040, "cuDeviceGetUuid_v2"),
    ("cuStreamWaitValue32", 11070, "cuStreamWaitValue32_v2"),
    ("cuStreamWriteValue32", 11070, "cuStreamWriteValue32_v2"),
    ("cuStreamWaitValue64", 11070, "cuStreamWaitValue64_v2"),
    ("cuStreamWriteValue64", 11070, "cuStreamWriteValue64_v2"),
    ("cuStreamBatchMemOp", 11070, "cuStreamBatchMemOp_v2"),
    ("cuGetProcAddress", 12000, "cuGetProcAddress_v2"),
    ("cuGraphExecUpdate", 12000, "cuGraphExecUpdate_v2"),
    ("cuGraphAddKernelNode", 12000, "cuGraphAddKernelNode_v2"),
    (
        "cuGraphKernelNodeGetParams",
        12000,
        "cuGraphKernelNodeGetParams_v2",
    ),
    (
        "cuGraphKernelNodeSetParams",
        12000,
        "cuGraphKernelNodeSetParams_v2",
    ),
    (
        "cuGraphExecKernelNodeSetParams",
        12000,
        "cuGraphExecKernelNodeSetParams_v2",
    ),
    ("cuMemPrefetchAsync", 12020, "cuMemPrefetchAsync_v2"),
    ("cuMemAdvise", 12020, "cuMemAdvise_v2"),
    ("cuGraphGetEdges", 12030, "cuGraphGetEdges_v2"),
    (
        "cuGraphNodeGetDependencies",
        12030,
        "cuGraphNodeGetDependencies_v2",
    ),
    (
        "cuGraphNodeGetDependentNodes",
        12030,
        "cuGraphNodeGetDependentNodes_v2",
    ),
    ("cuGraphAddDependencies", 12030, "cuGraphAddDependencies_v2"),
    (
        "cuGraphRemoveDependencies",
        12030,
        "cuGraphRemoveDependencies_v2",
    ),
    ("cuGraphAddNode", 12030, "cuGraphAddNode_v2"),
    (
        "cuStreamUpdateCaptureDependencies",
        12030,
        "cuStreamUpdateCaptureDependencies_v2",
    ),
    ("cuStreamGetCtx", 12050, "cuStreamGetCtx_v2"),
    ("cuEventElapsedTime", 12080, "cuEventElapsedTime_v2"),
];

/// Functions with per-thread-default-stream variants, by base name.
pub const PER_THREAD: &[(&str, PerThread)] = {
    use PerThread::{Ptds, Ptsz};
    &[
        ("cuEventRecord", Ptsz),
        ("cuEventRecordWithFlags", Ptsz),
        ("cuGraphInstantiateWithParams", Ptsz),
        ("cuGraphLaunch", Ptsz),
        ("cuGraphUpload", Ptsz),
        ("cuGraphicsMapResources", Ptsz),
        ("cuGraphicsUnmapResources", Ptsz),
        ("cuLaunchCooperativeKernel", Ptsz),
        ("cuLaunchHostFunc", Ptsz),
        ("cuLaunchKernel", Ptsz),
        ("cuLaunchKernelEx", Ptsz),
        ("cuMemAllocAsync", Ptsz),
        ("cuMemAllocFromPoolAsync", Ptsz),
        ("cuMemBatchDecompressAsync", Ptsz),
        ("cuMemFreeAsync", Ptsz),
        ("cuMemMapArrayAsync", Ptsz),
        ("cuMemPrefetchAsync", Ptsz),
        ("cuMemcpy", Ptds),
        ("cuMemcpy2D", Ptds),
        ("cuMemcpy2DAsync", Ptsz),
        ("cuMemcpy2DUnaligned", Ptds),
        ("cuMemcpy3D", Ptds),
        ("cuMemcpy3DAsync", Ptsz),
        ("cuMemcpy3DBatchAsync", Ptsz),
        ("cuMemcpy3DPeer", Ptds),
        ("cuMemcpy3DPeerAsync", Ptsz),
        ("cuMemcpyAsync", Ptsz),
        ("cuMemcpyAtoA", Ptds),
        ("cuMemcpyAtoD", Ptds),
        ("cuMemcpyAtoH", Ptds),
        ("cuMemcpyAtoHAsync", Ptsz),
        ("cuMemcpyBatchAsync", Ptsz),
        ("cuMemcpyDtoA", Ptds),
        ("cuMemcpyDtoD", Ptds),
        ("cuMemcpyDtoDAsync", Ptsz),
        ("cuMemcpyDtoH", Ptds),
        ("cuMemcpyDtoHAsync", Ptsz),
        ("cuMemcpyHtoA", Ptds),
        ("cuMemcpyHtoAAsync", Ptsz),
        ("cuMemcpyHtoD", Ptds),
        ("cuMemcpyHtoDAsync", Ptsz),
        ("cuMemcpyPeer", Ptds),
        ("cuMemcpyPeerAsync", Ptsz),
        ("cuMemsetD16", Ptds),
        ("cuMemsetD16Async", Ptsz),
        ("cuMemsetD2D16", Ptds),
        ("cuMemsetD2D16Async", Ptsz),
        ("cuMemsetD2D32", Ptds),
        ("cuMemsetD2D32Async", Ptsz),
        ("cuMemsetD2D8", Ptds),
        ("cuMemsetD2D8Async", Ptsz),
        ("cuMemsetD32", Ptds),
        ("cuMemsetD32Async", Ptsz),
        ("cuMemsetD8", Ptds),
        ("cuMemsetD8Async", Ptsz),
        ("cuSignalExternalSemaphoresAsync", Ptsz),
        ("cuStreamAddCallback", Ptsz),
        ("cuStreamAttachMemAsync", Ptsz),
        ("cuStreamBatchMemOp", Ptsz),
        ("cuStreamBeginCapture", Ptsz),
        ("cuStreamBeginCaptureToGraph", Ptsz),
        ("cuStreamCopyAttributes", Ptsz),
        ("cuStreamEndCapture", Ptsz),
        ("cuStreamGetAttribute", Ptsz),
        ("cuStreamGetCaptureInfo", Ptsz),
        ("cuStreamGetCtx", Ptsz),
        ("cuStreamGetDevice", Ptsz),
        ("cuStreamGetFlags", Ptsz),
        ("cuStreamGetId", Ptsz),
        ("cuStreamGetPriority", Ptsz),
        ("cuStreamIsCapturing", Ptsz),
        ("cuStreamQuery", Ptsz),
        ("cuStreamSetAttribute", Ptsz),
        ("cuStreamSynchronize", Ptsz),
        ("cuStreamUpdateCaptureDependencies", Ptsz),
        ("cuStreamWaitEvent", Ptsz),
        ("cuStreamWaitValue32", Ptsz),
        ("cuStreamWaitValue64", Ptsz),
        ("cuStreamWriteValue32", Ptsz),
        ("cuStreamWriteValue64", Ptsz),
        ("cuWaitExternalSemaphoresAsync", Ptsz),
    ]
};

/// The versioned symbol (without per-thread suffix) for `name` at `version`.
pub fn versioned_symbol(name: &str, version: u32) -> &str {
    VERSIONED
        .iter()
        .filter(|(base, since, _)| *base == name && *since <= version)
        .map(|(_, _, sym)| *sym)
        .next_back()
        .unwrap_or(name)
}

/// The per-thread suffix of `base`, if it has one.
pub fn per_thread_kind(base: &str) -> Option<PerThread> {
    PER_THREAD.iter().find(|(n, _)| *n == base).map(|(_, k)| *k)
}

/// The exported symbol that answers `cuGetProcAddress(name, version, flags)`, written into
/// `buf`; returns it as a `&str` borrowed from `buf` or from the tables. No heap allocation.
pub fn resolve<'a>(name: &'a str, version: u32, flags: u64, buf: &'a mut [u8; 128]) -> &'a str {
    let sym = versioned_symbol(name, version);
    let per_thread = flags & crate::CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM != 0;
    match per_thread.then(|| per_thread_kind(name)).flatten() {
        Some(kind) => {
            let suffix = match kind {
                PerThread::Ptds => "_ptds",
                PerThread::Ptsz => "_ptsz",
            };
            let len = sym.len() + suffix.len();
            if len > buf.len() {
                return sym;
            }
            buf[..sym.len()].copy_from_slice(sym.as_bytes());
            buf[sym.len()..len].copy_from_slice(suffix.as_bytes());
            std::str::from_utf8(&buf[..len]).unwrap_or(sym)
        }
        None => sym,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, v: u32, f: u64) -> String {
        let mut buf = [0u8; 128];
        resolve(name, v, f, &mut buf).to_string()
    }

    #[test]
    fn versions_pick_the_newest_introduced_variant() {
        assert_eq!(r("cuMemAlloc", 3020, 0), "cuMemAlloc_v2");
        assert_eq!(r("cuMemAlloc", 2000, 0), "cuMemAlloc");
        assert_eq!(r("cuGetProcAddress", 11030, 0), "cuGetProcAddress");
        assert_eq!(r("cuGetProcAddress", 12000, 0), "cuGetProcAddress_v2");
        assert_eq!(
            r("cuStreamGetCaptureInfo", 10010, 0),
            "cuStreamGetCaptureInfo"
        );
        assert_eq!(
            r("cuStreamGetCaptureInfo", 11030, 0),
            "cuStreamGetCaptureInfo_v2"
        );
        assert_eq!(
            r("cuStreamGetCaptureInfo", 12090, 0),
            "cuStreamGetCaptureInfo_v3"
        );
        assert_eq!(
            r("cuDevicePrimaryCtxRelease", 7000, 0),
            "cuDevicePrimaryCtxRelease"
        );
        assert_eq!(r("cuInit", 2000, 0), "cuInit");
    }

    #[test]
    fn per_thread_flags_pick_ptds_or_ptsz() {
        assert_eq!(r("cuMemcpyHtoD", 7000, 2), "cuMemcpyHtoD_v2_ptds");
        assert_eq!(r("cuLaunchKernel", 7000, 2), "cuLaunchKernel_ptsz");
        assert_eq!(r("cuLaunchKernel", 7000, 0), "cuLaunchKernel");
        assert_eq!(r("cuMemAllocAsync", 11020, 2), "cuMemAllocAsync_ptsz");
        assert_eq!(
            r("cuStreamGetCaptureInfo", 12030, 2),
            "cuStreamGetCaptureInfo_v3_ptsz"
        );
        assert_eq!(
            r("cuMemAlloc", 3020, 2),
            "cuMemAlloc_v2",
            "no per-thread variant exists"
        );
    }

    #[test]
    fn tables_are_sorted_per_name() {
        for w in VERSIONED.windows(2) {
            if w[0].0 == w[1].0 {
                assert!(w[0].1 < w[1].1, "{:?} before {:?}", w[0], w[1]);
            }
        }
    }
}
