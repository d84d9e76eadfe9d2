//! `gpupool exporter`, `gpupool top --once` and the Grafana dashboard against a simulated
//! machine with two tenants at work: one holding memory up to its limit (and refused past it),
//! one launching kernels under a compute cap and request.

use crate::common;
use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;

/// One sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (head, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (head, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            (name.to_string(), labels, value.parse().unwrap())
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, label: (&str, &str)) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l.get(label.0).map(String::as_str) == Some(label.1))
        .map(|s| s.2)
}

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for_tenants(m: &Machine, names: &[&str]) {
    let t0 = Instant::now();
    loop {
        let info = m.info();
        let ready = names.iter().all(|n| {
            info["tenants"].as_array().is_some_and(|ts| {
                ts.iter()
                    .any(|t| t["name"] == *n && !t["pids"].as_array().unwrap().is_empty())
            })
        });
        if ready {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "tenants never started: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn exporter_top_and_dashboard_show_what_the_tenants_do() {
    let m = Machine::new("observe", "1x16GiB");
    let gp = gpupool().display().to_string();
    let mut running = Running(Vec::new());
    // Tenant a: 1 GiB limit; 256 MiB chunks until refused, then holds them.
    running.0.push(
        m.run_cmd(
            &["--tenant", "a", "--memory", "1GiB"],
            &[&gp, "probe", "--chunk", "256MiB", "--hold-ms", "20000"],
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap(),
    );
    // Tenant b: kernels under a 30 % cap with 20 % guaranteed.
    let compute = c_program("compute", "driver").display().to_string();
    running.0.push(
        m.run_cmd(
            &[
                "--tenant",
                "b",
                "--compute",
                "30",
                "--compute-request",
                "20",
            ],
            &[&compute, "async", "1ms", "20", "1"],
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap(),
    );
    wait_for_tenants(&m, &["a", "b"]);
    // Let a reach its limit and b's NVML samples accumulate.
    std::thread::sleep(Duration::from_millis(2500));

    // The node agent names the container a tenant serves beside its folder.
    std::fs::write(
        m.state.join("tenants/a.owner.json"),
        r#"{"namespace": "ml", "pod": "llm-0", "container": "server"}"#,
    )
    .unwrap();
    let mut exporter = Command::new(gpupool())
        .args(["exporter", "--sim", &m.spec, "--state"])
        .arg(&m.state)
        .args(["--listen", "127.0.0.1:0", "--hostname", "gpu-host-7"])
        .env("GPUPOOL_LIB_DIR", lib_dir())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(exporter.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    running.0.push(exporter);
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let text = scrape(&addr);
    let s = parse(&text);

    // HELP texts end in one period (the registry adds it).
    for l in text.lines().filter(|l| l.starts_with("# HELP")) {
        assert!(l.ends_with('.') && !l.ends_with(".."), "{l}");
    }
    // DCGM exporter's labels on every card and tenant series, so queries can join the two.
    let card = s
        .iter()
        .find(|(n, _, _)| n == "gpupool_card_memory_total_bytes")
        .map(|x| x.1.clone())
        .unwrap();
    let tenant = s
        .iter()
        .find(|(n, l, _)| n == "gpupool_tenant_memory_used_bytes" && l["tenant"] == "a")
        .map(|x| x.1.clone())
        .unwrap();
    for labels in [&card, &tenant] {
        assert_eq!(labels["gpu"], "0", "{labels:?}");
        assert!(labels["UUID"].starts_with("GPU-"), "{labels:?}");
        assert_eq!(labels["Hostname"], "gpu-host-7", "{labels:?}");
        assert!(!labels["modelName"].is_empty(), "{labels:?}");
        assert!(!labels.contains_key("uuid") && !labels.contains_key("model"));
    }

    // Cards.
    assert_eq!(
        value(&s, "gpupool_card_memory_total_bytes", ("gpu", "0")),
        Some(16.0 * GIB as f64),
        "{text}"
    );
    assert_eq!(value(&s, "gpupool_card_healthy", ("gpu", "0")), Some(1.0));
    let util = value(&s, "gpupool_card_utilization_ratio", ("gpu", "0")).unwrap();
    assert!(util > 0.1 && util <= 1.0, "card utilisation {util}");

    // Tenant a: at its limit, refused past it.
    let limit = value(&s, "gpupool_tenant_memory_limit_bytes", ("tenant", "a")).unwrap();
    let used = value(&s, "gpupool_tenant_memory_used_bytes", ("tenant", "a")).unwrap();
    assert_eq!(limit, GIB as f64);
    assert!(
        used <= limit && used > limit - 256.0 * (1 << 20) as f64,
        "used {used}"
    );
    let denied = value(
        &s,
        "gpupool_tenant_allocations_denied_total",
        ("tenant", "a"),
    )
    .unwrap();
    assert!(denied >= 1.0, "denied {denied}");
    assert!(value(&s, "gpupool_tenant_processes", ("tenant", "a")).unwrap() >= 1.0);
    let labels = &s
        .iter()
        .find(|(n, l, _)| n == "gpupool_tenant_memory_used_bytes" && l["tenant"] == "a")
        .unwrap()
        .1;
    assert_eq!(
        (
            &labels["namespace"][..],
            &labels["pod"][..],
            &labels["container"][..]
        ),
        ("ml", "llm-0", "server")
    );
    assert!(s
        .iter()
        .filter(|(_, l, _)| l.get("tenant").map(String::as_str) == Some("b"))
        .all(|(_, l, _)| !l.contains_key("pod")));

    // Tenant b: cap, request, achieved share near the cap, throttled.
    assert_eq!(
        value(&s, "gpupool_tenant_compute_limit_ratio", ("tenant", "b")),
        Some(0.3)
    );
    assert_eq!(
        value(&s, "gpupool_tenant_compute_request_ratio", ("tenant", "b")),
        Some(0.2)
    );
    let achieved = value(&s, "gpupool_tenant_compute_ratio", ("tenant", "b")).unwrap();
    assert!((0.15..=0.45).contains(&achieved), "achieved {achieved}");
    assert!(
        value(
            &s,
            "gpupool_tenant_throttled_seconds_total",
            ("tenant", "b")
        )
        .unwrap()
            > 0.0
    );

    // Every metric the dashboard queries is served.
    let served: std::collections::BTreeSet<&str> = s.iter().map(|x| x.0.as_str()).collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/gpupool.json")).unwrap(),
    )
    .unwrap();
    let mut queried = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("gpupool_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                queried.push(name);
            }
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    for q in &queried {
        assert!(
            served.contains(q.as_str()),
            "dashboard queries {q}, not served:\n{text}"
        );
    }

    // `top --once --json`: the same tenants; `top --once`: their rows.
    let out = m.gpupool_on(&["top", "--once", "--json"]);
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = snap["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "a")
        .unwrap();
    assert_eq!(a["devices"][0]["limit_bytes"], GIB);
    let out = m.gpupool_on(&["top", "--once", "--sort", "name"]);
    let view = String::from_utf8_lossy(&out.stdout);
    assert!(
        view.contains("2 tenants") && view.contains("/ 1.00 GiB"),
        "{view}"
    );
    let row_a = view.lines().position(|l| l.contains("│a ")).unwrap();
    let row_b = view.lines().position(|l| l.contains("│b ")).unwrap();
    assert!(row_a < row_b, "{view}");
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    for (args, needle) in [
        (vec!["top", "--interval", "5x"], "--interval"),
        (vec!["top", "--interval", "10ms"], "--interval"),
        (vec!["exporter", "--listen", "nowhere"], "--listen"),
        (vec!["top", "--json"], "--once"),
    ] {
        let out = Command::new(gpupool()).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
