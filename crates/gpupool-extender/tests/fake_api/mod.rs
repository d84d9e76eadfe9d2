//! A small in-memory Kubernetes API behind `tower-test`'s mock service, enough for the
//! extender: list nodes and pods, get / merge-patch a pod (with resource-version checks), and
//! create a pod's binding. Conflicts and failures can be injected; every request is logged.

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The fake cluster's objects and knobs.
#[derive(Default)]
pub struct Cluster {
    /// Nodes by name.
    pub nodes: BTreeMap<String, Value>,
    /// Pods by `namespace/name`.
    pub pods: BTreeMap<String, Value>,
    /// `METHOD path` of every request, in order.
    pub log: Vec<String>,
    /// Patches to answer with 409 (after bumping the pod's resource version, as another
    /// writer would).
    pub conflicts: usize,
    /// Answer binding requests with this status.
    pub fail_binding: Option<u16>,
    version: u64,
}

/// Shared handle on the fake cluster.
pub type Shared = Arc<Mutex<Cluster>>;

impl Cluster {
    fn next_version(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }

    /// Adds a node with an inventory of `cards` (uuid, memory MiB, numa).
    pub fn add_node(&mut self, name: &str, cards: &[(&str, u64, i32)]) {
        let cards: Vec<Value> = cards
            .iter()
            .map(|(uuid, mib, numa)| {
                json!({"uuid": uuid, "model": "NVIDIA H100 80GB HBM3", "memoryMiB": mib,
                       "sms": 132, "numa": numa, "healthy": true, "slots": 10})
            })
            .collect();
        let inventory = json!({"version": 1, "updated": "2026-11-26T00:00:00Z", "cards": cards});
        let rv = self.next_version();
        self.nodes.insert(
            name.into(),
            json!({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": name, "resourceVersion": rv,
                                "annotations": {"gpupool.io/inventory": inventory.to_string()}},
                   "status": {"allocatable": {"cpu": "64"}}}),
        );
    }

    /// Adds a pending pod whose container `main` asks for `count` vGPUs of `mib` MiB and 25 % of
    /// the cores.
    pub fn add_pod(&mut self, ns: &str, name: &str, count: u32, mib: u64) -> String {
        let rv = self.next_version();
        let uid = format!("uid-{name}");
        self.pods.insert(
            format!("{ns}/{name}"),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": rv},
                   "spec": {"schedulerName": "gpupool-scheduler", "containers": [{
                       "name": "main", "image": "cuda:12",
                       "resources": {"limits": {"nvidia.com/gpu": count.to_string(),
                                                "nvidia.com/gpumem": mib.to_string(),
                                                "nvidia.com/gpucores": "25"}}}]},
                   "status": {"phase": "Pending"}}),
        );
        uid
    }

    /// A pod object.
    #[allow(dead_code)] // not every test binary reads pods back
    pub fn pod(&self, ns: &str, name: &str) -> Value {
        self.pods[&format!("{ns}/{name}")].clone()
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                      "status": if code < 300 { "Success" } else { "Failure" },
                      "message": message, "reason": reason, "code": code});
    respond(code, &body)
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(body.to_string().into_bytes()))
        .unwrap()
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn handle(
    c: &mut Cluster,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Response<Body> {
    c.log.push(format!("{method} {path}"));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["api", "v1", "nodes"]) => {
            let items: Vec<Value> = c.nodes.values().cloned().collect();
            respond(
                200,
                &json!({"kind": "NodeList", "apiVersion": "v1",
                                 "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ("GET", ["api", "v1", "pods"]) => {
            let unfinished = query.contains("fieldSelector");
            let items: Vec<Value> = c
                .pods
                .values()
                .filter(|p| {
                    !unfinished
                        || !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
                })
                .cloned()
                .collect();
            respond(
                200,
                &json!({"kind": "PodList", "apiVersion": "v1",
                                 "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
            match c.pods.get(&format!("{ns}/{name}")) {
                Some(p) => respond(200, p),
                None => status(404, "NotFound", &format!("pods \"{name}\" not found")),
            }
        }
        ("PATCH", ["api", "v1", "namespaces", ns, "pods", name]) => {
            let key = format!("{ns}/{name}");
            if !c.pods.contains_key(&key) {
                return status(404, "NotFound", &format!("pods \"{name}\" not found"));
            }
            let patch: Value = serde_json::from_slice(body).unwrap();
            if c.conflicts > 0 {
                c.conflicts -= 1;
                let rv = c.next_version();
                c.pods.get_mut(&key).unwrap()["metadata"]["resourceVersion"] = json!(rv);
                return status(409, "Conflict", "the object has been modified");
            }
            let current = c.pods[&key]["metadata"]["resourceVersion"].clone();
            let wanted = &patch["metadata"]["resourceVersion"];
            if !wanted.is_null() && *wanted != current {
                return status(409, "Conflict", "the object has been modified");
            }
            let rv = c.next_version();
            let pod = c.pods.get_mut(&key).unwrap();
            merge(pod, &patch);
            pod["metadata"]["resourceVersion"] = json!(rv);
            respond(200, pod)
        }
        ("POST", ["api", "v1", "namespaces", ns, "pods", name, "binding"]) => {
            if let Some(code) = c.fail_binding {
                return status(code, "InternalError", "binding refused by the test");
            }
            let binding: Value = serde_json::from_slice(body).unwrap();
            let key = format!("{ns}/{name}");
            let Some(pod) = c.pods.get_mut(&key) else {
                return status(404, "NotFound", &format!("pods \"{name}\" not found"));
            };
            if pod["spec"]["nodeName"].is_string() {
                return status(409, "Conflict", "pod is already assigned to a node");
            }
            assert_eq!(binding["target"]["kind"], "Node");
            pod["spec"]["nodeName"] = binding["target"]["name"].clone();
            pod["status"]["phase"] = json!("Running");
            status(201, "", "")
        }
        _ => status(404, "NotFound", &format!("no route {method} {path}")),
    }
}

/// A kube client whose requests this fake cluster answers (on the current tokio runtime).
pub fn client(cluster: Shared) -> kube::Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let response = {
                let mut c = cluster.lock().unwrap();
                handle_request(&mut c, &parts, &bytes)
            };
            send.send_response(response);
        }
    });
    kube::Client::new(service, "default")
}

fn handle_request(c: &mut Cluster, parts: &http::request::Parts, body: &[u8]) -> Response<Body> {
    let query = parts.uri.query().unwrap_or("");
    handle(c, &parts.method, parts.uri.path(), query, body)
}
