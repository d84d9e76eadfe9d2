//! gpupool against a real Kubernetes control plane (etcd, kube-apiserver and kube-scheduler from
//! `scripts/fetch-k8s`), authorising by RBAC: two `gpupool node --sim` agents publish their
//! cards through the API server and register with stand-in kubelets, `gpupool scheduler` is
//! kube-scheduler's extender (configured as the Helm chart `deploy/helm/gpupool` renders it),
//! all three acting as the chart's service accounts with only what its roles grant; kube-scheduler
//! leads on its own lease, and HAMi-style pods whose quantities the API
//! server stored in canonical form (`6000` → `6k`) are bound to cards; a request that is not a
//! whole number of MiB reaches the pod's event with its reason; an agent answers `Allocate` from
//! the assignment it reads through the API server. The API server's stored quantities are also
//! checked against the canonical forms the in-memory fake API writes.

mod common;
use common::chart;
use common::control_plane::{base64, free_port, ControlPlane};
use common::*;
use gpupool_node::fake_kubelet::FakeKubelet;
use gpupool_node::proto;
use gpupool_sched::protocol::{Assignment, Inventory};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// The chart's scheduler configuration, for the 1.20 scheduler (`v1beta1`) and this test's
/// extender address.
fn scheduler_config(extender: &str) -> String {
    let cm = chart::find(
        &chart::objects(&[]),
        "ConfigMap",
        "gpupool-scheduler-config",
    );
    let config = cm["data"]["config.yaml"].as_str().unwrap();
    assert!(
        config.contains("urlPrefix: \"http://127.0.0.1:8888\""),
        "{config}"
    );
    config
        .replace(
            "kubescheduler.config.k8s.io/v1\n",
            "kubescheduler.config.k8s.io/v1beta1\n",
        )
        .replace("http://127.0.0.1:8888", &format!("http://{extender}"))
}

/// Polls `f` every 200 ms for up to `secs` seconds.
async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn pod(name: &str, scheduler: &str, limits: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"schedulerName": scheduler, "containers": [
            {"name": "main", "image": "cuda", "resources": {"limits": limits}}]}
    }))
    .unwrap()
}

