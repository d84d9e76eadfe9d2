//! Long-lived helper threads that split one evaluation over the machine's cores. Starting
//! scoped threads for every call cost about 100 µs a call on a 2-core VM (p99 over 300 µs,
//! now and then milliseconds: a stack mapped, then unmapped), which showed in the extender's
//! p99; the helpers are started once and woken per call.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, TryLockError};

/// A part of a split call: the task, with its borrow's lifetime erased, and the part's index.
type Part = (&'static (dyn Fn(usize) + Sync), usize);

/// One helper thread's mailbox.
#[derive(Default)]
struct Helper {
    /// The part to run; cleared by the helper when it has run.
    part: Mutex<Option<Part>>,
    /// Signalled when a part is posted.
    posted: Condvar,
    /// Signalled when a part has run.
    finished: Condvar,
}

struct Pool {
    helpers: Vec<&'static Helper>,
    /// Held by the one caller using the helpers (another caller meanwhile runs alone).
    in_use: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Helper {
    fn serve(&'static self) {
        loop {
            let mut slot = lock(&self.part);
            let (task, index) = loop {
                match *slot {
                    Some(part) => break part,
                    None => slot = self.posted.wait(slot).unwrap_or_else(|e| e.into_inner()),
                }
            };
            drop(slot);
            // A panicking part leaves its result unset; the caller sees that.
            let _ = catch_unwind(AssertUnwindSafe(|| task(index)));
            *lock(&self.part) = None;
            self.finished.notify_one();
        }
    }

    /// Waits until the posted part (if any) has run.
    fn wait(&self) {
        let mut slot = lock(&self.part);
        while slot.is_some() {
            slot = self.finished.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Waits for the helpers given parts, also when the caller's own part unwinds: the parts
/// borrow the caller's stack.
struct WaitAll<'a>(&'a [&'static Helper]);

impl Drop for WaitAll<'_> {
    fn drop(&mut self) {
        for h in self.0 {
            h.wait();
        }
    }
}

/// How many parts [`run_split`] runs at once: the machine's cores (at most 8), asked once
/// (the answer reads cgroup files, too slow for every call).
pub fn parallelism() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)))
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut helpers = Vec::new();
        for i in 1..parallelism() {
            let h: &'static Helper = Box::leak(Box::default());
            let started = std::thread::Builder::new()
                .name(format!("gpupool-eval-{i}"))
                .spawn(move || h.serve());
            if started.is_ok() {
                helpers.push(h);
            }
        }
        Pool {
            helpers,
            in_use: Mutex::new(()),
        }
    })
}

/// Runs `task(0)` … `task(parts − 1)`: all but the last on helper threads, the last on this
/// thread, and returns when every part has run. With fewer helpers than parts, or while
/// another caller uses them, the parts left run on this thread in turn.
pub fn run_split(parts: usize, task: &(dyn Fn(usize) + Sync)) {
    let pool = pool();
    let guard = match pool.in_use.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    };
    let helpers: &[&'static Helper] = match guard {
        Some(_) => &pool.helpers[..pool.helpers.len().min(parts.saturating_sub(1))],
        None => &[],
    };
    // SAFETY: the erased borrow is used only by the helpers given a part, and `WaitAll`
    // waits (also while unwinding) until each of them has run it and dropped it, before
    // `task`'s borrow ends with this function.
    let erased: &'static (dyn Fn(usize) + Sync) = unsafe {
        std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(task)
    };
    let waiter = WaitAll(helpers);
    for (index, h) in helpers.iter().enumerate() {
        *lock(&h.part) = Some((erased, index));
        h.posted.notify_one();
    }
    for index in helpers.len()..parts {
        task(index);
    }
    drop(waiter);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    #[test]
    fn every_part_runs_once_and_before_the_call_returns() {
        for parts in 0..12 {
            let runs: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            run_split(parts, &|i| {
                std::thread::sleep(std::time::Duration::from_micros(200));
                runs[i].fetch_add(1, Relaxed);
            });
            let counts: Vec<usize> = runs.iter().map(|r| r.load(Relaxed)).collect();
            assert_eq!(counts, vec![1; parts], "{parts} parts");
        }
    }

    #[test]
    fn concurrent_callers_each_get_all_their_parts() {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for _ in 0..50 {
                        let sum = AtomicUsize::new(0);
                        run_split(3, &|i| {
                            sum.fetch_add(t * 100 + i + 1, Relaxed);
                        });
                        assert_eq!(sum.load(Relaxed), 3 * t * 100 + 6);
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_part_does_not_stop_the_others_or_the_helpers() {
        let done = AtomicUsize::new(0);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            run_split(2, &|i| {
                if i == 1 {
                    panic!("part {i}");
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
                done.fetch_add(1, Relaxed);
            })
        }));
        assert!(caught.is_err());
        // The helper's part ran to the end before the caller's panic left `run_split`.
        assert_eq!(done.load(Relaxed), 1);
        let again = AtomicUsize::new(0);
        run_split(2, &|_| {
            again.fetch_add(1, Relaxed);
        });
        assert_eq!(again.load(Relaxed), 2);
    }
}
