//! The simulated GPU's device timeline, used by `gpupool-simgpu` (a plain library, so that
//! tests and benchmarks can read it too). One simulated device's timeline is shared by every
//! process of the simulated machine through a file in the state folder (`timeline-<index>`).
//!
//! Kernels are queued with a duration. The device runs one context at a time: the context that
//! has the device keeps it for at most one time slice while another context has work ready,
//! then the next context (round robin) gets it. Within a context, kernels run one at a time in
//! submission order, and kernels of one stream never overtake each other. Time is real
//! (`CLOCK_MONOTONIC`, the same clock in every process); the timeline is computed lazily up to
//! "now" by whichever process looks at it, under a lock whose owner is a pid, so a process that
//! dies holding it cannot stall the others. Kernels of a process that died are dropped, as a
//! real driver drops a dead context's work.

#![warn(missing_docs)]

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering::*};

/// Kernels that can wait on one device at once (a launch waits while the queue is full).
pub const QUEUE: usize = 1024;
/// Completed kernels whose times stay readable.
const DONE_RING: usize = 8192;
/// Processes whose busy time is accounted.
pub const PROCS: usize = 256;
const MAGIC: u64 = u64::from_le_bytes(*b"GPTIMEL1");
/// How often kernels of dead processes are looked for (ns).
const REAP_EVERY_NS: u64 = 100_000_000;

/// A queued kernel.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Pending {
    seq: u64,
    pid: u32,
    _pad: u32,
    ctx: u64,
    stream: u64,
    submit_ns: u64,
    remaining_ns: u64,
    start_ns: u64,
}

/// A completed kernel (slot `seq % DONE_RING`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Done {
    seq: u64,
    start_ns: u64,
    end_ns: u64,
}

/// Busy time of one process on the device.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ProcBusy {
    /// The process (0 = free slot).
    pub pid: u32,
    _pad: u32,
    /// Nanoseconds its kernels have run, in all.
    pub busy_ns: u64,
    /// When it last ran (ns).
    pub last_ns: u64,
}

/// Snapshots of busy time kept for NVML's utilisation samples.
pub const SNAPSHOTS: usize = 32;
/// Time between snapshots (NVML's sample period on most cards is 1/6 s).
pub const SNAPSHOT_EVERY_NS: u64 = 166_666_667;

/// Busy time of the device and of each process at one moment.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Snapshot {
    /// `CLOCK_MONOTONIC` ns (0 = empty).
    pub at_ns: u64,
    /// Device busy time so far.
    pub busy_ns: u64,
    /// Per process, as in the process table then.
    pub procs: [ProcBusy; PROCS],
}

impl ProcBusy {
    /// A process's entry with `busy_ns` of run time.
    pub fn new(pid: u32, busy_ns: u64) -> ProcBusy {
        ProcBusy {
            pid,
            busy_ns,
            ..ProcBusy::default()
        }
    }
}

/// Everything behind the lock.
#[repr(C)]
struct State {
    magic: u64,
    slice_ns: u64,
    now_ns: u64,
    owner_pid: u32,
    _pad: u32,
    owner_ctx: u64,
    slice_left_ns: u64,
    next_seq: u64,
    npending: u64,
    busy_ns: u64,
    last_reap_ns: u64,
    pending: [Pending; QUEUE],
    done: [Done; DONE_RING],
    procs: [ProcBusy; PROCS],
    /// Count of snapshots taken; the latest is at `(count - 1) % SNAPSHOTS`.
    snapshot_count: u64,
    snapshots: [Snapshot; SNAPSHOTS],
}

#[repr(C)]
struct Shared {
    lock: AtomicU32,
    _pad: [u32; 15],
    state: std::cell::UnsafeCell<State>,
}

/// A device timeline.
pub struct Timeline {
    shared: *mut Shared,
}

// SAFETY: the mapping lives as long as the process; `state` is only touched under `lock`.
unsafe impl Send for Timeline {}
// SAFETY: as above.
unsafe impl Sync for Timeline {}

/// Nanoseconds of `CLOCK_MONOTONIC` (shared by all processes of the machine).
pub use gpupool_cuda::clock::monotonic_ns as now_ns;

fn alive(pid: u32) -> bool {
    gpupool_region::process_alive(pid)
}

/// What is known about a queued kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Still queued or running; `ahead_ns`: work queued up to and including it.
    Pending {
        /// Nanoseconds of work still to run before it completes (a lower bound).
        ahead_ns: u64,
    },
    /// Completed at `end_ns` (0 when it completed so long ago that the time is gone).
    Done {
        /// When it started running.
        start_ns: u64,
        /// When it completed.
        end_ns: u64,
    },
}

