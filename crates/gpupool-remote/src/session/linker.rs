//! A session's JIT link states (`LINK_*` calls): the driver's linker run with options that
//! carry numbers only, and with log buffers and a wall-time slot of the session's own, whose
//! contents go back with every reply. The client's buffers stay on the client.

use super::Session;
use crate::calls::custom;
use crate::wire::{DecodeError, Reader, Writer};
use gpupool_cuda::cu::CUlinkState;
use gpupool_cuda::jit;
use gpupool_cuda::result::*;
use std::collections::HashMap;
use std::ffi::{c_void, CString};

/// One link state and the option arrays the driver writes its outputs into (kept as long
/// as the state: the driver may write into them at every call).
pub(super) struct Link {
    state: CUlinkState,
    options: Vec<u32>,
    values: Vec<*mut c_void>,
    info: Vec<u8>,
    error: Vec<u8>,
}

/// The session's link states by handle.
#[derive(Default)]
pub(super) struct Links(HashMap<u64, Link>);

impl Link {
    /// Where option `o` is in the arrays.
    fn slot(&self, o: u32) -> Option<usize> {
        self.options.iter().position(|&x| x == o)
    }

    /// Sets the log sizes back to the buffers' capacities (the driver overwrote them with
    /// the bytes it filled).
    fn rearm(&mut self) {
        for (size, cap) in [
            (jit::INFO_LOG_BUFFER_SIZE_BYTES, self.info.len()),
            (jit::ERROR_LOG_BUFFER_SIZE_BYTES, self.error.len()),
        ] {
            if let Some(i) = self.slot(size) {
                self.values[i] = cap as *mut c_void;
            }
        }
    }

    /// Writes the driver's result, the logs and the wall time.
    fn report(&self, rc: u32, outs: &mut Writer) {
        outs.put(&rc);
        for (size, buf) in [
            (jit::INFO_LOG_BUFFER_SIZE_BYTES, &self.info),
            (jit::ERROR_LOG_BUFFER_SIZE_BYTES, &self.error),
        ] {
            let filled = self.slot(size).map_or(0, |i| self.values[i] as usize);
            let text = &buf[..filled.min(buf.len())];
            let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
            outs.put_bytes(&text[..end]);
        }
        let wall = self
            .slot(jit::WALL_TIME)
            .map_or(0, |i| self.values[i] as usize as u32);
        outs.put(&wall);
    }
}

/// Reads options that carry numbers (a count, then pairs); a log, wall-time or pointing
/// option is malformed here.
fn numbers(r: &mut Reader<'_>) -> Result<Result<Vec<(u32, u64)>, u32>, DecodeError> {
    let n: u32 = r.get("option count")?;
    if n > jit::OPTION_COUNT {
        return Ok(Err(CUDA_ERROR_INVALID_VALUE));
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let o: u32 = r.get("option")?;
        let v: u64 = r.get("option value")?;
        let carries_number = o < jit::OPTION_COUNT
            && !jit::POINTING.contains(&o)
            && !(jit::WALL_TIME..=jit::ERROR_LOG_BUFFER_SIZE_BYTES).contains(&o);
        if !carries_number {
            return Ok(Err(CUDA_ERROR_INVALID_VALUE));
        }
        out.push((o, v));
    }
    Ok(Ok(out))
}

