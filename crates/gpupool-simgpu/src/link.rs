//! The JIT linker (`cuLinkCreate`, `cuLinkAddData`, `cuLinkAddFile`, `cuLinkComplete`,
//! `cuLinkDestroy`). Inputs are module images of any kind the simulator loads: simulated
//! modules (given as PTX or as a binary), and real GPU code (PTX, cubins, fat binaries,
//! objects, archives, NVVM). Linking merges the simulated modules' kernels into one simulated
//! module, with the [`CODE_DIRECTIVE`] line when real code was linked too (its kernels are then
//! found by any name); only real code links into PTX-like text that loads as real code. A
//! kernel defined twice is a link error.
//!
//! Logs follow the caller's JIT options: the info log collects a line per input and one for
//! the link, the error log holds the last error, each call rewrites both (sizes written back),
//! and the wall time is the time since the state was created.

use crate::mem::write;
use crate::module::{declares_code, file_image, parse, text_image, Image, Kernel, CODE_DIRECTIVE};
use gpupool_cuda::cu::CUlinkState;
use gpupool_cuda::jit::{self, JitOptions};
use gpupool_cuda::result::*;
use gpupool_cuda::spinlock::{ForkLock, SpinLock};
use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt::Write as _;
use std::time::Instant;

/// Text an output of real code only starts with (it loads as real code).
const CODE_OUTPUT: &str = ".version 8.0\n.target sm_90\n// linked by the gpupool simulated GPU\n";

/// One input: its name and what it brought.
struct Input {
    name: String,
    kernels: Vec<Kernel>,
    code: bool,
}

/// A link state (boxed: its address is the handle, and the output stays in place).
struct State {
    options: JitOptions,
    created: Instant,
    inputs: Vec<Input>,
    info: String,
    error: String,
    output: Option<Vec<u8>>,
}

/// Live link states by handle. Taken around `fork` with the simulator's other locks.
static STATES: SpinLock<Option<HashMap<usize, Box<State>>>> = SpinLock::new(None);

/// This module's locks, for `fork.rs`.
pub fn fork_locks() -> [&'static dyn ForkLock; 1] {
    [&STATES]
}

impl State {
    /// Adds an image of input kind `kind`.
    fn add(&mut self, kind: u32, name: &str, bytes: &[u8]) -> Result<(), (u32, String)> {
        if self.output.is_some() {
            return Err((CUDA_ERROR_ILLEGAL_STATE, "the link is complete".into()));
        }
        let refused = match kind {
            jit::INPUT_PTX => CUDA_ERROR_INVALID_PTX,
            _ => CUDA_ERROR_INVALID_IMAGE,
        };
        let image = if kind == jit::INPUT_PTX {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            std::str::from_utf8(&bytes[..end])
                .map(text_image)
                .map_err(|_| (refused, format!("{name}: not text")))?
        } else if bytes.starts_with(b"!<arch>\n") || kind == jit::INPUT_NVVM {
            Image::Code
        } else {
            file_image(bytes).map_err(|e| (e, format!("{name}: not a module image")))?
        };
        let input = match image {
            Image::Code => Input {
                name: name.into(),
                kernels: Vec::new(),
                code: true,
            },
            Image::Simulated(text) => Input {
                name: name.into(),
                kernels: parse(text).map_err(|why| (refused, format!("{name}: {why}")))?,
                code: declares_code(text),
            },
        };
        let _ = writeln!(
            self.info,
            "{}: {}",
            input.name,
            match (input.kernels.len(), input.code) {
                (0, true) => "GPU code".to_string(),
                (n, code) => format!("{n} kernels{}", if code { " and GPU code" } else { "" }),
            }
        );
        self.inputs.push(input);
        Ok(())
    }

    /// Links the inputs into the output image (NUL-terminated text).
    fn complete(&mut self) -> Result<&[u8], (u32, String)> {
        if self.output.is_none() {
            let image = self.link()?;
            let _ = writeln!(self.info, "linked {} inputs", self.inputs.len());
            self.output = Some(image);
        }
        Ok(self.output.as_deref().unwrap_or_default())
    }

