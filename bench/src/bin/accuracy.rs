//! `gpupool-accuracy`: how exactly `libgpupool.so` holds tenants to their compute limits on the
//! simulated GPU.
//!
//! Each tenant is a child process (this program again) that loads a simulated module whose one
//! kernel runs a fixed time and launches it without synchronising (the device queue stays full)
//! for the whole run, under `GPUPOOL_COMPUTE_LIMIT`. The parent reads every process's busy time
//! from the device timeline every 100 ms, and prints, per scenario and tenant: the share over the
//! run after the first second, the share in the first second, and the highest 100 ms window
//! after the first second.
//!
//! Usage: `gpupool-accuracy [SECONDS]` (default 10; run from `target/release`);
//! `GPUPOOL_ACCURACY_ONLY=TEXT` keeps the scenarios whose "kernel scenario" contains TEXT.

use gpupool_bench::{Driver, Launch};
use gpupool_timeline::Timeline;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The tenant: launches `kernel` for `seconds`.
fn child(kernel: &str, seconds: f64) {
    let d = Driver::open();
    let f = d.simulated_kernel(
        &format!("gpupool-sim-module 1\nkernel busy {kernel}\n"),
        "busy",
    );
    // SAFETY: cuLaunchKernel with a kernel of the current context and valid arguments.
    unsafe {
        let launch: Launch = std::mem::transmute(d.get("cuLaunchKernel", 7000));
        let end = Instant::now() + Duration::from_secs_f64(seconds);
        let null = std::ptr::null_mut();
        while Instant::now() < end {
            assert_eq!(
                launch(f, 1, 1, 1, 32, 1, 1, 0, null, null.cast(), null.cast()),
                0
            );
        }
    }
}

struct Scenario {
    name: String,
    kernel: &'static str,
    limits: Vec<u32>,
}

/// One simulated machine of a scenario: where the programs are and its state folder.
struct Machine<'a> {
    exe: &'a Path,
    dir: &'a Path,
    lib: PathBuf,
    state: PathBuf,
}

impl Machine<'_> {
    /// Starts tenant `i` with `limit` %, launching `kernel` for `secs`.
    fn spawn(&self, i: usize, kernel: &str, limit: u32, secs: f64) -> Child {
        Command::new(self.exe)
            .env("GPUPOOL_ACCURACY_CHILD", format!("{kernel} {secs}"))
            .env("LD_LIBRARY_PATH", &self.lib)
            .env("GPUPOOL_SIM_SPEC", "1x80GiB")
            .env("GPUPOOL_SIM_STATE", &self.state)
            .env("LD_PRELOAD", self.dir.join("libgpupool.so"))
            .env("GPUPOOL_COMPUTE_LIMIT", limit.to_string())
            .env(
                "GPUPOOL_REGION",
                self.state.join(format!("tenant-{i}.region")),
            )
            .env("GPUPOOL_CARD_DIR", self.state.join("cards"))
            .spawn()
            .expect("tenant")
    }
}

