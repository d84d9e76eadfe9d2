//! The session process: started by the server with the client's socket as standard input, the
//! tenant's limits in its environment and the interception library preloaded. Loads the driver,
//! sends the welcome, then serves until the client goes away.

use crate::polling::PollingReader;
use crate::protocol::{write_frame, STATUS_OK};
use crate::session::Session;
use std::ffi::{c_void, CStr};
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::{AsRawFd, FromRawFd};

/// Serves the client connected on standard input; returns the process's exit status.
pub fn run_on_stdin() -> i32 {
    // The session ends with the process that started it (`gpupool run`, itself ended with the
    // server); if that one is already gone, so is the session.
    // SAFETY: prctl and getppid have no memory preconditions.
    unsafe {
        let parent = libc::getppid();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            return 1;
        }
    }
    // SAFETY: dlopen with a constant name; the handle is kept for the process's life.
    let handle =
        unsafe { libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    // SAFETY: as above. NVML may be missing: its calls then answer LIBRARY_NOT_FOUND.
    let nvml = unsafe {
        libc::dlopen(
            c"libnvidia-ml.so.1".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_GLOBAL,
        )
    };
    let resolve = |name: &CStr| -> *mut c_void {
        let lib = if name.to_bytes().starts_with(b"nvml") {
            nvml
        } else {
            handle
        };
        if lib.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: a valid handle and a NUL-terminated name. With the interception library
        // preloaded, its `dlsym` answers its own functions, so the tenant's limits and view
        // apply.
        unsafe { libc::dlsym(lib, name.as_ptr()) }
    };
    let spin = match crate::polling::spin_from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gpupool serve: {e}");
            return 1;
        }
    };
    let mut session = Session::new(&resolve);
    session.trace = std::env::var_os("GPUPOOL_REMOTE_TRACE").is_some();
    session.images = crate::image_cache::ImageCache::from_env();
    // SAFETY: fd 0 is the client's socket, owned by this process from here on.
    let sock = unsafe { std::fs::File::from_raw_fd(std::io::stdin().as_raw_fd()) };
    let Ok(write_half) = sock.try_clone() else {
        return 1;
    };
    let mut writer = BufWriter::with_capacity(1 << 20, write_half);
    let welcome = session.welcome();
    if write_frame(&mut writer, &welcome.encode())
        .and_then(|_| writer.flush())
        .is_err()
    {
        return 1;
    }
    if welcome.status != STATUS_OK {
        eprintln!("gpupool serve: session refused: {}", welcome.message);
        return 1;
    }
    let reader = BufReader::with_capacity(1 << 20, PollingReader::new(sock, spin));
    let status = match session.serve(reader, writer) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("gpupool serve: session ended: {e}");
            1
        }
    };
    session.finish();
    status
}
