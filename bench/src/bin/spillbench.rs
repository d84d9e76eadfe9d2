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

/// Reads every buffer once per pass for `SECONDS`: GB/s.
///
/// # Safety
/// `launch`, `sync` and `f` are the driver's; the buffers are live allocations of `BUFFER`.
unsafe fn passes(
    launch: Launch,
    sync: unsafe extern "C" fn() -> u32,
    f: *mut c_void,
    bufs: &[u64],
) -> f64 {
    let t = Instant::now();
    let mut passes = 0u64;
    while t.elapsed().as_secs_f64() < SECONDS {
        for p in bufs {
            let (mut ptr, mut bytes) = (*p, BUFFER);
            let mut params = [
                &mut ptr as *mut u64 as *mut c_void,
                &mut bytes as *mut u64 as *mut c_void,
            ];
            let (stream, extra) = (std::ptr::null_mut(), std::ptr::null_mut());
            // SAFETY: the caller's driver functions and live buffers.
            let rc =
                unsafe { launch(f, 1, 1, 1, 256, 1, 1, 0, stream, params.as_mut_ptr(), extra) };
            assert_eq!(rc, 0);
        }
        // SAFETY: as above.
        assert_eq!(unsafe { sync() }, 0);
        passes += 1;
    }
    (passes * bufs.len() as u64 * BUFFER) as f64 / t.elapsed().as_secs_f64() / 1e9
}

/// Runs inside `gpupool run`: allocates `scratch` buffers, then the working set, reads it in
/// passes; with a scratch, frees it and reads again. Prints JSON.
fn child(scratch: u64) {
    let d = Driver::open();
    // SAFETY: documented driver entry points with valid arguments.
    unsafe {
        let alloc: unsafe extern "C" fn(*mut u64, usize) -> u32 =
            std::mem::transmute(d.get("cuMemAlloc", 3020));
        let free: unsafe extern "C" fn(u64) -> u32 = std::mem::transmute(d.get("cuMemFree", 3020));
        let attribute: unsafe extern "C" fn(*mut c_void, i32, u64) -> u32 =
            std::mem::transmute(d.get("cuPointerGetAttribute", 4000));
        let host_flags: unsafe extern "C" fn(*mut u32, *mut c_void) -> u32 =
            std::mem::transmute(d.get("cuMemHostGetFlags", 2030));
        let sync: unsafe extern "C" fn() -> u32 =
            std::mem::transmute(d.get("cuCtxSynchronize", 2000));
        let launch: Launch = std::mem::transmute(d.get("cuLaunchKernel", 4000));
        let mut scratch_bufs = Vec::new();
        for _ in 0..scratch {
            let mut p = 0u64;
            assert_eq!(alloc(&mut p, BUFFER as usize), 0, "scratch allocation");
            scratch_bufs.push(p);
        }
        let mut bufs = Vec::new();
        let mut spilled = 0;
        for _ in 0..BUFFERS {
            let mut p = 0u64;
            assert_eq!(alloc(&mut p, BUFFER as usize), 0, "allocation");
            let (mut flags, mut managed) = (0u32, 0u32);
            let pinned = host_flags(&mut flags, p as usize as *mut c_void) == 0;
            // CU_POINTER_ATTRIBUTE_IS_MANAGED
            let managed =
                attribute(&mut managed as *mut u32 as *mut c_void, 8, p) == 0 && managed != 0;
            if pinned || managed {
                spilled += 1;
            }
            bufs.push(p);
        }
        let f = d.simulated_kernel(
            "gpupool-sim-module 1\nkernel read 0us reads=buffer\n",
            "read",
        );
        let gbps = passes(launch, sync, f, &bufs);
        let after = (scratch > 0).then(|| {
            for p in &scratch_bufs {
                assert_eq!(free(*p), 0);
            }
            passes(launch, sync, f, &bufs)
        });
        println!(
            "{}",
            serde_json::json!({ "spilled_buffers": spilled, "gbps": gbps, "after_free_gbps": after })
        );
    }
}

/// Runs the child under `gpupool run` with a device limit of `device` bytes (context included)
/// and a 2 GiB spill allowance of `mode`.
fn run(
    gpupool: &std::path::Path,
    exe: &std::path::Path,
    state: &std::path::Path,
    device: u64,
    mode: &str,
    scratch: u64,
) -> serde_json::Value {
    let out = Command::new(gpupool)
        .args(["run", "--sim", "1x16GiB", "--state"])
        .arg(state)
        .args(["--memory", &format!("{}MiB", device >> 20)])
        .args(["--spill", &format!("{}MiB", (BUFFERS * BUFFER) >> 20)])
        .args(["--spill-mode", mode])
        .arg("--")
        .arg(exe)
        .args(["--child", &scratch.to_string()])
        .output()
        .expect("gpupool run (build with cargo build --release)");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.trim_ascii_end()).expect("child JSON")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(args[2].parse().unwrap());
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let gpupool = exe.parent().unwrap().join("gpupool");
    let state = std::env::temp_dir().join(format!("gpupool-spillbench-{}", std::process::id()));
    let mut rows = Vec::new();
    for spilled in [0, 2, 4] {
        let device = (BUFFERS - spilled) * BUFFER + CONTEXT;
        rows.push((spilled, run(&gpupool, &exe, &state, device, "pinned", 0)));
    }
    // Half of the working set spilled behind 4 scratch buffers, which are then freed.
    let mut back = Vec::new();
    for mode in ["pinned", "managed"] {
        let device = BUFFERS * BUFFER + CONTEXT;
        back.push((mode, run(&gpupool, &exe, &state, device, mode, 4)));
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
    println!();
    println!(
        "| spill mode | buffers spilled | throughput | after 1 GiB of device memory is freed |"
    );
    println!("|---|---:|---:|---:|");
    for (mode, v) in &back {
        println!(
            "| {mode} | {} of {} | {:.1} GB/s | {:.1} GB/s |",
            v["spilled_buffers"],
            BUFFERS,
            v["gbps"].as_f64().unwrap(),
            v["after_free_gbps"].as_f64().unwrap()
        );
    }
}
