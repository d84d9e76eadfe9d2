//! After `fork`, the connection belongs to the parent: a child that sent calls on it would
//! interleave its messages with the parent's and end the parent's session. As with a driver,
//! CUDA is unusable in the child of a process that initialised it: every call answers
//! `CUDA_ERROR_NOT_INITIALIZED`. The child of a process that never connected connects on its
//! own. The client's state and address map are locked around `fork`, so a child never
//! inherits them half-changed or locked by a thread it does not have.

use crate::conn::{state, State};
use crate::memory_map;
use std::cell::RefCell;
use std::sync::MutexGuard;

/// The locks the forking thread holds from `prepare` to `parent` / `child`.
type Held = (MutexGuard<'static, State>, memory_map::ForkGuard);

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

extern "C" fn prepare() {
    let s = state();
    let m = memory_map::lock_for_fork();
    HELD.with(|h| *h.borrow_mut() = Some((s, m)));
}

extern "C" fn parent() {
    HELD.with(|h| drop(h.borrow_mut().take()));
}

extern "C" fn child() {
    HELD.with(|h| {
        if let Some((mut s, m)) = h.borrow_mut().take() {
            drop(m);
            s.forget_connection_after_fork();
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
