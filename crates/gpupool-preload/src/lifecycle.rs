//! What the library does around `fork` and at exit, for every module in one place: registered
//! when the library is loaded, so no module has to know the others' state.
//!
//! Before a fork every lock a child could inherit held is taken (and let go on both sides
//! after); the child then forgets the parent's slot, pacing state, meter and mappings, and
//! claims its own on first use. At exit the process leaves its cards' coordination and gives
//! its slot back.

use crate::spinlock::ForgetAfterFork;
use crate::{
    compute, coordination, cost, graph_memory, idle_gate, pools, spill, tenant, tracking, vmm,
};

/// Per-process states a child forgets, in the order their locks are taken.
fn per_process() -> [&'static dyn ForgetAfterFork; 3] {
    [
        pools::fork_state(),
        graph_memory::fork_state(),
        vmm::fork_state(),
    ]
}

extern "C" fn before_fork() {
    spill::lock();
    tracking::lock_all();
    per_process().iter().for_each(|s| s.lock_for_fork());
    tenant::lock_for_fork();
}

/// Lets go of what [`before_fork`] took, in reverse.
fn unlock_after_fork() {
    per_process()
        .iter()
        .rev()
        .for_each(|s| s.unlock_after_fork());
    tracking::unlock_all();
    spill::unlock();
}

extern "C" fn after_fork_in_parent() {
    tenant::unlock_after_fork();
    unlock_after_fork();
}

extern "C" fn after_fork_in_child() {
    cost::forget_meter_after_fork();
    compute::forget_after_fork();
    idle_gate::forget_after_fork();
    tenant::forget_after_fork();
    unlock_after_fork();
    tracking::forget_all();
    per_process().iter().for_each(|s| s.forget());
}

extern "C" fn at_exit() {
    coordination::leave_all();
    tenant::release_slot_at_exit();
}

/// Registers the handlers (run once, when the library is loaded).
extern "C" fn register() {
    // SAFETY: registering plain extern "C" handlers that take no arguments.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_in_parent),
            Some(after_fork_in_child),
        );
        libc::atexit(at_exit);
    }
}

/// Runs [`register`] when the dynamic loader loads the library.
#[used]
#[link_section = ".init_array"]
static REGISTER_AT_LOAD: extern "C" fn() = register;
