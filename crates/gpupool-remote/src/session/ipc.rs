//! Interprocess handles through a server (`IPC_*` calls): a client exporting device memory or
//! an event gets a handle naming an entry of its tenant's registry, a folder the server gives
//! every session of that tenant and no other. The entry holds the driver's own handle; another
//! session of the same tenant opening the client's handle reads it there. A handle of another
//! tenant names no entry of this registry, so it opens nothing; the driver's handles never
//! reach a client.

use super::Session;
use crate::calls::custom;
use crate::wire::{DecodeError, Reader, Writer};
use gpupool_cuda::cu::CUevent;
use gpupool_cuda::ipc_handle::{self, event_handle, mem_handle};
use gpupool_cuda::result::*;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Environment variable naming the tenant's registry folder (set by `gpupool serve`).
pub const ENV_DIR: &str = "GPUPOOL_REMOTE_IPC_DIR";
/// Most handles one session exports.
pub const MAX_EXPORTS: usize = 4096;

const MAGIC: [u8; 8] = *b"GPREMIPC";
/// What a handle stands for (bytes 8..12 of the client's handle, 0..4 of an entry).
const MEMORY: u32 = 1;
const EVENT: u32 = 2;
/// An entry: what it stands for, then the driver's 64-byte handle.
const ENTRY_LEN: usize = 4 + 64;

/// The session's side of its tenant's registry.
#[derive(Default)]
pub(super) struct Ipc {
    /// The tenant's registry (none: interprocess handles are not served).
    dir: Option<PathBuf>,
    /// Entries this session wrote: the driver's handle and kind → the entry's id.
    exported: HashMap<(u32, [u8; 64]), [u8; 16]>,
    /// Memory of other sessions opened here: address → bytes.
    opened: BTreeMap<u64, u64>,
    /// How often each address in `opened` was opened (the driver counts opens too).
    opens: HashMap<u64, u32>,
}

/// The client's handle for entry `id`.
fn client_handle(what: u32, id: &[u8; 16]) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&what.to_le_bytes());
    b[16..32].copy_from_slice(id);
    b
}

/// The entry a client's handle names (`None`: no handle of kind `what`).
fn entry_id(b: &[u8; 64], what: u32) -> Option<[u8; 16]> {
    let kind = u32::from_le_bytes(b[8..12].try_into().ok()?);
    let rest_zero = b[12..16].iter().chain(&b[32..]).all(|&x| x == 0);
    (b[..8] == MAGIC && kind == what && rest_zero).then(|| b[16..32].try_into().ok())?
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Ipc {
    /// The registry named by the environment, if any.
    pub(super) fn from_env() -> Ipc {
        Ipc {
            dir: std::env::var_os(ENV_DIR).map(PathBuf::from),
            ..Ipc::default()
        }
    }

    /// Whether `[ptr, ptr + len)` lies in memory opened here.
    pub(super) fn holds(&self, ptr: u64, len: u64) -> bool {
        super::inside(&self.opened, ptr, len)
    }

    /// Writes an entry for the driver's handle `real` (once per handle) and returns the
    /// client's handle.
    fn export(&mut self, what: u32, real: [u8; 64]) -> Result<[u8; 64], u32> {
        let dir = self.dir.as_ref().ok_or(CUDA_ERROR_NOT_SUPPORTED)?;
        if let Some(id) = self.exported.get(&(what, real)) {
            return Ok(client_handle(what, id));
        }
        if self.exported.len() >= MAX_EXPORTS {
            return Err(CUDA_ERROR_OUT_OF_MEMORY);
        }
        let nonce = crate::handshake::nonce().map_err(|_| CUDA_ERROR_OPERATING_SYSTEM)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&nonce[..16]);
        let mut entry = Vec::with_capacity(ENTRY_LEN);
        entry.extend_from_slice(&what.to_le_bytes());
        entry.extend_from_slice(&real);
        let path = dir.join(hex(&id));
        let partial = dir.join(format!(".{}", hex(&id)));
        std::fs::write(&partial, &entry)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|_| CUDA_ERROR_OPERATING_SYSTEM)?;
        self.exported.insert((what, real), id);
        Ok(client_handle(what, &id))
    }

    /// [`Ipc::export`], the client's handle written into the reply.
    fn export_into(&mut self, what: u32, real: [u8; 64], outs: &mut Writer) -> u32 {
        match self.export(what, real) {
            Ok(b) => {
                outs.put(&b);
                CUDA_SUCCESS
            }
            Err(e) => e,
        }
    }

    /// The driver's handle behind a client's handle of kind `what` (`INVALID_VALUE` for a
    /// handle naming no entry of this tenant).
    fn lookup(&self, what: u32, handle: &[u8; 64]) -> Result<[u8; 64], u32> {
        let dir = self.dir.as_ref().ok_or(CUDA_ERROR_NOT_SUPPORTED)?;
        let id = entry_id(handle, what).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let entry = std::fs::read(dir.join(hex(&id))).map_err(|_| CUDA_ERROR_INVALID_VALUE)?;
        if entry.len() != ENTRY_LEN || entry[..4] != what.to_le_bytes() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        Ok(entry[4..].try_into().expect("64 bytes"))
    }

    /// Removes the entries this session wrote (its memory and events go with it).
    pub(super) fn finish(&mut self) {
        if let Some(dir) = &self.dir {
            for id in self.exported.values() {
                let _ = std::fs::remove_file(dir.join(hex(id)));
            }
        }
        self.exported.clear();
    }
}

