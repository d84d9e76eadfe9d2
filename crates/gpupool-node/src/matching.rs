//! Which pod and container an `Allocate` call serves. The kubelet's call names only device IDs,
//! so the agent reads the scheduler's decision from the pods bound to this node: the pending pod
//! with an assignment here whose next unallocated container asks for as many vGPUs as the call.
//! Among several such pods (equal requests) the one assigned first is served first: the kubelet
//! receives pods in the order they are bound, and admits them one at a time.

use crate::store::Store;
use gpupool_sched::pod;
use gpupool_sched::protocol::{AssignedContainer, Assignment};
use gpupool_sched::signing::AssignmentKey;
use k8s_openapi::api::core::v1::Pod;

/// Annotation listing the containers of a pod the node agent has allocated (comma list).
pub const ALLOCATED_ANNOTATION: &str = "gpupool.io/allocated";

/// The pod an `Allocate` call serves, and the container in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod UID.
    pub uid: String,
    /// The container's assignment.
    pub container: AssignedContainer,
    /// Containers of the pod allocated before this one.
    pub allocated: Vec<String>,
}

/// The containers of a pod recorded as allocated (its annotation).
pub fn allocated_containers(p: &Pod) -> Vec<String> {
    pod::annotations(p)
        .get(ALLOCATED_ANNOTATION)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A pod bound here with an assignment: its key for ordering and the assignment.
struct Candidate<'a> {
    pod: &'a Pod,
    assignment: Assignment,
}

impl Candidate<'_> {
    fn order(&self) -> (u64, String, String) {
        (
            self.assignment.assigned_ns.unwrap_or(u64::MAX),
            self.pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            pod::pod_key(self.pod),
        )
    }
}

/// Finds the pod and container an `Allocate` of `count` vGPUs on `node` serves. `problems`
/// receives one line per pod whose annotations could not be used (they are skipped, never
/// guessed at). `Err` says why no pod matches.
pub fn find(
    pods: &[Pod],
    node: &str,
    count: usize,
    store: &Store,
    key: Option<&AssignmentKey>,
    problems: &mut Vec<String>,
) -> crate::error::Result<Match> {
    let mut candidates = Vec::new();
    for p in pods {
        if pod::bound_node(p) != Some(node) || pod::finished(p) {
            continue;
        }
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        if !matches!(phase, None | Some("Pending")) {
            continue;
        }
        match pod::signed_assignment(p, key) {
            Ok(Some(a)) if a.node == node => candidates.push(Candidate {
                pod: p,
                assignment: a,
            }),
            Ok(Some(a)) => problems.push(format!(
                "pod {} is bound to {node} but assigned to {}",
                pod::pod_key(p),
                a.node
            )),
            Ok(None) => {}
            Err(e) => problems.push(e.to_string()),
        }
    }
    candidates.sort_by_key(Candidate::order);
    for c in &candidates {
        let uid = c.pod.metadata.uid.clone().unwrap_or_default();
        let allocated = allocated_containers(c.pod);
        let done =
            |name: &str| allocated.iter().any(|a| a == name) || store.get(&uid, name).is_some();
        let next = c
            .assignment
            .containers
            .iter()
            .find(|ac| !done(&ac.name) && ac.devices.len() == count);
        if let Some(container) = next {
            return Ok(Match {
                namespace: c
                    .pod
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                pod: c.pod.metadata.name.clone().unwrap_or_default(),
                uid,
                container: container.clone(),
                allocated,
            });
        }
    }
    let refused = if problems.is_empty() {
        String::new()
    } else {
        format!("; refused: {}", problems.join("; "))
    };
    Err(crate::error::NodeError::Allocate(format!(
        "no pending pod on node {node} has a container assigned {count} vGPU(s) that is not \
         allocated yet ({} pod(s) with an assignment here; was the pod scheduled by gpupool-scheduler?){refused}",
        candidates.len()
    )))
}

