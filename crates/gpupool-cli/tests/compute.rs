//! Compute limits on the simulated GPU: kernels of known duration (tests/c/compute.c) under
//! `gpupool run --compute`, on every launch path, alone and with other tenants.
//!
//! The share a run achieved is exact: every kernel runs its whole duration on the device, so
//! launches × duration / wall time is the GPU time the tenant got. Runs are serialised (a
//! static lock) so that the CPU time the pacing needs is there.
//!
//! The simulated device and the pacer both run on the test machine's CPUs, so a burst of load
//! from elsewhere (a noisy CI host) can starve a run and make it miss. Every measurement is
//! therefore taken again once when it misses ([`measured`]): a pacing error misses both times,
//! and the first miss is printed so that a recurring near-miss stays visible.

mod common;
use common::remote_server::*;
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

/// `Err` unless `got` is within `tolerance` of `want` (shares, 0..1).
fn within(what: &str, got: f64, want: f64, tolerance: f64) -> Result<(), String> {
    if (got - want).abs() <= tolerance {
        Ok(())
    } else {
        Err(format!(
            "{what}: achieved {:.1} % for a limit of {:.0} %",
            got * 100.0,
            want * 100.0
        ))
    }
}

/// `Err` unless `got` is within 3 pp of `want` (the accuracy goal).
fn near(what: &str, got: f64, want: f64) -> Result<(), String> {
    within(what, got, want, 0.03)
}

/// `Err(message)` when `ok` is false.
fn check(ok: bool, message: String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(message)
    }
}

/// Runs a timed measurement, and once more if it missed; panics when both missed.
fn measured(mut run: impl FnMut() -> Result<(), String>) {
    let Err(first) = run() else { return };
    eprintln!("missed once, measuring again: {first}");
    if let Err(second) = run() {
        panic!("missed twice: {first}; then {second}");
    }
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
        measured(|| {
            let got = run_limited(&m, Some(&limit.to_string()), path, kernel, 2.0);
            near(
                &format!("{limit} % {kernel} {path}"),
                got,
                limit as f64 / 100.0,
            )
        });
    }
}

#[test]
fn without_a_limit_a_tenant_fills_the_device() {
    let _s = serial();
    let m = Machine::new("unlimited", "1x16GiB");
    measured(|| {
        let got = run_limited(&m, None, "async", "1ms", 1.0);
        check(
            got > 0.97,
            format!("unlimited run got {:.1} %", got * 100.0),
        )
    });
}

#[test]
fn kernels_registered_with_the_runtime_are_paced() {
    let _s = serial();
    let m = Machine::new("runtime-kernels", "1x16GiB");
    for v in ["12.9", "11.8"] {
        let prog = c_program("rt_kernel", v).display().to_string();
        measured(|| {
            let out = m.run(&["--compute", "40"], &[&prog, "1ms", "1.5"]);
            near(&format!("runtime {v} kernels"), share(&out, "1ms"), 0.40)
        });
    }
}

#[test]
fn a_null_launch_simulator_checks_launches_but_queues_no_gpu_time() {
    // `GPUPOOL_SIM_LAUNCH=none` (gpupool-bench's null-driver rows): 20 ms kernels launched and
    // synchronised one after another take no time, yet the run succeeds through the library.
    let _s = serial();
    let m = Machine::new("null", "1x16GiB");
    let cmd = compute_args("sync", "20ms", 0.3, 1);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let out = m
        .run_cmd(&["--compute", "50"], &cmd)
        .env("GPUPOOL_SIM_LAUNCH", "none")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let launches = num(&key_values(&out), "launches");
    // Queued, 0.3 s holds 15 of them at most (7 at 50 %).
    assert!(launches > 1000, "{launches} launches in 0.3 s");
}

#[test]
fn every_launch_path_is_paced() {
    let _s = serial();
    let m = Machine::new("paths", "1x16GiB");
    for path in ["ex", "coop", "graph", "ptsz"] {
        measured(|| near(path, run_limited(&m, Some("40"), path, "1ms", 1.5), 0.40));
    }
    // Many threads, each on its own stream, share the tenant's one limit.
    let cmd = compute_args("async", "500us", 1.5, 4);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    measured(|| {
        let got = share(&m.run(&["--compute", "40"], &cmd), "500us");
        near("4 threads", got, 0.40)
    });
}

