//! After `fork`, the connection belongs to the parent: a child that sent calls on it would
//! interleave its messages with the parent's and end the parent's session. As with a driver,
//! CUDA is unusable in the child of a process that initialised it: every call answers
//! `CUDA_ERROR_NOT_INITIALIZED`. The child of a process that never connected connects on its
//! own. The client's state, address map and caches are locked around `fork`, so a child
//! never inherits them half-changed or locked by a thread it does not have, and a child of a
//! connected parent answers nothing from the parent's caches.

use crate::conn::state;
use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The locks the forking thread holds from `prepare` to `parent` / `child`: the state first,
/// then the rest in the order the library takes them (the variables before the address
/// map, which their unloading updates; the caches, which never wait for anything, last).
type Held = Vec<Box<dyn Any>>;

thread_local! {
    static HELD: RefCell<Option<(crate::conn::StateGuard, Held)>> = const { RefCell::new(None) };
}

/// Set in a child forked from a process that had connected.
static FORKED_CHILD: AtomicBool = AtomicBool::new(false);

/// Whether this process is a child forked after its parent connected: nothing the parent
/// learnt answers it.
pub fn in_forked_child() -> bool {
    FORKED_CHILD.load(Ordering::Relaxed)
}

/// Holds `m` locked while the returned box lives.
fn hold<T: 'static>(m: &'static Mutex<T>) -> Box<dyn Any> {
    Box::new(m.lock().unwrap_or_else(|e| e.into_inner()))
}

extern "C" fn prepare() {
    let s = state();
    let held: Held = vec![
        hold(&crate::images::KEPT),
        hold(&crate::variables::VARIABLES),
        hold(&crate::memory_map::RANGES),
        hold(&crate::kernel_cache::KNOWN),
        hold(&crate::module::LAYOUTS),
        hold(&crate::tensor_map::KEPT_ANSWERS),
        hold(&crate::local_answers::CONTEXT_DEVICES),
        hold(&crate::local_answers::CONTEXT_IDS),
        hold(&crate::local_answers::PRIMARY_STATES),
        hold(&crate::local_answers::SET_ATTRIBUTES),
        hold(&crate::device_attributes::ANSWERS),
        hold(&crate::graph_host::STAGED),
        hold(&crate::link::LINKS),
    ];
    HELD.with(|h| *h.borrow_mut() = Some((s, held)));
}

extern "C" fn parent() {
    HELD.with(|h| drop(h.borrow_mut().take()));
}

extern "C" fn child() {
    HELD.with(|h| {
        if let Some((mut s, held)) = h.borrow_mut().take() {
            drop(held);
            if s.forget_connection_after_fork() {
                FORKED_CHILD.store(true, Ordering::Relaxed);
            }
        }
    });
}

/// Registers the handlers (once, when the library is loaded).
extern "C" fn register() {
    // SAFETY: registering plain extern "C" functions.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// Runs [`register`] when the dynamic loader loads the library.
#[used]
#[link_section = ".init_array"]
static REGISTER_AT_LOAD: extern "C" fn() = register;
