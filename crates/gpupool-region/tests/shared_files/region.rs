//! Behaviour of the shared accounting region: layout checks, limits under concurrency, reaping.

use gpupool_region::{ProcessIdentity, Region, RegionError, MAX_DEVICES};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gpupool-region-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("region")
}

const UUID_A: [u8; 16] = [1; 16];
const UUID_B: [u8; 16] = [2; 16];

#[test]
fn two_mappings_share_usage_and_devices() {
    let path = temp_path("share");
    let a = Region::open(&path).unwrap();
    let b = Region::open(&path).unwrap();
    assert_eq!(a.device_index(UUID_A).unwrap(), 0);
    assert_eq!(a.device_index(UUID_B).unwrap(), 1);
    assert_eq!(
        b.device_index(UUID_B).unwrap(),
        1,
        "same uuid, same index in every mapping"
    );
    let sa = a.claim_slot(ProcessIdentity::current()).unwrap();
    let sb = b.claim_slot(ProcessIdentity::current()).unwrap();
    a.try_reserve(sa, 1, 600, 1000).unwrap();
    let denied = b.try_reserve(sb, 1, 500, 1000).unwrap_err();
    assert_eq!(denied.used, 600);
    assert_eq!(b.denied(1), 1);
    b.try_reserve(sb, 1, 400, 1000).unwrap();
    assert_eq!(a.used(1), 1000);
    assert_eq!(a.used(0), 0);
    a.release(sa, 1, 600);
    assert_eq!(b.used(1), 400);
    b.release_slot(sb);
    assert_eq!(a.used(1), 0);
}

#[test]
fn spill_is_counted_apart_from_device_memory() {
    let path = temp_path("spill");
    let a = Region::open(&path).unwrap();
    let b = Region::open(&path).unwrap();
    a.device_index(UUID_A).unwrap();
    let sa = a.claim_slot(ProcessIdentity::current()).unwrap();
    let sb = b.claim_slot(ProcessIdentity::current()).unwrap();
    a.try_reserve(sa, 0, 1000, 1000).unwrap();
    a.try_reserve_spill(sa, 0, 300, 500).unwrap();
    let denied = b.try_reserve_spill(sb, 0, 300, 500).unwrap_err();
    assert_eq!(
        denied.used, 300,
        "the tenant's spill is shared by its processes"
    );
    assert_eq!(
        b.denied(0),
        0,
        "a refused spill is not a refusal at the limit"
    );
    b.try_reserve_spill(sb, 0, 200, 500).unwrap();
    assert_eq!((a.used(0), a.spilled(0)), (1000, 500));
    let p: Vec<_> = a.processes().into_iter().map(|p| p.spilled[0]).collect();
    assert_eq!(p, vec![300, 200]);
    a.release_spill(sa, 0, 300);
    assert_eq!((b.used(0), b.spilled(0)), (1000, 200));
    b.release_slot(sb);
    assert_eq!(a.spilled(0), 0, "a slot given back gives its spill back");
}

#[test]
fn memory_the_driver_holds_is_charged_past_the_limit_and_blocks_reservations() {
    let path = temp_path("held");
    let a = Region::open(&path).unwrap();
    a.device_index(UUID_A).unwrap();
    let sa = a.claim_slot(ProcessIdentity::current()).unwrap();
    a.try_reserve(sa, 0, 900, 1000).unwrap();
    a.charge_held(sa, 0, 300);
    assert_eq!(
        a.used(0),
        1200,
        "held memory is charged even past the limit"
    );
    assert!(a.try_reserve(sa, 0, 1, 1000).is_err());
    a.release(sa, 0, 300);
    a.try_reserve(sa, 0, 100, 1000).unwrap();
    assert_eq!(a.used(0), 1000);
    a.charge_held(sa, 0, u64::MAX);
    assert_eq!(a.used(0), u64::MAX, "saturates, never wraps");
}

