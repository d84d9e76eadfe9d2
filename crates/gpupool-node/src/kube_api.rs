//! The agent's calls to the Kubernetes API: the pods bound to this node, marking a pod's
//! container allocated (guarded by the pod's resource version), the node's inventory
//! annotation, and events.

use crate::error::{NodeError, Result};
use crate::matching::ALLOCATED_ANNOTATION;
use gpupool_sched::pod;
use gpupool_sched::protocol::{Inventory, INVENTORY_ANNOTATION};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// The API's error for `what`, as the agent reports it.
fn api_error(what: &str, e: kube::Error) -> NodeError {
    NodeError::Api(pod::api_error(what, e))
}

/// How often a patch re-reads the pod and tries again after a resource-version conflict.
pub const PATCH_ATTEMPTS: usize = 5;

/// Every pod bound to `node`.
pub async fn node_pods(client: &Client, node: &str) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::all(client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
    api.list(&params)
        .await
        .map(|l| l.items)
        .map_err(|e| api_error(&format!("listing the pods of node {node}"), e))
}

/// Adds `container` to the pod's allocated containers. The patch carries the pod's resource
/// version; on a conflict the pod is read again (and the list recomputed), up to
/// [`PATCH_ATTEMPTS`] times.
pub async fn mark_allocated(
    client: &Client,
    namespace: &str,
    name: &str,
    container: &str,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let what = format!("marking pod {namespace}/{name} allocated");
    for _ in 0..PATCH_ATTEMPTS {
        let pod = api.get(name).await.map_err(|e| api_error(&what, e))?;
        let mut done = crate::matching::allocated_containers(&pod);
        if done.iter().any(|c| c == container) {
            return Ok(());
        }
        done.push(container.to_string());
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": pod.metadata.resource_version,
                "annotations": { ALLOCATED_ANNOTATION: done.join(",") },
            }
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(api_error(&what, e)),
        }
    }
    Err(NodeError::Api(format!(
        "{what}: the pod kept changing ({PATCH_ATTEMPTS} conflicts)"
    )))
}

/// Writes the node's inventory annotation.
pub async fn publish_inventory(client: &Client, node: &str, inventory: &Inventory) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({
        "metadata": { "annotations": { INVENTORY_ANNOTATION: inventory.to_annotation() } }
    });
    api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| api_error(&format!("writing the inventory of node {node}"), e))
}

/// Raises a `Warning` event on a pod (best effort: a failure is logged by the caller).
pub async fn warn_pod(
    client: &Client,
    namespace: &str,
    pod: &str,
    uid: &str,
    reason: &str,
    message: &str,
) -> Result<()> {
    pod_event(client, namespace, pod, uid, "Warning", reason, message).await
}

/// Raises an event of `type_` (`Normal` / `Warning`) on a pod.
pub async fn pod_event(
    client: &Client,
    namespace: &str,
    pod: &str,
    uid: &str,
    type_: &str,
    reason: &str,
    message: &str,
) -> Result<()> {
    use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{pod}.gpupool-")),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(namespace.to_string()),
            name: Some(pod.to_string()),
            uid: Some(uid.to_string()),
            api_version: Some("v1".into()),
            ..Default::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some("gpupool-node".into()),
            host: None,
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &event)
        .await
        .map(|_| ())
        .map_err(|e| api_error(&format!("event on pod {namespace}/{pod}"), e))
}
