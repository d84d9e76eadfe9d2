//! Tests only: a small in-memory Kubernetes API, enough for the scheduler extender and the node
//! agent: list nodes and pods (field selectors on the node name and phase), get / merge-patch
//! pods and nodes (with resource-version checks), create pods (their quantities stored in the
//! API server's canonical form), create a pod's binding, record events.
//! Conflicts and failures can be injected; every request is logged. Served to a `kube::Client`
//! through `tower-test` ([`client`]) or on a local HTTP port for other processes ([`serve`]).

use gpupool_sched::quantity::{stored_form, Quantity};
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
    /// Events created, as sent.
    pub events: Vec<Value>,
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
        self.add_pod_with_limits(
            ns,
            name,
            json!({"nvidia.com/gpu": count.to_string(),
                   "nvidia.com/gpumem": mib.to_string(),
                   "nvidia.com/gpucores": "25"}),
        )
        .expect("valid limits")
    }

    /// Adds a pending pod whose container `main` has these resource limits, stored as the API
    /// server stores them ([`admit_pod`]); the API server's refusal otherwise.
    pub fn add_pod_with_limits(
        &mut self,
        ns: &str,
        name: &str,
        limits: Value,
    ) -> Result<String, String> {
        let rv = self.next_version();
        let uid = format!("uid-{name}");
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": rv},
               "spec": {"schedulerName": "gpupool-scheduler", "containers": [{
                   "name": "main", "image": "cuda:12",
                   "resources": {"limits": limits}}]},
               "status": {"phase": "Pending"}});
        admit_pod(&mut pod)?;
        self.pods.insert(format!("{ns}/{name}"), pod);
        Ok(uid)
    }

    /// A pod object.
    pub fn pod(&self, ns: &str, name: &str) -> Value {
        self.pods[&format!("{ns}/{name}")].clone()
    }

    /// Adds a pod as it is once scheduled: bound to `node`, still `Pending`, with the
    /// annotations given (e.g. the scheduler's assignment) and `containers` as its spec's. Its
    /// UID is a UUID derived from its name (as in cgroup paths); returned.
    pub fn add_bound_pod(
        &mut self,
        ns: &str,
        name: &str,
        node: &str,
        annotations: Value,
        containers: Value,
    ) -> String {
        let rv = self.next_version();
        let uid = bound_pod_uid(name);
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": rv,
                            "creationTimestamp": "2026-11-26T00:00:00Z",
                            "annotations": annotations},
               "spec": {"nodeName": node, "containers": containers},
               "status": {"phase": "Pending"}});
        admit_pod(&mut pod).expect("valid resources");
        self.pods.insert(format!("{ns}/{name}"), pod);
        uid
    }
}

/// The UID [`Cluster::add_bound_pod`] gives a pod named `name` (derived from the name, so a
/// test can sign an assignment before adding the pod).
pub fn bound_pod_uid(name: &str) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    format!("00000000-0000-4000-8000-{:012x}", hash & 0xffff_ffff_ffff)
}

/// Whether the API server requires whole values for a resource name: extended resources (a
/// domain outside `kubernetes.io`, and not a quota's `requests.` name).
fn is_extended_resource(name: &str) -> bool {
    let Some((domain, _)) = name.split_once('/') else {
        return false;
    };
    !(domain == "kubernetes.io"
        || domain.ends_with(".kubernetes.io")
        || name.starts_with("requests."))
}

/// What the API server does to a pod's resources on create: every quantity parsed and stored in
/// its canonical text (`6000` → `6k`, `2048Mi` → `2Gi`; numbers become strings), extended
/// resources refused unless whole and non-negative, and requests defaulted from limits.
pub fn admit_pod(pod: &mut Value) -> Result<(), String> {
    let Some(containers) = pod["spec"]["containers"].as_array_mut() else {
        return Ok(());
    };
    for (i, c) in containers.iter_mut().enumerate() {
        let resources = &mut c["resources"];
        if !resources.is_object() {
            continue;
        }
        for field in ["limits", "requests"] {
            let Some(map) = resources.get_mut(field).and_then(Value::as_object_mut) else {
                continue;
            };
            for (name, value) in map.iter_mut() {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => {
                        return Err(format!(
                        "spec.containers[{i}].resources.{field}[{name}]: not a quantity: {other}"
                    ))
                    }
                };
                let at = format!(
                    "spec.containers[{i}].resources.{field}[{name}]: Invalid value: {text:?}"
                );
                let stored = stored_form(&text).map_err(|e| format!("{at}: {e}"))?;
                if is_extended_resource(name) {
                    let q = Quantity::parse(&stored).map_err(|e| format!("{at}: {e}"))?;
                    if q.is_negative() {
                        return Err(format!("{at}: must be greater than or equal to 0"));
                    }
                    if q.whole().is_none() {
                        return Err(format!("{at}: must be an integer"));
                    }
                }
                *value = Value::String(stored);
            }
        }
        if let Some(limits) = resources["limits"].as_object().cloned() {
            let requests = resources
                .as_object_mut()
                .expect("resources is an object")
                .entry("requests")
                .or_insert_with(|| json!({}));
            if let Some(requests) = requests.as_object_mut() {
                for (name, value) in limits {
                    requests.entry(name).or_insert(value);
                }
            }
        }
    }
    Ok(())
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

