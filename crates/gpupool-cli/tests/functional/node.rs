//! `gpupool node` end to end on the simulated GPU: the agent (its own process, NVML of the
//! simulated driver, the Kubernetes API served by the in-memory fake over HTTP) registers with a
//! stand-in kubelet; `Allocate` for a scheduled pod returns env and mounts; a CUDA program
//! started with exactly that env, and the mounted files at their host paths, is held to the
//! pod's limit. The agent's `/metrics` names the pod; its audit kills a process of the pod that
//! bypasses the library and goes over the limit. Then card faults injected in the simulator
//! (NVML failing on a card, an XID event) reach `ListAndWatch` and the inventory.

use crate::common;
use common::*;
use gpupool_fakekube as fake_api;
use gpupool_node::fake_kubelet::FakeKubelet;
use gpupool_node::proto;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The agent process, with what it logged so far; killed when dropped.
struct Agent(Child, std::sync::Arc<std::sync::Mutex<String>>);

impl Agent {
    /// The agent's log so far.
    fn log(&self) -> String {
        self.1.lock().unwrap().clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The key the scheduler and the agent share, written into `dir`.
fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("assignment.key");
    std::fs::write(&path, "a test key, long enough for HMAC-SHA256\n").unwrap();
    path
}

/// The signature the scheduler would put on pod `ns/name` (as `add_bound_pod` adds it) bound to
/// `n1` with `assignment`.
fn signature(dir: &Path, ns: &str, name: &str, assignment: &str) -> String {
    let key = gpupool_sched::signing::AssignmentKey::from_file(&key_file(dir)).unwrap();
    key.sign(&gpupool_sched::signing::SignedFields {
        namespace: ns,
        name,
        uid: &fake_api::bound_pod_uid(name),
        node: "n1",
        assignment,
    })
}

/// Starts `gpupool node` on machine `m`; returns it and its metrics address.
fn start_agent(m: &Machine, dir: &Path, url: &str) -> (Agent, String) {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, fake_api::kubeconfig(url)).unwrap();
    let mut child = Command::new(gpupool())
        .args(["node", "--node-name", "n1", "--sim", &m.spec, "--state"])
        .arg(&m.state)
        .arg("--kubelet-dir")
        .arg(dir.join("device-plugins"))
        .arg("--state-dir")
        .arg(dir.join("agent"))
        .arg("--library")
        .arg(lib_dir().join("libgpupool.so"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--assignment-key-file")
        .arg(key_file(dir))
        .args([
            "--metrics-listen",
            "127.0.0.1:0",
            "--health-interval",
            "200ms",
            "--inventory-refresh",
            "500ms",
            "--log-level",
            "warn",
            "--audit-policy",
            "kill",
            "--audit-interval",
            "300ms",
            // As on a real GPU: contexts are not charged inside containers (the audit allows
            // each process its context instead).
            "--context-memory",
            "0",
        ])
        .arg("--proc-root")
        .arg(dir.join("proc"))
        .env("GPUPOOL_LIB_DIR", lib_dir())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut before = String::new();
    let addr = loop {
        let line = lines
            .next()
            .expect("gpupool node printed its metrics address")
            .unwrap();
        before.push_str(&line);
        before.push('\n');
        if let Some(rest) = line.split("metrics on http://").nth(1) {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    // Keep draining stderr so the agent never blocks on a full pipe.
    let log = std::sync::Arc::new(std::sync::Mutex::new(before));
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut log = kept.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    (Agent(child, log), addr)
}

/// Makes the agent's `/proc` (under `dir`) show process `pid` in pod `uid`: its cgroup names
/// the pod; its `stat` is the real one (the audit checks its start time before a kill).
fn in_pod(dir: &Path, pid: u32, uid: &str) {
    let at = dir.join("proc").join(pid.to_string());
    std::fs::create_dir_all(&at).unwrap();
    std::fs::write(
        at.join("stat"),
        std::fs::read(format!("/proc/{pid}/stat")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        at.join("cgroup"),
        format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-0123abcd.scope\n",
            uid.replace('-', "_")
        ),
    )
    .unwrap();
}

/// The limits file as the container would see it, its mounted folders replaced by the host
/// paths behind them (the test stands in for the container runtime's mounts).
fn limits_at_host_paths(r: &proto::ContainerAllocateResponse, out: &Path) -> PathBuf {
    let host = |container: &str| {
        r.mounts
            .iter()
            .find(|m| m.container_path == container)
            .unwrap_or_else(|| panic!("mount {container} in {:?}", r.mounts))
            .host_path
            .clone()
    };
    let mut text = std::fs::read_to_string(host("/etc/gpupool/limits.conf")).unwrap();
    for folder in ["/run/gpupool/tenant", "/run/gpupool/cards"] {
        text = text.replace(folder, &host(folder));
    }
    std::fs::write(out, text).unwrap();
    out.to_path_buf()
}

fn node_inventory(cluster: &fake_api::Shared) -> Option<gpupool_sched::protocol::Inventory> {
    let node = cluster.lock().unwrap().nodes["n1"].clone();
    node["metadata"]["annotations"]["gpupool.io/inventory"]
        .as_str()
        .and_then(|t| gpupool_sched::protocol::Inventory::parse(t).ok())
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..100 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within 10 s");
}

/// An agent on machine `m` registered with a stand-in kubelet, the fake API serving node `n1`,
/// and the agent's `ListAndWatch` stream with its first answer.
struct Running {
    dir: PathBuf,
    cluster: fake_api::Shared,
    rt: tokio::runtime::Runtime,
    agent: Agent,
    metrics: String,
    plugin: proto::device_plugin_client::DevicePluginClient<tonic::transport::Channel>,
    stream: tonic::Streaming<proto::ListAndWatchResponse>,
    first: proto::ListAndWatchResponse,
    _kubelet: FakeKubelet,
}

fn run_agent(m: &Machine, test: &str) -> Running {
    let dir = std::env::temp_dir().join(format!("gpupool-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cluster: fake_api::Shared = Default::default();
    cluster.lock().unwrap().add_node("n1", &[]);
    let url = fake_api::serve(cluster.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut kubelet = rt
        .block_on(async { FakeKubelet::start(&dir.join("device-plugins")) })
        .unwrap();
    let (agent, metrics) = start_agent(m, &dir, &url);
    let reg = rt
        .block_on(kubelet.next_registration(Duration::from_secs(20)))
        .expect("the agent registers with the kubelet");
    assert_eq!(reg.resource_name, "nvidia.com/gpu");
    let mut plugin = rt.block_on(kubelet.plugin(&reg)).unwrap();
    let mut stream = rt
        .block_on(plugin.list_and_watch(proto::Empty {}))
        .unwrap()
        .into_inner();
    let first = rt.block_on(stream.message()).unwrap().unwrap();
    Running {
        dir,
        cluster,
        rt,
        agent,
        metrics,
        plugin,
        stream,
        first,
        _kubelet: kubelet,
    }
}

#[test]
fn an_allocated_container_runs_under_its_pods_limits() {
    let m = Machine::new("node-e2e", "2x16GiB");
    let Running {
        dir,
        cluster,
        rt,
        agent: _agent,
        metrics,
        mut plugin,
        mut stream,
        first,
        _kubelet,
    } = run_agent(&m, "node-e2e");
    assert_eq!(first.devices.len(), 20, "2 cards x 10 slots");

    // The inventory names the simulated cards; the scheduler assigned card 1 to the pod.
    let inventory = wait_for("inventory annotation", || {
        node_inventory(&cluster).filter(|i| !i.cards.is_empty())
    });
    assert_eq!(inventory.cards.len(), 2);
    assert_eq!(inventory.cards[0].memory_mib, 16 * 1024);
    let card = inventory.cards[1].uuid.clone();
    let assignment = json!({"version": 1, "node": "n1", "assignedNs": 1, "containers": [
        {"name": "main", "devices": [{"uuid": card, "memoryMiB": 1024, "cores": 100}]}]})
    .to_string();
    let mut allocate = |card: &str| {
        rt.block_on(plugin.allocate(proto::AllocateRequest {
            container_requests: vec![proto::ContainerAllocateRequest {
                devices_ids: vec![format!("{card}::0")],
            }],
        }))
    };

    // A pod written with `spec.nodeName` and an assignment by its author (none, or one copied
    // from another pod with its signature) gets nothing.
    let big = assignment.replace("\"memoryMiB\":1024", "\"memoryMiB\":16384");
    let copied = signature(&dir, "team", "someone-else", &big);
    for (name, annotations, why) in [
        (
            "forged",
            json!({"gpupool.io/assignment": big}),
            "not signed",
        ),
        (
            "copied",
            json!({"gpupool.io/assignment": big, "gpupool.io/assignment-signature": copied}),
            "signature does not match",
        ),
    ] {
        cluster.lock().unwrap().add_bound_pod(
            "team",
            name,
            "n1",
            annotations,
            json!([{"name": "main", "image": "cuda"}]),
        );
        let refused = allocate(&card).unwrap_err();
        assert!(
            refused.message().contains(&format!("team/{name}")) && refused.message().contains(why),
            "{name}: {refused:?}"
        );
        cluster.lock().unwrap().pods.remove(&format!("team/{name}"));
    }

    let signed = signature(&dir, "team", "infer", &assignment);
    let uid = cluster.lock().unwrap().add_bound_pod(
        "team",
        "infer",
        "n1",
        json!({"gpupool.io/assignment": assignment,
               "gpupool.io/assignment-signature": signed}),
        json!([{"name": "main", "image": "cuda"}]),
    );
    let response = allocate(&card)
        .unwrap()
        .into_inner()
        .container_responses
        .remove(0);

    // The container: exactly the returned env, the library preloaded (the ld.so.preload
    // mount), the limits file at its host path.
    let limits = limits_at_host_paths(&response, &dir.join("limits-as-mounted.conf"));
    // It holds its memory over several audit rounds: NVML shows its 1 GiB and its context
    // (256 MiB on the simulator), which the audit allows; it is not killed.
    let well_behaved = Command::new(gpupool())
        .args(["probe", "--chunk", "128MiB", "--hold-ms", "2000"])
        .envs(m.sim_env())
        .envs(&response.envs)
        .env("LD_PRELOAD", lib_dir().join("libgpupool.so"))
        .env("GPUPOOL_LIMITS_FILE", &limits)
        .env("GPUPOOL_LIB_DIR", lib_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    in_pod(&dir, well_behaved.id(), &uid);
    let out = well_behaved.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["total"],
        1024 * MIB,
        "the pod's 1 GiB is the card: {report}"
    );
    assert!(
        report["allocated"].as_u64().unwrap() <= 1024 * MIB,
        "held to 1 GiB: {report}"
    );
    assert_eq!(
        report["stop_error"], 2,
        "refused with out-of-memory: {report}"
    );
    // The agent's metrics name the pod, on the assigned card (CUDA_VISIBLE_DEVICES named it),
    // with DCGM exporter's labels and the node's name as its `Hostname`.
    let body = http_get(&metrics, "/metrics");
    let line = body
        .lines()
        .find(|l| l.starts_with("gpupool_tenant_memory_used_bytes{") && l.contains("pod=\"infer\""))
        .unwrap_or_else(|| panic!("metrics name the pod's tenant: {body}"));
    for label in [
        format!("UUID=\"{card}\""),
        "Hostname=\"n1\"".to_string(),
        "namespace=\"team\"".to_string(),
        "container=\"main\"".to_string(),
    ] {
        assert!(line.contains(&label), "{label} in {line}");
    }

    // The audit: a process of the pod that bypasses the library (no preload) takes 2 GiB on
    // the pod's card; NVML shows it, its cgroup names the pod, the kill policy ends it.
    let mut hog = Command::new(gpupool())
        .args([
            "probe",
            "--chunk",
            "512MiB",
            "--max-chunks",
            "4",
            "--hold-ms",
            "15000",
        ])
        .envs(m.sim_env())
        .env("CUDA_VISIBLE_DEVICES", &card)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    in_pod(&dir, hog.id(), &uid);
    let started = std::time::Instant::now();
    let status = wait_for("the audit kills the process", || hog.try_wait().unwrap());
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "killed by the audit: {status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "well before its 15 s hold"
    );
    // The event is posted after the kill: wait for it.
    wait_for("an event on the pod", || {
        let events = cluster.lock().unwrap().events.clone();
        events
            .iter()
            .any(|e| {
                e["reason"] == "GpupoolOverLimit"
                    && e["involvedObject"]["name"] == "infer"
                    && e["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("above its limit of 1024 MiB")
            })
            .then_some(())
    });
    let body = http_get(&metrics, "/metrics");
    assert!(
        body.lines()
            .any(|l| l.starts_with("gpupool_container_over_limit_total{")
                && l.contains("pod=\"infer\"")
                && l.contains(&format!("UUID=\"{card}\""))
                && l.contains("Hostname=\"n1\"")),
        "the finding is counted: {body}"
    );

    // A card fault: NVML fails on card 0; its slots turn unhealthy, and the inventory says so.
    let uuid0 = inventory.cards[0].uuid.clone();
    std::fs::create_dir_all(m.state.join("faults")).unwrap();
    std::fs::write(m.state.join("faults").join(&uuid0), "xid 79").unwrap();
    let update = next_update(&rt, &mut stream, "a ListAndWatch update within 10 s");
    for d in &update.devices {
        let want = if d.id.starts_with(&uuid0) {
            "Unhealthy"
        } else {
            "Healthy"
        };
        assert_eq!(d.health, want, "{}", d.id);
    }
    wait_for("inventory marks the card unhealthy", || {
        node_inventory(&cluster)
            .filter(|i| i.cards.len() == 2 && !i.cards[0].healthy && i.cards[1].healthy)
    });
    let body = http_get(&metrics, "/metrics");
    assert!(
        body.lines().any(|l| l.starts_with("gpupool_card_healthy{")
            && l.contains("gpu=\"0\"")
            && l.ends_with(" 0.0")),
        "the lost card's health is 0 in the metrics: {body}"
    );

    // An XID error on card 1 (an application's XID 43 first, which is not the card's fault,
    // then 79, fallen off the bus) reaches the agent through NVML's event API.
    std::fs::create_dir_all(m.state.join("xid")).unwrap();
    std::fs::write(m.state.join("xid").join(&card), "43\n79\n").unwrap();
    let update = next_update(&rt, &mut stream, "a ListAndWatch update after the XID");
    assert!(
        update.devices.iter().all(|d| d.health == "Unhealthy"),
        "both cards unhealthy now: {:?}",
        update.devices
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The next `ListAndWatch` message, within 10 s.
fn next_update(
    rt: &tokio::runtime::Runtime,
    stream: &mut tonic::Streaming<proto::ListAndWatchResponse>,
    what: &str,
) -> proto::ListAndWatchResponse {
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), stream.message()).await })
        .unwrap_or_else(|_| panic!("{what}: no update within 10 s"))
        .unwrap()
        .unwrap()
}

/// `GET path` on `addr` (HTTP/1.0, whole body).
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn a_card_in_mig_mode_is_left_out_and_the_log_says_why() {
    let m = Machine::new("node-mig", "1x16GiB:mig=on+1x16GiB");
    let Running {
        dir,
        cluster,
        agent,
        first,
        rt: _rt,
        _kubelet,
        ..
    } = run_agent(&m, "node-mig");
    assert_eq!(
        first.devices.len(),
        10,
        "only the card without MIG, 10 slots"
    );
    let inventory = wait_for("inventory annotation", || {
        node_inventory(&cluster).filter(|i| !i.cards.is_empty())
    });
    // `gpupool info` on the same machine: card 0 is the one in MIG mode.
    let info = |json: bool| {
        let state = m.state.display().to_string();
        let mut args = vec!["info", "--sim", &m.spec, "--state", &state];
        args.extend(json.then_some("--json"));
        String::from_utf8(gpupool_ok(&args).stdout).unwrap()
    };
    let devices: serde_json::Value = serde_json::from_str(&info(true)).unwrap();
    let devices = devices["devices"].as_array().unwrap();
    assert_eq!(
        (devices[0]["mig"].as_bool(), devices[1]["mig"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(inventory.cards.len(), 1);
    assert_eq!(
        inventory.cards[0].uuid,
        devices[1]["uuid"].as_str().unwrap()
    );
    let text = info(false);
    assert_eq!(text.matches("MIG mode enabled").count(), 1, "{text}");
    let log = wait_for("the log names the MIG card", || {
        let log = agent.log();
        log.contains("MIG mode enabled").then_some(log)
    });
    assert!(
        log.contains("card 0") && log.contains("does not share MIG instances"),
        "{log}"
    );
    // Said once, though the agent reads its cards every 200 ms.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        agent.log().matches("MIG mode enabled").count(),
        1,
        "{}",
        agent.log()
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_settings_are_named() {
    let dir = std::env::temp_dir().join(format!("gpupool-node-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.yaml");
    std::fs::write(&file, "split: 4\nsplitCount: 3\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(gpupool())
            .args(["node", "--dry-run", "--node-name", "n1"])
            .args(args)
            .args(if args.contains(&"--assignment-key-file") {
                &[][..]
            } else {
                &["--unsigned-assignments"][..]
            })
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(&["--config", file.to_str().unwrap()]);
    assert!(
        !ok && err.contains("splitCount") && err.contains("node.yaml"),
        "{err}"
    );
    std::fs::write(&file, "split: 4\nresourceDomain: example.com\n").unwrap();
    let (ok, out, err) = run(&["--config", file.to_str().unwrap(), "--split", "7"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("split: 7") && out.contains("example.com"),
        "flags over the file: {out}"
    );
    let (ok, _, err) = run(&["--split", "0"]);
    assert!(!ok && err.contains("split 0"), "{err}");
    let (ok, _, err) = run(&["--health-interval", "soon"]);
    assert!(!ok && err.contains("--health-interval"), "{err}");
    let (ok, _, err) = run(&["--audit-policy", "maybe"]);
    assert!(!ok && err.contains("maybe"), "{err}");
    // Trusting pod authors is an explicit choice, and a short key is refused.
    let out = Command::new(gpupool())
        .args(["node", "--dry-run", "--node-name", "n1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--assignment-key-file"),
        "{err}"
    );
    let short = dir.join("short.key");
    std::fs::write(&short, "0123456789").unwrap();
    let (ok, _, err) = run(&["--assignment-key-file", short.to_str().unwrap()]);
    assert!(
        !ok && err.contains("short.key") && err.contains("32"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
