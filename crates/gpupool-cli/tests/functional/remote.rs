//! Remote GPUs: NVIDIA's runtime and driver-API programs run through the client driver, a
//! loopback connection and `gpupool serve` on a simulated GPU; limits hold on the server; bad
//! tokens and malformed messages are refused without stopping the server; a killed client's
//! memory is freed; a server that goes away is a clear error in the client.

use crate::common;
use common::remote_server::*;
use common::*;
use std::io::{BufRead, Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

fn tcp_port(addr: &str) -> std::net::SocketAddr {
    addr.strip_prefix("tcp://").unwrap().parse().unwrap()
}

#[test]
fn runtime_programs_run_through_a_remote_gpu() {
    let m = Machine::new("remote-rt", "1xH100");
    let server = Server::start(&m, "127.0.0.1:0", &format!("alpha {TOKEN}\n"));
    for v in ["11.8", "12.9", "13.0"] {
        let prog = c_program("rt_basic", v);
        let out = server.client(&[prog.to_str().unwrap()]).output().unwrap();
        let kv = key_values(&out);
        assert_eq!(kv["name"], "NVIDIA H100 80GB HBM3", "runtime {v}");
        assert_eq!(num(&kv, "meminfo_total"), 81_559 * MIB, "runtime {v}");
        assert_eq!(
            num(&kv, "meminfo_free") - num(&kv, "meminfo_free_after_2MiB"),
            4 * MIB,
            "runtime {v}: two 1 MiB buffers at 2 MiB granularity, on the server"
        );
    }
    let log = server.log();
    assert!(
        log.contains("alpha (") && log.contains("session ended"),
        "{log}"
    );
}

#[test]
fn graphs_copying_host_memory_run_through_a_remote_gpu() {
    let m = Machine::new("remote-graph-host", "1xH100");
    let prog = c_program("graph_host", "12.9");
    let server = Server::start(&m, "127.0.0.1:0", &format!("alpha {TOKEN}\n"));
    let local = m.run(&[], &[prog.to_str().unwrap()]);
    let remote = server.client(&[prog.to_str().unwrap()]).output().unwrap();
    for (out, how) in [
        (&local, "on the simulated GPU"),
        (&remote, "through the server"),
    ] {
        let kv = key_values(out);
        for key in [
            "captured_ok",
            "built_ok",
            "child_ok",
            "rows_captured_ok",
            "rows_built_ok",
            "broken",
            "freed",
        ] {
            assert_eq!(
                kv.get(key).map(String::as_str),
                Some("1"),
                "{how}: {key}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn limits_hold_on_the_server_for_runtime_and_driver_api_clients() {
    let m = Machine::new("remote-limits", "1x16GiB");
    let server = Server::start(
        &m,
        &format!("unix:{}", m.state.with_extension("sock").display()),
        &format!("team-a {TOKEN} memory=2GiB\n"),
    );
    let prog = c_program("rt_limits", "12.9");
    let budget = 2 * GIB - 256 * MIB;
    for path in [
        "malloc", "pitch", "managed", "async", "pool", "array", "array3d", "mipmap",
    ] {
        let out = server
            .client(&[prog.to_str().unwrap(), path, "96"])
            .output()
            .unwrap();
        let kv = key_values(&out);
        assert_eq!(
            num(&kv, "total"),
            2 * GIB,
            "{path}: the card seen is the limit"
        );
        assert!(num(&kv, "allocated") <= budget, "{path}: {kv:?}");
        assert!(num(&kv, "allocated") + 96 * MIB > budget, "{path}: {kv:?}");
        assert_eq!(num(&kv, "error"), 2, "{path}: cudaErrorMemoryAllocation");
        assert_eq!(
            num(&kv, "free_after"),
            budget,
            "{path}: everything given back"
        );
    }
    // What a hostile tenant tries: sizes near the maximum on every allocation path, VMM
    // handles released while mapped.
    let hostile = c_program("hostile", "driver");
    let kv = key_values(
        &server
            .client(&[hostile.to_str().unwrap(), "sizes", "1536"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        num(&kv, "free_after_huge"),
        num(&kv, "free_before"),
        "{kv:?}"
    );
    assert_eq!(num(&kv, "held"), budget, "{kv:?}");
    let kv = key_values(
        &server
            .client(&[hostile.to_str().unwrap(), "vmm", "0"])
            .output()
            .unwrap(),
    );
    assert_eq!(num(&kv, "mapped"), 1, "{kv:?}");
    assert!(num(&kv, "held") <= budget, "{kv:?}");
    // A program calling the driver directly (no runtime) has no other way to the GPU.
    let out = server
        .client(&[gpupool().to_str().unwrap(), "probe", "--chunk", "512MiB"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = probe["allocated"].as_u64().unwrap();
    assert!(
        got <= 2 * GIB,
        "driver-API client got {got} past its 2 GiB limit: {probe}"
    );
    assert!(got >= GIB, "{probe}");
}

#[test]
fn a_remote_client_s_spill_allowance_holds_on_the_server() {
    let m = Machine::new("remote-spill", "1x16GiB");
    let server = Server::start(
        &m,
        "127.0.0.1:0",
        &format!("s {TOKEN} memory=1GiB spill=1GiB\n"),
    );
    let prog = c_program("rt_limits", "12.9");
    let kv = key_values(
        &server
            .client(&[prog.to_str().unwrap(), "malloc", "96"])
            .output()
            .unwrap(),
    );
    let budget = (768 + 1024) * MIB;
    assert_eq!(num(&kv, "total"), 2 * GIB, "limit and spill: {kv:?}");
    assert!(num(&kv, "allocated") <= budget, "{kv:?}");
    assert!(num(&kv, "allocated") + 96 * MIB > budget, "{kv:?}");
    assert_eq!(num(&kv, "free_after"), budget, "{kv:?}");
}

#[test]
fn bad_tokens_and_malformed_messages_are_refused_and_the_server_keeps_serving() {
    let m = Machine::new("remote-hostile", "1xH100");
    let server = Server::start(&m, "127.0.0.1:0", &format!("alpha {TOKEN}\n"));
    let addr = tcp_port(&server.addr);
    let prog = c_program("rt_basic", "12.9");

    // A wrong token: the program's CUDA initialisation fails and says why.
    let bad = server.dir.join("bad-token");
    std::fs::write(&bad, "wrong-token-wrong-token").unwrap();
    let out = Command::new(gpupool())
        .args(["run", "--remote", &server.addr, "--token-file"])
        .arg(&bad)
        .arg("--")
        .arg(&prog)
        .env("GPUPOOL_LIB_DIR", lib_dir())
        .output()
        .unwrap();
    let err = failure_message(&out);
    assert!(
        err.contains("refused this client") && err.contains("does not know this token"),
        "{err}"
    );

    // A malformed polling time: the client says which variable, and so does a server started
    // with it.
    let out = server
        .client(&[prog.to_str().unwrap()])
        .env("GPUPOOL_REMOTE_SPIN_US", "forever")
        .output()
        .unwrap();
    let err = failure_message(&out);
    assert!(
        err.contains("GPUPOOL_REMOTE_SPIN_US") && err.contains("forever"),
        "{err}"
    );
    let clients = server.dir.join("spin-clients");
    std::fs::write(&clients, format!("alpha {TOKEN}\n")).unwrap();
    let out = Command::new(gpupool())
        .args(["serve", "--listen", "127.0.0.1:0", "--clients"])
        .arg(&clients)
        .env("GPUPOOL_REMOTE_SPIN_US", "-5")
        .output()
        .unwrap();
    let err = failure_message(&out);
    assert!(err.contains("GPUPOOL_REMOTE_SPIN_US=\"-5\""), "{err}");

    // Junk instead of a hello.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(&[0x42; 64]).unwrap();
    let mut head = [0u8; 16];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head[..8], b"GPUPOOLR");
    assert_eq!(
        u32::from_le_bytes(head[12..16].try_into().unwrap()),
        3,
        "malformed"
    );

    // A valid hello, then a malformed request: refused with its reason, session closed.
    let hello = |s: &mut std::net::TcpStream| {
        gpupool_remote::handshake::client_side(s, TOKEN.as_bytes(), "test").unwrap();
        let mut n = [0u8; 4];
        s.read_exact(&mut n).unwrap();
        let mut welcome = vec![0u8; u32::from_le_bytes(n) as usize];
        s.read_exact(&mut welcome).unwrap();
    };
    for request in [
        // Unknown call number.
        [
            9999u16.to_le_bytes().to_vec(),
            1u16.to_le_bytes().to_vec(),
            0u64.to_le_bytes().to_vec(),
        ]
        .concat(),
        // cuMemAlloc_v2 with a truncated size.
        [
            200u16.to_le_bytes().to_vec(),
            1u16.to_le_bytes().to_vec(),
            0u64.to_le_bytes().to_vec(),
            vec![1, 2],
        ]
        .concat(),
        // A head cut short.
        vec![1, 2, 3],
    ] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        hello(&mut s);
        s.write_all(&(request.len() as u32).to_le_bytes()).unwrap();
        s.write_all(&request).unwrap();
        let mut n = [0u8; 4];
        s.read_exact(&mut n).unwrap();
        let mut reply = vec![0u8; u32::from_le_bytes(n) as usize];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(
            u32::from_le_bytes(reply[..4].try_into().unwrap()),
            u32::MAX,
            "refused"
        );
        assert!(String::from_utf8_lossy(&reply[16..]).contains("malformed message"));
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "the session closes after refusing");
    }
    // A frame longer than the limit is refused before it is read.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    hello(&mut s);
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    let mut n = [0u8; 4];
    s.read_exact(&mut n).unwrap();
    let mut reply = vec![0u8; u32::from_le_bytes(n) as usize];
    s.read_exact(&mut reply).unwrap();
    assert!(String::from_utf8_lossy(&reply).contains("exceeds the limit"));

    // The server still serves.
    let out = server.client(&[prog.to_str().unwrap()]).output().unwrap();
    assert_eq!(key_values(&out)["name"], "NVIDIA H100 80GB HBM3");
}

fn spawn_holder(server: &Server, mib: &str) -> Holder {
    let prog = c_program("remote_hold", "12.9");
    Holder::start(server.client(&[prog.to_str().unwrap(), mib]))
}

#[test]
fn a_killed_client_s_memory_is_freed_on_the_server() {
    let m = Machine::new("remote-kill", "1x16GiB");
    let server = Server::start(&m, "127.0.0.1:0", &format!("alpha {TOKEN}\n"));
    let mut h = spawn_holder(&server, "3072");
    assert!(m.card_used() >= 3 * GIB, "the session holds the memory");
    h.child.kill().unwrap();
    h.child.wait().unwrap();
    let t = Instant::now();
    while m.card_used() != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "memory still held {} bytes after the client died",
            m.card_used()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_server_that_goes_away_is_a_clear_error_in_the_client() {
    let m = Machine::new("remote-restart", "1x16GiB");
    let sock = m.state.with_extension("sock");
    let listen = format!("unix:{}", sock.display());
    let clients = format!("alpha {TOKEN}\n");
    let server = Server::start(&m, &listen, &clients);
    let mut h = spawn_holder(&server, "64");
    drop(server);
    // The client's session dies with the server, a moment after it (parent-death signals).
    let t = Instant::now();
    while m.card_used() != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the session outlived its server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    h.go_on();
    let mut line = String::new();
    h.out.read_line(&mut line).unwrap();
    let status = h.child.wait().unwrap();
    let mut err = String::new();
    h.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success());
    let code: i32 = line.trim().strip_prefix("after ").unwrap().parse().unwrap();
    assert_eq!(code, 46, "cudaErrorDevicesUnavailable; stderr: {err}");
    assert!(err.contains("lost the GPU server"), "{err}");
    // A new server on the same address serves new clients.
    let server = Server::start(&m, &listen, &clients);
    let mut h = spawn_holder(&server, "64");
    h.child.kill().unwrap();
    let _ = h.child.wait();
}

#[test]
fn nvml_on_the_client_shows_the_tenant_s_view_from_the_server() {
    let m = Machine::new("remote-nvml", "1x16GiB");
    let server = Server::start(&m, "127.0.0.1:0", &format!("alpha {TOKEN} memory=2GiB\n"));
    // NVIDIA's Python NVML client, loading libnvidia-ml.so.1 from the client's folder.
    let view = || -> serde_json::Value {
        let script = root().join("tests/python/nvml_view.py");
        let out = server
            .client(&["python3", script.to_str().unwrap()])
            .env("PYTHONPATH", cuda_cache().join("py"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["devices"][0].clone()
    };
    let idle = view();
    assert_eq!(idle["total"], 2 * GIB, "the limit, not the 16 GiB card");
    assert_eq!(idle["total_v2"], 2 * GIB);
    assert_eq!(idle["used"], 0);
    assert_eq!(idle["name"], "gpupool Simulated GPU 16GiB");
    let card_uuid = m.info()["devices"][0]["uuid"].clone();
    assert_eq!(idle["uuid"], card_uuid);
    assert_eq!(idle["processes"].as_array().unwrap().len(), 0);
    // What PyTorch asks at start: the device by bus id, no NVLink peer, no fabric.
    assert_eq!(idle["found_by_pci"], true, "{idle}");
    assert_eq!(idle["nvlink_remote_type"], "Not Supported");
    assert_eq!(
        idle["fabric_state"], 0,
        "NVML_GPU_FABRIC_STATE_NOT_SUPPORTED"
    );

    let mut holder = spawn_holder(&server, "512");
    let busy = view();
    let used = 512 * MIB + 256 * MIB;
    assert_eq!(
        busy["used"], used,
        "the holder's memory and context: {busy}"
    );
    assert_eq!(busy["free"], 2 * GIB - used);
    let procs = busy["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "only the tenant's session: {busy}");
    assert_eq!(procs[0]["used"], used);
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
}

#[test]
fn forked_children_never_use_the_parent_s_connection() {
    // A client forks 50 children while four threads allocate and free: children that exit
    // send nothing of the parent's (its unsent calls stay the parent's), children that call
    // CUDA get CUDA_ERROR_NOT_INITIALIZED as from a driver, and the parent's session goes on.
    // With the threads also asking for their context's device (answered by the client from
    // what it kept, under a lock), children asking for it neither hang nor get the parent's
    // answer.
    let m = Machine::new("remote-fork", "1x16GiB");
    let server = Server::start(&m, "127.0.0.1:0", &format!("alpha {TOKEN} memory=2GiB\n"));
    let prog = c_program("fork_exit", "driver");
    for mode in [&[][..], &["child-calls"][..], &["child-device"][..]] {
        let mut args = vec![prog.to_str().unwrap()];
        args.extend_from_slice(mode);
        let kv = key_values(&server.client(&args).output().unwrap());
        eprintln!("{mode:?}: {kv:?}");
        assert_eq!(num(&kv, "children"), 50, "{mode:?}: every child ended");
        assert_eq!(num(&kv, "free_before"), 2 * GIB - 256 * MIB - 512 * MIB);
        assert_eq!(num(&kv, "free_after"), num(&kv, "free_before"), "{mode:?}");
        if !mode.is_empty() {
            assert_eq!(num(&kv, "child_call_rc"), 3, "CUDA_ERROR_NOT_INITIALIZED");
        }
    }
}

/// A `tls://` server of `m` for the client `alpha` (1 GiB) with a certificate of the CA in
/// the returned certificate folder; a client certificate of that CA there too, and the server
/// asks clients for one, with `client_certificates`. The folder's `other` holds another CA
/// with a server and a client certificate.
fn tls_server(
    m: &Machine,
    client_certificates: bool,
) -> (Server, std::path::PathBuf, std::path::PathBuf) {
    tls_server_for(
        m,
        client_certificates,
        &format!("alpha {TOKEN} memory=1GiB\n"),
    )
}

/// [`tls_server`] for the clients file `clients`.
fn tls_server_for(
    m: &Machine,
    client_certificates: bool,
    clients: &str,
) -> (Server, std::path::PathBuf, std::path::PathBuf) {
    let certs = m.state.with_extension("certs");
    let other = certs.join("other");
    std::fs::create_dir_all(&other).unwrap();
    common::certs::ca_and_server(&certs, "gpupool-test-ca", "gpu-server");
    common::certs::client(&certs, "alpha");
    common::certs::ca_and_server(&other, "someone-else", "gpu-server");
    common::certs::client(&other, "alpha");
    let file = |name: &str| certs.join(name).display().to_string();
    let mut args = vec![
        "--tls-cert".to_string(),
        file("server.crt"),
        "--tls-key".into(),
        file("server.key"),
    ];
    if client_certificates {
        args.extend(["--tls-client-ca".into(), file("ca.crt")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with(m, "tls://127.0.0.1:0", clients, &args);
    (server, certs, other)
}

/// The images line a client printed with `GPUPOOL_REMOTE_STATS=1`: (sent whole, by key).
fn images_sent(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("gpupool remote GPU: images: sent "))
        .unwrap_or_else(|| panic!("no images line: {stderr}"));
    let whole = line.split_whitespace().next().unwrap().parse().unwrap();
    let by_key = line.rsplit(' ').next().unwrap().parse().unwrap();
    (whole, by_key)
}

/// Runs `cmd` through `server` with the client counting its calls
/// (`GPUPOOL_REMOTE_STATS=1`): whether it succeeded, its output and its errors.
fn counted_run(server: &Server, cmd: &[&str]) -> (bool, String, String) {
    let out = server
        .client(cmd)
        .env("GPUPOOL_REMOTE_STATS", "1")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How many images a server keeps in client folder `kept`.
fn kept_images(kept: &std::path::Path) -> u64 {
    std::fs::read_dir(kept).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))
        })
        .count()
    }) as u64
}

/// Waits (up to 10 s) until `kept` holds `n` images: a session writes them after its client
/// has gone.
fn wait_for_kept(kept: &std::path::Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while kept_images(kept) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Zeroes every image kept in `kept`, keeping each one's length.
fn damage_kept_images(kept: &std::path::Path) {
    for f in std::fs::read_dir(kept).unwrap() {
        let path = f.unwrap().path();
        if path.is_file() {
            let len = std::fs::metadata(&path).unwrap().len() as usize;
            std::fs::write(&path, vec![0u8; len]).unwrap();
        }
    }
}

#[test]
fn runtime_11_8_modules_and_kernels_load_without_waiting() {
    use gpupool_remote::calls::custom::{MODULE_GET_FUNCTION, MODULE_LOAD, NAME_FUNCTION};
    let m = Machine::new("remote-modules", "1xH100");
    let prog = c_program("rt_kernel", "11.8");
    let server = Server::start(&m, "127.0.0.1:0", &format!("alpha {TOKEN}\n"));
    let run = || counted_run(&server, &[prog.to_str().unwrap(), "1us", "0.05"]);
    let kept = m.state.join("remote-images").join("client-alpha");
    for (sent, travel) in [((1, 0), "whole"), ((0, 1), "by key")] {
        let (ok, said, err) = run();
        assert!(
            ok && said.contains("unregistered 98"),
            "{travel}: {said}{err}"
        );
        assert_eq!(images_sent(&err), sent, "{travel}");
        for unwaited in [MODULE_LOAD, NAME_FUNCTION] {
            let line = format!("call {unwaited}: waited 0, sent 1");
            assert!(err.contains(&line), "{travel}: {err}");
        }
        let asked = format!("call {MODULE_GET_FUNCTION}:");
        assert!(!err.contains(&asked), "{travel}: {err}");
        wait_for_kept(&kept, 1);
    }
    // A kept module the driver no longer loads: its kernel's launch gets the driver's
    // error; the next run sends the image again.
    damage_kept_images(&kept);
    let (ok, said, _) = run();
    assert!(!ok && said.contains("FAIL cudaLaunchKernel"), "{said}");
    let (ok, said, err) = run();
    assert!(ok, "{said}{err}");
    assert_eq!(images_sent(&err), (1, 0), "sent again");
    // Many modules of many kernels: none waited for.
    let many = c_program("rt_registered", "11.8");
    let (ok, said, err) = counted_run(&server, &[many.to_str().unwrap(), "30", "20"]);
    assert!(ok, "{said}{err}");
    for (call, sent) in [(MODULE_LOAD, 30), (NAME_FUNCTION, 600)] {
        let line = format!("call {call}: waited 0, sent {sent}");
        assert!(err.contains(&line), "{err}");
    }
}

#[test]
fn images_a_server_keeps_are_sent_by_key_the_next_time() {
    let m = Machine::new("remote-images", "1xH100");
    let prog = c_program("rt_kernel", "12.9");
    let run = |server: &Server| {
        let (ok, said, err) = counted_run(server, &[prog.to_str().unwrap(), "1us", "0.05"]);
        assert!(ok, "{said}{err}");
        err
    };
    let server = Server::start(&m, "127.0.0.1:0", &format!("alpha {TOKEN}\n"));
    let first = run(&server);
    let (whole, by_key) = images_sent(&first);
    assert!(
        whole > 0 && by_key == 0,
        "first run: {whole} whole, {by_key} by key"
    );
    let loaded = whole;
    // Compiled-in libraries load without a round trip, whole or by key.
    let library_load = gpupool_remote::calls::custom::LIBRARY_LOAD;
    let unwaited = format!("call {library_load}: waited 0, sent {loaded}");
    assert!(first.contains(&unwaited), "{first}");
    // The first session writes what it keeps after its client has gone.
    let kept = m.state.join("remote-images").join("client-alpha");
    let written = || kept_images(&kept);
    let wait_until_written = || wait_for_kept(&kept, loaded);
    wait_until_written();
    assert_eq!(written(), loaded, "each image kept once");
    let second = run(&server);
    assert_eq!(images_sent(&second), (0, loaded), "the second run");
    // By key: images the server pinned for the session.
    assert!(second.contains(&unwaited), "{second}");
    // A kept image damaged without a change of length: the run that loads it without
    // waiting gets the driver's error where it launches; the next run sends it again.
    damage_kept_images(&kept);
    let out = server
        .client(&[prog.to_str().unwrap(), "1us", "0.05"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && said.contains("FAIL cudaLaunchKernel"),
        "{said}"
    );
    assert_eq!(written(), 0, "damaged images forgotten");
    assert_eq!(images_sent(&run(&server)), (loaded, 0), "sent again");
    wait_until_written();
    // A kept image damaged on the server is sent whole again, and kept again.
    for f in std::fs::read_dir(&kept).unwrap() {
        let path = f.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, b"junk").unwrap();
        }
    }
    assert_eq!(
        images_sent(&run(&server)),
        (loaded, loaded),
        "sent again after the miss"
    );
    wait_until_written();
    assert_eq!(images_sent(&run(&server)), (0, loaded), "kept again");
    drop(server);

    // A server that keeps none, and one on this host: images travel whole, unhashed.
    let none = Server::start_with(
        &m,
        "127.0.0.1:0",
        &format!("alpha {TOKEN}\n"),
        &["--image-cache", "0"],
    );
    for _ in 0..2 {
        assert_eq!(images_sent(&run(&none)), (loaded, 0), "--image-cache 0");
    }
    drop(none);
    let sock = m.state.with_extension("images.sock");
    let local = Server::start(
        &m,
        &format!("unix:{}", sock.display()),
        &format!("alpha {TOKEN}\n"),
    );
    for _ in 0..2 {
        let err = run(&local);
        assert_eq!(images_sent(&err), (loaded, 0), "a server on this host");
        assert!(err.contains(&unwaited), "{err}");
        let index = gpupool_remote::calls::custom::IMAGE_INDEX;
        assert!(!err.contains(&format!("call {index}:")), "{err}");
    }
    drop(local);
    // A client folder someone else could write to is never used: images travel whole.
    use std::os::unix::fs::PermissionsExt;
    let kept = m.state.join("remote-images").join("client-alpha");
    std::fs::remove_dir_all(&kept).unwrap();
    std::fs::create_dir(&kept).unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o777)).unwrap();
    let planted = Server::start(&m, "127.0.0.1:0", &format!("alpha {TOKEN}\n"));
    for _ in 0..2 {
        assert_eq!(
            images_sent(&run(&planted)),
            (loaded, 0),
            "a folder others may write"
        );
    }
    assert!(planted.log().contains("others may write to it"));
    let clients = m.state.with_extension("clients");
    std::fs::write(&clients, format!("alpha {TOKEN}\n")).unwrap();
    let bad = Command::new(gpupool())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--image-cache",
            "lots",
            "--clients",
        ])
        .arg(&clients)
        .output()
        .unwrap();
    assert!(
        failure_message(&bad).contains("--image-cache \"lots\""),
        "{}",
        failure_message(&bad)
    );
}

#[test]
fn a_server_check_creates_nothing_and_says_what_it_would_keep() {
    let m = Machine::new("remote-check", "1xH100");
    let dir = m.state.with_extension("check");
    std::fs::create_dir_all(&dir).unwrap();
    let clients = dir.join("clients");
    std::fs::write(&clients, format!("alpha {TOKEN}\n")).unwrap();
    let state = dir.join("state");
    let check = |more: &[&str]| {
        Command::new(gpupool())
            .args(["serve", "--listen", "127.0.0.1:0", "--sim", "1xH100"])
            .arg("--clients")
            .arg(&clients)
            .arg("--state")
            .arg(&state)
            .args(more)
            .arg("--check")
            .env("GPUPOOL_LIB_DIR", lib_dir())
            .output()
            .unwrap()
    };
    let said = |more: &[&str]| {
        let out = check(more);
        assert!(out.status.success(), "{}", failure_message(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = said(&[]);
    assert!(
        first.contains("would listen on tcp://127.0.0.1:0 for 1 client(s): alpha"),
        "{first}"
    );
    let root = state.join("remote-images");
    assert!(
        first.contains(&format!(
            "would keep up to 4.00 GiB of images per client under {}",
            root.display()
        )),
        "{first}"
    );
    assert!(!state.exists(), "a check created {}", state.display());
    let none = said(&["--image-cache", "0"]);
    assert!(none.contains("would keep no images"), "{none}");
    // An image folder others may write to is refused by the check too.
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = check(&[]);
    let why = failure_message(&out);
    assert!(
        !out.status.success() && why.contains("--image-cache") && why.contains("others may write"),
        "{why}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_serves_clients_that_trust_the_server_s_ca_and_no_others() {
    let m = Machine::new("remote-tls", "1xH100");
    let (server, certs, other) = tls_server(&m, false);
    assert!(
        server.addr.starts_with("tls://127.0.0.1:"),
        "{}",
        server.addr
    );
    let prog = c_program("rt_basic", "12.9");
    let run = |ca: Option<&std::path::Path>, addr: &str| {
        let mut cmd = Command::new(gpupool());
        cmd.args(["run", "--remote", addr, "--token-file"])
            .arg(server.dir.join("token"));
        if let Some(ca) = ca {
            cmd.arg("--tls-ca").arg(ca);
        }
        cmd.arg("--")
            .arg(&prog)
            .env("GPUPOOL_LIB_DIR", lib_dir())
            .env_remove("GPUPOOL_REMOTE_TLS_CA")
            .output()
            .unwrap()
    };
    // Trusting the server's CA: the program runs, under its limit on the server.
    let kv = key_values(&run(Some(&certs.join("ca.crt")), &server.addr));
    assert_eq!(kv["name"], "NVIDIA H100 80GB HBM3");
    assert_eq!(num(&kv, "meminfo_total"), GIB, "the server's limit");
    // Another CA: the client refuses the server's certificate.
    let err = failure_message(&run(Some(&other.join("ca.crt")), &server.addr));
    assert!(
        err.contains("TLS with the GPU server") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    // No CA at all, and a plain client at the TLS port: clear errors.
    let err = failure_message(&run(None, &server.addr));
    assert!(err.contains("GPUPOOL_REMOTE_TLS_CA is not set"), "{err}");
    let plain = server.addr.replace("tls://", "tcp://");
    let err = failure_message(&run(None, &plain));
    assert!(err.contains("connect to that"), "{err}");
    let err = failure_message(&run(Some(&certs.join("ca.crt")), &plain));
    assert!(err.contains("--tls-ca is for a tls:// server"), "{err}");
    // A TLS listener without a certificate is refused at the start.
    let out = Command::new(gpupool())
        .args(["serve", "--listen", "tls://127.0.0.1:0", "--clients"])
        .arg(server.dir.join("clients"))
        .output()
        .unwrap();
    assert!(failure_message(&out).contains("needs --tls-cert and --tls-key"));
    // The server still serves.
    let kv = key_values(&run(Some(&certs.join("ca.crt")), &server.addr));
    assert_eq!(num(&kv, "meminfo_total"), GIB);
}

#[test]
fn a_client_bound_to_a_certificate_name_needs_a_certificate_with_it() {
    let prog = c_program("rt_basic", "12.9");
    // The client's certificate (of the right CA) names alpha.
    let run = |bound_to: &str| {
        let m = Machine::new(&format!("remote-cert-{bound_to}"), "1xH100");
        let clients = format!("alpha {TOKEN} memory=1GiB cert={bound_to}\n");
        let (server, certs, _) = tls_server_for(&m, true, &clients);
        server
            .client(&[prog.to_str().unwrap()])
            .env("GPUPOOL_REMOTE_TLS_CA", certs.join("ca.crt"))
            .env("GPUPOOL_REMOTE_TLS_CERT", certs.join("client.crt"))
            .env("GPUPOOL_REMOTE_TLS_KEY", certs.join("client.key"))
            .output()
            .unwrap()
    };
    let kv = key_values(&run("alpha"));
    assert_eq!(num(&kv, "meminfo_total"), GIB, "admitted, under its limit");
    let err = failure_message(&run("alpha.clients.example"));
    assert!(err.contains("does not name alpha.clients.example"), "{err}");
    // A server that asks for no client certificate cannot bind a client to one.
    let m = Machine::new("remote-cert-plain", "1xH100");
    let dir = m.state.with_extension("plain");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("clients"), format!("alpha {TOKEN} cert=alpha\n")).unwrap();
    let out = Command::new(gpupool())
        .args(["serve", "--listen", "127.0.0.1:0", "--clients"])
        .arg(dir.join("clients"))
        .arg("--check")
        .env("GPUPOOL_LIB_DIR", lib_dir())
        .output()
        .unwrap();
    let why = failure_message(&out);
    assert!(
        !out.status.success() && why.contains("\"alpha\" must present a certificate"),
        "{why}"
    );
}

#[test]
fn a_server_that_asks_for_client_certificates_admits_only_its_ca_s() {
    let m = Machine::new("remote-mtls", "1xH100");
    let (server, certs, other) = tls_server(&m, true);
    let prog = c_program("rt_basic", "12.9");
    let run = |identity: Option<&std::path::Path>, via_env: bool| {
        let mut cmd = server.client(&[prog.to_str().unwrap()]);
        cmd.env("GPUPOOL_REMOTE_TLS_CA", certs.join("ca.crt"))
            .env_remove("GPUPOOL_REMOTE_TLS_CERT")
            .env_remove("GPUPOOL_REMOTE_TLS_KEY");
        if let Some(d) = identity {
            if via_env {
                cmd.env("GPUPOOL_REMOTE_TLS_CERT", d.join("client.crt"))
                    .env("GPUPOOL_REMOTE_TLS_KEY", d.join("client.key"));
            } else {
                // `gpupool run --tls-cert F --tls-key F --remote …`: flags before `--`.
                let args: Vec<std::ffi::OsString> = cmd.get_args().map(|a| a.into()).collect();
                let at = args.iter().position(|a| a == "--").unwrap();
                let mut with = args[..at].to_vec();
                with.extend([
                    "--tls-cert".into(),
                    d.join("client.crt").into(),
                    "--tls-key".into(),
                    d.join("client.key").into(),
                ]);
                with.extend_from_slice(&args[at..]);
                let mut fresh = Command::new(gpupool());
                fresh.args(with);
                for (k, v) in cmd.get_envs() {
                    match v {
                        Some(v) => fresh.env(k, v),
                        None => fresh.env_remove(k),
                    };
                }
                return fresh.output().unwrap();
            }
        }
        cmd.output().unwrap()
    };
    // A certificate of the server's client CA, by flags or by variables: the program runs
    // under its limit on the server.
    for via_env in [false, true] {
        let kv = key_values(&run(Some(&certs), via_env));
        assert_eq!(kv["name"], "NVIDIA H100 80GB HBM3", "via_env {via_env}");
        assert_eq!(num(&kv, "meminfo_total"), GIB, "the server's limit");
    }
    // No certificate, or one of another CA: refused, with the reason.
    for (identity, why) in [(None, "no certificate"), (Some(&other), "another CA")] {
        let err = failure_message(&run(identity.map(|p| p.as_path()), true));
        assert!(
            err.contains("refused this client's TLS certificate") && err.contains("--tls-cert"),
            "{why}: {err}"
        );
    }
    // A certificate without its key, and a certificate for a plain server: clear errors.
    let out = server
        .client(&[prog.to_str().unwrap()])
        .env("GPUPOOL_REMOTE_TLS_CA", certs.join("ca.crt"))
        .env("GPUPOOL_REMOTE_TLS_CERT", certs.join("client.crt"))
        .env_remove("GPUPOOL_REMOTE_TLS_KEY")
        .output()
        .unwrap();
    assert!(
        failure_message(&out).contains("GPUPOOL_REMOTE_TLS_KEY go together"),
        "{}",
        failure_message(&out)
    );
    let plain = server.addr.replace("tls://", "tcp://");
    let out = Command::new(gpupool())
        .args(["run", "--remote", &plain, "--tls-cert"])
        .arg(certs.join("client.crt"))
        .arg("--tls-key")
        .arg(certs.join("client.key"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(
        failure_message(&out).contains("--tls-cert is for a tls:// server"),
        "{}",
        failure_message(&out)
    );
    // The server still serves.
    let kv = key_values(&run(Some(&certs), true));
    assert_eq!(num(&kv, "meminfo_total"), GIB);
}

#[test]
fn the_tls_relays_carry_both_directions_at_once_and_pass_on_the_close() {
    use gpupool_remote::tls;
    use std::os::unix::net::UnixStream;
    let dir = std::env::temp_dir().join(format!("gpupool-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    common::certs::ca_and_server(&dir, "relay-ca", "relay");
    let server_config =
        tls::server_config(&dir.join("server.crt"), &dir.join("server.key"), None).unwrap();
    let client_config = tls::client_config((&dir.join("ca.crt"), "test"), None).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    const STUCK: Duration = Duration::from_secs(30);
    // The server's plaintext end echoes everything back as it arrives.
    let server = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut conn = rustls::ServerConnection::new(server_config).unwrap();
        tls::complete_handshake(&mut conn, &mut sock).unwrap();
        let mut plain: UnixStream = tls::start_relay(conn.into(), sock).unwrap();
        // A relay that stops moving fails the test instead of hanging it.
        plain.set_read_timeout(Some(STUCK)).unwrap();
        plain.set_write_timeout(Some(STUCK)).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut echoed = 0usize;
        loop {
            let n = plain.read(&mut buf).unwrap();
            if n == 0 {
                return echoed;
            }
            plain.write_all(&buf[..n]).unwrap();
            echoed += n;
        }
    });
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    let mut conn = tls::client_connection(client_config, &addr).unwrap();
    tls::complete_handshake(&mut conn, &mut sock).unwrap();
    let plain = tls::start_relay(conn.into(), sock).unwrap();
    plain.set_read_timeout(Some(STUCK)).unwrap();
    plain.set_write_timeout(Some(STUCK)).unwrap();
    const TOTAL: usize = 48 << 20;
    let pattern = |i: usize| (i % 251) as u8;
    let mut writer = plain.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut sent = 0;
        while sent < TOTAL {
            let n = ((3 << 20) + 17).min(TOTAL - sent);
            // Each piece continues the pattern where the last one stopped.
            let piece: Vec<u8> = (sent..sent + n).map(pattern).collect();
            writer.write_all(&piece).unwrap();
            sent += n;
        }
    });
    let mut reader = plain;
    // Read late and slowly at first, so every buffer on the way fills and each relay has to
    // hold back (partial writes, waiting to write).
    std::thread::sleep(Duration::from_millis(300));
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    while got < TOTAL {
        let n = reader
            .read(&mut buf[..if got < (4 << 20) { 4096 } else { 1 << 20 }])
            .unwrap();
        assert!(n > 0, "the echo ended after {got} bytes");
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, pattern(got + k), "byte {}", got + k);
        }
        got += n;
    }
    sender.join().unwrap();
    // Closing the client's plaintext end closes the connection: the server's end then reads
    // the end of the stream.
    drop(reader);
    assert_eq!(server.join().unwrap(), TOTAL);
    let _ = std::fs::remove_dir_all(&dir);
}