/// A timeline file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("simulated GPU timeline {}: {problem}", path.display())]
pub struct TimelineError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What is wrong with it.
    pub problem: TimelineProblem,
}

/// What is wrong with a timeline file.
#[derive(Debug, thiserror::Error)]
pub enum TimelineProblem {
    /// It cannot be opened, created or sized.
    #[error("{0}")]
    Io(std::io::Error),
    /// It has another size than a timeline's.
    #[error("unexpected size ({0} bytes); remove the state folder")]
    Size(u64),
    /// It cannot be mapped.
    #[error("cannot map it: {0}")]
    Map(std::io::Error),
}

impl Timeline {
    /// Opens (creating if needed) the timeline file at `path`.
    pub fn open(path: &Path, slice_ns: u64) -> Result<Timeline, TimelineError> {
        let size = std::mem::size_of::<Shared>();
        let fail = |problem| TimelineError {
            path: path.to_path_buf(),
            problem,
        };
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| fail(TimelineProblem::Io(e)))?;
        let fd = file.as_raw_fd();
        // SAFETY: flock on our descriptor; serialises first-time initialisation.
        unsafe { libc::flock(fd, libc::LOCK_EX) };
        let unlock_with = |problem| {
            // SAFETY: unlock our descriptor.
            unsafe { libc::flock(fd, libc::LOCK_UN) };
            fail(problem)
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len != size as u64 {
            if len != 0 {
                return Err(unlock_with(TimelineProblem::Size(len)));
            }
            if let Err(e) = file.set_len(size as u64) {
                return Err(unlock_with(TimelineProblem::Io(e)));
            }
        }
        // SAFETY: shared mapping of the whole file, which has `size` bytes.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(unlock_with(TimelineProblem::Map(
                std::io::Error::last_os_error(),
            )));
        }
        let t = Timeline {
            shared: p as *mut Shared,
        };
        t.with(|s| {
            if s.magic != MAGIC {
                s.magic = MAGIC;
                s.now_ns = now_ns();
            }
            s.slice_ns = slice_ns.max(1);
        });
        // SAFETY: unlock our descriptor (the mapping stays).
        unsafe { libc::flock(fd, libc::LOCK_UN) };
        Ok(t)
    }

    fn lock(&self) {
        // SAFETY: the mapping is valid for the process's lifetime.
        let lock = unsafe { &(*self.shared).lock };
        let me = std::process::id();
        let mut spins = 0u32;
        loop {
            let owner = lock.load(Relaxed);
            if owner == 0 {
                if lock.compare_exchange(0, me, Acquire, Relaxed).is_ok() {
                    return;
                }
            } else if (spins + 1).is_multiple_of(4096) && owner != me && !alive(owner) {
                // Its holder died: take over (the state is a queue of plain records).
                if lock.compare_exchange(owner, me, Acquire, Relaxed).is_ok() {
                    return;
                }
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    fn unlock(&self) {
        // SAFETY: the mapping is valid for the process's lifetime.
        unsafe { &(*self.shared).lock }.store(0, Release);
    }

    /// Runs `f` on the state under the lock, after advancing the timeline to now.
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        self.lock();
        // SAFETY: we hold the lock; nobody else touches the state.
        let s = unsafe { &mut *(*self.shared).state.get() };
        if s.magic == MAGIC {
            advance(s, now_ns());
        }
        let r = f(s);
        self.unlock();
        r
    }

    /// Queues a kernel of `duration_ns` for context `ctx` (unique in this process) on `stream`
    /// (unique in this process); returns its sequence number. Waits while the queue is full.
    pub fn submit(&self, ctx: u64, stream: u64, duration_ns: u64) -> u64 {
        let pid = std::process::id();
        loop {
            let seq = self.with(|s| {
                if s.npending as usize >= QUEUE {
                    return None;
                }
                s.next_seq += 1;
                let seq = s.next_seq;
                s.pending[s.npending as usize] = Pending {
                    seq,
                    pid,
                    ctx,
                    stream,
                    submit_ns: s.now_ns,
                    remaining_ns: duration_ns,
                    ..Pending::default()
                };
                s.npending += 1;
                // A zero-length kernel completes at once.
                advance(s, s.now_ns);
                Some(seq)
            });
            match seq {
                Some(seq) => return seq,
                None => std::thread::sleep(std::time::Duration::from_micros(100)),
            }
        }
    }

    /// Where kernel `seq` is.
    pub fn progress(&self, seq: u64) -> Progress {
        self.with(|s| progress(s, seq))
    }

    /// Waits until kernel `seq` completed; returns its completion time (0 if long gone).
    pub fn wait(&self, seq: u64) -> u64 {
        loop {
            match self.progress(seq) {
                Progress::Done { end_ns, .. } => return end_ns,
                Progress::Pending { ahead_ns } => {
                    // Sleep through most of the work ahead, then poll closely.
                    if ahead_ns > 200_000 {
                        let nap = (ahead_ns - 100_000).min(2_000_000);
                        std::thread::sleep(std::time::Duration::from_nanos(nap));
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
    }

    /// Nanoseconds the device has been busy in all, and each process's share (live ones).
    pub fn busy(&self) -> (u64, Vec<ProcBusy>) {
        self.with(|s| {
            let procs = s.procs.iter().filter(|p| p.pid != 0).copied().collect();
            (s.busy_ns, procs)
        })
    }

    /// Snapshots, oldest first (taken every [`SNAPSHOT_EVERY_NS`] while the device is looked
    /// at), ending with one taken now.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.with(|s| {
            take_snapshot(s, true);
            let n = s.snapshot_count as usize;
            let have = n.min(SNAPSHOTS);
            (n - have..n).map(|i| s.snapshots[i % SNAPSHOTS]).collect()
        })
    }

    /// Kernels queued or running on the device.
    pub fn queued(&self) -> usize {
        self.with(|s| s.npending as usize)
    }
}

fn progress(s: &State, seq: u64) -> Progress {
    if let Some(p) = s.pending[..s.npending as usize]
        .iter()
        .find(|p| p.seq == seq)
    {
        let ahead = s.pending[..s.npending as usize]
            .iter()
            .filter(|q| q.seq <= seq && (q.ctx, q.pid) == (p.ctx, p.pid))
            .map(|q| q.remaining_ns)
            .sum();
        return Progress::Pending { ahead_ns: ahead };
    }
    let d = s.done[(seq % DONE_RING as u64) as usize];
    if d.seq == seq {
        Progress::Done {
            start_ns: d.start_ns,
            end_ns: d.end_ns,
        }
    } else {
        Progress::Done {
            start_ns: 0,
            end_ns: 0,
        }
    }
}

/// Index of the kernel to run next for context `(pid, ctx)`: its oldest kernel that is first
/// in its stream and already submitted.
fn next_of(s: &State, key: (u32, u64)) -> Option<usize> {
    let n = s.npending as usize;
    let pending = &s.pending[..n];
    pending
        .iter()
        .enumerate()
        .filter(|(_, p)| (p.pid, p.ctx) == key && p.submit_ns <= s.now_ns)
        .filter(|(_, p)| {
            !pending
                .iter()
                .any(|q| q.pid == p.pid && q.stream == p.stream && q.seq < p.seq)
        })
        .min_by_key(|(_, p)| p.seq)
        .map(|(i, _)| i)
}

/// The context that gets the device after `after` (round robin by (pid, ctx)), if any has
/// ready work.
fn next_context(s: &State, after: (u32, u64)) -> Option<(u32, u64)> {
    let ready = s.pending[..s.npending as usize]
        .iter()
        .filter(|p| p.submit_ns <= s.now_ns)
        .map(|p| (p.pid, p.ctx));
    let later = ready.clone().filter(|k| *k > after).min();
    later.or_else(|| ready.min())
}

fn complete(s: &mut State, i: usize) {
    let p = s.pending[i];
    s.done[(p.seq % DONE_RING as u64) as usize] = Done {
        seq: p.seq,
        start_ns: if p.start_ns == 0 {
            s.now_ns
        } else {
            p.start_ns
        },
        end_ns: s.now_ns,
    };
    let last = s.npending as usize - 1;
    s.pending[i] = s.pending[last];
    s.npending -= 1;
}

fn account(s: &mut State, pid: u32, ns: u64) {
    s.busy_ns += ns;
    let now = s.now_ns;
    let slot = s
        .procs
        .iter()
        .position(|p| p.pid == pid)
        .or_else(|| s.procs.iter().position(|p| p.pid == 0))
        .or_else(|| {
            // Table full: reuse the slot idle the longest.
            s.procs
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| p.last_ns)
                .map(|(i, _)| i)
        });
    if let Some(i) = slot {
        let p = &mut s.procs[i];
        if p.pid != pid {
            *p = ProcBusy {
                pid,
                ..ProcBusy::default()
            };
        }
        p.busy_ns += ns;
        p.last_ns = now;
    }
}

/// Records busy times at `s.now_ns` when a period has passed (or always, with `force`, by
/// replacing the latest snapshot when it is younger than a period).
fn take_snapshot(s: &mut State, force: bool) {
    let n = s.snapshot_count as usize;
    let last_at = if n == 0 {
        0
    } else {
        s.snapshots[(n - 1) % SNAPSHOTS].at_ns
    };
    let due = n == 0 || s.now_ns.saturating_sub(last_at) >= SNAPSHOT_EVERY_NS;
    if !due && !force {
        return;
    }
    let slot = if due || n == 0 { n } else { n - 1 };
    // Forcing keeps the period boundaries: a young latest snapshot is overwritten, unless it
    // is the only one (then a second is added).
    let slot = if !due && n == 1 { n } else { slot };
    s.snapshots[slot % SNAPSHOTS] = Snapshot {
        at_ns: s.now_ns,
        busy_ns: s.busy_ns,
        procs: s.procs,
    };
    s.snapshot_count = slot as u64 + 1;
}

fn reap(s: &mut State) {
    // Each distinct process is looked up once (the queue may hold a thousand of its kernels).
    let mut dead: Vec<u32> = Vec::new();
    let mut checked: Vec<u32> = Vec::new();
    for p in &s.pending[..s.npending as usize] {
        if !checked.contains(&p.pid) {
            checked.push(p.pid);
            if !alive(p.pid) {
                dead.push(p.pid);
            }
        }
    }
    let mut i = 0;
    while i < s.npending as usize {
        if dead.contains(&s.pending[i].pid) {
            complete(s, i);
        } else {
            i += 1;
        }
    }
    for p in s.procs.iter_mut() {
        if p.pid != 0 && !alive(p.pid) {
            *p = ProcBusy::default();
        }
    }
}

/// Runs the device from `s.now_ns` to `to`, taking the snapshots that fall due on the way.
fn advance(s: &mut State, to: u64) {
    while s.now_ns < to {
        if s.npending == 0 && s.snapshot_count > 0 {
            // Idle: nothing to record between now and `to` but time.
            run_until(s, to);
            break;
        }
        let n = s.snapshot_count as usize;
        let next = if n == 0 {
            s.now_ns
        } else {
            s.snapshots[(n - 1) % SNAPSHOTS].at_ns + SNAPSHOT_EVERY_NS
        };
        run_until(s, next.clamp(s.now_ns, to));
        take_snapshot(s, false);
        if next >= to {
            run_until(s, to);
            break;
        }
    }
    take_snapshot(s, false);
}

/// Runs the device from `s.now_ns` to `to`.
fn run_until(s: &mut State, to: u64) {
    if to.saturating_sub(s.last_reap_ns) >= REAP_EVERY_NS {
        s.last_reap_ns = to;
        reap(s);
    }
    loop {
        // Zero-length kernels at the head of their stream complete at once.
        while let Some(i) = (0..s.npending as usize).find(|&i| {
            let p = s.pending[i];
            p.remaining_ns == 0
                && p.submit_ns <= s.now_ns
                && !s.pending[..s.npending as usize]
                    .iter()
                    .any(|q| q.pid == p.pid && q.stream == p.stream && q.seq < p.seq)
        }) {
            complete(s, i);
        }
        if s.now_ns >= to {
            return;
        }
        let owner = (s.owner_pid, s.owner_ctx);
        let keep = s.slice_left_ns > 0 && next_of(s, owner).is_some();
        let key = if keep {
            owner
        } else {
            match next_context(s, owner) {
                Some(k) => {
                    if k != owner || s.slice_left_ns == 0 {
                        s.slice_left_ns = s.slice_ns;
                    }
                    (s.owner_pid, s.owner_ctx) = k;
                    k
                }
                None => {
                    // Idle until the next submission (or `to`).
                    let next = s.pending[..s.npending as usize]
                        .iter()
                        .map(|p| p.submit_ns)
                        .filter(|&t| t > s.now_ns)
                        .min();
                    s.now_ns = next.map_or(to, |t| t.min(to));
                    continue;
                }
            }
        };
        let Some(i) = next_of(s, key) else {
            s.slice_left_ns = 0;
            continue;
        };
        let dt = s.pending[i]
            .remaining_ns
            .min(s.slice_left_ns)
            .min(to - s.now_ns);
        if s.pending[i].start_ns == 0 {
            s.pending[i].start_ns = s.now_ns;
        }
        s.pending[i].remaining_ns -= dt;
        s.slice_left_ns -= dt;
        s.now_ns += dt;
        let pid = s.pending[i].pid;
        account(s, pid, dt);
        if s.pending[i].remaining_ns == 0 {
            complete(s, i);
        }
        if s.slice_left_ns == 0 && next_context(s, key).is_none_or(|k| k == key) {
            // Nobody else is waiting: the slice is renewed.
            s.slice_left_ns = s.slice_ns;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(name: &str, slice_ns: u64) -> Timeline {
        let dir =
            std::env::temp_dir().join(format!("gpupool-timeline-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("timeline-0");
        let _ = std::fs::remove_file(&path);
        Timeline::open(&path, slice_ns).unwrap()
    }

    /// Runs `f` on a fresh in-memory state starting at time 0.
    fn state() -> Box<State> {
        // SAFETY: an all-zero State is valid (plain integers).
        let mut s: Box<State> = unsafe { Box::new_zeroed().assume_init() };
        s.magic = MAGIC;
        s.slice_ns = 1_000;
        s
    }

    fn push(s: &mut State, pid: u32, ctx: u64, stream: u64, at: u64, dur: u64) -> u64 {
        s.next_seq += 1;
        s.pending[s.npending as usize] = Pending {
            seq: s.next_seq,
            pid,
            ctx,
            stream,
            submit_ns: at,
            remaining_ns: dur,
            ..Pending::default()
        };
        s.npending += 1;
        s.next_seq
    }

    fn end(s: &State, seq: u64) -> u64 {
        match progress(s, seq) {
            Progress::Done { end_ns, .. } => end_ns,
            p => panic!("{seq} not done: {p:?}"),
        }
    }

    #[test]
    fn a_file_of_another_size_is_refused_with_its_name() {
        let path = std::env::temp_dir().join(format!(
            "gpupool-timeline-{}-wrong-size",
            std::process::id()
        ));
        std::fs::write(&path, b"not a timeline").unwrap();
        let e = match Timeline::open(&path, 1_000) {
            Err(e) => e,
            Ok(_) => panic!("a 14-byte file opened as a timeline"),
        };
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(e.problem, TimelineProblem::Size(14)), "{e}");
        assert!(e.to_string().contains("wrong-size"), "{e}");
    }

    #[test]
    fn one_stream_runs_in_order() {
        let mut s = state();
        let me = std::process::id();
        let a = push(&mut s, me, 1, 1, 0, 300);
        let b = push(&mut s, me, 1, 1, 0, 200);
        advance(&mut s, 10_000);
        assert_eq!(end(&s, a), 300);
        assert_eq!(end(&s, b), 500);
        assert_eq!(s.busy_ns, 500);
    }

    #[test]
    fn contexts_take_turns_by_slice() {
        let mut s = state();
        let me = std::process::id();
        // Two contexts with 3 µs of work each, slice 1 µs: A B A B A B.
        let a = push(&mut s, me, 1, 1, 0, 3_000);
        let b = push(&mut s, me, 2, 2, 0, 3_000);
        advance(&mut s, 100_000);
        assert_eq!(end(&s, a), 5_000);
        assert_eq!(end(&s, b), 6_000);
    }

    #[test]
    fn a_lone_context_keeps_the_device() {
        let mut s = state();
        let me = std::process::id();
        let a = push(&mut s, me, 1, 1, 0, 3_500);
        advance(&mut s, 2_000);
        assert!(matches!(
            progress(&s, a),
            Progress::Pending { ahead_ns: 1_500 }
        ));
        advance(&mut s, 100_000);
        assert_eq!(end(&s, a), 3_500);
    }

    #[test]
    fn idle_time_is_not_busy_time() {
        let mut s = state();
        let me = std::process::id();
        let a = push(&mut s, me, 1, 1, 5_000, 1_000);
        advance(&mut s, 20_000);
        assert_eq!(end(&s, a), 6_000);
        assert_eq!(s.busy_ns, 1_000);
        assert_eq!(s.procs.iter().find(|p| p.pid == me).unwrap().busy_ns, 1_000);
    }

    #[test]
    fn kernels_of_dead_processes_are_dropped() {
        let mut s = state();
        let dead = push(&mut s, 0x7fff_fff0, 1, 1, 0, 1_000_000_000);
        advance(&mut s, REAP_EVERY_NS + 1);
        assert!(matches!(progress(&s, dead), Progress::Done { .. }));
        assert_eq!(s.npending, 0);
    }

    #[test]
    fn shared_file_submit_and_wait() {
        let t = timeline("file", 2_000_000);
        let t0 = now_ns();
        let a = t.submit(1, 1, 3_000_000);
        let b = t.submit(1, 1, 0);
        let end_b = t.wait(b);
        assert!(
            end_b >= t0 + 3_000_000,
            "zero-length kernel waited for its stream"
        );
        assert!(matches!(t.progress(a), Progress::Done { .. }));
        assert!(now_ns() >= t0 + 3_000_000);
        assert_eq!(t.queued(), 0);
    }
}
