//! Card coordination with a hostile neighbour: whatever a tenant does to the files in its own
//! folder (truncate, fill with garbage, replace with a fifo, a symlink or a folder, hold their
//! lock, forge entries and requests), another tenant keeps working and keeps its share.

use gpupool_region::card::{Card, Publish};
use gpupool_region::card_peers::{grants_path, grants_text, Grant};
use gpupool_region::{allocate, tenant_key};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const UUID: &str = "GPU-00000000-0000-0000-0000-000000000001";

fn card_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpupool-cards-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn busy(request: u32, limit: u32, now: u64) -> Publish {
    Publish {
        pid: std::process::id(),
        low: false,
        request,
        limit,
        last_launch_ns: now,
        used_ppm: 100_000,
    }
}

/// The rate `card`'s tenant gets now.
fn rate_of(card: &mut Card, now: u64) -> u32 {
    card.refresh(now);
    let demands = card.demands(now);
    let mine = demands
        .iter()
        .find(|d| d.tenant == card.key())
        .copied()
        .expect("its own demand");
    allocate(&demands, &mine)
}

/// Something done to a file.
type Damage = Box<dyn Fn(&Path)>;

fn replace(path: &Path, with: impl FnOnce(&Path)) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_dir_all(path);
    with(path);
}

#[test]
fn whatever_a_tenant_does_to_its_own_files_another_tenant_keeps_working() {
    let dir = card_dir("damage");
    let mut victim = Card::open(&dir, "victim", UUID).unwrap();
    let attacker = Card::open(&dir, "attacker", UUID).unwrap();
    let t = now();
    let v = victim.claim(1, t).unwrap();
    victim.publish(v, &busy(30, 30, t), t);
    let a = attacker.claim(2, t).unwrap();
    attacker.publish(a, &busy(50, 50, t), t);
    victim.refresh(t);
    assert_eq!(victim.demands(t).len(), 2, "both tenants seen");

    let file = dir.join("attacker").join(UUID);
    let size = std::fs::metadata(&file).unwrap().len();
    let damage: Vec<(&str, Damage)> = vec![
        (
            "truncated while mapped by its owner",
            Box::new(|p: &Path| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(0)
                    .unwrap()
            }),
        ),
        (
            "half its size",
            Box::new(move |p: &Path| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(size / 2)
                    .unwrap()
            }),
        ),
        (
            "garbage of the right size",
            Box::new(move |p: &Path| std::fs::write(p, vec![0xa5u8; size as usize]).unwrap()),
        ),
        (
            "huge",
            Box::new(|p: &Path| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(1 << 40)
                    .unwrap()
            }),
        ),
        (
            "a fifo",
            Box::new(|p: &Path| {
                replace(p, |p| {
                    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
                    // SAFETY: a NUL-terminated path.
                    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
                })
            }),
        ),
        (
            "a symlink to /dev/zero",
            Box::new(|p: &Path| {
                replace(p, |p| std::os::unix::fs::symlink("/dev/zero", p).unwrap())
            }),
        ),
        (
            "a folder",
            Box::new(|p: &Path| replace(p, |p| std::fs::create_dir(p).unwrap())),
        ),
    ];
    for (what, harm) in damage {
        // The attacker's file as it was, then the damage.
        replace(&file, |_| {});
        let again = Card::open(&dir, "attacker", UUID).unwrap();
        let t = now();
        let a = again.claim(2, t).unwrap();
        again.publish(a, &busy(50, 50, t), t);
        // Seen as a tenant before the damage (a scan happens on the first refresh).
        let mut reader = Card::open(&dir, "victim", UUID).unwrap();
        reader.refresh(t);
        assert_eq!(reader.demands(t).len(), 2, "{what}: before");
        harm(&file);
        // The victim reads the damaged file every period: no crash. Damage in place is seen at
        // once (the attacker's entries are gone); a file replaced is read again at the next
        // scan of the folder (a fresh reader here).
        let in_place = std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file());
        for _ in 0..3 {
            let t = now();
            reader.refresh(t);
            let tenants: Vec<u64> = reader.demands(t).iter().map(|d| d.tenant).collect();
            assert!(tenants.contains(&tenant_key("victim")), "{what}");
            if in_place {
                assert_eq!(tenants, [tenant_key("victim")], "{what}");
            }
        }
        let mut rescanned = Card::open(&dir, "victim", UUID).unwrap();
        rescanned.refresh(now());
        let tenants: Vec<u64> = rescanned.demands(now()).iter().map(|d| d.tenant).collect();
        assert_eq!(tenants, [tenant_key("victim")], "{what}: after a scan");
        assert_eq!(
            rate_of(&mut victim, now()),
            30,
            "{what}: the victim keeps its share"
        );
        drop(again);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_lock_another_tenant_holds_never_blocks() {
    let dir = card_dir("lock");
    let attacker = Card::open(&dir, "attacker", UUID).unwrap();
    let t = now();
    attacker.claim(2, t).unwrap();
    // The attacker holds every lock it can take on its folder and file, forever.
    let folder = std::fs::File::open(dir.join("attacker")).unwrap();
    let file = std::fs::File::open(dir.join("attacker").join(UUID)).unwrap();
    let top = std::fs::File::open(&dir).unwrap();
    for f in [&folder, &file, &top] {
        // SAFETY: flock on descriptors we own.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    }
    let started = std::time::Instant::now();
    let mut victim = Card::open(&dir, "victim", UUID).unwrap();
    let t = now();
    let v = victim.claim(1, t).unwrap();
    victim.publish(v, &busy(40, 40, t), t);
    assert_eq!(rate_of(&mut victim, t), 40);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn forged_requests_and_entries_change_only_the_forger_s_share() {
    let dir = card_dir("forged");
    let mut borrower = Card::open(&dir, "borrower", UUID).unwrap();
    let forger = Card::open(&dir, "forger", UUID).unwrap();
    let t = now();
    let b = borrower.claim(1, t).unwrap();
    borrower.publish(b, &busy(20, 80, t), t);
    // The forger asks for 90 % (it was granted 10 %) in an entry that claims the borrower's key.
    let f = forger.claim(2, t).unwrap();
    forger.publish(f, &busy(90, 90, t), t);
    let forged_key = tenant_key("borrower");
    // Its own file: it can write anything there, here the borrower's key.
    let path = dir.join("forger").join(UUID);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[16..24].copy_from_slice(&forged_key.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();

    // Without grants (no node agent), requests are taken as published: no idle time to lend.
    assert_eq!(rate_of(&mut borrower, t), 20);
    let demands = borrower.demands(t);
    assert!(
        demands.iter().any(|d| d.tenant == tenant_key("forger")),
        "the forged entry counts for the folder that holds it: {demands:?}"
    );
    assert_eq!(
        demands
            .iter()
            .filter(|d| d.tenant == tenant_key("borrower"))
            .count(),
        1
    );

    // The node agent's grants cap each tenant: the forger's 10 %, the borrower's 20–80 %.
    let grants = [
        (
            "borrower".to_string(),
            Grant {
                request: 20,
                limit: 80,
                low: false,
            },
        ),
        (
            "forger".to_string(),
            Grant {
                request: 10,
                limit: 10,
                low: false,
            },
        ),
    ];
    std::fs::write(grants_path(&dir, UUID), grants_text(&grants)).unwrap();
    let mut fresh = Card::open(&dir, "borrower", UUID).unwrap();
    // 100 − 10 (headroom while sharing) − 10 − 20 = 60 idle, lent to the borrower.
    assert_eq!(rate_of(&mut fresh, t), 80);
    // A tenant the node granted nothing (it was never admitted) counts for nothing.
    let stranger = Card::open(&dir, "stranger", UUID).unwrap();
    let s = stranger.claim(3, t).unwrap();
    stranger.publish(s, &busy(100, 100, t), t);
    let mut fresh = Card::open(&dir, "borrower", UUID).unwrap();
    fresh.refresh(t);
    assert!(!fresh
        .demands(t)
        .iter()
        .any(|d| d.tenant == tenant_key("stranger")));
    assert_eq!(rate_of(&mut fresh, t), 80);
    let _ = std::fs::remove_dir_all(&dir);
}