/// JSON merge patch (RFC 7386): objects merge key by key, `null` removes a key.
fn merge(target: &mut Value, patch: &Value) {
    if patch.is_object() && !target.is_object() {
        *target = Value::Object(Default::default());
    }
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
            let selector = field_selector(query);
            let items: Vec<Value> = c
                .pods
                .values()
                .filter(|p| {
                    selector.iter().all(|(field, op, value)| {
                        let actual = match field.as_str() {
                            "spec.nodeName" => p["spec"]["nodeName"].as_str().unwrap_or(""),
                            "status.phase" => p["status"]["phase"].as_str().unwrap_or(""),
                            other => panic!("field selector on {other} not supported by the fake"),
                        };
                        (actual == value) == (op == "=")
                    })
                })
                .cloned()
                .collect();
            respond(
                200,
                &json!({"kind": "PodList", "apiVersion": "v1",
                                 "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ("POST", ["api", "v1", "namespaces", ns, "pods"]) => {
            let Ok(mut pod) = serde_json::from_slice::<Value>(body) else {
                return status(400, "BadRequest", "pod is not JSON");
            };
            let Some(name) = pod["metadata"]["name"].as_str().map(String::from) else {
                return status(422, "Invalid", "metadata.name: Required value");
            };
            let key = format!("{ns}/{name}");
            if c.pods.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("pods \"{name}\" already exists"),
                );
            }
            if let Err(why) = admit_pod(&mut pod) {
                return status(422, "Invalid", &format!("Pod \"{name}\" is invalid: {why}"));
            }
            let rv = c.next_version();
            pod["metadata"]["namespace"] = json!(ns);
            pod["metadata"]["resourceVersion"] = json!(rv);
            pod["metadata"]["uid"] = json!(format!("uid-{name}"));
            if pod["status"]["phase"].is_null() {
                pod["status"]["phase"] = json!("Pending");
            }
            c.pods.insert(key, pod.clone());
            respond(201, &pod)
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
        ("GET", ["api", "v1", "nodes", name]) => match c.nodes.get(*name) {
            Some(n) => respond(200, n),
            None => status(404, "NotFound", &format!("nodes \"{name}\" not found")),
        },
        ("PATCH", ["api", "v1", "nodes", name]) => {
            let Ok(patch) = serde_json::from_slice::<Value>(body) else {
                return status(400, "BadRequest", "patch is not JSON");
            };
            let rv = c.next_version();
            let Some(node) = c.nodes.get_mut(*name) else {
                return status(404, "NotFound", &format!("nodes \"{name}\" not found"));
            };
            merge(node, &patch);
            node["metadata"]["resourceVersion"] = json!(rv);
            respond(200, node)
        }
        ("POST", ["api", "v1", "namespaces", _, "events"]) => {
            let Ok(event) = serde_json::from_slice::<Value>(body) else {
                return status(400, "BadRequest", "event is not JSON");
            };
            c.events.push(event.clone());
            respond(201, &event)
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

/// The `fieldSelector` of a query as (field, `=` or `!=`, value) terms.
fn field_selector(query: &str) -> Vec<(String, String, String)> {
    let Some(raw) = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("fieldSelector="))
    else {
        return Vec::new();
    };
    let decoded = percent_decode(raw);
    decoded
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|term| {
            if let Some((f, v)) = term.split_once("!=") {
                (f.to_string(), "!=".to_string(), v.to_string())
            } else {
                let (f, v) = term
                    .trim_start_matches('=')
                    .split_once('=')
                    .unwrap_or((term, ""));
                let v = v.trim_start_matches('=');
                (f.to_string(), "=".to_string(), v.to_string())
            }
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves the fake cluster over plain HTTP on 127.0.0.1 (a free port) from a thread of its own,
/// for programs that read a kubeconfig; returns the server's URL.
pub fn serve(cluster: Shared) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free local port");
    let addr = listener.local_addr().expect("bound address");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                let cluster = cluster.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let bytes = axum::body::to_bytes(body, 16 << 20)
                        .await
                        .unwrap_or_default();
                    let query = parts.uri.query().unwrap_or("").to_string();
                    let (code, body) = {
                        let mut c = cluster.lock().unwrap();
                        let response =
                            handle(&mut c, &parts.method, parts.uri.path(), &query, &bytes);
                        let code = response.status();
                        (code, response.into_body())
                    };
                    let bytes = body.collect_bytes().await.unwrap_or_default();
                    axum::response::Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(bytes))
                        .unwrap()
                }
            });
            axum::serve(listener, app).await.expect("fake API server");
        });
    });
    format!("http://{addr}")
}

/// A kubeconfig (YAML) that points at `url` without credentials.
pub fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: nobody\ncurrent-context: fake\nusers:\n- name: nobody\n  user: {{}}\n"
    )
}