/// A node the scheduler can place pods on (no kubelet keeps its status: set by hand).
async fn create_node(nodes: &Api<Node>, name: &str) {
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name}}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let capacity = json!({"cpu": "64", "memory": "256Gi", "pods": "110"});
    let status = json!({"status": {"capacity": capacity, "allocatable": capacity,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "stand-in", "lastHeartbeatTime": "2026-12-01T00:00:00Z",
                        "lastTransitionTime": "2026-12-01T00:00:00Z"}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// The assignment key the extender and the agents share (the Secret's content).
fn key_file(cp: &ControlPlane) -> std::path::PathBuf {
    let path = cp.dir.join("assignment.key");
    std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
    path
}

/// `gpupool node --sim` for `node` against the control plane; its stand-in kubelet.
fn start_agent(cp: &mut ControlPlane, m: &Machine, node: &str) -> FakeKubelet {
    let dir = cp.dir.join(node);
    std::fs::create_dir_all(&dir).unwrap();
    let kubelet = FakeKubelet::start(&dir.join("device-plugins")).unwrap();
    let mut cmd = Command::new(gpupool());
    cmd.args(["node", "--node-name", node, "--sim", &m.spec, "--state"])
        .arg(&m.state)
        .arg("--kubelet-dir")
        .arg(dir.join("device-plugins"))
        .arg("--state-dir")
        .arg(dir.join("agent"))
        .arg("--library")
        .arg(lib_dir().join("libgpupool.so"))
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_as("gpupool-node"))
        .arg("--assignment-key-file")
        .arg(key_file(cp))
        .args([
            "--metrics-listen",
            "127.0.0.1:0",
            "--inventory-refresh",
            "500ms",
        ])
        .arg("--proc-root")
        .arg(dir.join("proc"))
        .env("GPUPOOL_LIB_DIR", lib_dir());
    cp.spawn_process(&format!("agent-{node}"), cmd);
    kubelet
}

#[test]
fn hami_pods_are_placed_through_a_real_control_plane() {
    let mut cp = ControlPlane::start("hami");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The API server authorises by RBAC; the agents, the extender and kube-scheduler act as
    // the service accounts of the chart, with only what its roles grant.
    let rbac: Vec<Value> = chart::objects(&[])
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| {
            let kind = v["kind"].as_str().unwrap_or_default();
            kind == "ServiceAccount"
                || v["apiVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("rbac.")
        })
        .collect();
    assert!(rbac.len() >= 8, "the chart's roles and accounts: {rbac:?}");
    rt.block_on(cp.apply(&rbac)).unwrap();
    let client = rt.block_on(cp.client_async()).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Two GPU nodes, each with its agent publishing two simulated 16 GiB cards.
    let machines = [
        Machine::new("cp-node-1", "2x16GiB"),
        Machine::new("cp-node-2", "2x16GiB"),
    ];
    let mut kubelets = Vec::new();
    for (i, m) in machines.iter().enumerate() {
        let name = format!("node-{}", i + 1);
        rt.block_on(create_node(&nodes, &name));
        let _guard = rt.enter();
        kubelets.push(start_agent(&mut cp, m, &name));
    }
    for i in 1..=2 {
        let name = format!("node-{i}");
        rt.block_on(eventually("an inventory on each node", 30, || {
            let nodes = nodes.clone();
            let name = name.clone();
            async move {
                let n = nodes.get(&name).await.ok()?;
                let text = n.metadata.annotations?.get("gpupool.io/inventory")?.clone();
                let inv = Inventory::parse(&text).ok()?;
                (inv.cards.len() == 2).then_some(())
            }
        }));
    }

    // The extender, and kube-scheduler configured as shipped.
    let extender = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(gpupool());
    cmd.args([
        "scheduler",
        "--listen",
        &extender,
        "--refresh",
        "500ms",
        "--kubeconfig",
    ])
    .arg(cp.kubeconfig_as("gpupool-scheduler"))
    .arg("--assignment-key-file")
    .arg(key_file(&cp));
    cp.spawn_process("gpupool-scheduler", cmd);
    cp.start_scheduler(
        &scheduler_config(&extender),
        &cp.kubeconfig_as("gpupool-scheduler"),
    );
    // It leads: the lease the shipped configuration names is held (the built-in role alone
    // allows only the lease `kube-scheduler`).
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = rt.block_on(eventually("the lease gpupool-scheduler held", 30, || {
        let leases = leases.clone();
        async move {
            let l = leases.get("gpupool-scheduler").await.ok()?;
            l.spec?.holder_identity.filter(|h| !h.is_empty())
        }
    }));
    eprintln!("lease gpupool-scheduler held by {holder}");

    // HAMi-style requests, as users write them; the API server stores them canonically.
    let cases = [
        ("mem-6000", json!(6000), "6k", 6000),
        ("mem-8k", json!("8k"), "8k", 8000),
        ("mem-6gi", json!("6Gi"), "6Gi", 6144),
        ("mem-1500", json!("1.5k"), "1500", 1500),
        ("mem-6e3", json!("6e3"), "6e3", 6000),
    ];
    for (name, mem, _, _) in &cases {
        let limits = json!({"nvidia.com/gpu": 1, "nvidia.com/gpumem": mem,
                            "nvidia.com/gpucores": "20"});
        rt.block_on(pods.create(
            &PostParams::default(),
            &pod(name, "gpupool-scheduler", limits),
        ))
        .unwrap();
    }
    let mut placed = Vec::new();
    for (name, written, stored, mib) in &cases {
        let p = rt.block_on(eventually(&format!("pod {name} bound"), 60, || {
            let pods = pods.clone();
            async move {
                let p = pods.get(name).await.ok()?;
                p.spec.as_ref()?.node_name.as_ref()?;
                Some(p)
            }
        }));
        let limits = p.spec.as_ref().unwrap().containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .clone()
            .unwrap();
        assert_eq!(
            limits["nvidia.com/gpumem"].0, *stored,
            "{written} as stored"
        );
        let text = p.metadata.annotations.as_ref().unwrap()["gpupool.io/assignment"].clone();
        let a = Assignment::parse(&text).unwrap();
        let node = p.spec.as_ref().unwrap().node_name.clone().unwrap();
        assert_eq!(a.node, node);
        assert_eq!(a.containers[0].devices[0].memory_mib, *mib, "{written}");
        assert_eq!(a.containers[0].devices[0].cores, 20, "{written}");
        placed.push((name.to_string(), node, a));
    }

    // HAMi's defaults and annotations: memory alone is one vGPU that reserves no compute, on
    // the card HAMi's UUID annotation names (500 MiB: at least 740 MiB are left on any card
    // after the pods above, whichever way they were packed).
    let want = placed[0].2.containers[0].devices[0].uuid.clone();
    let mut hami = pod(
        "hami-mem-only",
        "gpupool-scheduler",
        json!({"nvidia.com/gpumem": "500"}),
    );
    hami.metadata.annotations = Some(
        [("nvidia.com/use-gpuuuid".to_string(), want.clone())]
            .into_iter()
            .collect(),
    );
    rt.block_on(pods.create(&PostParams::default(), &hami))
        .unwrap();
    let p = rt.block_on(eventually("pod hami-mem-only bound", 60, || {
        let pods = pods.clone();
        async move {
            let p = pods.get("hami-mem-only").await.ok()?;
            p.spec.as_ref()?.node_name.as_ref()?;
            Some(p)
        }
    }));
    let text = p.metadata.annotations.as_ref().unwrap()["gpupool.io/assignment"].clone();
    let a = Assignment::parse(&text).unwrap();
    let d = &a.containers[0].devices;
    assert_eq!(d.len(), 1, "{text}");
    assert_eq!(
        (&d[0].uuid, d[0].memory_mib, d[0].cores),
        (&want, 500, 0),
        "{text}"
    );
    placed.push(("hami-mem-only".to_string(), a.node.clone(), a));

    // Not a whole number of MiB: the pod's event says why.
    let limits = json!({"nvidia.com/gpu": 1, "nvidia.com/gpumem": "1.5Mi"});
    rt.block_on(pods.create(
        &PostParams::default(),
        &pod("mem-odd", "gpupool-scheduler", limits),
    ))
    .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let message = rt.block_on(eventually("a FailedScheduling event", 60, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find_map(|e| {
                (e.involved_object.name.as_deref() == Some("mem-odd")
                    && e.reason.as_deref() == Some("FailedScheduling"))
                .then(|| e.message.unwrap_or_default())
            })
        }
    }));
    eprintln!("FailedScheduling event of mem-odd: {message}");
    assert!(
        message.contains("nvidia.com/gpumem=\"1536Ki\"")
            && message.contains("not a whole number of MiB"),
        "the event names the value and why: {message}"
    );

    // The agent of a pod's node answers Allocate from the assignment it reads through the API
    // server: for the pod bound there first (the kubelet admits pods in that order; the
    // device IDs the kubelet names are slots of any card), that pod's card and tenant.
    let node = placed[0].1.clone();
    let k = if node == "node-1" { 0 } else { 1 };
    let card = placed[0].2.containers[0].devices[0].uuid.clone();
    let mut plugin = rt.block_on(async {
        let reg = kubelets[k]
            .next_registration(Duration::from_secs(20))
            .await
            .expect("the agent registers with its kubelet");
        kubelets[k].plugin(&reg).await.unwrap()
    });
    let request = proto::AllocateRequest {
        container_requests: vec![proto::ContainerAllocateRequest {
            devices_ids: vec![format!("{card}::0")],
        }],
    };
    let response = rt
        .block_on(plugin.allocate(request.clone()))
        .map(|r| r.into_inner())
        .unwrap_or_else(|e| panic!("Allocate on {node}: {e}"));
    let envs = &response.container_responses[0].envs;
    let tenant = envs.get("GPUPOOL_TENANT").cloned().unwrap_or_default();
    let (_, _, a) = placed
        .iter()
        .find(|(name, n, _)| *n == node && tenant == format!("default/{name}/main"))
        .unwrap_or_else(|| panic!("Allocate served a pod bound to {node}: {envs:?}"));
    assert_eq!(
        envs.get("NVIDIA_VISIBLE_DEVICES"),
        Some(&a.containers[0].devices[0].uuid),
        "{envs:?}"
    );

    // A pod that skips the scheduler (`spec.nodeName` set by its author) with an assignment it
    // wrote itself, a whole card's memory: the agent refuses it, naming the pod and why.
    let mut forged = pod(
        "forged",
        "default-scheduler",
        json!({"nvidia.com/gpu": 1, "nvidia.com/gpumem": "16Gi"}),
    );
    forged.spec.as_mut().unwrap().node_name = Some(node.clone());
    let text = json!({"version": 1, "node": node, "containers": [{"name": "main",
        "devices": [{"uuid": card, "memoryMiB": 16384, "cores": 100, "priority": 0}]}]});
    forged.metadata.annotations = Some(
        [("gpupool.io/assignment".to_string(), text.to_string())]
            .into_iter()
            .collect(),
    );
    rt.block_on(pods.create(&PostParams::default(), &forged))
        .unwrap();
    // The agent serves the pods bound to the node in order; once each bound pod is served, the
    // forged one is all that is left, and it is refused.
    let on_node = placed.iter().filter(|(_, n, _)| *n == node).count();
    let mut served = vec![tenant];
    let refused = loop {
        match rt.block_on(plugin.allocate(request.clone())) {
            Ok(r) => {
                let envs = &r.into_inner().container_responses[0].envs;
                let t = envs.get("GPUPOOL_TENANT").cloned().unwrap_or_default();
                assert!(
                    t != "default/forged/main" && !served.contains(&t),
                    "Allocate served {t} after {served:?}"
                );
                served.push(t);
                assert!(
                    served.len() <= on_node,
                    "more pods served than were bound to {node}: {served:?}"
                );
            }
            Err(status) => break status,
        }
    };
    assert_eq!(
        served.len(),
        on_node,
        "every bound pod is served first: {served:?}"
    );
    assert!(
        refused.message().contains("default/forged") && refused.message().contains("not signed"),
        "{refused:?}"
    );
    cp.assert_running("kube-scheduler");
    cp.assert_running("gpupool-scheduler");
}

