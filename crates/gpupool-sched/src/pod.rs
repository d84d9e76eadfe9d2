//! What the extender and the node agent read from a pod object: its key, its vGPU requests (HAMi
//! resource names on each container), its placement policy (annotations), its recorded
//! assignment, where it is bound and whether it finished.

use crate::protocol::{Assignment, ProtocolError, ASSIGNMENT_ANNOTATION};
use crate::request::{container_request, ContainerRequest, Policy, RequestError, ResourceNames};
use crate::signing::{AssignmentKey, SignedFields, SigningError, SIGNATURE_ANNOTATION};
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use thiserror::Error;

/// What cannot be taken from a pod as written, naming the pod.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("pod {pod}: {problem}")]
pub struct PodError {
    /// The pod's key (`namespace/name`).
    pub pod: String,
    /// What is wrong.
    pub problem: PodProblem,
}

/// What is wrong with a pod.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PodProblem {
    /// A vGPU request or a policy annotation.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The recorded assignment.
    #[error(transparent)]
    Assignment(#[from] ProtocolError),
    /// The assignment's signature.
    #[error(transparent)]
    Signature(#[from] SigningError),
}

impl PodError {
    fn of(pod: &Pod, problem: impl Into<PodProblem>) -> PodError {
        PodError {
            pod: pod_key(pod),
            problem: problem.into(),
        }
    }
}

/// `namespace/name`, the key of a pod in the extender's records.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The key of a pod object (namespace `default` when absent).
pub fn pod_key(pod: &Pod) -> String {
    key(
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or(""),
    )
}

/// The pod's annotations (empty when it has none).
pub fn annotations(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.annotations.clone().unwrap_or_default()
}

/// Every container's vGPU request (containers asking for none are left out). Limits are read
/// first, then requests, like the device plugin's extended resources.
pub fn requests(pod: &Pod, names: &ResourceNames) -> Result<Vec<ContainerRequest>, PodError> {
    let Some(spec) = &pod.spec else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for c in &spec.containers {
        let mut res: BTreeMap<String, String> = BTreeMap::new();
        if let Some(r) = &c.resources {
            for map in [&r.requests, &r.limits].into_iter().flatten() {
                for (k, v) in map {
                    res.insert(k.clone(), v.0.clone());
                }
            }
        }
        if let Some(r) =
            container_request(names, &c.name, &res).map_err(|e| PodError::of(pod, e))?
        {
            out.push(r);
        }
    }
    Ok(out)
}

/// The pod's placement policy: its annotations over the cluster's defaults.
pub fn policy(pod: &Pod, defaults: &Policy) -> Result<Policy, PodError> {
    Policy::from_annotations(&annotations(pod), defaults).map_err(|e| PodError::of(pod, e))
}

/// The assignment recorded on the pod, if any; a malformed one is an error naming the pod.
pub fn assignment(pod: &Pod) -> Result<Option<Assignment>, PodError> {
    match pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ASSIGNMENT_ANNOTATION))
    {
        None => Ok(None),
        Some(text) => Assignment::parse(text)
            .map(Some)
            .map_err(|e| PodError::of(pod, e)),
    }
}

/// The assignment recorded on the pod, if any, accepted only with a valid signature of `key`
/// (`None`: signatures are not checked, by the operator's explicit choice). A malformed or
/// unsigned one is an error naming the pod.
pub fn signed_assignment(
    pod: &Pod,
    key: Option<&AssignmentKey>,
) -> Result<Option<Assignment>, PodError> {
    let Some(a) = assignment(pod)? else {
        return Ok(None);
    };
    let Some(key) = key else {
        return Ok(Some(a));
    };
    let annotations = pod.metadata.annotations.as_ref();
    let text = annotations
        .and_then(|m| m.get(ASSIGNMENT_ANNOTATION))
        .map(String::as_str)
        .unwrap_or_default();
    let fields = SignedFields {
        namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
        name: pod.metadata.name.as_deref().unwrap_or(""),
        uid: pod.metadata.uid.as_deref().unwrap_or(""),
        node: &a.node,
        assignment: text,
    };
    let signature = annotations
        .and_then(|m| m.get(SIGNATURE_ANNOTATION))
        .map(String::as_str);
    key.verify(&fields, signature)
        .map_err(|e| PodError::of(pod, e))?;
    Ok(Some(a))
}

/// Whether the pod has finished (its devices are free again).
pub fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) || pod.metadata.deletion_timestamp.is_some()
}

/// The node the pod is bound to, if any.
pub fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// One line for a Kubernetes API error: what was being done, the API's message and code.
#[cfg(feature = "kube")]
pub fn api_error(what: &str, e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{what}: {} ({})", s.message, s.code),
        other => format!("{what}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn limits_give_the_request_and_containers_without_gpus_are_skipped() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ml"},
            "spec": {"containers": [
                {"name": "main", "resources": {"limits": {
                    "nvidia.com/gpu": "1", "nvidia.com/gpumem": "4096", "nvidia.com/gpucores": "30"}}},
                {"name": "sidecar", "resources": {"limits": {"cpu": "1"}}}
            ]}
        }));
        let r = requests(&p, &ResourceNames::default()).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "main");
        assert_eq!(r[0].cores, 30);
        assert_eq!(pod_key(&p), "ml/p");
    }

    #[test]
    fn a_bad_value_names_the_container_and_resource() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "main", "resources": {"limits": {
                "nvidia.com/gpu": "1", "nvidia.com/gpucores": "150"}}}]}
        }));
        let e = requests(&p, &ResourceNames::default()).unwrap_err();
        assert!(
            matches!(&e.problem, PodProblem::Request(RequestError::Resource { container, resource, .. })
                if container == "main" && resource == "nvidia.com/gpucores"),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("pod default/p: "), "{e}");
    }

    #[test]
    fn a_malformed_assignment_is_an_error_naming_the_pod() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "x",
                         "annotations": {"gpupool.io/assignment": "{not json"}}
        }));
        let e = assignment(&p).unwrap_err();
        assert_eq!(e.pod, "x/p");
        assert!(matches!(e.problem, PodProblem::Assignment(_)), "{e:?}");
    }
}
