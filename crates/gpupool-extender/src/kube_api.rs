//! The extender's side effects through the Kubernetes API: `bind` (record the assignment on the
//! pod with optimistic concurrency, then bind it) and the rebuild of the view from listed nodes
//! and pods (at start and periodically).

use crate::api::ExtenderBindingArgs;
use crate::state::Extender;
use gpupool_sched::pod::{self, api_error};
use gpupool_sched::protocol::ASSIGNMENT_ANNOTATION;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::collections::BTreeMap;

/// How often a bind re-reads the pod and tries again after a resource-version conflict.
pub const BIND_ATTEMPTS: usize = 5;

/// Fields selected when listing pods: finished pods hold no devices.
pub const UNFINISHED_PODS: &str = "status.phase!=Succeeded,status.phase!=Failed";

/// Serves `bind`: chooses the pod's cards on the node (counted at once, so concurrent binds never
/// share capacity), writes the assignment annotation guarded by the pod's resource version
/// (re-reading and retrying on a conflict), then creates the binding. On failure nothing stays
/// counted.
pub async fn bind(
    ext: &Extender,
    client: &Client,
    args: &ExtenderBindingArgs,
) -> Result<(), String> {
    if args.pod_name.is_empty() || args.node.is_empty() {
        return Err("bind needs PodName and Node".into());
    }
    let ns = if args.pod_namespace.is_empty() {
        "default"
    } else {
        &args.pod_namespace
    };
    let key = pod::key(ns, &args.pod_name);
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let result = record_assignment(ext, &api, args, &key).await;
    let result = match result {
        Ok(true) => create_binding(&api, args, ns).await,
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    match &result {
        Ok(()) => ext.confirm(&key),
        Err(_) => ext.forget(&key),
    }
    result
}

/// Writes the assignment on the pod; `Ok(false)` when the pod is already bound to the node.
async fn record_assignment(
    ext: &Extender,
    api: &Api<Pod>,
    args: &ExtenderBindingArgs,
    key: &str,
) -> Result<bool, String> {
    for _ in 0..BIND_ATTEMPTS {
        let pod = api
            .get(&args.pod_name)
            .await
            .map_err(|e| api_error(&format!("reading pod {key}"), e))?;
        if !args.pod_uid.is_empty() && pod.metadata.uid.as_deref() != Some(args.pod_uid.as_str()) {
            return Err(format!(
                "pod {key} is no longer the pod being scheduled (UID {:?}, expected {})",
                pod.metadata.uid, args.pod_uid
            ));
        }
        if let Some(n) = pod::bound_node(&pod) {
            return if n == args.node {
                Ok(false)
            } else {
                Err(format!("pod {key} is already bound to node {n}"))
            };
        }
        let assignment = ext.assign(&pod, &args.node)?;
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": pod.metadata.resource_version,
                "annotations": { ASSIGNMENT_ANNOTATION: assignment.to_annotation() },
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
            Err(e) => return Err(api_error(&format!("annotating pod {key}"), e)),
        }
    }
    Err(format!(
        "pod {key} kept changing: {BIND_ATTEMPTS} conflicting updates"
    ))
}

async fn create_binding(
    api: &Api<Pod>,
    args: &ExtenderBindingArgs,
    ns: &str,
) -> Result<(), String> {
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
        api_error(
            &format!("binding pod {}/{} to {}", ns, args.pod_name, args.node),
            e,
        )
    })
}

/// Rebuilds the view from the API: every node's inventory and every unfinished pod's
/// assignment. Returns pods whose annotation could not be read (they are left out, and logged).
pub async fn rebuild(ext: &Extender, client: &Client) -> Result<BTreeMap<String, String>, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error("listing nodes", e))?;
    let pods = pods
        .list(&ListParams::default().fields(UNFINISHED_PODS))
        .await
        .map_err(|e| api_error("listing pods", e))?;
    let problems = ext.rebuild(&nodes.items, &pods.items);
    for (pod, why) in &problems {
        tracing::warn!(pod, "assignment left out: {why}");
    }
    Ok(problems)
}
