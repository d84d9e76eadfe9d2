//! Fork safety: every lock of the simulator is taken before `fork` (in one fixed order, the
//! order in which the code nests them) and released after it in both processes, so a child
//! forked while another thread held one (and, say, NVIDIA's runtime tearing down at its exit)
//! never deadlocks.

use gpupool_cuda::spinlock::SpinLock;

fn locks() -> [&'static dyn RawLock; 11] {
    [
        &crate::ctx::PRIMARY,
        &crate::ctx::ALL,
        &crate::mem::ALLOCS,
        &crate::mem::SPARE,
        &crate::pool::DEFAULT_POOLS,
        &crate::vmm::HANDLES,
        &crate::vmm::MAPPINGS,
        &crate::module::LOADED,
        &gpupool_cuda::export_tables::CLS,
        &gpupool_cuda::export_tables::HOOK_BUF_A,
        &gpupool_cuda::export_tables::HOOK_BUF_B,
    ]
}

trait RawLock: Sync {
    fn lock_raw(&self);
    fn unlock_raw(&self);
}

impl<T: Send> RawLock for SpinLock<T> {
    fn lock_raw(&self) {
        self.raw_lock();
    }
    fn unlock_raw(&self) {
        self.raw_unlock();
    }
}

extern "C" fn prepare() {
    locks().iter().for_each(|l| l.lock_raw());
}

extern "C" fn after() {
    locks().iter().rev().for_each(|l| l.unlock_raw());
}

/// Registers the handlers (once, when the machine is built).
pub fn register() {
    // SAFETY: registering plain extern "C" functions.
    unsafe { libc::pthread_atfork(Some(prepare), Some(after), Some(after)) };
}