/// Spellings of whole values of every suffix family, for the stored-form check.
fn spellings() -> Vec<String> {
    let mut out = Vec::new();
    for v in [
        0u64,
        1,
        6,
        999,
        1000,
        1024,
        1500,
        2048,
        6000,
        6144,
        8000,
        65536,
        100_000,
        1 << 30,
    ] {
        out.extend([
            v.to_string(),
            format!("+{v}"),
            format!("0{v}"),
            format!("{v}.0"),
            format!("{v}e0"),
            format!("{v}000m"),
            format!("{v}0e-1"),
        ]);
        if v % 1000 == 0 {
            out.extend([format!("{}k", v / 1000), format!("{}e3", v / 1000)]);
        }
        out.push(format!("{}.{:03}k", v / 1000, v % 1000));
        if v % 1024 == 0 {
            out.extend([format!("{}Ki", v / 1024)]);
        }
        if v % 512 == 0 {
            out.push(format!("{}Ki", v as f64 / 1024.0));
        }
        if v % (1 << 20) == 0 {
            out.push(format!("{}Mi", v >> 20));
        }
    }
    out
}

#[test]
fn the_api_server_stores_quantities_as_the_fake_api_does() {
    let cp = ControlPlane::start("quantities");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(cp.client_async()).unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let texts = spellings();
    assert!(texts.len() > 100);
    for (i, text) in texts.iter().enumerate() {
        let limits = json!({"example.com/thing": text});
        let created = rt
            .block_on(pods.create(
                &PostParams::default(),
                &pod(&format!("q{i}"), "nobody", limits.clone()),
            ))
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        let stored = created.spec.unwrap().containers[0]
            .resources
            .clone()
            .unwrap()
            .limits
            .unwrap()["example.com/thing"]
            .0
            .clone();
        let mut fake = json!({"spec": {"containers": [{"resources": {"limits": limits}}]}});
        gpupool_fakekube::admit_pod(&mut fake).unwrap();
        assert_eq!(
            fake["spec"]["containers"][0]["resources"]["limits"]["example.com/thing"], stored,
            "{text:?}"
        );
    }
    // What the API server refuses for an extended resource, the fake refuses too.
    for (i, text) in ["0.5", "500m", "-1", "1e-3", "1.5Ki", "1.5"]
        .iter()
        .enumerate()
    {
        let limits = json!({"example.com/thing": text});
        let name = format!("bad{i}");
        let real = rt.block_on(pods.create(
            &PostParams::default(),
            &pod(&name, "nobody", limits.clone()),
        ));
        let mut fake = json!({"spec": {"containers": [{"resources": {"limits": limits}}]}});
        let fake = gpupool_fakekube::admit_pod(&mut fake);
        assert_eq!(real.is_err(), fake.is_err(), "{text}: {real:?} / {fake:?}");
    }
}

