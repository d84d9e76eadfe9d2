//! `cuGraphInstantiateWithParams` for a driver that has instantiation with flags and
//! `cuGraphUpload` (the simulated driver and the remote client).

use crate::cu::{
    CUDA_GRAPH_INSTANTIATE_PARAMS_st, CUgraphExec, CUgraphInstantiateResult,
    CUgraphInstantiate_flags, CUstream,
};
use crate::result::{CUDA_ERROR_INVALID_VALUE, CUDA_SUCCESS};

/// Instantiates into `out` with `instantiate` (given the parameters' flags without the upload
/// flag), then, when the flags ask, uploads on the parameters' stream with `upload`; the result
/// goes to the parameters (the error node is left alone).
///
/// # Safety
/// `out` is writable by `instantiate`; `params` is null or the caller's parameters.
pub unsafe fn instantiate_with_params(
    out: *mut CUgraphExec,
    params: *mut CUDA_GRAPH_INSTANTIATE_PARAMS_st,
    instantiate: impl FnOnce(u64) -> u32,
    upload: impl FnOnce(CUgraphExec, CUstream) -> u32,
) -> u32 {
    // SAFETY: the caller's contract.
    let Some(p) = (unsafe { params.as_mut() }) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let flag = CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD.0 as u64;
    let mut rc = instantiate(p.flags & !flag);
    if rc == CUDA_SUCCESS && p.flags & flag != 0 {
        // SAFETY: written by the successful instantiation.
        rc = upload(unsafe { *out }, p.hUploadStream);
    }
    p.result_out = if rc == CUDA_SUCCESS {
        CUgraphInstantiateResult::CUDA_GRAPH_INSTANTIATE_SUCCESS
    } else {
        CUgraphInstantiateResult::CUDA_GRAPH_INSTANTIATE_ERROR
    };
    rc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_only_when_asked_and_reports_the_result() {
        // SAFETY: a plain C struct, all zeroes a valid value.
        let mut p: CUDA_GRAPH_INSTANTIATE_PARAMS_st = unsafe { std::mem::zeroed() };
        let mut exec: CUgraphExec = std::ptr::null_mut();
        let out = &mut exec as *mut CUgraphExec;
        p.flags = 2 | 1;
        let mut seen = (0, false);
        // SAFETY: valid pointers.
        let rc = unsafe {
            instantiate_with_params(
                out,
                &mut p,
                |f| {
                    seen.0 = f;
                    *out = 8 as CUgraphExec;
                    CUDA_SUCCESS
                },
                |e, _| {
                    seen.1 = e as usize == 8;
                    7
                },
            )
        };
        assert_eq!((rc, seen), (7, (1, true)), "flags without upload; uploaded");
        assert_eq!(
            p.result_out,
            CUgraphInstantiateResult::CUDA_GRAPH_INSTANTIATE_ERROR
        );
        p.flags = 0;
        // SAFETY: valid pointers.
        let rc = unsafe { instantiate_with_params(out, &mut p, |_| 0, |_, _| panic!("upload")) };
        assert_eq!(rc, 0);
        assert_eq!(
            p.result_out,
            CUgraphInstantiateResult::CUDA_GRAPH_INSTANTIATE_SUCCESS
        );
        // SAFETY: null parameters are refused before anything runs.
        let rc = unsafe {
            instantiate_with_params(out, std::ptr::null_mut(), |_| panic!(), |_, _| panic!())
        };
        assert_eq!(rc, CUDA_ERROR_INVALID_VALUE);
    }
}