    fn link(&self) -> Result<Vec<u8>, (u32, String)> {
        if self.inputs.is_empty() {
            return Err((CUDA_ERROR_INVALID_VALUE, "nothing to link".into()));
        }
        let mut defined: HashMap<&str, &str> = HashMap::new();
        for input in &self.inputs {
            for k in &input.kernels {
                if let Some(first) = defined.insert(&k.name, &input.name) {
                    return Err((
                        CUDA_ERROR_INVALID_IMAGE,
                        format!(
                            "kernel {} defined in {} and again in {}",
                            k.name, first, input.name
                        ),
                    ));
                }
            }
        }
        let code = self.inputs.iter().any(|i| i.code);
        let mut text = if defined.is_empty() {
            CODE_OUTPUT.to_string()
        } else {
            let mut t = format!("{}\n", crate::module::HEADER);
            if code {
                t.push_str(CODE_DIRECTIVE);
                t.push('\n');
            }
            for k in self.inputs.iter().flat_map(|i| &i.kernels) {
                let _ = write!(t, "kernel {} {}ns", k.name, k.base_ns);
                if k.per_block_ns > 0 {
                    let _ = write!(t, " per-block={}ns", k.per_block_ns);
                }
                if k.reads_buffer {
                    t.push_str(" reads=buffer");
                }
                t.push('\n');
            }
            t
        };
        text.push('\0');
        Ok(text.into_bytes())
    }

    /// Writes the logs and the wall time where the caller's options asked.
    fn report(&self) {
        let ms = self.created.elapsed().as_secs_f32() * 1e3;
        // SAFETY: the caller keeps the buffers and option values of `cuLinkCreate` valid for
        // the life of the state.
        unsafe {
            self.options
                .report(self.info.as_bytes(), self.error.as_bytes(), ms)
        };
    }
}

/// Runs `f` on the state behind `handle`, then reports its logs; an error goes to the error
/// log.
fn with_state(
    handle: CUlinkState,
    f: impl FnOnce(&mut State) -> Result<u32, (u32, String)>,
) -> u32 {
    let mut states = STATES.lock();
    let Some(state) = states.as_mut().and_then(|m| m.get_mut(&(handle as usize))) else {
        return CUDA_ERROR_INVALID_HANDLE;
    };
    let rc = match f(state) {
        Ok(rc) => {
            state.error.clear();
            rc
        }
        Err((rc, why)) => {
            if crate::machine::tracing() {
                eprintln!("gpupool simulated GPU: link: {why}");
            }
            state.error = why;
            rc
        }
    };
    state.report();
    rc
}

/// `cuLinkCreate_v2`.
pub unsafe fn link_create(
    n: u32,
    options: *mut u32,
    values: *mut *mut c_void,
    out: *mut CUlinkState,
) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if let Err(e) = crate::ctx::require_current() {
        return e;
    }
    // SAFETY: the caller's arrays of `n` entries.
    let options = match unsafe { JitOptions::read(n, options, values) } {
        Ok(o) => o,
        Err(e) => return e,
    };
    let state = Box::new(State {
        options,
        created: Instant::now(),
        inputs: Vec::new(),
        info: String::new(),
        error: String::new(),
        output: None,
    });
    let handle = &*state as *const State as usize;
    STATES
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(handle, state);
    write(out, handle as CUlinkState)
}

/// Adds `bytes` named `name` to the state (options checked, then unused).
///
/// # Safety
/// `options` / `values` hold `n` entries.
unsafe fn add(
    handle: CUlinkState,
    kind: u32,
    bytes: &[u8],
    name: &[u8],
    n: u32,
    options: *mut u32,
    values: *mut *mut c_void,
) -> u32 {
    // SAFETY: the caller's arrays.
    if let Err(e) = unsafe { JitOptions::read(n, options, values) } {
        return e;
    }
    let name = String::from_utf8_lossy(name);
    with_state(handle, |s| s.add(kind, &name, bytes).map(|()| CUDA_SUCCESS))
}

gpupool_cuda::link_add_entry_points!(add);

/// `cuLinkComplete`: the image stays the state's until it is destroyed.
pub unsafe fn link_complete(handle: CUlinkState, image: *mut *mut c_void, size: *mut usize) -> u32 {
    if image.is_null() || size.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    with_state(handle, |s| {
        let out = s.complete()?;
        // SAFETY: non-null out pointers of the caller.
        unsafe {
            *image = out.as_ptr() as *mut c_void;
            *size = out.len();
        }
        Ok(CUDA_SUCCESS)
    })
}

/// `cuLinkDestroy`.
pub unsafe fn link_destroy(handle: CUlinkState) -> u32 {
    let gone = STATES
        .lock()
        .as_mut()
        .and_then(|m| m.remove(&(handle as usize)));
    match gone {
        Some(_) => CUDA_SUCCESS,
        None => CUDA_ERROR_INVALID_HANDLE,
    }
}
