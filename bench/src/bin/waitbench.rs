//! How precisely, and at what CPU cost, the compute limiter can wait: for waits of 20 µs to
//! 2 ms, each way of `gpupool_cuda::wait` is timed side by side (interleaved, 200 waits per
//! length and way): median and 99th-percentile overshoot past the deadline, and the thread's CPU
//! time per wait as a share of the wait.

use gpupool_cuda::clock::monotonic_ns;
use gpupool_cuda::wait::{adaptive, adaptive_margin_ns, sleep_then_spin, spin, tight_sleep};

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A way of waiting: its name and the function waiting until a deadline.
type Way = (&'static str, fn(u64));

fn main() {
    let ways: [Way; 4] = [
        ("spin (yield)", spin),
        ("sleep, spin last 80 µs", |d| sleep_then_spin(d, 80_000)),
        ("1 µs-slack sleep", tight_sleep),
        ("adaptive", adaptive),
    ];
    println!("| wait | way | overshoot p50 | overshoot p99 | CPU / wait |");
    println!("|---:|---|---:|---:|---:|");
    for wait_us in [20u64, 50, 100, 200, 500, 2000] {
        let mut over = vec![Vec::new(); ways.len()];
        let mut cpu = vec![0u64; ways.len()];
        let rounds = 200;
        for _ in 0..rounds {
            for (i, (_, f)) in ways.iter().enumerate() {
                let c0 = thread_cpu_ns();
                let deadline = monotonic_ns() + wait_us * 1000;
                f(deadline);
                let done = monotonic_ns();
                cpu[i] += thread_cpu_ns() - c0;
                over[i].push(done - deadline);
            }
        }
        for (i, (name, _)) in ways.iter().enumerate() {
            println!(
                "| {wait_us} µs | {name} | {:.1} µs | {:.1} µs | {:.0} % |",
                pct(&mut over[i], 0.5) as f64 / 1e3,
                pct(&mut over[i], 0.99) as f64 / 1e3,
                cpu[i] as f64 / rounds as f64 / (wait_us * 1000) as f64 * 100.0
            );
        }
    }
    println!(
        "\nadaptive margin learned: {:.1} µs",
        adaptive_margin_ns() as f64 / 1e3
    );
}
