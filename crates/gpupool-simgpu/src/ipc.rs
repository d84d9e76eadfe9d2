//! Interprocess handles: device memory (`cuIpcGetMemHandle`, `cuIpcOpenMemHandle`,
//! `cuIpcCloseMemHandle`) and events (`cuIpcGetEventHandle`, `cuIpcOpenEventHandle`) shared
//! between processes of the simulated machine.
//!
//! What is shared lives in a sealed memfd of the exporting process: an exported allocation is
//! moved onto one in place (its bytes kept, its address unchanged), and an interprocess event
//! keeps its record there from its creation. A handle names the exporting process, the
//! descriptor and a random key that the file's last page holds too. An importer opens the
//! descriptor through `/proc`, and refuses a file whose size, seals or key differ from the
//! handle's, so a forged handle or a descriptor number reused after a free opens nothing (and
//! no mapping can outgrow its file: the file cannot shrink). Bytes another thread writes into
//! an allocation while its first export copies it may be lost.

use crate::ctx::require_current;
use crate::mem::{find, register, result, write, Alloc, Kind};
use crate::stream::{event_ref, ok_or, Event, EventMark};
use gpupool_cuda::cu::{CUdeviceptr, CUevent, CUipcEventHandle_st, CUipcMemHandle_st};
use gpupool_cuda::ipc_handle;
use gpupool_cuda::result::*;
use gpupool_cuda::spinlock::{ForkLock, SpinLock};
use std::collections::BTreeMap;
use std::ffi::c_void;

const MAGIC: [u8; 8] = *b"GPSIMIPC";
const PAGE: u64 = 4096;
/// `CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS`, the one flag `cuIpcOpenMemHandle` takes.
const LAZY_ENABLE_PEER_ACCESS: u32 = 1;

/// What a handle stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Memory = 1,
    Event = 2,
}

/// A handle's contents (64 bytes on the wire of the driver API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Handle {
    what: What,
    pid: u32,
    fd: i32,
    /// Bytes shared before the key's page.
    len: u64,
    /// Bytes the allocation was asked for (memory).
    size: u64,
    /// Physical index of the device (memory).
    device: u64,
    key: [u8; 16],
}

impl Handle {
    fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&(self.what as u32).to_le_bytes());
        b[12..16].copy_from_slice(&self.pid.to_le_bytes());
        b[16..20].copy_from_slice(&self.fd.to_le_bytes());
        b[24..32].copy_from_slice(&self.len.to_le_bytes());
        b[32..40].copy_from_slice(&self.size.to_le_bytes());
        b[40..48].copy_from_slice(&self.device.to_le_bytes());
        b[48..64].copy_from_slice(&self.key);
        b
    }

    /// Reads a handle of kind `what`; anything else is `CUDA_ERROR_INVALID_VALUE`.
    fn decode(b: &[u8; 64], what: What) -> Result<Handle, u32> {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if b[..8] != MAGIC || u32_at(8) != what as u32 || u32_at(20) != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let h = Handle {
            what,
            pid: u32_at(12),
            fd: u32_at(16) as i32,
            len: u64_at(24),
            size: u64_at(32),
            device: u64_at(40),
            key: b[48..64].try_into().expect("16 bytes"),
        };
        let sane = h.pid != 0
            && h.fd >= 0
            && h.len > 0
            && h.len.is_multiple_of(PAGE)
            && h.len
                .checked_add(PAGE)
                .is_some_and(|n| n <= isize::MAX as u64)
            && h.size <= h.len;
        if sane {
            Ok(h)
        } else {
            Err(CUDA_ERROR_INVALID_VALUE)
        }
    }
}

/// A file this process shares: its descriptor and key.
#[derive(Debug, Clone, Copy)]
pub struct Shared {
    fd: i32,
    key: [u8; 16],
}

impl Shared {
    /// Creates a sealed file of `len` bytes (a multiple of the page) plus the key's page; with
    /// `fill`, the resident pages of the `len` bytes at `fill` are copied into it.
    fn create(len: u64, fill: Option<u64>) -> Result<Shared, u32> {
        let mut key = [0u8; 16];
        // SAFETY: getrandom writes at most 16 bytes into the buffer.
        let got = unsafe { libc::getrandom(key.as_mut_ptr() as *mut c_void, 16, 0) };
        if got != 16 {
            return Err(CUDA_ERROR_OPERATING_SYSTEM);
        }
        let fd = crate::sealed_file::create(c"gpupool-sim-ipc", len + PAGE)
            .ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        let shared = Shared { fd, key };
        let built = (|| {
            if let Some(base) = fill {
                copy_resident(fd, base, len)?;
            }
            let mut trailer = [0u8; 24];
            trailer[..8].copy_from_slice(&MAGIC);
            trailer[8..].copy_from_slice(&key);
            pwrite_all(fd, &trailer, len)
        })();
        built.map(|()| shared).inspect_err(|_| shared.close())
    }

