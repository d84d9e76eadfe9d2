//! A tenant that tries to get past its memory limit, on the simulated GPU: sizes near the
//! maximum on every allocation path, VMM memory released while mapped, arrays of every format,
//! exec, devices reordered, a process in another pid namespace and a reader on the host.
//! Each test fails without the defence it names.

use crate::common;
use common::*;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// `hostile MODE HOLD_MIB` under `gpupool run --memory LIMIT`.
fn hostile(
    m: &Machine,
    limit: &str,
    mode: &str,
    hold_mib: u64,
) -> std::collections::HashMap<String, String> {
    let prog = c_program("hostile", "driver");
    key_values(&m.run(
        &["--memory", limit],
        &[prog.to_str().unwrap(), mode, &hold_mib.to_string()],
    ))
}

/// The simulated cards' contexts cost 256 MiB each.
const CONTEXT: u64 = 256 * MIB;

#[test]
fn sizes_near_the_maximum_are_refused_without_resetting_the_count() {
    let m = Machine::new("hostile-sizes", "1x16GiB");
    let kv = hostile(&m, "2GiB", "sizes", 1536);
    for (key, rc) in &kv {
        if key.starts_with("array_") {
            assert!(
                rc == "1" || rc == "2",
                "{key} {rc}: invalid or out of memory"
            );
        } else if key.contains('_') && !key.starts_with("free") {
            assert_eq!(rc, "2", "{key}: CUDA_ERROR_OUT_OF_MEMORY");
        }
    }
    assert_eq!(num(&kv, "free_after_huge"), num(&kv, "free_before"));
    // Everything it could get afterwards still fits the limit.
    assert_eq!(num(&kv, "held"), 2 * GIB - CONTEXT, "{kv:?}");
}

#[test]
fn the_simulated_card_never_wraps_either() {
    // No library: the simulated driver alone keeps its 16 GiB.
    let m = Machine::new("hostile-sim-sizes", "1x16GiB");
    let prog = c_program("hostile", "driver");
    let out = Command::new(&prog)
        .args(["sizes", "15360"])
        .envs(m.sim_env())
        .output()
        .unwrap();
    let kv = key_values(&out);
    assert_eq!(num(&kv, "alloc_0"), 2);
    assert!(num(&kv, "held") <= 16 * GIB - CONTEXT, "{kv:?}");
}

#[test]
fn vmm_memory_released_while_mapped_stays_charged_until_unmapped() {
    let m = Machine::new("hostile-vmm", "1x16GiB");
    let kv = hostile(&m, "2GiB", "vmm", 0);
    assert_eq!(
        num(&kv, "mapped"),
        1,
        "one 1 GiB handle fits beside the context"
    );
    assert_eq!(num(&kv, "error"), 2);
    assert!(num(&kv, "held") <= 2 * GIB - CONTEXT, "{kv:?}");
}

#[test]
fn arrays_of_every_format_are_charged_and_unknown_codes_refused() {
    let m = Machine::new("hostile-arrays", "1x16GiB");
    let kv = hostile(&m, "2GiB", "arrays", 0);
    assert_eq!(num(&kv, "unknown_created"), 0);
    assert!(num(&kv, "created") > 8, "{kv:?}");
    assert!(num(&kv, "held") <= 2 * GIB - CONTEXT, "{kv:?}");
}

#[test]
fn an_exec_leaves_no_charge_of_the_old_image_behind() {
    let m = Machine::new("hostile-exec", "1x16GiB");
    // 1.5 GiB before exec, 1.5 GiB again after it, under 2 GiB.
    let kv = hostile(&m, "2GiB", "exec", 1536);
    assert_eq!(num(&kv, "after_exec_alloc"), 0, "{kv:?}");
}

