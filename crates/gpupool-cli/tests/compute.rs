//! Compute limits on the simulated GPU: kernels of known duration (tests/c/compute.c) under
//! `gpupool run --compute`, on every launch path, alone and with other tenants.
//!
//! The share a run achieved is exact: every kernel runs its whole duration on the device, so
//! launches × duration / wall time is the GPU time the tenant got. Runs are serialised (a
//! static lock) so that the CPU time the pacing needs is there.

mod common;
use common::*;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn duration_ns(kernel: &str) -> f64 {
    gpupool_config::parse_duration_ns(kernel).unwrap() as f64
}

/// Command line of the compute program.
fn compute_args(path: &str, kernel: &str, seconds: f64, threads: u32) -> Vec<String> {
    vec![
        c_program("compute", "driver").display().to_string(),
        path.into(),
        kernel.into(),
        seconds.to_string(),
        threads.to_string(),
    ]
}

/// Share of the device a finished compute run got.
fn share(out: &std::process::Output, kernel: &str) -> f64 {
    let kv = key_values(out);
    num(&kv, "launches") as f64 * duration_ns(kernel)
        / (kv["seconds"].parse::<f64>().unwrap() * 1e9)
}

fn run_limited(m: &Machine, limit: Option<&str>, path: &str, kernel: &str, seconds: f64) -> f64 {
    let mut args = vec![];
    if let Some(l) = limit {
        args.extend(["--compute", l]);
    }
    let cmd = compute_args(path, kernel, seconds, 1);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    share(&m.run(&args, &cmd), kernel)
}

fn assert_near(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 0.03,
        "{what}: achieved {:.1} % for a limit of {:.0} %",
        got * 100.0,
        want * 100.0
    );
}

#[test]
fn a_tenant_alone_gets_its_limit_short_and_long_kernels() {
    let _s = serial();
    let m = Machine::new("alone", "1x16GiB");
    for (limit, kernel, path) in [
        (25, "50us", "sync"),
        (75, "50us", "async"),
        (25, "2ms", "async"),
        (75, "2ms", "sync"),
        (10, "20ms", "async"),
        (90, "1ms", "async"),
    ] {
        let got = run_limited(&m, Some(&limit.to_string()), path, kernel, 2.0);
        assert_near(
            &format!("{limit} % {kernel} {path}"),
            got,
            limit as f64 / 100.0,
        );
    }
}

#[test]
fn without_a_limit_a_tenant_fills_the_device() {
    let _s = serial();
    let m = Machine::new("unlimited", "1x16GiB");
    let got = run_limited(&m, None, "async", "1ms", 1.0);
    assert!(got > 0.97, "unlimited run got {:.1} %", got * 100.0);
}

#[test]
fn every_launch_path_is_paced() {
    let _s = serial();
    let m = Machine::new("paths", "1x16GiB");
    for path in ["ex", "coop", "graph", "ptsz"] {
        let got = run_limited(&m, Some("40"), path, "1ms", 1.5);
        assert_near(path, got, 0.40);
    }
    // Many threads, each on its own stream, share the tenant's one limit.
    let cmd = compute_args("async", "500us", 1.5, 4);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let got = share(&m.run(&["--compute", "40"], &cmd), "500us");
    assert_near("4 threads", got, 0.40);
}

#[test]
fn two_tenants_get_their_own_limits() {
    let _s = serial();
    let m = Machine::new("two", "1x16GiB");
    let start = |limit: &str, path: &str| {
        let cmd = compute_args(path, "100us", 3.0, 1);
        m.run_cmd(
            &["--compute", limit],
            &cmd.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let a = start("30", "async");
    let b = start("60", "sync");
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_near("tenant A", share(&a, "100us"), 0.30);
    assert_near("tenant B", share(&b, "100us"), 0.60);
}

#[test]
fn a_killed_tenant_does_not_stall_the_others() {
    let _s = serial();
    let m = Machine::new("killed", "1x16GiB");
    // An unlimited tenant fills the device's queue with 20 s of work, then dies.
    let cmd = compute_args("async", "20ms", 30.0, 1);
    let mut hog = m
        .run_cmd(&[], &cmd.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: kill has no memory-safety preconditions; the whole group (gpupool run and the
    // program) dies at once.
    unsafe { libc::kill(-(hog.id() as i32), libc::SIGKILL) };
    hog.wait().unwrap();
    let got = run_limited(&m, Some("30"), "sync", "1ms", 1.5);
    assert_near("after the kill", got, 0.30);
}

#[test]
fn hami_sm_limit_is_the_cap_and_bad_values_fail_closed() {
    let _s = serial();
    let m = Machine::new("hami-sm", "1x16GiB");
    let run = |value: &str| {
        let cmd = compute_args("async", "1ms", 1.5, 1);
        Command::new(&cmd[0])
            .args(&cmd[1..])
            .envs(m.sim_env())
            .env("LD_PRELOAD", lib_dir().join("libgpupool.so"))
            .env("CUDA_DEVICE_SM_LIMIT", value)
            .output()
            .unwrap()
    };
    assert_near("CUDA_DEVICE_SM_LIMIT=40", share(&run("40"), "1ms"), 0.40);
    for bad in ["0", "150", "lots"] {
        let out = run(bad);
        assert!(!out.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("CUDA_DEVICE_SM_LIMIT"), "{bad}: {err}");
    }
}

#[test]
fn info_shows_each_tenants_cap_and_share_from_nvml() {
    let _s = serial();
    let m = Machine::new("info-shares", "1x16GiB");
    let start = |tenant: &str, limit: &str, path: &str| {
        let cmd = compute_args(path, "1ms", 4.0, 1);
        m.run_cmd(
            &["--compute", limit, "--tenant", tenant],
            &cmd.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
    };
    let mut a = start("small", "20", "async");
    let mut b = start("large", "60", "sync");
    std::thread::sleep(Duration::from_millis(2500));
    let info = m.info();
    a.wait().unwrap();
    b.wait().unwrap();
    let tenant = |name: &str| {
        let t = info["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {info}"))
            .clone();
        let d = t["devices"][0].clone();
        (
            d["compute_limit_percent"].as_u64(),
            d["compute_percent"].as_u64(),
        )
    };
    let (cap, got) = tenant("small");
    assert_eq!(cap, Some(20));
    assert!(got.is_some_and(|g| g.abs_diff(20) <= 5), "small: {got:?}");
    let (cap, got) = tenant("large");
    assert_eq!(cap, Some(60));
    assert!(got.is_some_and(|g| g.abs_diff(60) <= 5), "large: {got:?}");
    let util = info["devices"][0]["utilization_percent"].as_u64().unwrap();
    assert!(util.abs_diff(80) <= 8, "device utilisation {util}");
}