#[test]
fn launches_captured_into_a_graph_are_not_paced_until_the_graph_runs() {
    // Fifty 5 ms kernels (timed before, as frameworks warm up before capturing), captured at
    // a 40 % limit: paced as if they ran, the capture would be held about 0.4 s.
    let _s = serial();
    let m = Machine::new("capture", "1x16GiB");
    let cmd = compute_args("capture", "5ms", 1.0, 1);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    measured(|| {
        let out = m.run(&["--compute", "40"], &cmd);
        let kv = key_values(&out);
        let capture: f64 = kv["capture_seconds"].parse().unwrap();
        check(capture < 0.1, format!("capturing took {capture} s: {kv:?}"))?;
        check(
            num(&kv, "launches") >= 50,
            format!("the graph never ran: {kv:?}"),
        )
    });
}

#[test]
fn a_remote_tenant_s_limit_holds_on_the_server() {
    // The client has no GPU: its launches are paced by the library in its session on the
    // server, with the limit from the server's clients file. A client that never
    // synchronises is held back by the acknowledgement window, so its final synchronisation
    // waits for little more than what it launched in time.
    let _s = serial();
    let m = Machine::new("remote-compute", "1x16GiB");
    let server = Server::start(&m, "127.0.0.1:0", &format!("t {TOKEN} compute=40\n"));
    for path in ["sync", "async", "ex", "coop", "graph", "ptsz"] {
        let cmd = compute_args(path, "1ms", 1.5, 1);
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        measured(|| {
            let out = server.client(&cmd).output().unwrap();
            assert!(out.status.success(), "{path}: {out:?}");
            let seconds: f64 = key_values(&out)["seconds"].parse().unwrap();
            check(
                seconds < 2.5,
                format!("{path}: the final synchronisation ended at {seconds:.2} s"),
            )?;
            let got = share(&out, "1ms");
            eprintln!("remote {path}: {:.1} % in {seconds:.2} s", got * 100.0);
            near(&format!("remote {path}"), got, 0.40)
        });
    }
    // Kernels registered with the runtime (a library on 12.9, the private interface on 11.8).
    for v in ["12.9", "11.8"] {
        let prog = c_program("rt_kernel", v).display().to_string();
        measured(|| {
            let out = server.client(&[&prog, "1ms", "1.5"]).output().unwrap();
            assert!(out.status.success(), "{v}: {out:?}");
            near(
                &format!("remote runtime {v} kernels"),
                share(&out, "1ms"),
                0.40,
            )
        });
    }
}

#[test]
fn long_kernels_keep_every_100ms_window_within_limit_plus_10() {
    // 25 % with 20 ms kernels: one kernel every 80 ms would put two of them (40 %) into the
    // 100 ms after each start; they are spaced so that no window holds more than 35 %, at a
    // share still within 3 points of the limit.
    let _s = serial();
    let m = Machine::new("windows", "1x16GiB");
    measured(|| {
        let (trace, pid) = std::thread::scope(|s| {
            let rec = s.spawn(|| Trace::record_every(&m, 4.5, Duration::from_millis(2)));
            let mut a = start_tenant(
                &m,
                &["--compute", "25", "--tenant", "w"],
                "async",
                "20ms",
                4.5,
            );
            let pid = tenant_pid(&m, "w");
            a.wait().unwrap();
            (rec.join().unwrap(), pid)
        });
        let share = trace.share(pid, 1.2, 4.2);
        near("share", share, 0.25)?;
        let window = trace.max_window(pid, 1.2, 4.2);
        check(
            window <= 0.36,
            format!(
                "a 100 ms window held {:.1} % (share {:.1} %)",
                window * 100.0,
                share * 100.0
            ),
        )
    });
}

