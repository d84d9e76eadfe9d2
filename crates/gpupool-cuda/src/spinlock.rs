//! A tiny lock for code that runs inside users' processes (the interception library and the
//! simulated driver; never on a launch path). Unlike `std::sync::Mutex` it can be taken in a
//! `pthread_atfork` prepare handler and released in the parent and child handlers, so a fork
//! while another thread holds it cannot leave the child deadlocked.

use std::cell::UnsafeCell;
use std::sync::atomic::{
    AtomicBool,
    Ordering::{Acquire, Relaxed, Release},
};

/// A spin-then-yield lock around `T`.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `locked`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new, unlocked lock.
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock without handing out a guard (fork handlers).
    pub fn raw_lock(&self) {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Releases a lock taken with [`SpinLock::raw_lock`].
    pub fn raw_unlock(&self) {
        self.locked.store(false, Release);
    }

    /// Locks and returns a guard that unlocks on drop.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.raw_lock();
        SpinGuard(self)
    }

    /// Runs `f` with the value locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.raw_lock();
        struct Unlock<'a>(&'a AtomicBool);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.store(false, Release);
            }
        }
        let _unlock = Unlock(&self.locked);
        // SAFETY: we hold the lock until `_unlock` drops.
        f(unsafe { &mut *self.value.get() })
    }
}

/// Access to a [`SpinLock`]'s value while it is held.
pub struct SpinGuard<'a, T>(&'a SpinLock<T>);

impl<T> std::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> std::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while the lock is held, and is unique.
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.0.raw_unlock();
    }
}

/// A lock a fork handler can hold across `fork` whatever it guards.
pub trait ForkLock: Sync {
    /// Takes the lock (the prepare handler).
    fn lock_for_fork(&self);
    /// Lets it go (the parent and child handlers).
    fn unlock_after_fork(&self);
}

impl<T: Send> ForkLock for SpinLock<T> {
    fn lock_for_fork(&self) {
        self.raw_lock();
    }
    fn unlock_after_fork(&self) {
        self.raw_unlock();
    }
}

/// State of this process behind a [`SpinLock`], made on first use. Around `fork` its lock is
/// held ([`ForkLock`]); a child then starts without the parent's ([`PerProcess::forget`]).
pub struct PerProcess<T>(SpinLock<Option<T>>);

impl<T: Default> PerProcess<T> {
    /// No state yet.
    pub const fn new() -> Self {
        PerProcess(SpinLock::new(None))
    }

    /// Runs `f` with the state locked (made first if there is none).
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.0.with(|s| f(s.get_or_insert_with(T::default)))
    }
}

impl<T: Default> Default for PerProcess<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A process's state a forked child must not keep.
pub trait ForgetAfterFork: ForkLock {
    /// Drops the parent's state (the child handler, after the lock is let go).
    fn forget(&self);
}

impl<T: Send> ForkLock for PerProcess<T> {
    fn lock_for_fork(&self) {
        self.0.raw_lock();
    }
    fn unlock_after_fork(&self) {
        self.0.raw_unlock();
    }
}

impl<T: Send> ForgetAfterFork for PerProcess<T> {
    fn forget(&self) {
        self.0.with(|s| *s = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn per_process_state_is_made_on_first_use_and_forgotten_on_demand() {
        static S: PerProcess<Vec<u32>> = PerProcess::new();
        S.with(|v| v.push(7));
        assert_eq!(S.with(|v| v.clone()), [7]);
        S.lock_for_fork();
        S.unlock_after_fork();
        S.forget();
        assert!(S.with(|v| v.is_empty()), "a fresh state after forget");
    }

    #[test]
    fn serialises_increments() {
        let l = Arc::new(SpinLock::new(0u64));
        let ts: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| l.with(|v| *v += 1)))
            })
            .collect();
        ts.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(l.with(|v| *v), 40_000);
    }
}
