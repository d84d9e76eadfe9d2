//! The extender over HTTP, as kube-scheduler calls it, with the Kubernetes API played by an
//! in-memory fake behind `tower-test` (`fake_api`): realistic payloads, both node modes,
//! priorities, malformed input, bind with conflicts and failures, concurrent binds, rebuild
//! after a restart.

use gpupool_fakekube as fake_api;

use axum::body::Body;
use axum::Router;
use gpupool_extender::kube_api;
use gpupool_extender::server::{self, App};
use gpupool_extender::state::{Extender, Settings};
use gpupool_sched::protocol::Assignment;
use http::{Request, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

const CARD_MIB: u64 = 81_559;

/// Nodes gpu-a (two cards), gpu-b (one), gpu-c (one, 70 000 MiB taken by a bound pod) and
/// cpu-only (no inventory).
fn cluster() -> fake_api::Shared {
    let mut c = fake_api::Cluster::default();
    c.add_node("gpu-a", &[("GPU-a0", CARD_MIB, 0), ("GPU-a1", CARD_MIB, 1)]);
    c.add_node("gpu-b", &[("GPU-b0", CARD_MIB, 0)]);
    c.add_node("gpu-c", &[("GPU-c0", CARD_MIB, 0)]);
    c.nodes
        .insert("cpu-only".into(), json!({"metadata": {"name": "cpu-only"}}));
    c.add_pod("ml", "old", 1, 70_000);
    let assignment = json!({"version": 1, "node": "gpu-c", "containers": [{"name": "main",
        "devices": [{"uuid": "GPU-c0", "memoryMiB": 70000, "cores": 30, "priority": 0}]}]});
    let pod = c.pods.get_mut("ml/old").unwrap();
    pod["metadata"]["annotations"] = json!({"gpupool.io/assignment": assignment.to_string()});
    pod["spec"]["nodeName"] = json!("gpu-c");
    pod["status"]["phase"] = json!("Running");
    Arc::new(Mutex::new(c))
}

/// The extender's router on the fake cluster, state read from it.
async fn start(shared: &fake_api::Shared) -> (Router, Arc<App>) {
    start_with(shared, Settings::default()).await
}

/// [`start`] with these settings.
async fn start_with(shared: &fake_api::Shared, settings: Settings) -> (Router, Arc<App>) {
    let client = fake_api::client(shared.clone());
    let extender = Arc::new(Extender::new(settings));
    kube_api::rebuild(&extender, &client).await.unwrap();
    let app = Arc::new(App {
        extender,
        client,
        ready: AtomicBool::new(true),
    });
    (server::router(app.clone()), app)
}

async fn call(router: &Router, method: &str, path: &str, body: String) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 30)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

async fn post(router: &Router, path: &str, body: &Value) -> (StatusCode, Value) {
    call(router, "POST", path, body.to_string()).await
}

fn payload() -> Value {
    serde_json::from_str(include_str!("../data/filter-node-names.json")).unwrap()
}

/// A pod asking for one vGPU of `mib` and 10 % of the cores, with `annotations`.
fn gpu_pod(name: &str, mib: u64, annotations: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": "ml", "uid": format!("uid-{name}"),
                        "annotations": annotations},
           "spec": {"containers": [{"name": "main", "resources": {"limits": {
               "nvidia.com/gpu": "1", "nvidia.com/gpumem": mib.to_string(),
               "nvidia.com/gpucores": "10"}}}]}})
}

