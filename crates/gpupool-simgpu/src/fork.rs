//! Fork safety: every lock of the simulator is taken before `fork` (in one fixed order, the
//! order in which the code nests them) and released after it in both processes, so a child
//! forked while another thread held one (and, say, NVIDIA's runtime tearing down at its exit)
//! never deadlocks. Each module lists its own locks (`fork_locks`); this one only orders the
//! modules.

use gpupool_cuda::spinlock::ForkLock;

/// Every lock, outermost first.
fn locks() -> impl DoubleEndedIterator<Item = &'static dyn ForkLock> {
    crate::ctx::fork_locks()
        .into_iter()
        .chain(crate::ipc::fork_locks())
        .chain(crate::mem::fork_locks())
        .chain(crate::pool::fork_locks())
        .chain(crate::graph_mem::fork_locks())
        .chain(crate::vmm::fork_locks())
        .chain(crate::module::fork_locks())
        .chain(crate::link::fork_locks())
        .chain(gpupool_cuda::export_tables::fork_locks())
}

extern "C" fn prepare() {
    locks().for_each(|l| l.lock_for_fork());
}

extern "C" fn after() {
    locks().rev().for_each(|l| l.unlock_after_fork());
}

/// Registers the handlers (once, when the library is loaded).
extern "C" fn register() {
    // SAFETY: registering plain extern "C" functions.
    unsafe { libc::pthread_atfork(Some(prepare), Some(after), Some(after)) };
}

/// Runs [`register`] when the dynamic loader loads the library.
#[used]
#[link_section = ".init_array"]
static REGISTER_AT_LOAD: extern "C" fn() = register;
