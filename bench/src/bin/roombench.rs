//! How long a tenant that finds its card full waits while an idle tenant of the card is
//! checkpointed to make room (`gpupool run --wait-for-room`, `gpupool checkpointer`), for idle
//! tenants of several sizes, on the simulated GPU (which moves checkpointed memory at its
//! host-mapped bandwidth, `gpupool-simgpu` `module.rs`).

use gpupool_bench::Driver;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The simulated card.
const CARD_MIB: u64 = 8192;
/// What the simulated card charges a context.
const CONTEXT_MIB: u64 = 256;
/// The simulator's host-mapped bandwidth (bytes per ns).
const BUS_GBPS: u64 = 25;
/// The checkpointer's idle threshold and round.
const IDLE_AFTER: &str = "200ms";
const INTERVAL: &str = "20ms";

/// Inside `gpupool run`: allocates `mib`, says "held", then either waits for standard input to
/// close (`hold`) or reports how long its allocation took (`want`).
fn child(mode: &str, mib: u64) {
    let d = Driver::open();
    // SAFETY: a documented driver entry point with valid arguments.
    unsafe {
        let alloc: unsafe extern "C" fn(*mut u64, usize) -> u32 =
            std::mem::transmute(d.get("cuMemAlloc", 3020));
        let mut p = 0u64;
        let t = Instant::now();
        let rc = alloc(&mut p, (mib << 20) as usize);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(rc, 0, "allocation of {mib} MiB");
        if mode == "want" {
            println!("{}", serde_json::json!({ "wait_ms": ms }));
            return;
        }
        println!("held");
        std::io::stdout().flush().unwrap();
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], args[3].parse().unwrap());
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let gpupool = exe.parent().unwrap().join("gpupool");
    let spec = format!("1x{CARD_MIB}MiB");
    println!("| idle tenant holds | waiter waited | of which moving it over the bus |");
    println!("|---:|---:|---:|");
    for idle_mib in [1024u64, 2048, 4096] {
        let state = std::env::temp_dir().join(format!(
            "gpupool-roombench-{}-{idle_mib}",
            std::process::id()
        ));
        let run = |extra: &[&str], mode: &str, mib: u64| {
            let mut c = Command::new(&gpupool);
            c.args(["run", "--sim", &spec, "--state"])
                .arg(&state)
                .args(extra)
                .arg("--")
                .arg(&exe)
                .args(["--child", mode, &mib.to_string()]);
            c
        };
        let mut checkpointer = Command::new(&gpupool)
            .args(["checkpointer", "--sim", &spec, "--state"])
            .arg(&state)
            .args(["--idle-after", IDLE_AFTER, "--interval", INTERVAL])
            .stderr(Stdio::null())
            .spawn()
            .expect("gpupool checkpointer (build with cargo build --release)");
        let limit = format!("{}MiB", CARD_MIB);
        let mut idle = run(
            &["--memory", &limit, "--priority", "low", "--tenant", "idle"],
            "hold",
            idle_mib,
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
        let mut line = String::new();
        BufReader::new(idle.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "held");
        std::thread::sleep(Duration::from_millis(500));
        // Fits only once the idle tenant has left the card.
        let want = CARD_MIB - 2 * CONTEXT_MIB - idle_mib / 2;
        let out = run(
            &[
                "--memory",
                &limit,
                "--wait-for-room",
                "30s",
                "--tenant",
                "waiter",
            ],
            "want",
            want,
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii_end()).unwrap();
        drop(idle.stdin.take());
        let _ = idle.wait();
        let _ = checkpointer.kill();
        let _ = checkpointer.wait();
        let _ = std::fs::remove_dir_all(&state);
        let bus_ms = ((idle_mib + CONTEXT_MIB) << 20) as f64 / BUS_GBPS as f64 / 1e6;
        println!(
            "| {} GiB (+ its context) | {:.0} ms | {:.0} ms |",
            idle_mib / 1024,
            v["wait_ms"].as_f64().unwrap(),
            bus_ms
        );
    }
}
