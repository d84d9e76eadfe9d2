//! `gpupool-schedbench`: the scheduler extender's placement cost at cluster scale.
//!
//! Builds 5 000 nodes × 8 H100 cards (10 vGPU slots each) with 50 000 pods already placed, then
//! times the evaluation that answers `filter` and `prioritize` of one pod over all nodes (200
//! times: p50 / p99), and the
//! throughput of a burst of 10 000 pods scheduled one after another (filter, prioritize, pick
//! the best node, assign). Pods ask for 1–2 vGPUs of 2–16 GiB and 10–50 % cores.
//!
//! Usage: `gpupool-schedbench [NODES] [PLACED] [BURST]`.

use gpupool_sched::cluster::Cluster;
use gpupool_sched::protocol::{Assignment, CardInfo, Inventory, VERSION};
use gpupool_sched::request::{ContainerRequest, Memory, Policy};
use std::time::Instant;

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn pod(rng: &mut Rng) -> Vec<ContainerRequest> {
    vec![ContainerRequest {
        name: "main".into(),
        count: 1 + rng.next(2) as u32,
        memory: Memory::Mib(2048 * (1 + rng.next(8))),
        cores: 10 + 10 * rng.next(5) as u32,
        priority: 0,
        spill_mib: 0,
    }]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let (nodes, placed, burst) = (arg(1, 5000), arg(2, 50_000), arg(3, 10_000));
    let mut cluster = Cluster::new();
    let names: Vec<String> = (0..nodes).map(|n| format!("node-{n:05}")).collect();
    for (n, name) in names.iter().enumerate() {
        let inv = Inventory {
            version: VERSION,
            updated: String::new(),
            spill_mib: None,
            cards: (0..8)
                .map(|c| CardInfo {
                    uuid: format!("GPU-{n:05}-{c}"),
                    model: "NVIDIA H100 80GB HBM3".into(),
                    memory_mib: 81_559,
                    sms: 132,
                    numa: c / 4,
                    healthy: true,
                    slots: 10,
                    group: Some(format!("nvlink-{}", c / 4)),
                })
                .collect(),
        };
        cluster.set_inventory(name, &inv);
    }
    let policy = Policy::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let t = Instant::now();
    let mut done = 0;
    let mut assignments = Vec::new();
    for i in 0..placed {
        let node = &names[rng.next(nodes as u64) as usize];
        if let Ok(a) = cluster.assign(&format!("ns/placed-{i}"), node, &pod(&mut rng), &policy) {
            done += 1;
            assignments.push(a);
        }
    }
    // The extender's view, rebuilt from objects like the API lists, holds the same pods.
    let (verb_p50, verb_p99) = through_the_extender(&names, &mut rng, &assignments);
    eprintln!(
        "placed {done} of {placed} pods in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    for _ in 0..200 {
        let p = pod(&mut rng);
        let t = Instant::now();
        let evaluation = cluster.evaluate(&p, &policy, &names);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(evaluation);
    }
    let p50 = percentile(&mut times, 0.5);
    let p99 = percentile(&mut times, 0.99);
    let t = Instant::now();
    let mut scheduled = 0;
    for i in 0..burst {
        let p = pod(&mut rng);
        let evaluation = cluster.evaluate(&p, &policy, &names);
        if let Some(best) = evaluation.best() {
            if cluster
                .assign(&format!("ns/burst-{i}"), &names[best], &p, &policy)
                .is_ok()
            {
                scheduled += 1;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!("| nodes × cards | pods placed | evaluation p50 | p99 | filter + prioritize verbs p50 | p99 | goal p99 | burst | pods/s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {nodes} × 8 | {done} | {p50:.2} ms | {p99:.2} ms | {verb_p50:.2} ms | {verb_p99:.2} ms | ≤ 5 ms | {scheduled} of {burst} | {:.0} |",
        scheduled as f64 / secs
    );
}

/// The `filter` and `prioritize` verbs as the HTTP handlers run them (answers written as JSON;
/// request parsing left out), on an
/// extender whose view is rebuilt from node and pod objects like the ones the API lists:
/// p50 and p99 of both verbs together for one pod, in ms.
fn through_the_extender(names: &[String], rng: &mut Rng, placed: &[Assignment]) -> (f64, f64) {
    use gpupool_extender::api::{ExtenderArgs, ExtenderFilterResult};
    use gpupool_extender::state::{Extender, Settings};
    use k8s_openapi::api::core::v1::{Node, Pod};
    let json = |v: serde_json::Value| v;
    let nodes: Vec<Node> = names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            let cards: Vec<serde_json::Value> = (0..8)
                .map(|c| json(serde_json::json!({"uuid": format!("GPU-{n:05}-{c}"),
                    "model": "NVIDIA H100 80GB HBM3", "memoryMiB": 81_559, "sms": 132,
                    "numa": c / 4, "healthy": true, "slots": 10, "group": format!("nvlink-{}", c / 4)})))
                .collect();
            let inventory = serde_json::json!({"version": 1, "updated": "", "cards": cards});
            serde_json::from_value(serde_json::json!({"metadata": {"name": name,
                "annotations": {"gpupool.io/inventory": inventory.to_string()}}}))
            .unwrap()
        })
        .collect();
    let pods: Vec<Pod> = placed
        .iter()
        .enumerate()
        .map(|(i, a)| {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("placed-{i}"), "namespace": "ns",
                             "annotations": {"gpupool.io/assignment": a.to_annotation()}},
                "spec": {"nodeName": a.node, "containers": []},
                "status": {"phase": "Running"}}))
            .unwrap()
        })
        .collect();
    let extender = Extender::new(Settings::default());
    extender.rebuild(&nodes, &pods);
    let mut times = Vec::new();
    let mut parts = (Vec::new(), Vec::new());
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for i in 0..rounds {
        let p = pod(rng);
        let r = &p[0];
        let memory = match r.memory {
            Memory::Mib(m) => m,
            _ => 1024,
        };
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("probe-{i}"), "namespace": "ns", "uid": format!("u{i}")},
            "spec": {"containers": [{"name": "main", "resources": {"limits": {
                "nvidia.com/gpu": r.count.to_string(), "nvidia.com/gpumem": memory.to_string(),
                "nvidia.com/gpucores": r.cores.to_string()}}}]}}))
        .unwrap();
        let mut args = ExtenderArgs {
            pod: Some(pod),
            nodes: None,
            node_names: Some(names.to_vec()),
        };
        // The extender's two answers are timed; reading filter's answer is the scheduler's
        // work and is not.
        let t = Instant::now();
        let answer = extender.filter_json(&args);
        let filter = t.elapsed();
        let filtered: ExtenderFilterResult = serde_json::from_slice(&answer).unwrap_or_default();
        args.node_names = filtered.node_names;
        let t = Instant::now();
        std::hint::black_box(extender.prioritize_json(&args));
        let prioritize = t.elapsed();
        times.push((filter + prioritize).as_secs_f64() * 1e3);
        parts.0.push(filter.as_secs_f64() * 1e3);
        parts.1.push(prioritize.as_secs_f64() * 1e3);
    }
    eprintln!(
        "filter p50 {:.2} ms p99 {:.2} ms; prioritize p50 {:.2} ms p99 {:.2} ms",
        percentile(&mut parts.0, 0.5),
        percentile(&mut parts.0, 0.99),
        percentile(&mut parts.1, 0.5),
        percentile(&mut parts.1, 0.99)
    );
    (percentile(&mut times, 0.5), percentile(&mut times, 0.99))
}