/// Names of the node objects a full-node `filter` answer kept.
fn kept_nodes(r: &Value) -> Vec<&str> {
    r["Nodes"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect()
}

fn names(v: &Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap()
}

#[tokio::test]
async fn filter_answers_a_real_scheduler_payload_by_node_name() {
    let shared = cluster();
    let (router, _) = start(&shared).await;
    let (status, r) = post(&router, "/filter", &payload()).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(names(&r["NodeNames"]), ["gpu-a", "gpu-b"]);
    assert!(r["Nodes"].is_null());
    assert_eq!(r["Error"], "");
    let failed = r["FailedNodes"].as_object().unwrap();
    assert!(failed["gpu-c"].as_str().unwrap().contains("not enough"));
    assert!(failed["cpu-only"]
        .as_str()
        .unwrap()
        .contains("no gpupool inventory"));
}

#[tokio::test]
async fn filter_with_full_node_objects_returns_node_objects() {
    let shared = cluster();
    let (router, _) = start(&shared).await;
    let nodes: Vec<Value> = shared.lock().unwrap().nodes.values().cloned().collect();
    let mut body = payload();
    body["NodeNames"] = Value::Null;
    body["Nodes"] = json!({"metadata": {}, "items": nodes});
    let (status, r) = post(&router, "/filter", &body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let kept = kept_nodes(&r);
    assert_eq!(kept, ["gpu-a", "gpu-b"]);
    assert!(r["NodeNames"].is_null());
    // The objects come back whole.
    assert!(r["Nodes"]["items"][0]["metadata"]["annotations"]["gpupool.io/inventory"].is_string());
}

#[tokio::test]
async fn full_node_objects_teach_the_extender_new_inventories() {
    // An extender that has never listed nodes learns them from the request.
    let shared = cluster();
    let client = fake_api::client(shared.clone());
    let app = Arc::new(App {
        extender: Arc::new(Extender::new(Settings::default())),
        client,
        ready: AtomicBool::new(true),
    });
    let router = server::router(app);
    let nodes: Vec<Value> = shared.lock().unwrap().nodes.values().cloned().collect();
    let body = json!({"Pod": gpu_pod("p", 1000, json!({})), "Nodes": {"items": nodes}});
    let (_, r) = post(&router, "/filter", &body).await;
    assert_eq!(kept_nodes(&r).len(), 3, "{r}");
}

async fn scores(router: &Router, pod: Value) -> BTreeMap<String, i64> {
    let body = json!({"Pod": pod, "NodeNames": ["gpu-a", "gpu-b", "gpu-c", "cpu-only"]});
    let (status, r) = post(router, "/prioritize", &body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    r.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["Host"].as_str().unwrap().into(),
                h["Score"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn prioritize_follows_the_node_policy() {
    let shared = cluster();
    let (router, _) = start(&shared).await;
    let binpack = scores(&router, gpu_pod("p", 4000, json!({}))).await;
    let spread = scores(
        &router,
        gpu_pod("p", 4000, json!({"gpupool.io/node-policy": "spread"})),
    )
    .await;
    for s in binpack.values().chain(spread.values()) {
        assert!((0..=10).contains(s));
    }
    assert_eq!(binpack["cpu-only"], 0);
    // gpu-c is the fullest node: first for binpack, last (of the GPU nodes) for spread.
    assert!(binpack["gpu-c"] > binpack["gpu-b"], "{binpack:?}");
    assert!(spread["gpu-c"] < spread["gpu-b"], "{spread:?}");
    // A pod without vGPUs gets no opinion.
    let plain = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c"}]}});
    assert!(scores(&router, plain).await.values().all(|s| *s == 0));
}

#[tokio::test]
async fn malformed_requests_get_clear_errors_and_never_a_panic() {
    let shared = cluster();
    let (router, _) = start(&shared).await;
    for verb in ["/filter", "/prioritize", "/bind"] {
        let (status, r) = call(&router, "POST", verb, "{not json".into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{verb}");
        assert!(
            r.to_string().contains("malformed request body"),
            "{verb}: {r}"
        );
    }
    let (status, r) = post(&router, "/filter", &json!({"NodeNames": ["gpu-a"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(r["Error"].as_str().unwrap().contains("no Pod"));
    let (status, r) = post(&router, "/filter", &json!({"Pod": 7})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");

    // A pod whose own request is wrong fits nowhere, and preemption cannot help.
    let mut bad = payload();
    bad["Pod"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpucores"] =
        json!("150");
    let (status, r) = post(&router, "/filter", &bad).await;
    assert_eq!(status, StatusCode::OK);
    let why = r["FailedAndUnresolvableNodes"]["gpu-a"].as_str().unwrap();
    assert!(
        why.contains("server") && why.contains("nvidia.com/gpucores"),
        "{why}"
    );
    // Schedulers that ignore FailedAndUnresolvableNodes still show the reason.
    assert_eq!(r["FailedNodes"]["gpu-a"].as_str(), Some(why));
    assert_eq!(names(&r["NodeNames"]).len(), 0);

    let odd = gpu_pod("p", 1000, json!({"gpupool.io/numa": "maybe"}));
    let (_, r) = post(
        &router,
        "/filter",
        &json!({"Pod": odd, "NodeNames": ["gpu-a"]}),
    )
    .await;
    let why = r["FailedAndUnresolvableNodes"]["gpu-a"].as_str().unwrap();
    assert!(why.contains("gpupool.io/numa"), "{why}");

    // A node whose inventory turns unreadable (sent in full node objects) is never chosen
    // again, and says why, although its last good cards are still known.
    let mut nodes: Vec<Value> = shared.lock().unwrap().nodes.values().cloned().collect();
    for n in &mut nodes {
        if n["metadata"]["name"] == "gpu-b" {
            n["metadata"]["annotations"]["gpupool.io/inventory"] = json!("not json");
        }
    }
    let body = json!({"Pod": payload()["Pod"], "Nodes": {"items": nodes}});
    let (_, r) = post(&router, "/filter", &body).await;
    let kept = kept_nodes(&r);
    assert_eq!(kept, ["gpu-a"], "{r}");
    assert!(r["FailedNodes"]["gpu-b"]
        .as_str()
        .unwrap()
        .contains("gpupool.io/inventory"));

    // A node whose inventory annotation is broken is never chosen, and says why.
    shared.lock().unwrap().nodes.get_mut("gpu-b").unwrap()["metadata"]["annotations"]
        ["gpupool.io/inventory"] = json!("{\"version\": 1, \"cards\": 5}");
    let (router, _) = start(&shared).await;
    let (_, r) = post(&router, "/filter", &payload()).await;
    assert_eq!(names(&r["NodeNames"]), ["gpu-a"]);
    assert!(r["FailedNodes"]["gpu-b"]
        .as_str()
        .unwrap()
        .contains("gpupool.io/inventory"));
}

#[tokio::test]
async fn verbs_wait_until_the_cluster_state_was_read() {
    let shared = cluster();
    let (router, app) = start(&shared).await;
    app.ready.store(false, std::sync::atomic::Ordering::Release);
    let (status, r) = post(&router, "/filter", &payload()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r["Error"].as_str().unwrap().contains("not read yet"));
    let bind = json!({"PodName": "x", "PodNamespace": "ml", "PodUID": "u", "Node": "gpu-a"});
    assert_eq!(
        post(&router, "/bind", &bind).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&router, "GET", "/readyz", String::new()).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&router, "GET", "/healthz", String::new()).await.0,
        StatusCode::OK
    );
}

fn bind_args(name: &str, node: &str) -> Value {
    json!({"PodName": name, "PodNamespace": "ml", "PodUID": format!("uid-{name}"), "Node": node})
}

fn assignment_of(shared: &fake_api::Shared, name: &str) -> Option<Assignment> {
    let pod = shared.lock().unwrap().pod("ml", name);
    pod["metadata"]["annotations"]["gpupool.io/assignment"]
        .as_str()
        .map(|t| Assignment::parse(t).unwrap())
}

#[tokio::test]
async fn bind_records_the_assignment_then_binds() {
    let shared = cluster();
    shared.lock().unwrap().add_pod("ml", "p1", 1, 40_000);
    let (router, _) = start(&shared).await;
    let (status, r) = post(&router, "/bind", &bind_args("p1", "gpu-b")).await;
    assert_eq!((status, r["Error"].as_str().unwrap()), (StatusCode::OK, ""));
    let a = assignment_of(&shared, "p1").unwrap();
    assert_eq!(a.node, "gpu-b");
    assert_eq!(a.containers[0].name, "main");
    assert_eq!(a.containers[0].devices[0].uuid, "GPU-b0");
    assert_eq!(a.containers[0].devices[0].memory_mib, 40_000);
    let (node, log) = {
        let c = shared.lock().unwrap();
        (c.pod("ml", "p1")["spec"]["nodeName"].clone(), c.log.clone())
    };
    assert_eq!(node, "gpu-b");
    let tail: Vec<&str> = log.iter().rev().take(3).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "GET /api/v1/namespaces/ml/pods/p1",
            "PATCH /api/v1/namespaces/ml/pods/p1",
            "POST /api/v1/namespaces/ml/pods/p1/binding"
        ]
    );

    // What p1 holds is counted at once: 50 000 MiB no longer fits on gpu-b.
    let body = json!({"Pod": gpu_pod("p2", 50_000, json!({})), "NodeNames": ["gpu-b"]});
    let (_, r) = post(&router, "/filter", &body).await;
    assert!(r["FailedNodes"]["gpu-b"].is_string(), "{r}");
    // A retried bind of a bound pod succeeds; to another node it is refused.
    let (_, r) = post(&router, "/bind", &bind_args("p1", "gpu-b")).await;
    assert_eq!(r["Error"], "");
    let (_, r) = post(&router, "/bind", &bind_args("p1", "gpu-a")).await;
    assert!(
        r["Error"].as_str().unwrap().contains("already bound"),
        "{r}"
    );
}

#[tokio::test]
async fn bind_rereads_the_pod_after_a_conflict() {
    let shared = cluster();
    {
        let mut c = shared.lock().unwrap();
        c.add_pod("ml", "p1", 1, 1000);
        c.conflicts = 2;
    }
    let (router, _) = start(&shared).await;
    let (_, r) = post(&router, "/bind", &bind_args("p1", "gpu-a")).await;
    assert_eq!(r["Error"], "", "{r}");
    let c = shared.lock().unwrap();
    let patches = c.log.iter().filter(|l| l.starts_with("PATCH")).count();
    let gets = c
        .log
        .iter()
        .filter(|l| l.starts_with("GET /api/v1/namespaces"))
        .count();
    assert_eq!((patches, gets), (3, 3), "{:?}", c.log);
    assert_eq!(c.pod("ml", "p1")["spec"]["nodeName"], "gpu-a");
}

#[tokio::test]
async fn a_failed_bind_gives_the_capacity_back() {
    let shared = cluster();
    {
        let mut c = shared.lock().unwrap();
        c.add_pod("ml", "p1", 1, 80_000);
        c.add_pod("ml", "p2", 1, 80_000);
        c.fail_binding = Some(500);
    }
    let (router, app) = start(&shared).await;
    let (status, r) = post(&router, "/bind", &bind_args("p1", "gpu-b")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(r["Error"].as_str().unwrap().contains("binding"), "{r}");
    assert_eq!(app.extender.node_of("ml/p1"), None);
    shared.lock().unwrap().fail_binding = None;
    let (_, r) = post(&router, "/bind", &bind_args("p2", "gpu-b")).await;
    assert_eq!(r["Error"], "", "{r}");
    // A pod replaced under the same name (another UID) is not bound.
    shared.lock().unwrap().add_pod("ml", "p3", 1, 10);
    let mut stale = bind_args("p3", "gpu-a");
    stale["PodUID"] = json!("uid-of-an-older-p3");
    let (_, r) = post(&router, "/bind", &stale).await;
    assert!(r["Error"].as_str().unwrap().contains("UID"), "{r}");
    // A pod that is gone.
    let (_, r) = post(&router, "/bind", &bind_args("nobody", "gpu-a")).await;
    assert!(r["Error"].as_str().unwrap().contains("not found"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_binds_never_share_capacity() {
    // gpu-a has two 81 559 MiB cards: four 30 000 MiB pods fit, two per card.
    let shared = cluster();
    for i in 0..10 {
        shared
            .lock()
            .unwrap()
            .add_pod("ml", &format!("c{i}"), 1, 30_000);
    }
    let (router, _) = start(&shared).await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let router = router.clone();
            tokio::spawn(async move {
                post(&router, "/bind", &bind_args(&format!("c{i}"), "gpu-a")).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (_, r) = t.await.unwrap();
        if r["Error"] == "" {
            ok += 1;
        } else {
            assert!(
                r["Error"].as_str().unwrap().contains("no longer fits"),
                "{r}"
            );
        }
    }
    assert_eq!(ok, 4);
    let mut per_card: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..10 {
        if let Some(a) = assignment_of(&shared, &format!("c{i}")) {
            for d in &a.containers[0].devices {
                *per_card.entry(d.uuid.clone()).or_default() += d.memory_mib;
            }
        }
    }
    assert_eq!(per_card.len(), 2, "{per_card:?}");
    assert!(per_card.values().all(|m| *m <= CARD_MIB), "{per_card:?}");
}

#[tokio::test]
async fn a_restarted_extender_rebuilds_the_same_view() {
    let shared = cluster();
    {
        let mut c = shared.lock().unwrap();
        c.add_pod("ml", "p1", 1, 60_000);
        c.add_pod("ml", "p2", 1, 60_000);
        c.add_pod("ml", "half", 1, 60_000);
    }
    let (router, _) = start(&shared).await;
    for (pod, node) in [("p1", "gpu-a"), ("p2", "gpu-a")] {
        let (_, r) = post(&router, "/bind", &bind_args(pod, node)).await;
        assert_eq!(r["Error"], "", "{r}");
    }
    // A pod annotated but never bound (the scheduler died in between) holds nothing.
    {
        let mut c = shared.lock().unwrap();
        let a = c.pod("ml", "p1")["metadata"]["annotations"].clone();
        c.pods.get_mut("ml/half").unwrap()["metadata"]["annotations"] = a;
    }
    let probe = json!({"Pod": gpu_pod("probe", 30_000, json!({})),
                       "NodeNames": ["gpu-a", "gpu-b", "gpu-c"]});
    let before = post(&router, "/filter", &probe).await.1;
    let (restarted, app) = start(&shared).await;
    assert_eq!(app.extender.placed_pods(), 3, "old, p1, p2");
    let after = post(&restarted, "/filter", &probe).await.1;
    assert_eq!(before, after);
    assert_eq!(names(&after["NodeNames"]), ["gpu-b"]);
    // When p1 finishes, its card is free again after the next rebuild.
    shared.lock().unwrap().pods.get_mut("ml/p1").unwrap()["status"]["phase"] = json!("Succeeded");
    let (restarted, _) = start(&shared).await;
    let after = post(&restarted, "/filter", &probe).await.1;
    assert_eq!(names(&after["NodeNames"]), ["gpu-a", "gpu-b"]);
}

#[tokio::test]
async fn prioritize_reuses_the_filter_evaluation_until_the_view_changes() {
    let shared = cluster();
    shared.lock().unwrap().add_pod("ml", "p1", 1, 1000);
    let (router, app) = start(&shared).await;
    let pod = payload()["Pod"].clone();
    let all = json!(["gpu-a", "gpu-b", "gpu-c", "cpu-only"]);
    let (_, f) = post(&router, "/filter", &json!({"Pod": pod, "NodeNames": all})).await;
    let passed = f["NodeNames"].clone();
    let body = json!({"Pod": pod, "NodeNames": passed});
    let (_, first) = post(&router, "/prioritize", &body).await;
    assert_eq!(
        app.extender.evaluations(),
        1,
        "prioritize reused filter's evaluation"
    );
    // The same answer as an extender that evaluates afresh.
    let (fresh, fresh_app) = start(&shared).await;
    assert_eq!(post(&fresh, "/prioritize", &body).await.1, first);
    assert_eq!(fresh_app.extender.evaluations(), 1);
    // A bind changes the view: the next prioritize evaluates again.
    let (_, r) = post(&router, "/bind", &bind_args("p1", "gpu-b")).await;
    assert_eq!(r["Error"], "");
    post(&router, "/prioritize", &body).await;
    assert_eq!(app.extender.evaluations(), 2);
}

/// A pod created through the API server with these limits, as the scheduler then sends it (its
/// quantities in canonical form); `None` where the API server refuses it.
fn stored_pod(shared: &fake_api::Shared, name: &str, limits: Value) -> Option<Value> {
    let mut c = shared.lock().unwrap();
    c.add_pod_with_limits("ml", name, limits).ok()?;
    Some(c.pod("ml", name))
}

#[tokio::test]
async fn quantities_as_the_api_server_stores_them_are_placed() {
    let shared = cluster();
    let (router, _) = start(&shared).await;
    // (as written, as stored, MiB placed); all of them fit on gpu-b together.
    for (i, (written, stored, mib)) in [
        (json!(6000), "6k", 6000),
        (json!("6000"), "6k", 6000),
        (json!("8k"), "8k", 8000),
        (json!("1.5k"), "1500", 1500),
        (json!("6e3"), "6e3", 6000),
        (json!("6Gi"), "6Gi", 6144),
        (json!("2048Mi"), "2Gi", 2048),
        (json!("1536Mi"), "1536Mi", 1536),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("q{i}");
        let limits = json!({"nvidia.com/gpu": 1, "nvidia.com/gpumem": written,
                            "nvidia.com/gpucores": "1e1"});
        let pod = stored_pod(&shared, &name, limits).unwrap();
        let resources = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(
            resources["limits"]["nvidia.com/gpumem"], stored,
            "{written}"
        );
        assert_eq!(
            resources["requests"]["nvidia.com/gpumem"], stored,
            "{written}"
        );
        let (status, r) = post(
            &router,
            "/filter",
            &json!({"Pod": pod, "NodeNames": ["gpu-a", "gpu-b"]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(names(&r["NodeNames"]), ["gpu-a", "gpu-b"], "{written}: {r}");
        let (status, r) = post(&router, "/bind", &bind_args(&name, "gpu-b")).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        let a = assignment_of(&shared, &name).unwrap();
        assert_eq!(a.containers[0].devices[0].memory_mib, mib, "{written}");
        assert_eq!(a.containers[0].devices[0].cores, 10, "{written}");
    }
    // What the API server refuses never reaches the extender; what is not a whole number of
    // MiB is refused by name.
    assert!(stored_pod(
        &shared,
        "half",
        json!({"nvidia.com/gpu": 1, "nvidia.com/gpumem": "0.5"})
    )
    .is_none());
    let pod = stored_pod(
        &shared,
        "odd",
        json!({"nvidia.com/gpu": 1, "nvidia.com/gpumem": "1.5Mi"}),
    )
    .unwrap();
    let (_, r) = post(
        &router,
        "/filter",
        &json!({"Pod": pod, "NodeNames": ["gpu-a"]}),
    )
    .await;
    let why = r["FailedNodes"]["gpu-a"].as_str().unwrap();
    assert!(
        why.contains("nvidia.com/gpumem=\"1536Ki\"") && why.contains("whole number of MiB"),
        "{why}"
    );
}

/// What the pods' assignments promise on each card, in MiB.
fn promised_per_card(shared: &fake_api::Shared) -> BTreeMap<String, u64> {
    let pods: Vec<Value> = shared.lock().unwrap().pods.values().cloned().collect();
    let mut per_card = BTreeMap::new();
    for pod in pods {
        let Some(text) = pod["metadata"]["annotations"]["gpupool.io/assignment"].as_str() else {
            continue;
        };
        for c in Assignment::parse(text).unwrap().containers {
            for d in c.devices {
                *per_card.entry(d.uuid).or_default() += d.memory_mib;
            }
        }
    }
    per_card
}

#[tokio::test]
async fn a_refused_or_failed_bind_never_frees_a_bound_pods_capacity() {
    let shared = cluster();
    {
        let mut c = shared.lock().unwrap();
        c.add_pod("ml", "p1", 1, 70_000);
        c.add_pod("ml", "p2", 1, 70_000);
    }
    let (router, _) = start(&shared).await;
    let (_, r) = post(&router, "/bind", &bind_args("p1", "gpu-b")).await;
    assert_eq!(r["Error"], "", "{r}");
    // The scheduler retries p1 elsewhere (its first answer was lost): refused, and p1's card
    // stays taken.
    let (_, r) = post(&router, "/bind", &bind_args("p1", "gpu-a")).await;
    assert!(
        r["Error"].as_str().unwrap().contains("already bound"),
        "{r}"
    );
    // A bind of p1 that fails at the API does not give p1's card back either.
    shared.lock().unwrap().fail_binding = Some(500);
    let (_, r) = post(&router, "/bind", &bind_args("p1", "gpu-b")).await;
    assert_eq!(
        r["Error"], "",
        "an already bound pod is not bound again: {r}"
    );
    let (_, r) = post(&router, "/bind", &bind_args("p2", "gpu-b")).await;
    assert!(r["Error"].as_str().unwrap() != "", "{r}");
    shared.lock().unwrap().fail_binding = None;
    let body = json!({"Pod": gpu_pod("p2", 70_000, json!({})), "NodeNames": ["gpu-b"]});
    let (_, r) = post(&router, "/filter", &body).await;
    assert!(r["FailedNodes"]["gpu-b"].is_string(), "{r}");
    let (_, r) = post(&router, "/bind", &bind_args("p2", "gpu-b")).await;
    assert!(
        r["Error"].as_str().unwrap().contains("no longer fits"),
        "{r}"
    );
    let promised = promised_per_card(&shared);
    assert!(promised.values().all(|m| *m <= CARD_MIB), "{promised:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_binds_of_one_pod_keep_what_the_winner_holds() {
    // Each round: two binds of the same pod to two nodes at once (one must lose), then a pod
    // as large tries both nodes. Whatever the interleaving, no card is promised twice.
    for round in 0..20 {
        let shared = cluster();
        {
            let mut c = shared.lock().unwrap();
            c.add_node("gpu-d", &[("GPU-d0", CARD_MIB, 0)]);
            c.add_pod("ml", "p1", 1, 70_000);
            c.add_pod("ml", "q1", 1, 70_000);
        }
        let (router, _) = start(&shared).await;
        let binds: Vec<_> = ["gpu-b", "gpu-d"]
            .into_iter()
            .map(|node| {
                let router = router.clone();
                tokio::spawn(async move { post(&router, "/bind", &bind_args("p1", node)).await })
            })
            .collect();
        let mut errors = 0;
        for b in binds {
            errors += usize::from(b.await.unwrap().1["Error"] != "");
        }
        assert_eq!(errors, 1, "round {round}: one bind wins");
        let winner = shared.lock().unwrap().pod("ml", "p1")["spec"]["nodeName"]
            .as_str()
            .unwrap()
            .to_string();
        let loser = if winner == "gpu-b" { "gpu-d" } else { "gpu-b" };
        let (_, r) = post(&router, "/bind", &bind_args("q1", &winner)).await;
        assert!(r["Error"].as_str().unwrap() != "", "round {round}: {r}");
        let (_, r) = post(&router, "/bind", &bind_args("q1", loser)).await;
        assert_eq!(
            r["Error"], "",
            "round {round}: the loser's card is free again"
        );
        let promised = promised_per_card(&shared);
        assert!(
            promised.values().all(|m| *m <= CARD_MIB),
            "round {round}: {promised:?}"
        );
    }
}

fn test_key() -> gpupool_sched::signing::AssignmentKey {
    gpupool_sched::signing::AssignmentKey::new(&[7u8; 32]).unwrap()
}

#[tokio::test]
async fn binds_sign_assignments_and_forged_ones_are_not_counted() {
    let shared = cluster();
    shared.lock().unwrap().add_pod("ml", "p1", 1, 40_000);
    let settings = Settings {
        key: Some(test_key()),
        ..Settings::default()
    };
    let (router, _) = start_with(&shared, settings.clone()).await;
    let (_, r) = post(&router, "/bind", &bind_args("p1", "gpu-b")).await;
    assert_eq!(r["Error"], "", "{r}");
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(shared.lock().unwrap().pod("ml", "p1")).unwrap();
    let signed = gpupool_sched::pod::signed_assignment(&pod, Some(&test_key())).unwrap();
    assert_eq!(signed.unwrap().node, "gpu-b");
    let other = gpupool_sched::signing::AssignmentKey::new(&[8u8; 32]).unwrap();
    assert!(gpupool_sched::pod::signed_assignment(&pod, Some(&other)).is_err());

    // After a restart, the signed pod is counted; gpu-c's pod (an unsigned assignment, as a
    // pod author could write) is not.
    let (router, _) = start_with(&shared, settings).await;
    let body = json!({"Pod": gpu_pod("p2", 50_000, json!({})), "NodeNames": ["gpu-b", "gpu-c"]});
    let (_, r) = post(&router, "/filter", &body).await;
    assert_eq!(names(&r["NodeNames"]), ["gpu-c"], "{r}");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_unread() {
    let shared = cluster();
    let (router, _) = start(&shared).await;
    let huge = format!(
        "{{\"Pod\": {{}}, \"NodeNames\": [\"{}\"]}}",
        "x".repeat(server::BODY_LIMIT)
    );
    let (status, _) = call(&router, "POST", "/filter", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Just under it is read (and judged on its content).
    let (status, _) = post(&router, "/filter", &payload()).await;
    assert_eq!(status, StatusCode::OK);
}
