//! After `fork`, the connection belongs to the parent: a child that sent calls on it would
//! interleave its messages with the parent's and end the parent's session. As with a driver,
//! CUDA is unusable in the child of a process that initialised it: every call answers
//! `CUDA_ERROR_NOT_INITIALIZED`. The child of a process that never connected connects on its
//! own. The client's state is locked around `fork`, so a child never inherits it half-changed
//! or locked by a thread it does not have.

use crate::conn::{state, State};
use std::cell::RefCell;
use std::sync::MutexGuard;

thread_local! {
    /// The state's lock, held by the forking thread from `prepare` to `parent` / `child`.
    static HELD: RefCell<Option<MutexGuard<'static, State>>> = const { RefCell::new(None) };
}

extern "C" fn prepare() {
    let guard = state();
    HELD.with(|h| *h.borrow_mut() = Some(guard));
}

extern "C" fn parent() {
    HELD.with(|h| drop(h.borrow_mut().take()));
}

extern "C" fn child() {
    HELD.with(|h| {
        if let Some(mut s) = h.borrow_mut().take() {
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