#[test]
fn long_kernels_beside_another_tenant_keep_their_windows() {
    // 25 % and 50 % with 20 ms kernels: beside each other a kernel runs in time slices, over
    // up to twice its GPU time, which it may get mostly at the end of its run. Spaced by
    // submission times, the 25 % tenant had 38–40 % in some windows; held by its runs
    // (`ComputeState::window_hold_ns`), no window holds more than limit + 10 points.
    let _s = serial();
    let m = Machine::new("windows-two", "1x16GiB");
    let start = |tenant: &str, limit: &str| {
        start_tenant(
            &m,
            &["--compute", limit, "--tenant", tenant],
            "async",
            "20ms",
            5.0,
        )
    };
    measured(|| {
        let (trace, pa, pb) = std::thread::scope(|s| {
            let rec = s.spawn(|| Trace::record_every(&m, 5.0, Duration::from_millis(2)));
            let mut a = start("wa", "25");
            let mut b = start("wb", "50");
            let (pa, pb) = (tenant_pid(&m, "wa"), tenant_pid(&m, "wb"));
            a.wait().unwrap();
            b.wait().unwrap();
            (rec.join().unwrap(), pa, pb)
        });
        for (pid, limit) in [(pa, 0.25), (pb, 0.50)] {
            let window = trace.max_window(pid, 1.2, 4.7);
            let share = trace.share(pid, 1.2, 4.7);
            // 1 point for the trace's own sampling (as in the test alone above).
            check(
                window <= limit + 0.11,
                format!(
                    "{:.0} %: a 100 ms window held {:.1} % (share {:.1} %)",
                    limit * 100.0,
                    window * 100.0,
                    share * 100.0
                ),
            )?;
            // The windows cost the smaller tenant some share (docs/compute-limits.md: 3 to 5
            // points on a busy machine): bounded here so that a hold that starves it fails.
            check(
                share >= limit * 0.75 && share <= limit + 0.03,
                format!("{:.0} %: share {:.1} %", limit * 100.0, share * 100.0),
            )?;
        }
        Ok(())
    });
}

#[test]
fn two_tenants_get_their_own_limits() {
    // Measured as the issue asks: after the first second (convergence), from the device
    // timeline, not over the whole run with its start-up.
    let _s = serial();
    let m = Machine::new("two", "1x16GiB");
    let start = |tenant: &str, limit: &str, path: &str| {
        start_tenant(
            &m,
            &["--compute", limit, "--tenant", tenant],
            path,
            "100us",
            4.0,
        )
    };
    measured(|| {
        let (trace, pa, pb) = std::thread::scope(|s| {
            let rec = s.spawn(|| Trace::record(&m, 4.0));
            let mut a = start("a", "30", "async");
            let mut b = start("b", "60", "sync");
            let (pa, pb) = (tenant_pid(&m, "a"), tenant_pid(&m, "b"));
            a.wait().unwrap();
            b.wait().unwrap();
            (rec.join().unwrap(), pa, pb)
        });
        near("tenant A", trace.share(pa, 1.2, 3.6), 0.30)?;
        near("tenant B", trace.share(pb, 1.2, 3.6), 0.60)
    });
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
    measured(|| {
        near(
            "after the kill",
            run_limited(&m, Some("30"), "sync", "1ms", 1.5),
            0.30,
        )
    });
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
    measured(|| near("CUDA_DEVICE_SM_LIMIT=40", share(&run("40"), "1ms"), 0.40));
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
        start_tenant(
            &m,
            &["--compute", limit, "--tenant", tenant],
            path,
            "1ms",
            4.0,
        )
    };
    measured(|| {
        let mut a = start("small", "20", "async");
        let mut b = start("large", "60", "sync");
        std::thread::sleep(Duration::from_millis(2500));
        let info = m.info();
        a.wait().unwrap();
        b.wait().unwrap();
        info_shares(&info)
    });
}

/// Checks the caps and shares `gpupool info` reported for the two tenants of
/// [`info_shows_each_tenants_cap_and_share_from_nvml`].
fn info_shares(info: &serde_json::Value) -> Result<(), String> {
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
    check(
        got.is_some_and(|g| g.abs_diff(20) <= 5),
        format!("small: {got:?}"),
    )?;
    let (cap, got) = tenant("large");
    assert_eq!(cap, Some(60));
    check(
        got.is_some_and(|g| g.abs_diff(60) <= 5),
        format!("large: {got:?}"),
    )?;
    let util = info["devices"][0]["utilization_percent"].as_u64().unwrap();
    check(util.abs_diff(80) <= 8, format!("device utilisation {util}"))
}