#[test]
fn a_checkpointed_process_s_memory_moves_off_the_devices_and_back_if_it_fits() {
    use gpupool_region::{CHECKPOINT_CHECKPOINTED, CHECKPOINT_LOCKED, CHECKPOINT_RUNNING};
    let path = temp_path("checkpoint");
    let a = Region::open(&path).unwrap();
    a.device_index(UUID_A).unwrap();
    let me = ProcessIdentity::current();
    let s = a.claim_slot(me).unwrap();
    a.try_reserve(s, 0, 600, 1000).unwrap();
    assert_eq!(a.checkpoint_state(me.pid), Some(CHECKPOINT_RUNNING));
    assert_eq!(a.checkpoint_state(0), None);
    assert!(!a.move_checkpoint_state(me.pid, CHECKPOINT_LOCKED, CHECKPOINT_CHECKPOINTED));
    assert!(a.move_checkpoint_state(me.pid, CHECKPOINT_RUNNING, CHECKPOINT_LOCKED));
    assert_eq!(a.own_checkpoint_state(s), CHECKPOINT_LOCKED);
    assert_eq!(a.move_to_host(me.pid), 600);
    assert_eq!((a.used(0), a.spilled(0)), (0, 600));
    // Another process takes 500 of the 1000: 600 no longer fit, and nothing moves.
    let b = Region::open(&path).unwrap();
    let sb = b.claim_slot(me).unwrap();
    b.try_reserve(sb, 0, 500, 1000).unwrap();
    assert_eq!(a.move_to_device(me.pid, |_| 1000), Err(0));
    assert_eq!((a.used(0), a.spilled(0)), (500, 600));
    b.release(sb, 0, 500);
    assert_eq!(a.move_to_device(me.pid, |_| 1000), Ok(600));
    assert_eq!((a.used(0), a.spilled(0)), (600, 0));
    a.release_slot(s);
    b.release_slot(sb);
}

#[test]
fn the_controller_and_a_process_hand_over_the_checkpoint_state() {
    use gpupool_region::{CHECKPOINT_CHECKPOINTED, CHECKPOINT_LOCKED, CHECKPOINT_RUNNING};
    let path = temp_path("handover");
    let process = Region::open(&path).unwrap();
    let controller = Region::open(&path).unwrap();
    process.device_index(UUID_A).unwrap();
    let me = ProcessIdentity::current();
    let s = process.claim_slot(me).unwrap();
    process.try_reserve(s, 0, 600, 1000).unwrap();
    let gate = process.gate_cells(s);
    // The process's calls count; the controller sees them.
    gate.activity.fetch_add(3, Ordering::Relaxed);
    let view = &controller.idle_views()[0];
    assert_eq!(
        (view.host_pid, view.activity, view.used[0]),
        (me.host_pid, 3, 600)
    );
    assert_eq!(controller.activity_of(me.host_pid), Some(3));
    assert_eq!(controller.activity_of(0), None);
    // Locked, then checkpointed (counted); a second lock of a locked process is refused.
    assert!(controller.begin_lock(me.host_pid, 1_000));
    assert!(!controller.begin_lock(me.host_pid, 2_000));
    assert_eq!(gate.state.load(Ordering::SeqCst), CHECKPOINT_LOCKED);
    assert!(controller.finish_checkpoint(me.host_pid));
    assert!(
        !controller.finish_checkpoint(me.host_pid),
        "not locked any more"
    );
    assert_eq!(process.checkpoints(), 1);
    // The process asks to be restored; running again clears the wish.
    process.request_restore(s);
    assert!(controller.idle_views()[0].restore_wanted);
    assert_eq!(controller.idle_views()[0].state, CHECKPOINT_CHECKPOINTED);
    assert!(
        !process.drop_stale_lock(s, u64::MAX, 1),
        "a checkpoint is never stale"
    );
    controller.mark_running(me.host_pid);
    let view = &controller.idle_views()[0];
    assert_eq!(
        (view.state, view.restore_wanted),
        (CHECKPOINT_RUNNING, false)
    );
    // A lock the controller left behind is dropped by the process once stale, not before.
    assert!(controller.begin_lock(me.host_pid, 5_000));
    assert_eq!(process.own_state_since_ns(s), 5_000);
    assert!(!process.drop_stale_lock(s, 5_500, 1_000));
    assert!(process.drop_stale_lock(s, 6_000, 1_000));
    assert_eq!(gate.state.load(Ordering::SeqCst), CHECKPOINT_RUNNING);
    // What a tenant waits for, and its priority.
    controller.set_wanted(0, 4096);
    assert_eq!((process.wanted(0), process.wanted(MAX_DEVICES)), (4096, 0));
    process.set_priority(gpupool_region::PRIORITY_LOW);
    assert_eq!(controller.priority(), gpupool_region::PRIORITY_LOW);
    process.release_slot(s);
    assert!(controller.idle_views().is_empty());
}

