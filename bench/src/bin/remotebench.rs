//! Remote GPU over loopback: synchronous call round trip, batched launch throughput, the cost
//! of an event created, recorded and destroyed, and copy bandwidth through `gpupool serve` on a simulated GPU, beside raw TCP loopback measured in the
//! same run. Prints a Markdown table.
//!
//! `cargo build --release && target/release/gpupool-remotebench`

use gpupool_bench::{Driver, Launch};
use std::ffi::c_void;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Instant;

const ROUND_TRIPS: usize = 20_000;
const LAUNCHES: usize = 200_000;
const COPY: usize = 256 << 20;
const COPIES: usize = 4;
const EVENTS: usize = 20_000;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p) as usize]
}

/// Runs inside `gpupool run --remote`: prints one JSON line of measurements.
fn client() {
    let d = Driver::open();
    // SAFETY: documented driver entry points with valid arguments.
    unsafe {
        // A call the client cannot answer by itself (it keeps the context's device).
        let get_flags: unsafe extern "C" fn(*mut u32) -> u32 =
            std::mem::transmute(d.get("cuCtxGetFlags", 7000));
        let sync: unsafe extern "C" fn() -> u32 =
            std::mem::transmute(d.get("cuCtxSynchronize", 2000));
        let launch: Launch = std::mem::transmute(d.get("cuLaunchKernel", 4000));
        let alloc: unsafe extern "C" fn(*mut u64, usize) -> u32 =
            std::mem::transmute(d.get("cuMemAlloc", 3020));
        let htod: unsafe extern "C" fn(u64, *const c_void, usize) -> u32 =
            std::mem::transmute(d.get("cuMemcpyHtoD", 3020));
        let dtoh: unsafe extern "C" fn(*mut c_void, u64, usize) -> u32 =
            std::mem::transmute(d.get("cuMemcpyDtoH", 3020));

        let mut flags = 0;
        let mut rtt = Vec::with_capacity(ROUND_TRIPS);
        for _ in 0..ROUND_TRIPS {
            let t = Instant::now();
            assert_eq!(get_flags(&mut flags), 0);
            rtt.push(t.elapsed().as_secs_f64() * 1e6);
        }

        // Events as a training loop makes them: created, recorded, destroyed each step.
        let event_create: unsafe extern "C" fn(*mut *mut c_void, u32) -> u32 =
            std::mem::transmute(d.get("cuEventCreate", 2000));
        let event_record: unsafe extern "C" fn(*mut c_void, *mut c_void) -> u32 =
            std::mem::transmute(d.get("cuEventRecord", 2000));
        let event_destroy: unsafe extern "C" fn(*mut c_void) -> u32 =
            std::mem::transmute(d.get("cuEventDestroy", 4000));
        let t = Instant::now();
        for _ in 0..EVENTS {
            let mut e = std::ptr::null_mut();
            assert_eq!(event_create(&mut e, 0), 0);
            assert_eq!(event_record(e, std::ptr::null_mut()), 0);
            assert_eq!(event_destroy(e), 0);
        }
        assert_eq!(sync(), 0);
        let event_us = t.elapsed().as_secs_f64() * 1e6 / EVENTS as f64;

        let f = d.simulated_kernel("gpupool-sim-module 1\nkernel k 1us\n", "k");
        let null = std::ptr::null_mut();
        let t = Instant::now();
        for _ in 0..LAUNCHES {
            assert_eq!(
                launch(
                    f,
                    1,
                    1,
                    1,
                    32,
                    1,
                    1,
                    0,
                    null,
                    std::ptr::null_mut(),
                    std::ptr::null_mut()
                ),
                0
            );
        }
        assert_eq!(sync(), 0);
        let launches_per_s = LAUNCHES as f64 / t.elapsed().as_secs_f64();

        let mut p = 0u64;
        assert_eq!(alloc(&mut p, COPY), 0);
        let mut host = vec![1u8; COPY];
        // Touched once untimed: the simulator maps device memory lazily, a GPU's is not.
        assert_eq!(htod(p, host.as_ptr().cast(), COPY), 0);
        assert_eq!(sync(), 0);
        let t = Instant::now();
        for _ in 0..COPIES {
            assert_eq!(htod(p, host.as_ptr().cast(), COPY), 0);
        }
        assert_eq!(sync(), 0);
        let htod_gbs = (COPY * COPIES) as f64 / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now();
        for _ in 0..COPIES {
            assert_eq!(dtoh(host.as_mut_ptr().cast(), p, COPY), 0);
        }
        let dtoh_gbs = (COPY * COPIES) as f64 / t.elapsed().as_secs_f64() / 1e9;
        println!(
            "{}",
            serde_json::json!({
                "rtt_p50_us": percentile(&mut rtt, 0.5),
                "rtt_p99_us": percentile(&mut rtt, 0.99),
                "launches_per_s": launches_per_s,
                "event_us": event_us,
                "htod_gbs": htod_gbs,
                "dtoh_gbs": dtoh_gbs,
            })
        );
    }
}

