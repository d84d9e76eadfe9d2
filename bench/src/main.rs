//! `gpupool-bench`: added cost per call of `libgpupool.so` over the bare simulated driver
//! (launches of a zero-length simulated kernel, with and without a compute limit).
//!
//! The parent runs itself as a child alternately without and with the library preloaded (same
//! simulated machine, same run), several rounds each; every child resolves the driver through
//! `cuGetProcAddress_v2` as NVIDIA's runtime does, times batches of calls and reports the median
//! per-call time. The parent prints a table of medians and the difference.
//!
//! The launch rows are taken twice: over the simulator's timeline (a launch queues a
//! zero-length kernel under a file-backed lock, ~430–600 ns and noisy), and over a simulator
//! that only checks the launch (`GPUPOOL_SIM_LAUNCH=none`), where the hooks' own cost shows.
//!
//! Usage: `gpupool-bench [ROUNDS]` (run from `target/release`, beside the libraries).

use gpupool_bench::{Driver, Launch};
use serde::{Deserialize, Serialize};
use std::ffi::c_void;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
struct Sample {
    launch_ns: f64,
    /// The same launch, the simulator only checking it (`GPUPOOL_SIM_LAUNCH=none`).
    null_launch_ns: f64,
    alloc_free_ns: f64,
    mem_get_info_ns: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median over `batches` of the per-call time of `f` run `n` times.
fn time_per_call(batches: usize, n: usize, mut f: impl FnMut()) -> f64 {
    let per: Vec<f64> = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    median(per)
}

fn child() -> Sample {
    let d = Driver::open();
    let get = |name: &str, ver: i32| d.get(name, ver);
    // SAFETY: calling documented entry points with valid arguments.
    unsafe {
        let launch: Launch = std::mem::transmute(get("cuLaunchKernel", 7000));
        let alloc: unsafe extern "C" fn(*mut u64, usize) -> u32 =
            std::mem::transmute(get("cuMemAlloc", 3020));
        let free: unsafe extern "C" fn(u64) -> u32 = std::mem::transmute(get("cuMemFree", 3020));
        let info: unsafe extern "C" fn(*mut usize, *mut usize) -> u32 =
            std::mem::transmute(get("cuMemGetInfo", 3020));
        let func = d.simulated_kernel("gpupool-sim-module 1\nkernel empty 0ns\n", "empty");
        let mut params: [*mut c_void; 1] = [std::ptr::null_mut()];
        let mut launch_ns = || {
            time_per_call(31, 20_000, || {
                assert_eq!(
                    launch(
                        func,
                        1,
                        1,
                        1,
                        128,
                        1,
                        1,
                        0,
                        std::ptr::null_mut(),
                        params.as_mut_ptr(),
                        std::ptr::null_mut()
                    ),
                    0
                );
            })
        };
        if std::env::var("GPUPOOL_SIM_LAUNCH").as_deref() == Ok("none") {
            let null_launch_ns = launch_ns();
            return Sample {
                launch_ns: 0.0,
                null_launch_ns,
                alloc_free_ns: 0.0,
                mem_get_info_ns: 0.0,
            };
        }
        let launch_ns = launch_ns();
        let alloc_free_ns = time_per_call(31, 2_000, || {
            let mut p = 0;
            assert_eq!(alloc(&mut p, 1 << 20), 0);
            assert_eq!(free(p), 0);
        });
        let mem_get_info_ns = time_per_call(31, 20_000, || {
            let (mut f, mut t) = (0, 0);
            assert_eq!(info(&mut f, &mut t), 0);
        });
        Sample {
            launch_ns,
            null_launch_ns: 0.0,
            alloc_free_ns,
            mem_get_info_ns,
        }
    }
}

fn main() {
    if std::env::var_os("GPUPOOL_BENCH_CHILD").is_some() {
        println!("{}", serde_json::to_string(&child()).unwrap());
        return;
    }
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().to_path_buf();
    let state: PathBuf = std::env::temp_dir().join(format!("gpupool-bench-{}", std::process::id()));
    let lib = state.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    for name in ["libcuda.so.1", "libnvidia-ml.so.1"] {
        std::os::unix::fs::symlink(dir.join("libgpupool_simgpu.so"), lib.join(name)).unwrap();
    }
    // Modes: bare driver; library with a memory limit; library with memory and compute limits.
    // `null`: the simulator only checks launches (`GPUPOOL_SIM_LAUNCH=none`), as a driver whose
    // launch returns at once; the children then time launches only.
    let run = |mode: usize, null: bool| -> Sample {
        let preload = mode > 0;
        let mut c = Command::new(&exe);
        if null {
            c.env("GPUPOOL_SIM_LAUNCH", "none");
        }
        c.env("GPUPOOL_BENCH_CHILD", "1")
            .env("LD_LIBRARY_PATH", &lib)
            .env("GPUPOOL_SIM_SPEC", "1x80GiB")
            .env("GPUPOOL_SIM_STATE", &state);
        if preload {
            c.env("LD_PRELOAD", dir.join("libgpupool.so"))
                .env("GPUPOOL_MEMORY_LIMIT", "40GiB")
                .env("GPUPOOL_REGION", state.join("tenant.region"))
                .env("GPUPOOL_CONTEXT_MEMORY", "256MiB");
        }
        if mode == 2 {
            // 100 %: the whole pacing path runs on every launch, and the simulator's zero-length
            // kernels never make a launch wait, so the difference is the hook's own cost.
            c.env("GPUPOOL_COMPUTE_LIMIT", "100")
                .env("GPUPOOL_REGION", state.join("compute.region"));
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let mut bare = Vec::new();
    let mut with = Vec::new();
    let mut paced = Vec::new();
    for _ in 0..rounds {
        bare.push(run(0, false));
        with.push(run(1, false));
        paced.push(run(2, false));
        let (b, w, p) = (run(0, true), run(1, true), run(2, true));
        bare.last_mut().unwrap().null_launch_ns = b.null_launch_ns;
        with.last_mut().unwrap().null_launch_ns = w.null_launch_ns;
        paced.last_mut().unwrap().null_launch_ns = p.null_launch_ns;
    }
    let _ = std::fs::remove_dir_all(&state);
    let row = |name: &str, goal: &str, get: fn(&Sample) -> f64| {
        let b = median(bare.iter().map(get).collect());
        let w = median(with.iter().map(get).collect());
        println!(
            "| {name:<24} | {b:>10.1} | {w:>10.1} | {:>10.1} | {goal:>8} |",
            w - b
        );
    };
    println!("rounds: {rounds} (alternating bare / preloaded), medians of per-call medians, ns");
    println!(
        "| {:<24} | {:>10} | {:>10} | {:>10} | {:>8} |",
        "call", "bare", "gpupool", "added", "goal"
    );
    println!(
        "|{}|{}|{}|{}|{}|",
        "-".repeat(26),
        "-".repeat(12),
        "-".repeat(12),
        "-".repeat(12),
        "-".repeat(10)
    );
    let paced_row = |name: &str, get: fn(&Sample) -> f64| {
        let b = median(bare.iter().map(get).collect());
        let p = median(paced.iter().map(get).collect());
        println!(
            "| {name:<24} | {b:>10.1} | {p:>10.1} | {:>10.1} | {:>8} |",
            p - b,
            "<= 20"
        );
    };
    row("cuLaunchKernel", "<= 25", |s| s.launch_ns);
    paced_row("cuLaunchKernel, paced", |s| s.launch_ns);
    row("launch, null driver", "<= 25", |s| s.null_launch_ns);
    paced_row("paced, null driver", |s| s.null_launch_ns);
    row("cuMemAlloc + cuMemFree", "<= 300", |s| s.alloc_free_ns);
    row("cuMemGetInfo", "-", |s| s.mem_get_info_ns);
}
