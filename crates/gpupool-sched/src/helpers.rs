//! Long-lived helper threads that split one evaluation over the machine's cores. Starting
//! scoped threads for every call cost about 100 µs a call on a 2-core VM (p99 over 300 µs,
//! now and then milliseconds: a stack mapped, then unmapped), which showed in the extender's
//! p99; the helpers are started once and woken per call.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, TryLockError};

/// A split call as a helper sees it: the task and the call's counter of parts handed out
/// (borrows of the caller's stack, their lifetimes erased), and the number of parts.
type Job = (&'static (dyn Fn(usize) + Sync), &'static AtomicUsize, usize);

/// One helper thread's mailbox.
#[derive(Default)]
struct Slot {
    /// The call to help with; cleared by the helper when it is done, or by the caller taking
    /// it back before the helper started.
    job: Option<Job>,
    /// The helper has started on `job`.
    running: bool,
}

/// One helper thread.
#[derive(Default)]
struct Helper {
    slot: Mutex<Slot>,
    /// Signalled when a job is posted.
    posted: Condvar,
    /// Signalled when a job is done.
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

/// Runs parts of `job` until none is left to hand out.
fn take_parts((task, next, parts): Job) {
    loop {
        let i = next.fetch_add(1, Relaxed);
        if i >= parts {
            return;
        }
        task(i);
    }
}

impl Helper {
    fn serve(&'static self) {
        loop {
            let mut slot = lock(&self.slot);
            let job = loop {
                match slot.job {
                    Some(job) if !slot.running => break job,
                    _ => slot = self.posted.wait(slot).unwrap_or_else(|e| e.into_inner()),
                }
            };
            slot.running = true;
            drop(slot);
            // A panicking part leaves its result unset; the caller sees that.
            let _ = catch_unwind(AssertUnwindSafe(|| take_parts(job)));
            let mut slot = lock(&self.slot);
            slot.job = None;
            slot.running = false;
            drop(slot);
            self.finished.notify_one();
        }
    }

    /// Takes the job back if the helper has not started on it (a helper the OS has not run
    /// yet must not hold the call up: the caller has run every part itself by then), else
    /// waits until it is done.
    fn wait(&self) {
        let mut slot = lock(&self.slot);
        if !slot.running {
            slot.job = None;
            return;
        }
        while slot.job.is_some() {
            slot = self.finished.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Waits for the helpers given the job, also when the caller's own part unwinds: the parts
/// borrow the caller's stack.
struct WaitAll<'a>(&'a [&'static Helper]);

impl Drop for WaitAll<'_> {
    fn drop(&mut self) {
        for h in self.0 {
            h.wait();
        }
    }
}

/// How many threads [`run_split`] runs parts on: the machine's cores (at most 8), asked once
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

/// Runs `task(0)` … `task(parts − 1)`, each once, and returns when every part has run. This
/// thread and the helpers take parts in turn from one counter, so a helper that is slow to
/// wake (another process has its core) takes fewer and never holds the call up beyond the
/// part it is running; split a call into several parts per thread. While another caller uses
/// the helpers, every part runs on this thread.
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
    let next = AtomicUsize::new(0);
    // SAFETY: the erased borrows are used only by the helpers given the job, and `WaitAll`
    // waits (also while unwinding) until each of them has finished with it or never started
    // it (taken back under the helper's lock, after which the helper cannot start it),
    // before `task`'s and `next`'s borrows end with this function.
    let job: Job = unsafe {
        (
            std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(task),
            std::mem::transmute::<&AtomicUsize, &'static AtomicUsize>(&next),
            parts,
        )
    };
    let waiter = WaitAll(helpers);
    for h in helpers {
        lock(&h.slot).job = Some(job);
        h.posted.notify_one();
    }
    take_parts(job);
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
        for _ in 0..20 {
            let done = AtomicUsize::new(0);
            let running = AtomicUsize::new(0);
            let caught = catch_unwind(AssertUnwindSafe(|| {
                run_split(2, &|i| {
                    if i == 1 {
                        panic!("part {i}");
                    }
                    running.fetch_add(1, Relaxed);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    done.fetch_add(1, Relaxed);
                })
            }));
            // A part a helper started ran to its end before `run_split` returned or
            // unwound (its borrows end there); a panic on a helper is caught there (the
            // part's result stays unset), one on this thread comes out of `run_split`, and
            // then parts nobody started may not run.
            assert_eq!(done.load(Relaxed), running.load(Relaxed));
            if caught.is_ok() {
                assert_eq!(done.load(Relaxed), 1, "the other part ran");
            }
        }
        let again = AtomicUsize::new(0);
        run_split(2, &|_| {
            again.fetch_add(1, Relaxed);
        });
        assert_eq!(again.load(Relaxed), 2);
    }
}