/// Raw TCP loopback in this process: 4-byte ping-pong round trip (p50, µs) and one-way
/// bandwidth (GB/s) of `COPY * COPIES` bytes in 8 MiB writes.
fn raw_tcp() -> (f64, f64) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [0u8; 4];
        for _ in 0..ROUND_TRIPS {
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        }
        let mut buf = vec![0u8; 8 << 20];
        let mut left = COPY * COPIES;
        while left > 0 {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            left -= n;
        }
        s.write_all(&[1]).unwrap();
    });
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut b = [0u8; 4];
    let mut rtt = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        s.write_all(&b).unwrap();
        s.read_exact(&mut b).unwrap();
        rtt.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let chunk = vec![3u8; 8 << 20];
    let t = Instant::now();
    for _ in 0..(COPY * COPIES) / chunk.len() {
        s.write_all(&chunk).unwrap();
    }
    s.read_exact(&mut b[..1]).unwrap();
    let gbs = (COPY * COPIES) as f64 / t.elapsed().as_secs_f64() / 1e9;
    server.join().unwrap();
    (percentile(&mut rtt, 0.5), gbs)
}

/// A CA and a server certificate for 127.0.0.1 in `dir` (made with `openssl`); false when
/// `openssl` is missing or fails.
fn make_certs(dir: &std::path::Path) -> bool {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").is_ok()
        && run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-subj",
            "/CN=bench-ca",
            "-days",
            "1",
            "-out",
            "ca.crt",
        ])
        && run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-subj",
            "/CN=bench",
            "-out",
            "server.csr",
        ])
        && run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ])
}

/// Runs the client measurements through a fresh `gpupool serve` (over TLS with the
/// certificates in `tls`); their JSON.
fn measure(
    gpupool: &std::path::Path,
    exe: &std::path::Path,
    tmp: &std::path::Path,
    tls: Option<&std::path::Path>,
) -> serde_json::Value {
    let mut serve = Command::new(gpupool);
    match tls {
        None => serve.args(["serve", "--listen", "127.0.0.1:0"]),
        Some(d) => serve
            .args(["serve", "--listen", "tls://127.0.0.1:0", "--tls-cert"])
            .arg(d.join("server.crt"))
            .arg("--tls-key")
            .arg(d.join("server.key")),
    };
    let mut server = serve
        .arg("--clients")
        .arg(tmp.join("clients"))
        .args(["--sim", "1xH100", "--state"])
        .arg(tmp.join("state"))
        // Launches are only checked on the simulator: the protocol is what is measured.
        .env("GPUPOOL_SIM_LAUNCH", "none")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gpupool serve (build with cargo build --release)");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().trim_start_matches("listening on ").to_string();
    let mut client = Command::new(gpupool);
    client
        .args(["run", "--remote", &addr, "--token-file"])
        .arg(tmp.join("token"));
    if let Some(d) = tls {
        client.arg("--tls-ca").arg(d.join("ca.crt"));
    }
    let out = client.arg("--").arg(exe).arg("--client").output().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--client") {
        client();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().to_path_buf();
    let gpupool = dir.join("gpupool");
    let tmp = std::env::temp_dir().join(format!("gpupool-remotebench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let token = "remotebench-token-0123456789abcdef";
    std::fs::write(tmp.join("clients"), format!("bench {token}\n")).unwrap();
    std::fs::write(tmp.join("token"), token).unwrap();
    let r = measure(&gpupool, &exe, &tmp, None);
    let certs = tmp.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let t = make_certs(&certs).then(|| measure(&gpupool, &exe, &tmp, Some(&certs)));
    let _ = std::fs::remove_dir_all(&tmp);
    let (raw_rtt, raw_gbs) = raw_tcp();
    let f = |k: &str| r[k].as_f64().unwrap();
    let tls = |k: &str, unit: &str, digits: usize| match &t {
        Some(t) => format!("{:.*} {unit}", digits, t[k].as_f64().unwrap()),
        None => "(no openssl)".into(),
    };
    println!("| measure (loopback, simulated GPU) | gpupool remote, TCP | over TLS | raw TCP | goal (TCP) |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| synchronous call round trip, p50 | {:.1} µs (p99 {:.1}) | {} | {raw_rtt:.1} µs | ≤ 20 µs |",
        f("rtt_p50_us"),
        f("rtt_p99_us"),
        tls("rtt_p50_us", "µs", 1)
    );
    println!(
        "| batched launches | {:.0} /s | {} | | ≥ 500 000 /s |",
        f("launches_per_s"),
        tls("launches_per_s", "/s", 0)
    );
    println!(
        "| event created, recorded, destroyed | {:.2} µs | {} | | no round trip |",
        f("event_us"),
        tls("event_us", "µs", 2)
    );
    println!(
        "| host → device, 256 MiB copies | {:.2} GB/s ({:.0} % of raw) | {} | {raw_gbs:.2} GB/s | ≥ 70 % |",
        f("htod_gbs"),
        100.0 * f("htod_gbs") / raw_gbs,
        tls("htod_gbs", "GB/s", 2)
    );
    println!(
        "| device → host, 256 MiB copies | {:.2} GB/s ({:.0} % of raw) | {} | | ≥ 70 % |",
        f("dtoh_gbs"),
        100.0 * f("dtoh_gbs") / raw_gbs,
        tls("dtoh_gbs", "GB/s", 2)
    );
}
