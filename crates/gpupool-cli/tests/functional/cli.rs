//! The `gpupool` command itself: exit status, `info`, `demo`.

use crate::common;
use common::*;
use std::process::Command;

#[test]
fn run_returns_the_commands_exit_status() {
    let m = Machine::new("exit", "1x4GiB");
    assert_eq!(m.run(&[], &["sh", "-c", "exit 7"]).status.code(), Some(7));
    assert_eq!(
        m.run(&[], &["sh", "-c", "kill -TERM $$"]).status.code(),
        Some(128 + 15)
    );
    let out = m.run(&[], &["/nonexistent/program"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/program"));
}

#[test]
fn run_sets_the_environment_for_the_tenant() {
    let m = Machine::new("env", "2x4GiB");
    let out = m.run(
        &["--memory", "1GiB", "--devices", "1"],
        &[
            "sh",
            "-c",
            "echo $GPUPOOL_MEMORY_LIMIT $CUDA_VISIBLE_DEVICES $LD_PRELOAD",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("1GiB 1 "), "{text}");
    assert!(text.trim_end().ends_with("libgpupool.so"), "{text}");
    // Per-device values are pinned to the cards the command sees, in its order.
    let uuids: Vec<String> = m.info()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["uuid"].as_str().unwrap().to_string())
        .collect();
    let out = m.run(
        &["--memory", "1GiB,2GiB", "--devices", "1,0"],
        &["sh", "-c", "echo $GPUPOOL_MEMORY_LIMIT"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("{}=1GiB,{}=2GiB", uuids[1], uuids[0]),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // More values than devices is a mistake, said as such.
    let out = m.run(&["--memory", "1GiB,2GiB", "--devices", "1"], &["true"]);
    let err = failure_message(&out);
    assert!(
        err.contains("--memory") && err.contains("2 values for the 1 devices"),
        "{err}"
    );
}

#[test]
fn info_lists_simulated_devices_and_tenants() {
    let m = Machine::new("info", "2xH100");
    let v = m.info();
    let devs = v["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[0]["name"], "NVIDIA H100 80GB HBM3");
    assert_eq!(devs[1]["total_bytes"], 81_559 * MIB);
    assert_ne!(devs[0]["uuid"], devs[1]["uuid"]);
    // A tenant that ran leaves a named region behind, listed with its limit.
    let probe = gpupool();
    assert!(m
        .run(
            &["--memory", "3GiB", "--tenant", "team-a"],
            &[probe.to_str().unwrap(), "probe", "--max-chunks", "1"]
        )
        .status
        .success());
    let t = m.tenant("team-a");
    assert_eq!(t["devices"][0]["limit_bytes"], 3 * GIB);
    assert_eq!(t["devices"][0]["used_bytes"], 0);
    assert_eq!(t["devices"][0]["uuid"], devs[0]["uuid"]);
    // Text output too.
    let out = Command::new(gpupool())
        .args(["info", "--sim", &m.spec, "--state"])
        .arg(&m.state)
        .env("GPUPOOL_LIB_DIR", lib_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("NVIDIA H100 80GB HBM3")
            && text.contains("team-a")
            && text.contains("3.00 GiB"),
        "{text}"
    );
}

#[test]
fn demo_shows_two_tenants_held_to_their_limits() {
    let out = Command::new(gpupool())
        .arg("demo")
        .env("GPUPOOL_LIB_DIR", lib_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |t: &str| {
        text.lines()
            .find(|l| l.starts_with(t))
            .unwrap_or_else(|| panic!("no {t} in {text}"))
            .to_string()
    };
    assert!(
        line("tenant-A").contains("3.50 GiB (7)") && line("tenant-A").contains("OUT_OF_MEMORY"),
        "{text}"
    );
    assert!(line("tenant-B").contains("5.50 GiB (11)"), "{text}");
    assert!(text.contains("9.50 GiB used of 16.00 GiB"), "{text}");
}