impl Session {
    /// Answers a `LINK_*` call.
    pub(super) fn link(
        &mut self,
        id: u16,
        r: &mut Reader<'_>,
        outs: &mut Writer,
    ) -> Result<u32, DecodeError> {
        if id == custom::LINK_CREATE {
            return self.link_create(r, outs);
        }
        let handle: u64 = r.get("link state")?;
        match id {
            custom::LINK_DESTROY => {
                r.end()?;
                let Some(link) = self.links.0.remove(&handle) else {
                    return Ok(CUDA_ERROR_INVALID_HANDLE);
                };
                Ok(match self.extra.cuLinkDestroy {
                    // SAFETY: a state this session created.
                    Some(f) => unsafe { f(link.state) },
                    None => CUDA_ERROR_NOT_SUPPORTED,
                })
            }
            custom::LINK_ADD => {
                let kind: u32 = r.get("input kind")?;
                let name = r.get_bytes("input name")?;
                let options = numbers(r)?;
                let data = r.get_bytes("input")?;
                r.end()?;
                if kind > jit::INPUT_NVVM {
                    return Ok(CUDA_ERROR_INVALID_VALUE);
                }
                let Some(add) = self.extra.cuLinkAddData_v2 else {
                    return Ok(CUDA_ERROR_NOT_SUPPORTED);
                };
                let Some(link) = self.links.0.get_mut(&handle) else {
                    return Ok(CUDA_ERROR_INVALID_HANDLE);
                };
                let (options, name) = match (options, CString::new(name)) {
                    (Ok(o), Ok(n)) => (o, n),
                    (Err(e), _) => return Ok(e),
                    (_, Err(_)) => return Ok(CUDA_ERROR_INVALID_VALUE),
                };
                let (mut o, mut v): (Vec<u32>, Vec<*mut c_void>) = options
                    .into_iter()
                    .map(|(o, v)| (o, v as usize as *mut c_void))
                    .unzip();
                link.rearm();
                // SAFETY: the session's state, `data.len()` readable bytes (the driver only
                // reads them), a NUL-terminated name, option arrays of `o.len()` entries.
                let rc = unsafe {
                    add(
                        link.state,
                        kind,
                        data.as_ptr() as *mut c_void,
                        data.len(),
                        name.as_ptr(),
                        o.len() as u32,
                        o.as_mut_ptr(),
                        v.as_mut_ptr(),
                    )
                };
                link.report(rc, outs);
                Ok(CUDA_SUCCESS)
            }
            custom::LINK_COMPLETE => {
                r.end()?;
                let Some(complete) = self.extra.cuLinkComplete else {
                    return Ok(CUDA_ERROR_NOT_SUPPORTED);
                };
                let Some(link) = self.links.0.get_mut(&handle) else {
                    return Ok(CUDA_ERROR_INVALID_HANDLE);
                };
                link.rearm();
                let (mut image, mut size) = (std::ptr::null_mut::<c_void>(), 0usize);
                // SAFETY: the session's state and local out values.
                let rc = unsafe { complete(link.state, &mut image, &mut size) };
                link.report(rc, outs);
                if rc == CUDA_SUCCESS && !image.is_null() {
                    // SAFETY: the driver's image of `size` bytes, the state's until destroyed.
                    outs.put_bytes(unsafe { std::slice::from_raw_parts(image as *const u8, size) });
                } else {
                    outs.put_bytes(&[]);
                }
                Ok(CUDA_SUCCESS)
            }
            _ => Ok(CUDA_ERROR_NOT_SUPPORTED),
        }
    }

    fn link_create(&mut self, r: &mut Reader<'_>, outs: &mut Writer) -> Result<u32, DecodeError> {
        let options = numbers(r)?;
        let info: u32 = r.get("info log capacity")?;
        let error: u32 = r.get("error log capacity")?;
        let wall: u8 = r.get("wall time asked")?;
        r.end()?;
        let options = match options {
            Ok(o) => o,
            Err(e) => return Ok(e),
        };
        if self.links.0.len() >= custom::MAX_LINK_STATES {
            return Ok(CUDA_ERROR_OUT_OF_MEMORY);
        }
        let Some(create) = self.extra.cuLinkCreate_v2 else {
            return Ok(CUDA_ERROR_NOT_SUPPORTED);
        };
        let mut link = Link {
            state: std::ptr::null_mut(),
            options: Vec::new(),
            values: Vec::new(),
            info: vec![0; info.min(jit::MAX_LOG_BYTES) as usize],
            error: vec![0; error.min(jit::MAX_LOG_BYTES) as usize],
        };
        for (o, v) in options {
            link.options.push(o);
            link.values.push(v as usize as *mut c_void);
        }
        for (buffer, size, log) in [
            (
                jit::INFO_LOG_BUFFER,
                jit::INFO_LOG_BUFFER_SIZE_BYTES,
                &mut link.info,
            ),
            (
                jit::ERROR_LOG_BUFFER,
                jit::ERROR_LOG_BUFFER_SIZE_BYTES,
                &mut link.error,
            ),
        ] {
            if !log.is_empty() {
                link.options.extend([buffer, size]);
                link.values
                    .extend([log.as_mut_ptr().cast(), log.len() as *mut c_void]);
            }
        }
        if wall != 0 {
            link.options.push(jit::WALL_TIME);
            link.values.push(std::ptr::null_mut());
        }
        let mut state: CUlinkState = std::ptr::null_mut();
        // SAFETY: option arrays of equal length, kept with the state; log buffers of the
        // capacities given; a local out value.
        let rc = unsafe {
            create(
                link.options.len() as u32,
                link.options.as_mut_ptr(),
                link.values.as_mut_ptr(),
                &mut state,
            )
        };
        link.state = state;
        link.report(rc, outs);
        if rc == CUDA_SUCCESS {
            outs.put(&(state as usize as u64));
            self.links.0.insert(state as usize as u64, link);
        } else {
            outs.put(&0u64);
        }
        Ok(CUDA_SUCCESS)
    }
}