#[test]
fn garbage_file_is_a_clear_layout_error() {
    let path = temp_path("garbage");
    std::fs::write(&path, vec![0xabu8; 4096]).unwrap();
    match Region::open(&path) {
        Err(e @ RegionError::Layout { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains("incompatible"),
                "{msg}"
            );
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("garbage accepted"),
    }
    std::fs::write(&path, b"abc").unwrap();
    assert!(matches!(
        Region::open(&path),
        Err(RegionError::Layout { .. })
    ));
}

#[test]
fn unusable_path_is_an_io_error_naming_it() {
    let err = Region::open(std::path::Path::new("/proc/gpupool-cannot-exist/region"))
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("/proc/gpupool-cannot-exist/region"),
        "{err}"
    );
}

#[test]
fn too_many_devices_is_an_error() {
    let r = Region::private().unwrap();
    for i in 0..MAX_DEVICES {
        r.device_index([i as u8 + 1; 16]).unwrap();
    }
    assert!(matches!(
        r.device_index([200; 16]),
        Err(RegionError::DevicesFull(_))
    ));
}

/// Env variable that turns this test binary into a helper process (see [`helper_process`]).
const HELPER: &str = "GPUPOOL_REGION_TEST_HELPER";

/// A helper process: `region-path bytes then` claims a slot in the region, reserves `bytes` on
/// device 0, prints `ready`, then `sleeps` or `execs` (`sleep 30`, same pid and start time).
#[test]
fn helper_process() {
    let Ok(spec) = std::env::var(HELPER) else {
        return;
    };
    let mut parts = spec.split(' ');
    let (path, bytes, then) = (
        parts.next().unwrap(),
        parts.next().unwrap().parse::<u64>().unwrap(),
        parts.next().unwrap(),
    );
    let r = Region::open(std::path::Path::new(path)).unwrap();
    let slot = r.claim_slot(ProcessIdentity::current()).unwrap();
    r.try_reserve(slot, 0, bytes, u64::MAX / 2).unwrap();
    println!("ready");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    if then == "execs" {
        use std::os::unix::process::CommandExt;
        let e = std::process::Command::new("sleep").arg("30").exec();
        panic!("exec: {e}");
    }
    std::thread::sleep(std::time::Duration::from_secs(30));
}

/// A helper process holding `bytes` in the region at `path` (optionally under `wrapper`, e.g.
/// `unshare`), once it says it is ready; killed when dropped.
struct Helper(std::process::Child);