    /// Opens the file a handle names in its process and checks it is that one.
    fn open(h: &Handle) -> Result<i32, u32> {
        let path = format!("/proc/{}/fd/{}\0", h.pid, h.fd);
        // SAFETY: a NUL-terminated path; result checked.
        let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let checked = (|| {
            if crate::sealed_file::sealed_size(fd) != Some(h.len + PAGE) {
                return Err(CUDA_ERROR_INVALID_VALUE);
            }
            let mut trailer = [0u8; 24];
            // SAFETY: reading 24 bytes into our buffer.
            let n = unsafe { libc::pread(fd, trailer.as_mut_ptr().cast(), 24, h.len as i64) };
            if n != 24 || trailer[..8] != MAGIC || trailer[8..] != h.key {
                return Err(CUDA_ERROR_INVALID_VALUE);
            }
            Ok(fd)
        })();
        checked.inspect_err(|_| {
            // SAFETY: closing the descriptor we opened.
            unsafe { libc::close(fd) };
        })
    }

    fn close(&self) {
        // SAFETY: closing our descriptor once.
        unsafe { libc::close(self.fd) };
    }
}

fn pwrite_all(fd: i32, bytes: &[u8], at: u64) -> Result<(), u32> {
    let mut done = 0usize;
    while done < bytes.len() {
        // SAFETY: the rest of `bytes`, at a checked offset of our file.
        let n = unsafe {
            libc::pwrite(
                fd,
                bytes[done..].as_ptr().cast(),
                bytes.len() - done,
                (at + done as u64) as i64,
            )
        };
        if n <= 0 {
            return Err(CUDA_ERROR_OUT_OF_MEMORY);
        }
        done += n as usize;
    }
    Ok(())
}

/// Copies the pages of `[base, base + len)` that were ever written (pages never touched read
/// as zeros, as the new file does).
fn copy_resident(fd: i32, base: u64, len: u64) -> Result<(), u32> {
    let pages = (len / PAGE) as usize;
    let mut resident = vec![0u8; pages];
    // SAFETY: our mapping of `len` bytes; one byte per page.
    if unsafe { libc::mincore(base as *mut c_void, len as usize, resident.as_mut_ptr()) } != 0 {
        resident.iter_mut().for_each(|r| *r = 1);
    }
    let mut i = 0;
    while i < pages {
        if resident[i] & 1 == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < pages && resident[i] & 1 != 0 {
            i += 1;
        }
        let at = start as u64 * PAGE;
        // SAFETY: pages of our own mapping.
        let bytes = unsafe {
            std::slice::from_raw_parts((base + at) as *const u8, (i - start) * PAGE as usize)
        };
        pwrite_all(fd, bytes, at)?;
    }
    Ok(())
}

