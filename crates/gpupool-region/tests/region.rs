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

#[test]
fn dead_process_slots_are_reaped() {
    let path = temp_path("reap");
    let r = Region::open(&path).unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("10")
        .spawn()
        .unwrap();
    let me = ProcessIdentity::current();
    let ghost = ProcessIdentity {
        pid: child.id(),
        host_pid: child.id(),
        pidns: me.pidns,
        start_time: std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
            .unwrap()
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(19)
            .unwrap()
            .parse()
            .unwrap(),
    };
    let ghost_slot = r.claim_slot(ghost).unwrap();
    r.try_reserve(ghost_slot, 0, 900, 1000).unwrap();
    assert_eq!(r.reap_dead(), 0, "a live process is never reaped");
    child.kill().unwrap();
    child.wait().unwrap();
    // A new reservation that only fits once the dead process's memory is back succeeds.
    let mine = r.claim_slot(me).unwrap();
    r.try_reserve(mine, 0, 500, 1000).unwrap();
    assert_eq!(r.used(0), 500);
    assert!(!r.slot_valid(ghost_slot));
    assert_eq!(r.processes().len(), 1);
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