impl Helper {
    fn start(wrapper: &[&str], path: &std::path::Path, bytes: u64, then: &str) -> Helper {
        use std::io::BufRead;
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = std::process::Command::new(first);
                c.args(rest).arg(&exe);
                c
            }
            None => std::process::Command::new(&exe),
        };
        let mut child = cmd
            .args([
                "region::helper_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER, format!("{} {bytes} {then}", path.display()))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let ready = std::io::BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("ready"));
        assert!(ready, "helper did not start");
        Helper(child)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // A wrapper (unshare --kill-child) takes its child with it.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dead_process_slots_are_reaped() {
    let path = temp_path("reap");
    let r = Region::open(&path).unwrap();
    let helper = Helper::start(&[], &path, 900, "sleeps");
    assert_eq!(r.used(0), 900);
    assert_eq!(r.reap_dead(), 0, "a live process is never reaped");
    assert_eq!(Region::snapshot(&path).unwrap().used(0), 900);
    drop(helper);
    // An observer sees it gone at once, without touching the file.
    assert_eq!(Region::snapshot(&path).unwrap().used(0), 0);
    assert_eq!(r.used(0), 900, "the snapshot changed nothing in the file");
    // A new reservation that only fits once the dead process's memory is back succeeds.
    let mine = r.claim_slot(ProcessIdentity::current()).unwrap();
    r.try_reserve(mine, 0, 500, 1000).unwrap();
    assert_eq!(r.used(0), 500);
    assert_eq!(r.processes().len(), 1);
}

#[test]
fn a_process_in_another_pid_namespace_is_judged_alive_from_here() {
    let path = temp_path("pidns");
    let helper = Helper::start(
        &["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"],
        &path,
        1_750,
        "sleeps",
    );
    let r = Region::open(&path).unwrap();
    let ns = r.processes();
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0].pid, 1, "pid 1 of its own namespace");
    // Neither an observer nor a tenant process here (where pid 1 is another process) takes
    // its memory away.
    assert_eq!(Region::snapshot(&path).unwrap().used(0), 1_750);
    assert_eq!(r.reap_dead(), 0);
    let mine = r.claim_slot(ProcessIdentity::current()).unwrap();
    assert!(
        r.try_reserve(mine, 0, 500, 2_000).is_err(),
        "1750 + 500 > 2000"
    );
    r.try_reserve(mine, 0, 250, 2_000).unwrap();
    drop(helper);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while Region::snapshot(&path).unwrap().used(0) != 250 {
        assert!(
            std::time::Instant::now() < deadline,
            "still charged after it died"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(r.reap_dead(), 1, "gone once it exits");
}

#[test]
fn a_process_that_execs_leaves_its_old_image_s_memory_behind() {
    let path = temp_path("exec");
    let _helper = Helper::start(&[], &path, 1_500, "execs");
    let r = Region::open(&path).unwrap();
    // Same pid, same start time, a new image without CUDA: its old usage is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while Region::snapshot(&path).unwrap().used(0) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "still charged after exec"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mine = r.claim_slot(ProcessIdentity::current()).unwrap();
    r.try_reserve(mine, 0, 1_500, 2_000).unwrap();
}

#[test]
fn a_snapshot_survives_any_file_content() {
    let path = temp_path("hostile");
    let r = Region::open(&path).unwrap();
    let slot = r.claim_slot(ProcessIdentity::current()).unwrap();
    r.try_reserve(slot, 0, 100, 1000).unwrap();
    assert_eq!(Region::snapshot(&path).unwrap().used(0), 100);
    // Truncated, grown, garbage, a symlink, a folder, a fifo: errors, never a crash.
    let full = std::fs::read(&path).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for len in [0, 7, 4096, full.len() as u64 - 1, full.len() as u64 + 1] {
        f.set_len(len).unwrap();
        assert!(Region::snapshot(&path).is_err(), "length {len}");
    }
    f.set_len(full.len() as u64).unwrap();
    std::fs::write(&path, vec![0xffu8; full.len()]).unwrap();
    assert!(Region::snapshot(&path).is_err());
    let link = path.with_file_name("link");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    assert!(Region::snapshot(&link).is_err());
    assert!(
        Region::open(&link).is_err(),
        "a tenant never follows one either"
    );
    assert_eq!(
        std::fs::read(&link).unwrap(),
        std::fs::read("/etc/passwd").unwrap()
    );
    assert!(Region::snapshot(path.parent().unwrap()).is_err());
    let fifo = path.with_file_name("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(Region::snapshot(&fifo).is_err(), "no wait on a fifo");
    assert!(Region::open(&fifo).is_err());
    drop(r);
}

#[test]
fn a_held_registration_lock_times_out_with_a_clear_error() {
    let path = temp_path("lock");
    drop(Region::open(&path).unwrap());
    let f = std::fs::File::open(&path).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid fd.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    let started = std::time::Instant::now();
    let err = Region::open_within(&path, std::time::Duration::from_millis(300))
        .err()
        .expect("refused while locked");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert!(err.to_string().contains("held its lock"), "{err}");
    // Observers never wait for it.
    assert!(Region::snapshot(&path).is_ok());
}

proptest! {
    /// Sizes near u64::MAX never wrap a counter: a refused reservation leaves usage as it was.
    #[test]
    fn huge_reservations_never_wrap(first in 0u64..1 << 40, huge in (u64::MAX - (1 << 41))..=u64::MAX, limit in prop_oneof![Just(u64::MAX), (1u64 << 31)..(1u64 << 41)]) {
        let r = Region::private().unwrap();
        let s = r.claim_slot(ProcessIdentity::current()).unwrap();
        let ok = r.try_reserve(s, 0, first, limit).is_ok();
        let before = r.used(0);
        prop_assert_eq!(before, if ok { first } else { 0 });
        prop_assert!(r.try_reserve(s, 0, huge, limit).is_err() || before.checked_add(huge).is_some_and(|t| t <= limit));
        prop_assert_eq!(r.used(0), before.max(if before.checked_add(huge).is_some_and(|t| t <= limit) { before + huge } else { before }));
        prop_assert!(r.used(0) <= limit);
    }
}

#[test]
fn concurrent_reservations_never_exceed_the_limit() {
    const LIMIT: u64 = 10_000;
    let path = temp_path("stress");
    let committed = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            // Every thread maps the file on its own, as separate processes would.
            let region = Region::open(&path).unwrap();
            let committed = committed.clone();
            let peak = peak.clone();
            std::thread::spawn(move || {
                let slot = region.claim_slot(ProcessIdentity::current()).unwrap();
                let mut ok = 0;
                // Each thread holds up to three reservations, so even one thread alone comes
                // near the limit and several contend for it.
                let mut held = std::collections::VecDeque::new();
                for i in 0..20_000u64 {
                    if held.len() == 3 {
                        let old: u64 = held.pop_front().unwrap();
                        committed.fetch_sub(old, Ordering::SeqCst);
                        region.release(slot, 0, old);
                    }
                    let bytes = 1000 + (i * 37 + t * 11) % 2000;
                    if region.try_reserve(slot, 0, bytes, LIMIT).is_ok() {
                        let now = committed.fetch_add(bytes, Ordering::SeqCst) + bytes;
                        peak.fetch_max(now, Ordering::SeqCst);
                        assert!(now <= LIMIT, "limit exceeded: {now}");
                        held.push_back(bytes);
                        ok += 1;
                    } else if let Some(old) = held.pop_front() {
                        // Refused: give one back, or threads that each hold a little could
                        // fill the limit and be refused for ever.
                        committed.fetch_sub(old, Ordering::SeqCst);
                        region.release(slot, 0, old);
                    }
                }
                for b in held {
                    committed.fetch_sub(b, Ordering::SeqCst);
                    region.release(slot, 0, b);
                }
                region.release_slot(slot);
                ok
            })
        })
        .collect();
    let total_ok: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(
        total_ok > 1_000,
        "too many refusals: {total_ok} ok, peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert!(
        peak.load(Ordering::SeqCst) > LIMIT / 2,
        "the test never got near the limit"
    );
    assert_eq!(
        Region::open(&path).unwrap().used(0),
        0,
        "usage back to zero"
    );
}

proptest! {
    #[test]
    fn usage_matches_a_model(ops in proptest::collection::vec((0usize..3, 0usize..2, 1u64..5000, any::<bool>()), 1..200)) {
        let r = Region::private().unwrap();
        let slots: Vec<_> = (0..3).map(|_| r.claim_slot(ProcessIdentity::current()).unwrap()).collect();
        let mut model = [[0u64; 2]; 3];
        const LIMIT: u64 = 20_000;
        for (s, dev, bytes, reserve) in ops {
            if reserve {
                let total: u64 = model.iter().map(|m| m[dev]).sum();
                let res = r.try_reserve(slots[s], dev, bytes, LIMIT);
                prop_assert_eq!(res.is_ok(), total + bytes <= LIMIT);
                if res.is_ok() { model[s][dev] += bytes; }
            } else {
                let give = bytes.min(model[s][dev]);
                r.release(slots[s], dev, give);
                model[s][dev] -= give;
            }
            for dev in 0..2 {
                prop_assert_eq!(r.used(dev), model.iter().map(|m| m[dev]).sum::<u64>());
            }
        }
    }
}