fn map_shared(fd: i32, len: u64, at: Option<u64>) -> Result<u64, u32> {
    let fixed = if at.is_some() { libc::MAP_FIXED } else { 0 };
    // SAFETY: a mapping of the first `len` bytes of a sealed file at least that long; at a
    // fixed address only over our own mapping of the same length.
    let p = unsafe {
        libc::mmap(
            at.unwrap_or(0) as *mut c_void,
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | fixed,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(CUDA_ERROR_OUT_OF_MEMORY)
    } else {
        Ok(p as u64)
    }
}

fn pid() -> u32 {
    std::process::id()
}

/// Allocations of this process moved onto a shared file: base → (allocation id, file).
static EXPORTED: SpinLock<BTreeMap<u64, (u64, Shared)>> = SpinLock::new(BTreeMap::new());

/// Allocations of other processes mapped here: base → (key, references).
static OPENED: SpinLock<BTreeMap<u64, ([u8; 16], u64)>> = SpinLock::new(BTreeMap::new());

/// This module's locks, in the order they nest (for fork handlers); each is taken before the
/// memory registry's.
pub fn fork_locks() -> [&'static dyn ForkLock; 2] {
    [&EXPORTED, &OPENED]
}

/// Forgets the export of the allocation at `base`, freed: whether it had one (its mapping is
/// then shared with importers and must not be reused).
pub fn forget_export(base: u64) -> bool {
    let gone = EXPORTED.lock().remove(&base);
    gone.inspect(|(_, s)| s.close()).is_some()
}

/// `cuIpcGetMemHandle`: the allocation made by `cuMemAlloc` / `cuMemAllocPitch` that holds
/// `dptr` (other kinds are `CUDA_ERROR_INVALID_VALUE`).
pub unsafe fn ipc_get_mem_handle(out: *mut CUipcMemHandle_st, dptr: CUdeviceptr) -> u32 {
    result((|| {
        require_current()?;
        if out.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let (base, a) = find(dptr, 0).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        if a.kind != Kind::Device {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let device = crate::ctx::device(a.ordinal)?.1.physical as u64;
        let mut exported = EXPORTED.lock();
        let shared = match exported.get(&base) {
            Some((id, s)) if *id == a.id => *s,
            _ => {
                let s = Shared::create(a.mapped, Some(base))?;
                if let Err(e) = map_shared(s.fd, a.mapped, Some(base)) {
                    s.close();
                    return Err(e);
                }
                exported.insert(base, (a.id, s));
                s
            }
        };
        let h = Handle {
            what: What::Memory,
            pid: pid(),
            fd: shared.fd,
            len: a.mapped,
            size: a.size,
            device,
            key: shared.key,
        };
        Ok(write(out, ipc_handle::mem_handle(h.encode())))
    })())
}

/// The ordinal of physical device `physical` in this process.
fn ordinal_of(physical: u64) -> Result<i32, u32> {
    let m = crate::ctx::initialised()?;
    let i = m.visible.iter().position(|&p| p as u64 == physical);
    i.map(|i| i as i32).ok_or(CUDA_ERROR_INVALID_DEVICE)
}

/// `cuIpcOpenMemHandle_v2`: maps another process's allocation (not charged here: it stays
/// the exporter's); the same handle opened again gives the same address. A handle of this
/// process is `CUDA_ERROR_INVALID_CONTEXT`, as on a real driver.
pub unsafe fn ipc_open_mem_handle(
    out: *mut CUdeviceptr,
    handle: CUipcMemHandle_st,
    flags: u32,
) -> u32 {
    result((|| {
        let ctx = require_current()?;
        if out.is_null() || flags & !LAZY_ENABLE_PEER_ACCESS != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let h = Handle::decode(&ipc_handle::bytes(&handle.reserved), What::Memory)?;
        if h.pid == pid() {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        let ordinal = ordinal_of(h.device)?;
        let mut opened = OPENED.lock();
        if let Some((base, (_, refs))) = opened.iter_mut().find(|(_, (k, _))| *k == h.key) {
            *refs += 1;
            return Ok(write(out, *base));
        }
        let fd = Shared::open(&h)?;
        let mapped = map_shared(fd, h.len, None);
        // SAFETY: the mapping (if any) keeps the file; the descriptor is ours.
        unsafe { libc::close(fd) };
        let base = mapped?;
        register(
            base,
            Alloc {
                size: h.size,
                mapped: h.len,
                ordinal,
                ctx: ctx as *const _ as usize,
                kind: Kind::Imported,
                id: 0,
            },
        );
        opened.insert(base, (h.key, 1));
        Ok(write(out, base))
    })())
}

/// `cuIpcCloseMemHandle`: unmaps at the last close of what `cuIpcOpenMemHandle` gave.
pub unsafe fn ipc_close_mem_handle(dptr: CUdeviceptr) -> u32 {
    result((|| {
        require_current()?;
        let mut opened = OPENED.lock();
        let refs = &mut opened.get_mut(&dptr).ok_or(CUDA_ERROR_INVALID_VALUE)?.1;
        *refs -= 1;
        if *refs == 0 {
            opened.remove(&dptr);
            let a = crate::mem::unregister_if(dptr, |a| a.kind == Kind::Imported)?;
            crate::mem::unmap(dptr, a.mapped);
        }
        Ok(CUDA_SUCCESS)
    })())
}

/// Places the record of a new interprocess event in a shared file: its mark's address and
/// the file.
pub fn shared_event_mark() -> Result<(u64, Shared), u32> {
    let s = Shared::create(PAGE, None)?;
    match map_shared(s.fd, PAGE, None) {
        Ok(at) => Ok((at, s)),
        Err(e) => {
            s.close();
            Err(e)
        }
    }
}

/// `cuIpcGetEventHandle`: only events created with `CU_EVENT_INTERPROCESS`.
pub unsafe fn ipc_get_event_handle(out: *mut CUipcEventHandle_st, e: CUevent) -> u32 {
    ok_or(event_ref(e).and_then(|ev| {
        let s = ev.shared_file().ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let h = Handle {
            what: What::Event,
            pid: pid(),
            fd: s.fd,
            len: PAGE,
            size: 0,
            device: 0,
            key: s.key,
        };
        Ok(write(out, ipc_handle::event_handle(h.encode())))
    }))
}

/// `cuIpcOpenEventHandle`: an event of this process that reads and records the exporter's
/// mark (a handle of this process is `CUDA_ERROR_INVALID_CONTEXT`).
pub unsafe fn ipc_open_event_handle(out: *mut CUevent, handle: CUipcEventHandle_st) -> u32 {
    result((|| {
        require_current()?;
        if out.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let h = Handle::decode(&ipc_handle::bytes(&handle.reserved), What::Event)?;
        if h.pid == pid() {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        if h.len != PAGE || h.size != 0 || h.device != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let fd = Shared::open(&h)?;
        let mapped = map_shared(fd, PAGE, None);
        // SAFETY: the mapping (if any) keeps the file; the descriptor is ours.
        unsafe { libc::close(fd) };
        let mark = mapped? as *const EventMark;
        Ok(write(out, Event::imported(mark)))
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handle {
        Handle {
            what: What::Memory,
            pid: 42,
            fd: 7,
            len: 2 << 20,
            size: 1000,
            device: 1,
            key: [9; 16],
        }
    }

    #[test]
    fn handles_read_back_what_was_written() {
        let h = sample();
        assert_eq!(Handle::decode(&h.encode(), What::Memory), Ok(h));
    }

    #[test]
    fn malformed_handles_are_refused() {
        let good = sample().encode();
        assert_eq!(
            Handle::decode(&good, What::Event),
            Err(CUDA_ERROR_INVALID_VALUE),
            "a memory handle is no event handle"
        );
        let mut cases = Vec::new();
        let mut m = good;
        m[0] ^= 1;
        cases.push(("magic", m));
        for (name, h) in [
            ("pid 0", Handle { pid: 0, ..sample() }),
            ("negative fd", Handle { fd: -1, ..sample() }),
            ("empty", Handle { len: 0, ..sample() }),
            (
                "not whole pages",
                Handle {
                    len: 4097,
                    ..sample()
                },
            ),
            (
                "size past the mapping",
                Handle {
                    size: 3 << 20,
                    ..sample()
                },
            ),
            (
                "overflowing length",
                Handle {
                    len: u64::MAX - 4095,
                    ..sample()
                },
            ),
        ] {
            cases.push((name, h.encode()));
        }
        for (name, bytes) in cases {
            assert_eq!(
                Handle::decode(&bytes, What::Memory),
                Err(CUDA_ERROR_INVALID_VALUE),
                "{name}"
            );
        }
    }

    #[test]
    fn a_file_opens_only_with_its_key_and_length() {
        let len = 2 * PAGE;
        let src = crate::mem::map_anonymous(len).unwrap();
        // SAFETY: our fresh mapping of two pages.
        unsafe { *((src + PAGE + 5) as *mut u8) = 77 };
        let s = Shared::create(len, Some(src)).unwrap();
        let h = Handle {
            what: What::Memory,
            pid: pid(),
            fd: s.fd,
            len,
            size: len,
            device: 0,
            key: s.key,
        };
        let fd = Shared::open(&h).expect("the right handle opens");
        let at = map_shared(fd, len, None).unwrap();
        // SAFETY: the shared mapping of two pages.
        assert_eq!(
            unsafe { *((at + PAGE + 5) as *const u8) },
            77,
            "bytes copied"
        );
        // SAFETY: closing and unmapping what this test made.
        unsafe { libc::close(fd) };
        let mut wrong_key = h;
        wrong_key.key[0] ^= 1;
        assert_eq!(Shared::open(&wrong_key), Err(CUDA_ERROR_INVALID_VALUE));
        let wrong_len = Handle { len: PAGE, ..h };
        assert_eq!(Shared::open(&wrong_len), Err(CUDA_ERROR_INVALID_VALUE));
        let no_fd = Handle { fd: 100_000, ..h };
        assert_eq!(Shared::open(&no_fd), Err(CUDA_ERROR_INVALID_VALUE));
        // SAFETY: the file refuses to shrink, so no importer's mapping can lose its pages.
        assert_ne!(unsafe { libc::ftruncate(s.fd, 0) }, 0);
        s.close();
        crate::mem::unmap(at, len);
        crate::mem::unmap(src, len);
    }
}