impl Session {
    /// Answers an `IPC_*` call.
    pub(super) fn ipc(
        &mut self,
        id: u16,
        r: &mut Reader<'_>,
        outs: &mut Writer,
    ) -> Result<u32, DecodeError> {
        let rc = match id {
            custom::IPC_GET_MEM_HANDLE => {
                let p: u64 = r.get("address")?;
                r.end()?;
                if !self.ranges.contains_key(&p) {
                    return Ok(CUDA_ERROR_INVALID_VALUE);
                }
                let mut h = mem_handle([0; 64]);
                // SAFETY: an allocation of this session and a local out value.
                let rc = unsafe {
                    extra_or!(self, cuIpcGetMemHandle, CUDA_ERROR_NOT_SUPPORTED)(&mut h, p)
                };
                if rc != CUDA_SUCCESS {
                    return Ok(rc);
                }
                self.ipc
                    .export_into(MEMORY, ipc_handle::bytes(&h.reserved), outs)
            }
            custom::IPC_OPEN_MEM_HANDLE => {
                let (handle, flags): ([u8; 64], u32) = (r.get("handle")?, r.get("flags")?);
                r.end()?;
                let real = match self.ipc.lookup(MEMORY, &handle) {
                    Ok(h) => h,
                    Err(e) => return Ok(e),
                };
                let mut p = 0;
                // SAFETY: a local out value and a handle the driver gave this tenant.
                let rc = unsafe {
                    extra_or!(self, cuIpcOpenMemHandle_v2, CUDA_ERROR_NOT_SUPPORTED)(
                        &mut p,
                        mem_handle(real),
                        flags,
                    )
                };
                if rc != CUDA_SUCCESS {
                    return Ok(rc);
                }
                let (mut base, mut size) = (0, 0usize);
                // SAFETY: local out values for an address the driver just mapped.
                let rc = unsafe {
                    extra_or!(self, cuMemGetAddressRange_v2, CUDA_ERROR_NOT_SUPPORTED)(
                        &mut base, &mut size, p,
                    )
                };
                let size = if rc == CUDA_SUCCESS { size as u64 } else { 1 };
                self.ipc.opened.insert(p, size);
                *self.ipc.opens.entry(p).or_insert(0) += 1;
                outs.put(&p);
                outs.put(&size);
                CUDA_SUCCESS
            }
            custom::IPC_CLOSE_MEM_HANDLE => {
                let p: u64 = r.get("address")?;
                r.end()?;
                if !self.ipc.opens.contains_key(&p) {
                    return Ok(CUDA_ERROR_INVALID_VALUE);
                }
                // SAFETY: an address this session opened.
                let rc =
                    unsafe { extra_or!(self, cuIpcCloseMemHandle, CUDA_ERROR_NOT_SUPPORTED)(p) };
                if rc == CUDA_SUCCESS {
                    let opens = self.ipc.opens.get_mut(&p).expect("checked above");
                    *opens -= 1;
                    outs.put(&*opens);
                    if *opens == 0 {
                        self.ipc.opens.remove(&p);
                        self.ipc.opened.remove(&p);
                    }
                }
                rc
            }
            custom::IPC_GET_EVENT_HANDLE => {
                let e: u64 = r.get("event")?;
                r.end()?;
                let e = match self.real(crate::calls::Class::Event, e) {
                    Some(e) if e != 0 => e,
                    _ => return Ok(CUDA_ERROR_INVALID_HANDLE),
                };
                let mut h = event_handle([0; 64]);
                // SAFETY: an event of this session and a local out value.
                let rc = unsafe {
                    extra_or!(self, cuIpcGetEventHandle, CUDA_ERROR_NOT_SUPPORTED)(
                        &mut h,
                        e as usize as CUevent,
                    )
                };
                if rc != CUDA_SUCCESS {
                    return Ok(rc);
                }
                self.ipc
                    .export_into(EVENT, ipc_handle::bytes(&h.reserved), outs)
            }
            custom::IPC_OPEN_EVENT_HANDLE => {
                let (handle, name): ([u8; 64], u64) = (r.get("handle")?, r.get("event name")?);
                r.end()?;
                if !self.handles.name_free(crate::calls::Class::Event, name) {
                    return Ok(CUDA_ERROR_INVALID_VALUE);
                }
                let real = match self.ipc.lookup(EVENT, &handle) {
                    Ok(h) => h,
                    Err(e) => return Ok(e),
                };
                let mut e: CUevent = std::ptr::null_mut();
                // SAFETY: a local out value and a handle the driver gave this tenant.
                let rc = unsafe {
                    extra_or!(self, cuIpcOpenEventHandle, CUDA_ERROR_NOT_SUPPORTED)(
                        &mut e,
                        event_handle(real),
                    )
                };
                if rc == CUDA_SUCCESS {
                    self.handles
                        .name(crate::calls::Class::Event, name, e as usize as u64);
                }
                rc
            }
            _ => CUDA_ERROR_NOT_SUPPORTED,
        };
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(name: &str) -> (Ipc, PathBuf) {
        let dir = std::env::temp_dir().join(format!("gpupool-ipc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ipc = Ipc {
            dir: Some(dir.clone()),
            ..Ipc::default()
        };
        (ipc, dir)
    }

    #[test]
    fn a_tenant_opens_its_own_entries_and_nothing_else() {
        let (mut alpha, alpha_dir) = registry("alpha");
        let (beta, beta_dir) = registry("beta");
        let real = [7u8; 64];
        let handle = alpha.export(MEMORY, real).unwrap();
        assert!(
            !handle.windows(64).any(|w| w == real),
            "the driver's handle stays here"
        );
        assert_eq!(
            alpha.export(MEMORY, real),
            Ok(handle),
            "one entry per handle"
        );
        let other = Ipc {
            dir: Some(alpha_dir.clone()),
            ..Ipc::default()
        };
        assert_eq!(other.lookup(MEMORY, &handle), Ok(real), "same tenant");
        assert_eq!(
            beta.lookup(MEMORY, &handle),
            Err(CUDA_ERROR_INVALID_VALUE),
            "another tenant's registry has no such entry"
        );
        assert_eq!(
            other.lookup(EVENT, &handle),
            Err(CUDA_ERROR_INVALID_VALUE),
            "a memory handle is no event handle"
        );
        let mut forged = handle;
        forged[20] ^= 1;
        assert_eq!(other.lookup(MEMORY, &forged), Err(CUDA_ERROR_INVALID_VALUE));
        let mut padded = handle;
        padded[40] = 1;
        assert_eq!(other.lookup(MEMORY, &padded), Err(CUDA_ERROR_INVALID_VALUE));
        alpha.finish();
        assert_eq!(
            other.lookup(MEMORY, &handle),
            Err(CUDA_ERROR_INVALID_VALUE),
            "entries go with their session"
        );
        for d in [alpha_dir, beta_dir] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn malformed_entries_and_a_missing_registry_are_refused() {
        let (mut ipc, dir) = registry("malformed");
        let handle = ipc.export(EVENT, [1; 64]).unwrap();
        let id = entry_id(&handle, EVENT).unwrap();
        std::fs::write(dir.join(hex(&id)), b"short").unwrap();
        assert_eq!(ipc.lookup(EVENT, &handle), Err(CUDA_ERROR_INVALID_VALUE));
        let none = Ipc::default();
        assert_eq!(none.lookup(EVENT, &handle), Err(CUDA_ERROR_NOT_SUPPORTED));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
