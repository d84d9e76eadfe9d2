//! Throughput of a memory-bound loop on the simulated GPU with its working set fully in device
//! memory, then with 25 % and 50 % of it spilled to host memory past the tenant's limit
//! (`gpupool run --memory … --spill …`), measured one after the other in one run. Kernels read
//! device memory at the simulator's device bandwidth and spilled memory at its host-mapped
//! bandwidth (`gpupool-simgpu` `module.rs`).

use gpupool_bench::{Driver, Launch};
use std::ffi::c_void;
use std::process::Command;
use std::time::Instant;

/// Buffers of the working set.
const BUFFERS: u64 = 8;
/// Bytes of each buffer.
const BUFFER: u64 = 256 << 20;
/// Device memory the simulated card charges a context.
const CONTEXT: u64 = 256 << 20;
/// Seconds each configuration runs.
const SECONDS: f64 = 1.5;

/// Runs inside `gpupool run`: allocates the working set, reads it in passes, prints JSON.
fn child() {
    let d = Driver::open();
    // SAFETY: documented driver entry points with valid arguments.
    unsafe {
        let alloc: unsafe extern "C" fn(*mut u64, usize) -> u32 =
            std::mem::transmute(d.get("cuMemAlloc", 3020));
        let host_flags: unsafe extern "C" fn(*mut u32, *mut c_void) -> u32 =
            std::mem::transmute(d.get("cuMemHostGetFlags", 2030));
        let sync: unsafe extern "C" fn() -> u32 =
            std::mem::transmute(d.get("cuCtxSynchronize", 2000));
        let launch: Launch = std::mem::transmute(d.get("cuLaunchKernel", 4000));
        let mut bufs = Vec::new();
        let mut spilled = 0;
        for _ in 0..BUFFERS {
            let mut p = 0u64;
            assert_eq!(alloc(&mut p, BUFFER as usize), 0, "allocation");
            let mut flags = 0;
            if host_flags(&mut flags, p as usize as *mut c_void) == 0 {
                spilled += 1;
            }
            bufs.push(p);
        }
        let f = d.simulated_kernel(
            "gpupool-sim-module 1\nkernel read 0us reads=buffer\n",
            "read",
        );
        let t = Instant::now();
        let mut passes = 0u64;
        while t.elapsed().as_secs_f64() < SECONDS {
            for p in &bufs {
                let (mut ptr, mut bytes) = (*p, BUFFER);
                let mut params = [
                    &mut ptr as *mut u64 as *mut c_void,
                    &mut bytes as *mut u64 as *mut c_void,
                ];
                let (stream, extra) = (std::ptr::null_mut(), std::ptr::null_mut());
                assert_eq!(
                    launch(f, 1, 1, 1, 256, 1, 1, 0, stream, params.as_mut_ptr(), extra),
                    0
                );
            }
            assert_eq!(sync(), 0);
            passes += 1;
        }
        let seconds = t.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "spilled_buffers": spilled,
                "gbps": (passes * BUFFERS * BUFFER) as f64 / seconds / 1e9,
            })
        );
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--child") {
        child();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let gpupool = exe.parent().unwrap().join("gpupool");
    let state = std::env::temp_dir().join(format!("gpupool-spillbench-{}", std::process::id()));
    let mut rows = Vec::new();
    for spilled in [0, 2, 4] {
        let device = (BUFFERS - spilled) * BUFFER + CONTEXT;
        let out = Command::new(&gpupool)
            .args(["run", "--sim", "1x16GiB", "--state"])
            .arg(&state)
            .args(["--memory", &format!("{}MiB", device >> 20)])
            .args(["--spill", &format!("{}MiB", (BUFFERS * BUFFER) >> 20)])
            .arg("--")
            .arg(&exe)
            .arg("--child")
            .output()
            .expect("gpupool run (build with cargo build --release)");
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value =
            serde_json::from_slice(out.stdout.trim_ascii_end()).expect("child JSON");
        rows.push((spilled, v));
    }
    let _ = std::fs::remove_dir_all(&state);
    let base = rows[0].1["gbps"].as_f64().unwrap();
    println!("| working set 2 GiB (8 × 256 MiB) | buffers spilled | read throughput | vs all on device |");
    println!("|---|---:|---:|---:|");
    for (planned, v) in &rows {
        let gbps = v["gbps"].as_f64().unwrap();
        println!(
            "| {} % past the limit | {} of {} | {:.1} GB/s | {:.3} |",
            planned * 100 / BUFFERS,
            v["spilled_buffers"],
            BUFFERS,
            gbps,
            gbps / base
        );
    }
}