fn probe_report(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn reordering_the_visible_devices_does_not_swap_their_limits() {
    let m = Machine::new("hostile-reorder", "2x16GiB");
    let probe = format!("{} probe --chunk 256MiB", gpupool().display());
    for order in ["0,1", "1,0"] {
        let out = m.run(
            &["--memory", "8GiB,2GiB"],
            &["sh", "-c", &format!("CUDA_VISIBLE_DEVICES={order} {probe}")],
        );
        let r = probe_report(&out);
        // Ordinal 0 is the first card in order 0,1 and the second in order 1,0.
        let limit = if order == "0,1" { 8 * GIB } else { 2 * GIB };
        assert_eq!(r["total"], limit, "order {order}: {r}");
        assert_eq!(r["allocated"], limit - CONTEXT, "order {order}: {r}");
    }
}

#[test]
fn a_reader_on_the_host_never_frees_a_process_in_another_pid_namespace() {
    let m = Machine::new("hostile-pidns", "1x16GiB");
    let gp = gpupool();
    let gp = gp.to_str().unwrap();
    // A tenant process in its own pid namespace (pid 1 there) holds all it may.
    let mut holder = m
        .run_cmd(
            &["--memory", "2GiB", "--tenant", "t"],
            &[
                "unshare",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                gp,
                "probe",
                "--chunk",
                "256MiB",
                "--hold-ms",
                "20000",
            ],
        )
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let _group = KillGroup(holder.id());
    let held = |m: &Machine| -> u64 {
        m.info()["tenants"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == "t"))
            .map_or(0, |t| t["devices"][0]["used_bytes"].as_u64().unwrap_or(0))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while held(&m) < 2 * GIB {
        assert!(
            std::time::Instant::now() < deadline,
            "the holder never filled its limit"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Readers on the host, again and again: the holder's memory stays counted.
    for _ in 0..5 {
        assert_eq!(held(&m), 2 * GIB);
    }
    // Another process of the same tenant, on the host, gets nothing more.
    let out = m.run(
        &["--memory", "2GiB", "--tenant", "t"],
        &[gp, "probe", "--chunk", "256MiB"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() {
        let r = probe_report(&out);
        assert_eq!(r["allocated"], 0, "{r}");
    } else {
        // Its own context does not fit: CUDA refuses it at the first call.
        assert!(
            stderr.contains("probe") || stderr.contains("CUDA"),
            "{stderr}"
        );
    }
    drop(_group);
    let _ = holder.wait();
}

/// Kills a whole process group when dropped (a wrapper's children too).
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // SAFETY: signalling a process group this test created.
        unsafe { libc::kill(-(self.0 as i32), libc::SIGKILL) };
    }
}

#[test]
fn a_simulator_folder_someone_else_planted_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::env::temp_dir().join(format!("gpupool-planted-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    // SAFETY: getuid has no preconditions.
    let base = tmp.join(format!("gpupool-sim-{}", unsafe { libc::getuid() }));
    let lib = base.join("1x16GiB").join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("libcuda.so.1"), b"not ours").unwrap();
    let run = || {
        Command::new(gpupool())
            .args(["run", "--sim", "1x16GiB", "--", "true"])
            .env("TMPDIR", &tmp)
            .env("GPUPOOL_LIB_DIR", lib_dir())
            .output()
            .unwrap()
    };
    for (mode, owner) in [(0o777, None), (0o755, Some(12345))] {
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(mode)).unwrap();
        if let Some(uid) = owner {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                continue;
            }
            std::os::unix::fs::chown(&base, Some(uid), None).unwrap();
        }
        let out = run();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "ran in a planted folder");
        assert!(
            err.contains(&base.display().to_string()) && err.contains("not safe to use"),
            "{err}"
        );
    }
    // Its own private folder is fine.
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// Waits for the first card file a tenant creates in `cards` (`<cards>/<tenant>/<uuid>`);
/// returns the card's UUID.
fn first_card_file(cards: &std::path::Path) -> String {
    for _ in 0..200 {
        let found = std::fs::read_dir(cards).ok().and_then(|list| {
            list.flatten()
                .filter(|d| d.path().is_dir())
                .find_map(|d| std::fs::read_dir(d.path()).ok()?.flatten().next())
        });
        if let Some(file) = found {
            return file.file_name().to_string_lossy().into_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("no card file in {}", cards.display());
}

#[test]
fn hostile_card_files_never_hurt_another_tenant() {
    // A tenant paced through the card folder runs 2.5 s while a neighbour publishes an entry
    // in its own folder, then truncates, garbles and replaces its file, over and over: the
    // tenant reads it all the time and must finish normally.
    let m = Machine::new("hostile-cards", "1x16GiB");
    let cards = m.state.join("hostile-cards");
    let _ = std::fs::remove_dir_all(&cards);
    std::fs::create_dir_all(&cards).unwrap();
    let prog = c_program("compute", "driver");
    let mut victim = m
        .run_cmd(
            &["--compute", "50", "--tenant", "victim"],
            &[prog.to_str().unwrap(), "async", "1ms", "2.5", "1"],
        )
        .env("GPUPOOL_CARD_DIR", &cards)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let uuid = first_card_file(&cards);
    let file = cards.join("neighbour").join(&uuid);
    let started = std::time::Instant::now();
    let mut round = 0u64;
    while started.elapsed() < std::time::Duration::from_secs(2) {
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_dir_all(&file);
        let card = gpupool_region::Card::open(&cards, "neighbour", &uuid).unwrap();
        let slot = card.claim(1, 0).unwrap();
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let now = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
        let entry = gpupool_region::Publish {
            pid: 1,
            low: false,
            request: 100,
            limit: 100,
            last_launch_ns: now,
            used_ppm: 1_000_000,
        };
        card.publish(slot, &entry, now);
        std::thread::sleep(std::time::Duration::from_millis(15));
        let size = std::fs::metadata(&file).unwrap().len();
        match round % 4 {
            0 => std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .set_len(0)
                .unwrap(),
            1 => std::fs::write(&file, vec![0xffu8; size as usize]).unwrap(),
            2 => {
                std::fs::remove_file(&file).unwrap();
                std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
            }
            _ => {
                std::fs::remove_file(&file).unwrap();
                std::fs::create_dir(&file).unwrap();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(15));
        round += 1;
    }
    let out = victim_output(&mut victim);
    assert!(
        out.status.success(),
        "the tenant ended with {:?} after {round} rounds: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let kv = key_values(&out);
    let launches: u64 = kv["launches"].parse().unwrap();
    assert!(launches > 0, "{kv:?}");
}

fn victim_output(child: &mut std::process::Child) -> std::process::Output {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    std::process::Output {
        status: child.wait().unwrap(),
        stdout,
        stderr,
    }
}