/// Busy time per pid on the simulated card, sampled every 20 ms (or as asked).
struct Trace {
    samples: Vec<(f64, Vec<(u32, u64)>)>,
}

impl Trace {
    fn record(m: &Machine, seconds: f64) -> Trace {
        Trace::record_every(m, seconds, Duration::from_millis(20))
    }

    fn record_every(m: &Machine, seconds: f64, period: Duration) -> Trace {
        let path = m.state.join("timeline-0");
        let t0 = std::time::Instant::now();
        while !path.exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "no timeline");
            std::thread::sleep(Duration::from_millis(5));
        }
        let timeline = gpupool_timeline::Timeline::open(&path, 2_000_000).unwrap();
        let mut samples = Vec::new();
        while t0.elapsed().as_secs_f64() < seconds {
            // A read that waited for the timeline's lock is taken again: its time stamp must
            // be the time its figures are for.
            let before = t0.elapsed().as_secs_f64();
            let (_, procs) = timeline.busy();
            let after = t0.elapsed().as_secs_f64();
            if after - before > 0.000_5 {
                continue;
            }
            let per = procs.iter().map(|p| (p.pid, p.busy_ns)).collect();
            samples.push(((before + after) / 2.0, per));
            std::thread::sleep(period);
        }
        Trace { samples }
    }

    /// The highest share of pid `pid` in any window of 100 to 105 ms between `from` and `to`
    /// seconds (windows between samples: record them a few ms apart).
    fn max_window(&self, pid: u32, from: f64, to: f64) -> f64 {
        let mut max = 0.0f64;
        for i in 0..self.samples.len() {
            let t = self.samples[i].0;
            if t < from {
                continue;
            }
            let Some(j) = (i + 1..self.samples.len()).find(|&j| self.samples[j].0 - t >= 0.1)
            else {
                break;
            };
            let span = self.samples[j].0 - t;
            if self.samples[j].0 > to {
                break;
            }
            if span <= 0.105 {
                max = max.max((self.busy(j, pid) - self.busy(i, pid)) as f64 / 1e9 / span);
            }
        }
        max
    }

    fn busy(&self, i: usize, pid: u32) -> u64 {
        self.samples[i]
            .1
            .iter()
            .find(|(p, _)| *p == pid)
            .map_or(0, |(_, b)| *b)
    }

    /// Share of the card pid `pid` used between `from` and `to` seconds.
    fn share(&self, pid: u32, from: f64, to: f64) -> f64 {
        let i = self.samples.iter().position(|s| s.0 >= from).unwrap();
        let j = self.samples.iter().rposition(|s| s.0 <= to).unwrap();
        let span = self.samples[j].0 - self.samples[i].0;
        (self.busy(j, pid) - self.busy(i, pid)) as f64 / 1e9 / span
    }
}