fn main() {
    if let Ok(spec) = std::env::var("GPUPOOL_ACCURACY_CHILD") {
        let (kernel, secs) = spec.split_once(' ').unwrap();
        child(kernel, secs.parse().unwrap());
        return;
    }
    let secs: f64 = match std::env::args().nth(1) {
        None => 10.0,
        Some(a) => match a.parse() {
            Ok(s) if s >= 2.0 => s,
            _ => {
                eprintln!("gpupool-accuracy: SECONDS {a:?} must be a number of at least 2 (the first second is reported apart)");
                std::process::exit(2);
            }
        },
    };
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().to_path_buf();
    let mut scenarios = Vec::new();
    for kernel in ["50us", "20ms"] {
        for l in [10, 25, 50, 75, 90] {
            scenarios.push(Scenario {
                name: format!("alone {l} %"),
                kernel,
                limits: vec![l],
            });
        }
        scenarios.push(Scenario {
            name: "two: 25 + 50 %".into(),
            kernel,
            limits: vec![25, 50],
        });
        scenarios.push(Scenario {
            name: "three: 10 + 25 + 50 %".into(),
            kernel,
            limits: vec![10, 25, 50],
        });
    }
    // `GPUPOOL_ACCURACY_ONLY=20ms` (or `two`, `20ms alone 25`...): the scenarios whose
    // "kernel scenario" text contains it.
    if let Ok(only) = std::env::var("GPUPOOL_ACCURACY_ONLY") {
        scenarios.retain(|s| format!("{} {}", s.kernel, s.name).contains(&only));
    }
    println!("window {secs} s per scenario; share = GPU time / wall time from the device timeline");
    println!("| kernel | scenario | limit | share after 1 s | error (pp) | share in 1st s | max 100 ms window after 1 s |");
    println!("|---|---|---|---|---|---|---|");
    for (n, sc) in scenarios.iter().enumerate() {
        let state: PathBuf =
            std::env::temp_dir().join(format!("gpupool-accuracy-{}-{n}", std::process::id()));
        let lib = state.join("lib");
        std::fs::create_dir_all(&lib).unwrap();
        for name in ["libcuda.so.1", "libnvidia-ml.so.1"] {
            std::os::unix::fs::symlink(dir.join("libgpupool_simgpu.so"), lib.join(name)).unwrap();
        }
        let machine = Machine {
            exe: &exe,
            dir: &dir,
            lib: lib.clone(),
            state: state.clone(),
        };
        let mut kids: Vec<Child> = sc
            .limits
            .iter()
            .enumerate()
            .map(|(i, &l)| machine.spawn(i, sc.kernel, l, secs))
            .collect();
        let pids: Vec<u32> = kids.iter().map(Child::id).collect();
        // Wait for the timeline file, then sample busy time per tenant every 100 ms.
        let t0 = Instant::now();
        let path = state.join("timeline-0");
        while !path.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let timeline = Timeline::open(&path, 2_000_000).unwrap();
        let mut samples: Vec<(f64, Vec<u64>)> = Vec::new();
        while t0.elapsed().as_secs_f64() < secs {
            // The timeline is read under its lock, which the tenants take on every launch: a
            // read that waited for it is taken again, so that each sample's time is the time
            // its busy figures are for (a late time stamp would shrink the next window and
            // inflate its share).
            let before = t0.elapsed().as_secs_f64();
            let (_, procs) = timeline.busy();
            let after = t0.elapsed().as_secs_f64();
            if after - before > 0.000_5 {
                continue;
            }
            let per: Vec<u64> = pids
                .iter()
                .map(|p| procs.iter().find(|x| x.pid == *p).map_or(0, |x| x.busy_ns))
                .collect();
            samples.push(((before + after) / 2.0, per));
            std::thread::sleep(Duration::from_millis(100));
        }
        for k in &mut kids {
            let _ = k.wait();
        }
        for (i, &limit) in sc.limits.iter().enumerate() {
            let at = |t: f64| {
                samples
                    .iter()
                    .find(|s| s.0 >= t)
                    .unwrap_or(samples.last().unwrap())
            };
            let (s1, last) = (at(1.0), samples.last().unwrap());
            let share_after = (last.1[i] - s1.1[i]) as f64 / 1e9 / (last.0 - s1.0);
            let share_first = s1.1[i] as f64 / 1e9 / s1.0;
            let max_window = samples
                .windows(2)
                .filter(|w| w[0].0 >= 1.0)
                .map(|w| (w[1].1[i] - w[0].1[i]) as f64 / 1e9 / (w[1].0 - w[0].0))
                .fold(0.0, f64::max);
            println!(
                "| {} | {} | {limit} % | {:.1} % | {:+.1} | {:.1} % | {:.1} % |",
                sc.kernel,
                sc.name,
                share_after * 100.0,
                share_after * 100.0 - limit as f64,
                share_first * 100.0,
                max_window * 100.0
            );
        }
        let _ = std::fs::remove_dir_all(&state);
    }
}