/// Pods bound to `node` and not started whose containers ask for `resource` (`<domain>/gpu`)
/// but that carry no assignment at all: another scheduler placed them (or `spec.nodeName` was
/// set), so no card was chosen and no `Allocate` can serve them. One line per pod, naming it,
/// its scheduler and the fix.
pub fn placed_elsewhere(pods: &[Pod], node: &str, resource: &str) -> Vec<String> {
    pods.iter()
        .filter(|p| pod::bound_node(p) == Some(node) && !pod::finished(p))
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            matches!(phase, None | Some("Pending"))
        })
        .filter(|p| {
            !pod::annotations(p).contains_key(gpupool_sched::protocol::ASSIGNMENT_ANNOTATION)
        })
        .filter(|p| asks_for(p, resource))
        .map(|p| {
            let scheduler = p
                .spec
                .as_ref()
                .and_then(|s| s.scheduler_name.as_deref())
                .unwrap_or("default-scheduler");
            format!(
                "pod {} asks for {resource} but was placed on {node} by the scheduler \
                 {scheduler:?} (or through spec.nodeName), not by the gpupool scheduler, so no \
                 card was assigned and the node cannot start it; set its schedulerName to the \
                 gpupool scheduler's (the gpupool admission webhook does this) and recreate it",
                pod::pod_key(p)
            )
        })
        .collect()
}