/// The chart's webhook configuration, pointed at `url` with the control plane's CA, failing
/// pod creation when the webhook cannot be called (so that a broken webhook fails the test
/// instead of being skipped).
fn webhook_configuration(cp: &ControlPlane, url: &str) -> Value {
    let mut mwc = chart::find(
        &chart::objects(&[]),
        "MutatingWebhookConfiguration",
        "gpupool",
    );
    let ca = std::fs::read(cp.dir.join("ca.crt")).unwrap();
    let hook = &mut mwc["webhooks"][0];
    hook["clientConfig"] = json!({"url": url, "caBundle": base64(&ca)});
    hook["failurePolicy"] = "Fail".into();
    mwc
}

#[test]
fn the_webhook_sends_vgpu_pods_to_the_gpupool_scheduler() {
    let mut cp = ControlPlane::start("webhook");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The webhook serves with the API server's own certificate (127.0.0.1, signed by the CA
    // the configuration names).
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(gpupool());
    cmd.args(["webhook", "--listen", &addr, "--tls-cert-file"])
        .arg(cp.dir.join("server.crt"))
        .arg("--tls-key-file")
        .arg(cp.dir.join("server.key"));
    cp.spawn_process("gpupool-webhook", cmd);
    let client = rt.block_on(cp.client_async()).unwrap();
    let mwc = webhook_configuration(&cp, &format!("https://{addr}/mutate"));
    let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
    ));
    let configs: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
    let obj: kube::api::DynamicObject = serde_json::from_value(mwc).unwrap();
    rt.block_on(configs.create(&PostParams::default(), &obj))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // A pod that asks memory only, naming no scheduler, as HAMi users write them. The API
    // server takes up the configuration within a few seconds; until the webhook is called the
    // pod comes back unchanged (and is deleted for the next try).
    let mut tries = 0;
    let stored = rt.block_on(eventually("a pod mutated by the webhook", 30, || {
        tries += 1;
        let pods = pods.clone();
        async move {
            let name = format!("mem-only-{tries}");
            let p: Pod = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": [{"name": "main", "image": "cuda",
                    "resources": {"limits": {"nvidia.com/gpumem": "3000"}}}]}
            }))
            .unwrap();
            let created = pods.create(&PostParams::default(), &p).await.ok()?;
            let spec = created.spec.clone()?;
            if spec.scheduler_name.as_deref() == Some("gpupool-scheduler") {
                return Some(created);
            }
            let _ = pods.delete(&name, &Default::default()).await;
            None
        }
    }));
    let resources = stored.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    let gpu = |m: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        m.as_ref()
            .and_then(|m| m.get("nvidia.com/gpu"))
            .map(|q| q.0.clone())
    };
    assert_eq!(
        gpu(&resources.limits).as_deref(),
        Some("1"),
        "{resources:?}"
    );
    assert_eq!(
        gpu(&resources.requests).as_deref(),
        Some("1"),
        "{resources:?}"
    );

    // A pod without vGPUs is left to the default scheduler.
    let plain: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "plain", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "busybox",
            "resources": {"limits": {"cpu": "1"}}}]}
    }))
    .unwrap();
    let created = rt
        .block_on(pods.create(&PostParams::default(), &plain))
        .unwrap();
    assert_eq!(
        created.spec.unwrap().scheduler_name.as_deref(),
        Some("default-scheduler")
    );
    cp.assert_running("gpupool-webhook");
}
