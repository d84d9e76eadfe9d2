//! XID errors through NVML's event API, for the node agent's card health: a thread waits on an
//! event set registered for every card's XID critical errors and records the cards that had
//! one a card cannot recover from without a reset.

use anyhow::{bail, Result};
use gpupool_observe::nvml::NvmlLib;
use std::collections::HashSet;
use std::ffi::{c_char, c_uint, c_void, CStr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// XIDs an application causes (its own faults: illegal address, timeouts, resets it asked
/// for): the card is fine, as NVIDIA's own device plugin reads them.
pub const APPLICATION_XIDS: [u64; 6] = [13, 31, 43, 45, 68, 109];

/// Whether an XID means the card needs attention (it is then reported unhealthy).
pub fn critical(xid: u64) -> bool {
    !APPLICATION_XIDS.contains(&xid)
}

/// `nvmlEventTypeXidCriticalError`.
const XID_EVENT: u64 = 8;
/// `NVML_ERROR_TIMEOUT`.
const TIMEOUT: u32 = 10;

#[repr(C)]
struct EventData {
    device: *mut c_void,
    event_type: u64,
    event_data: u64,
    gpu_instance: c_uint,
    compute_instance: c_uint,
}

/// The UUIDs of cards that had a critical XID, shared with the thread that finds them.
pub type LostCards = Arc<Mutex<HashSet<String>>>;

/// Registers every card of the NVML library at `path` for XID events and starts the thread
/// that waits for them. Cards that cannot be registered are reported in the `Err` of none and
/// left out (their health still comes from NVML calls failing).
pub fn watch(path: Option<PathBuf>) -> Result<LostCards> {
    let lost: LostCards = Default::default();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let found = lost.clone();
    std::thread::Builder::new()
        .name("gpupool-xid".into())
        .spawn(move || {
            let set = match register(path.as_ref()) {
                Ok(set) => {
                    let _ = ready_tx.send(Ok(()));
                    set
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            set.wait_forever(&found);
        })?;
    ready_rx.recv()??;
    Ok(lost)
}

/// An event set with every card registered; the cards' handles and UUIDs.
struct Registered {
    lib: NvmlLib,
    set: *mut c_void,
    cards: Vec<(*mut c_void, String)>,
}

fn register(path: Option<&PathBuf>) -> Result<Registered> {
    let lib = NvmlLib::open(path.map(|p| p.as_path()))?;
    let mut cards = Vec::new();
    let mut set = std::ptr::null_mut();
    // SAFETY: every symbol is transmuted to its documented NVML signature.
    unsafe {
        let init: unsafe extern "C" fn() -> u32 = std::mem::transmute(lib.sym("nvmlInit_v2")?);
        let count: unsafe extern "C" fn(*mut c_uint) -> u32 =
            std::mem::transmute(lib.sym("nvmlDeviceGetCount_v2")?);
        let by_index: unsafe extern "C" fn(c_uint, *mut *mut c_void) -> u32 =
            std::mem::transmute(lib.sym("nvmlDeviceGetHandleByIndex_v2")?);
        let get_uuid: unsafe extern "C" fn(*mut c_void, *mut c_char, c_uint) -> u32 =
            std::mem::transmute(lib.sym("nvmlDeviceGetUUID")?);
        let create: unsafe extern "C" fn(*mut *mut c_void) -> u32 =
            std::mem::transmute(lib.sym("nvmlEventSetCreate")?);
        let register: unsafe extern "C" fn(*mut c_void, u64, *mut c_void) -> u32 =
            std::mem::transmute(lib.sym("nvmlDeviceRegisterEvents")?);
        if init() != 0 {
            bail!("nvmlInit failed");
        }
        if create(&mut set) != 0 {
            bail!("nvmlEventSetCreate failed");
        }
        let mut n = 0;
        if count(&mut n) != 0 {
            bail!("nvmlDeviceGetCount failed");
        }
        for i in 0..n {
            let mut d = std::ptr::null_mut();
            let mut buf = [0 as c_char; 96];
            if by_index(i, &mut d) != 0 || get_uuid(d, buf.as_mut_ptr(), 96) != 0 {
                tracing::warn!(
                    index = i,
                    "no XID events for this card (NVML cannot read it)"
                );
                continue;
            }
            let uuid = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
            let rc = register(d, XID_EVENT, set);
            if rc != 0 {
                tracing::warn!(%uuid, rc, "no XID events for this card");
                continue;
            }
            cards.push((d, uuid));
        }
    }
    Ok(Registered { lib, set, cards })
}

impl Registered {
    fn wait_forever(&self, lost: &LostCards) {
        let Ok(wait) = self.lib.sym("nvmlEventSetWait_v2") else {
            tracing::warn!("NVML has no nvmlEventSetWait_v2: XID events are not watched");
            return;
        };
        // SAFETY: the documented signature.
        let wait: unsafe extern "C" fn(*mut c_void, *mut EventData, c_uint) -> u32 =
            unsafe { std::mem::transmute(wait) };
        loop {
            let mut e = EventData {
                device: std::ptr::null_mut(),
                event_type: 0,
                event_data: 0,
                gpu_instance: 0,
                compute_instance: 0,
            };
            // SAFETY: a live event set and a valid out pointer.
            let rc = unsafe { wait(self.set, &mut e, 5000) };
            match rc {
                0 if e.event_type == XID_EVENT => {
                    let uuid = self
                        .cards
                        .iter()
                        .find(|(d, _)| *d == e.device)
                        .map(|(_, u)| u.clone());
                    let Some(uuid) = uuid else { continue };
                    if critical(e.event_data) {
                        tracing::warn!(%uuid, xid = e.event_data, "XID error: card unhealthy");
                        lost.lock().unwrap_or_else(|p| p.into_inner()).insert(uuid);
                    } else {
                        tracing::info!(%uuid, xid = e.event_data, "XID of an application (ignored)");
                    }
                }
                0 | TIMEOUT => {}
                other => {
                    tracing::warn!(rc = other, "waiting for XID events failed; retrying in 5 s");
                    std::thread::sleep(std::time::Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_xids_are_not_card_faults() {
        for xid in APPLICATION_XIDS {
            assert!(!critical(xid), "{xid}");
        }
        for xid in [48, 63, 64, 74, 79, 92, 94, 95] {
            assert!(critical(xid), "{xid}");
        }
    }
}