/// Whether a container of `p` (init containers too) lists `resource` in its limits or
/// requests.
fn asks_for(p: &Pod, resource: &str) -> bool {
    let Some(spec) = p.spec.as_ref() else {
        return false;
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .filter_map(|c| c.resources.as_ref())
        .any(|r| {
            r.limits.as_ref().is_some_and(|l| l.contains_key(resource))
                || r.requests
                    .as_ref()
                    .is_some_and(|l| l.contains_key(resource))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, assignment: serde_json::Value, extra: serde_json::Value) -> Pod {
        let mut annotations = json!({"gpupool.io/assignment": assignment.to_string()});
        if let Some(m) = extra.as_object() {
            for (k, v) in m {
                annotations[k] = v.clone();
            }
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                         "annotations": annotations},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": "Pending"}
        }))
        .unwrap()
    }

    fn assignment(node: &str, at: u64, containers: &[(&str, usize)]) -> serde_json::Value {
        let cs: Vec<_> = containers
            .iter()
            .map(|(n, k)| {
                let devs: Vec<_> = (0..*k)
                    .map(|i| json!({"uuid": format!("GPU-{i}"), "memoryMiB": 1024, "cores": 30}))
                    .collect();
                json!({"name": n, "devices": devs})
            })
            .collect();
        json!({"version": 1, "node": node, "assignedNs": at, "containers": cs})
    }

    fn empty_store() -> Store {
        let dir = std::env::temp_dir().join(format!(
            "gpupool-match-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Store::open(&dir).unwrap()
    }

    #[test]
    fn pods_placed_by_another_scheduler_are_named_with_the_fix() {
        let raw = |name: &str,
                   node: &str,
                   scheduler: Option<&str>,
                   limits: serde_json::Value,
                   annotations: serde_json::Value|
         -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                             "annotations": annotations},
                "spec": {"nodeName": node, "schedulerName": scheduler,
                         "containers": [{"name": "main", "resources": {"limits": limits}}]},
                "status": {"phase": "Pending"}
            }))
            .unwrap()
        };
        let gpu = json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem": "3000"});
        let pods = vec![
            raw("volcano-job", "n1", Some("volcano"), gpu.clone(), json!({})),
            raw("pinned", "n1", None, gpu.clone(), json!({})),
            raw("cpu-only", "n1", None, json!({"cpu": "1"}), json!({})),
            raw("elsewhere", "n2", Some("volcano"), gpu.clone(), json!({})),
            raw(
                "ours",
                "n1",
                Some("gpupool-scheduler"),
                gpu.clone(),
                json!({"gpupool.io/assignment": assignment("n1", 1, &[("main", 1)]).to_string()}),
            ),
        ];
        let lines = placed_elsewhere(&pods, "n1", "nvidia.com/gpu");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("ns/volcano-job") && lines[0].contains("\"volcano\""),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("schedulerName"), "{}", lines[0]);
        assert!(
            lines[1].contains("ns/pinned") && lines[1].contains("\"default-scheduler\""),
            "{}",
            lines[1]
        );
        assert!(placed_elsewhere(&pods, "n1", "example.com/gpu").is_empty());
    }

    #[test]
    fn equal_requests_are_served_in_assignment_order() {
        let pods = vec![
            pod(
                "late",
                "n1",
                assignment("n1", 20, &[("main", 1)]),
                json!({}),
            ),
            pod(
                "early",
                "n1",
                assignment("n1", 10, &[("main", 1)]),
                json!({}),
            ),
            pod(
                "elsewhere",
                "n2",
                assignment("n2", 1, &[("main", 1)]),
                json!({}),
            ),
        ];
        let store = empty_store();
        let mut problems = vec![];
        let m = find(&pods, "n1", 1, &store, None, &mut problems).unwrap();
        assert_eq!(m.pod, "early");
        // Once "early" is marked, "late" is next.
        let pods = vec![
            pods[0].clone(),
            pod(
                "early",
                "n1",
                assignment("n1", 10, &[("main", 1)]),
                json!({"gpupool.io/allocated": "main"}),
            ),
        ];
        assert_eq!(
            find(&pods, "n1", 1, &store, None, &mut problems)
                .unwrap()
                .pod,
            "late"
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn containers_are_served_in_order_and_counts_must_match() {
        let pods = vec![pod(
            "multi",
            "n1",
            assignment("n1", 5, &[("a", 2), ("b", 1)]),
            json!({"gpupool.io/allocated": "a"}),
        )];
        let store = empty_store();
        let mut problems = vec![];
        let m = find(&pods, "n1", 1, &store, None, &mut problems).unwrap();
        assert_eq!(
            (m.container.name.as_str(), m.allocated.clone()),
            ("b", vec!["a".to_string()])
        );
        let e = find(&pods, "n1", 3, &store, None, &mut problems)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 vGPU"), "{e}");
    }

    #[test]
    fn malformed_annotations_are_reported_and_skipped() {
        let mut bad = pod("bad", "n1", json!({}), json!({}));
        bad.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("gpupool.io/assignment".into(), "{not json".into());
        let good = pod(
            "good",
            "n1",
            assignment("n1", 50, &[("main", 1)]),
            json!({}),
        );
        let wrong_node = pod(
            "moved",
            "n1",
            assignment("n9", 1, &[("main", 1)]),
            json!({}),
        );
        let store = empty_store();
        let mut problems = vec![];
        let m = find(
            &[bad, wrong_node, good],
            "n1",
            1,
            &store,
            None,
            &mut problems,
        )
        .unwrap();
        assert_eq!(m.pod, "good");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("ns/bad"), "{problems:?}");
        assert!(problems[1].contains("n9"), "{problems:?}");
    }

    #[test]
    fn with_a_key_only_signed_assignments_are_served() {
        use gpupool_sched::signing::{AssignmentKey, SignedFields};
        let key = AssignmentKey::new(&[3u8; 32]).unwrap();
        let text = assignment("n1", 10, &[("main", 1)]).to_string();
        let sign = |name: &str| {
            key.sign(&SignedFields {
                namespace: "ns",
                name,
                uid: &format!("uid-{name}"),
                node: "n1",
                assignment: &text,
            })
        };
        let a: serde_json::Value = serde_json::from_str(&text).unwrap();
        let forged = pod("forged", "n1", a.clone(), json!({}));
        // A signature copied from another pod does not carry over.
        let copied = pod(
            "copied",
            "n1",
            a.clone(),
            json!({"gpupool.io/assignment-signature": sign("good")}),
        );
        let good = pod(
            "good",
            "n1",
            a,
            json!({"gpupool.io/assignment-signature": sign("good")}),
        );
        let store = empty_store();
        let mut problems = vec![];
        let pods = [forged.clone(), copied.clone(), good];
        let m = find(&pods, "n1", 1, &store, Some(&key), &mut problems).unwrap();
        assert_eq!(m.pod, "good");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("ns/forged") && problems[0].contains("not signed"));
        assert!(problems[1].contains("ns/copied") && problems[1].contains("does not match"));
        let mut problems = vec![];
        let e = find(
            &[forged, copied],
            "n1",
            1,
            &store,
            Some(&key),
            &mut problems,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("refused") && e.contains("ns/forged"), "{e}");
    }
}