/// Pid of the program a tenant runs (from `gpupool info`).
fn tenant_pid(m: &Machine, tenant: &str) -> u32 {
    let t0 = std::time::Instant::now();
    loop {
        let info = m.info();
        let pid = info["tenants"].as_array().and_then(|ts| {
            ts.iter()
                .find(|t| t["name"] == tenant)
                .and_then(|t| t["pids"][0].as_u64())
        });
        if let Some(p) = pid {
            return p as u32;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "tenant {tenant} never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `gpupool run ARGS -- compute PATH KERNEL SECONDS` in its own process group.
fn start_tenant(
    m: &Machine,
    args: &[&str],
    path: &str,
    kernel: &str,
    seconds: f64,
) -> std::process::Child {
    let cmd = compute_args(path, kernel, seconds, 1);
    m.run_cmd(args, &cmd.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}

#[test]
fn idle_time_is_lent_up_to_the_limit_and_taken_back() {
    let _s = serial();
    let m = Machine::new("borrow", "1x16GiB");
    measured(|| {
        let mut a = start_tenant(
            &m,
            &[
                "--compute",
                "80",
                "--compute-request",
                "30",
                "--tenant",
                "a",
            ],
            "async",
            "1ms",
            4.0,
        );
        let trace = std::thread::scope(|s| {
            let rec = s.spawn(|| Trace::record(&m, 4.2));
            std::thread::sleep(Duration::from_millis(1500));
            let mut b = start_tenant(
                &m,
                &["--compute", "50", "--tenant", "b"],
                "async",
                "1ms",
                1.5,
            );
            let pb = tenant_pid(&m, "b");
            b.wait().unwrap();
            (rec.join().unwrap(), pb)
        });
        let (trace, pb) = trace;
        let pa = tenant_pid_from_trace(&trace, pb);
        a.wait().unwrap();
        let alone = trace.share(pa, 0.4, 1.4);
        let shared_a = trace.share(pa, 1.8, 2.9);
        let shared_b = trace.share(pb, 1.8, 2.9);
        let after = trace.share(pa, 3.2, 3.7);
        check(
            (alone - 0.80).abs() <= 0.05,
            format!("A alone borrows up to its limit: {alone:.3}"),
        )?;
        check(
            (shared_b - 0.50).abs() <= 0.05,
            format!("B gets its 50 %: {shared_b:.3}"),
        )?;
        check(
            (shared_a - 0.40).abs() <= 0.05,
            format!("A keeps 30 % + the 20 % nobody requests less 10 of headroom: {shared_a:.3}"),
        )?;
        check(
            (after - 0.80).abs() <= 0.05,
            format!("A borrows again: {after:.3}"),
        )
    });
}

/// The busiest pid of a trace other than `other`.
fn tenant_pid_from_trace(trace: &Trace, other: u32) -> u32 {
    // Entries of finished processes leave the timeline: look through every sample.
    trace
        .samples
        .iter()
        .flat_map(|s| s.1.iter())
        .filter(|(p, _)| *p != other)
        .max_by_key(|(_, b)| *b)
        .map(|(p, _)| *p)
        .expect("a second tenant")
}

#[test]
fn low_priority_backs_off_within_100ms_and_resumes_when_high_priority_dies() {
    let _s = serial();
    let m = Machine::new("priority", "1x16GiB");
    measured(|| {
        let mut low = start_tenant(
            &m,
            &["--priority", "low", "--tenant", "low"],
            "async",
            "1ms",
            4.0,
        );
        let (trace, ph) = std::thread::scope(|s| {
            let rec = s.spawn(|| Trace::record(&m, 4.2));
            std::thread::sleep(Duration::from_millis(1000));
            let mut high = start_tenant(
                &m,
                &["--compute", "60", "--tenant", "high"],
                "async",
                "1ms",
                10.0,
            );
            let ph = tenant_pid(&m, "high");
            std::thread::sleep(Duration::from_millis(1500));
            // The high-priority tenant dies at once (SIGKILL to its whole group).
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-(high.id() as i32), libc::SIGKILL) };
            high.wait().unwrap();
            (rec.join().unwrap(), ph)
        });
        let pl = tenant_pid_from_trace(&trace, ph);
        low.wait().unwrap();
        // When the high tenant's first kernel ran.
        let first = trace
            .samples
            .iter()
            .find(|s| s.1.iter().any(|(p, b)| *p == ph && *b > 0))
            .expect("high tenant ran")
            .0;
        let killed = first + 1.4;
        let before = trace.share(pl, 0.3, 0.9);
        let backed_off = trace.share(pl, first + 0.1, killed - 0.1);
        let high_share = trace.share(ph, first + 0.1, killed - 0.1);
        let resumed = trace.share(pl, killed + 0.5, 3.7);
        check(
            before > 0.9,
            format!("low priority alone uses the card: {before:.3}"),
        )?;
        check(
            (high_share - 0.60).abs() <= 0.05,
            format!("high priority gets its 60 %: {high_share:.3}"),
        )?;
        check(
            backed_off <= 0.35,
            format!(
                "low priority backs off to the 30 % left (40 less 10 of headroom): {backed_off:.3}"
            ),
        )?;
        let soon = trace.share(pl, first + 0.1, first + 0.3);
        check(
            soon <= 0.35,
            format!("backed off within 100 ms: {soon:.3} in the 200 ms after"),
        )?;
        check(
            resumed > 0.9,
            format!("low priority resumes after the high tenant died: {resumed:.3}"),
        )
    });
}
