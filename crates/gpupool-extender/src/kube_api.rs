//! The extender's side effects through the Kubernetes API: `bind` (record the assignment on the
//! pod with optimistic concurrency, then bind it) and the rebuild of the view from listed nodes
//! and pods (at start and periodically).

use crate::api::ExtenderBindingArgs;
use crate::error::ExtenderError;
use crate::state::{Extender, Tentative};
use gpupool_sched::pod::{self, PodError};
use gpupool_sched::protocol::ASSIGNMENT_ANNOTATION;
use gpupool_sched::signing::{SignedFields, SIGNATURE_ANNOTATION};
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// How often a bind re-reads the pod and tries again after a resource-version conflict.
pub const BIND_ATTEMPTS: usize = 5;

/// Fields selected when listing pods: finished pods hold no devices.
pub const UNFINISHED_PODS: &str = "status.phase!=Succeeded,status.phase!=Failed";

/// Serves `bind`: chooses the pod's cards on the node (counted at once, so concurrent binds never
/// share capacity), writes the assignment annotation (signed) guarded by the pod's resource
/// version (re-reading and retrying on a conflict), then creates the binding. Binds of one pod
/// run one at a time; on failure exactly what this bind counted is undone (a pod bound earlier
/// keeps what it holds).
pub async fn bind(
    ext: &Extender,
    client: &Client,
    args: &ExtenderBindingArgs,
) -> Result<(), ExtenderError> {
    if args.pod_name.is_empty() || args.node.is_empty() {
        return Err(ExtenderError::Refused("bind needs PodName and Node".into()));
    }
    let ns = if args.pod_namespace.is_empty() {
        "default"
    } else {
        &args.pod_namespace
    };
    let key = pod::key(ns, &args.pod_name);
    let turn = pod_turn(&key);
    let _held = turn.lock().await;
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut tentative = None;
    let result = record_assignment(ext, &api, args, &key, &mut tentative).await;
    let result = match result {
        Ok(true) => create_binding(&api, args, ns).await,
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    match (&result, tentative) {
        (Ok(()), _) => ext.confirm(&key),
        (Err(_), Some(t)) => ext.undo(t),
        (Err(_), None) => {}
    }
    drop(_held);
    release_turn(&key, turn);
    result
}

type Turn = std::sync::Arc<tokio::sync::Mutex<()>>;

fn turns() -> &'static std::sync::Mutex<std::collections::HashMap<String, Turn>> {
    static TURNS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Turn>>> =
        std::sync::OnceLock::new();
    TURNS.get_or_init(Default::default)
}

/// The lock that orders the binds of one pod (a retried bind waits for the one in flight).
fn pod_turn(key: &str) -> Turn {
    turns()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.to_string())
        .or_default()
        .clone()
}

/// Drops the pod's lock once no bind waits for it.
fn release_turn(key: &str, turn: Turn) {
    let mut map = turns().lock().unwrap_or_else(|e| e.into_inner());
    drop(turn);
    if map
        .get(key)
        .is_some_and(|t| std::sync::Arc::strong_count(t) == 1)
    {
        map.remove(key);
    }
}

/// Writes the assignment on the pod; `Ok(false)` when the pod is already bound to the node.
/// What `assign` changed is left in `tentative` for the caller to undo on failure.
async fn record_assignment(
    ext: &Extender,
    api: &Api<Pod>,
    args: &ExtenderBindingArgs,
    key: &str,
    tentative: &mut Option<Tentative>,
) -> Result<bool, ExtenderError> {
    for _ in 0..BIND_ATTEMPTS {
        let pod = api
            .get(&args.pod_name)
            .await
            .map_err(|e| ExtenderError::api(&format!("reading pod {key}"), e))?;
        if !args.pod_uid.is_empty() && pod.metadata.uid.as_deref() != Some(args.pod_uid.as_str()) {
            return Err(ExtenderError::Refused(format!(
                "pod {key} is no longer the pod being scheduled (UID {:?}, expected {})",
                pod.metadata.uid, args.pod_uid
            )));
        }
        if let Some(n) = pod::bound_node(&pod) {
            // Whatever it holds stays counted.
            ext.observe_bound(&pod);
            return if n == args.node {
                Ok(false)
            } else {
                Err(ExtenderError::Refused(format!(
                    "pod {key} is already bound to node {n}"
                )))
            };
        }
        if let Some(t) = tentative.take() {
            // A retry after a conflict: this bind's earlier choice goes first.
            ext.undo(t);
        }
        let (assignment, t) = ext.assign(&pod, &args.node)?;
        *tentative = t;
        let text = assignment.to_annotation();
        let signature = ext.settings().key.as_ref().map(|k| {
            k.sign(&SignedFields {
                namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
                name: &args.pod_name,
                uid: pod.metadata.uid.as_deref().unwrap_or(""),
                node: &assignment.node,
                assignment: &text,
            })
        });
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": pod.metadata.resource_version,
                "annotations": {
                    ASSIGNMENT_ANNOTATION: text,
                    SIGNATURE_ANNOTATION: signature,
                },
            }
        });
        match api
            .patch(
                &args.pod_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                tracing::info!(pod = key, "pod changed while binding; reading it again");
                continue;
            }
            Err(e) => return Err(ExtenderError::api(&format!("annotating pod {key}"), e)),
        }
    }
    Err(ExtenderError::Refused(format!(
        "pod {key} kept changing: {BIND_ATTEMPTS} conflicting updates"
    )))
}

async fn create_binding(
    api: &Api<Pod>,
    args: &ExtenderBindingArgs,
    ns: &str,
) -> Result<(), ExtenderError> {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(args.pod_name.clone()),
            namespace: Some(ns.to_string()),
            uid: (!args.pod_uid.is_empty()).then(|| args.pod_uid.clone()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(args.node.clone()),
            ..ObjectReference::default()
        },
    };
    api.create_subresource::<_, serde_json::Value>(
        "binding",
        &args.pod_name,
        &PostParams::default(),
        &binding,
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        ExtenderError::api(
            &format!("binding pod {}/{} to {}", ns, args.pod_name, args.node),
            e,
        )
    })
}

/// Rebuilds the view from the API: every node's inventory and every unfinished pod's
/// assignment. Returns pods whose annotation could not be read (they are left out, and logged).
pub async fn rebuild(ext: &Extender, client: &Client) -> Result<Vec<PodError>, ExtenderError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| ExtenderError::api("listing nodes", e))?;
    let pods = pods
        .list(&ListParams::default().fields(UNFINISHED_PODS))
        .await
        .map_err(|e| ExtenderError::api("listing pods", e))?;
    let problems = ext.rebuild(&nodes.items, &pods.items);
    for e in &problems {
        tracing::warn!(pod = e.pod, "assignment left out: {}", e.problem);
    }
    Ok(problems)
}
