//! The mutating admission webhook's decisions, without I/O: a pod whose containers ask for vGPU
//! resources is sent to the gpupool scheduler (`spec.schedulerName`), and a container that gives
//! memory or cores without a vGPU count gets `gpu: 1` (as HAMi does; the kubelet calls the
//! device plugin only for containers that list the count). Pods are never refused: what cannot
//! be fixed (another scheduler named, `spec.nodeName` set by the author) comes back as a warning
//! the user sees when creating the pod.

use crate::error::ExtenderError;
use gpupool_sched::request::ResourceNames;
use serde_json::{json, Value};

/// What the webhook does to pods.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The scheduler vGPU pods are sent to.
    pub scheduler_name: String,
    /// The vGPU resource names.
    pub names: ResourceNames,
}

/// The changes to one pod: JSON Patch operations (RFC 6902) and warnings for the user.
#[derive(Debug, Default, PartialEq)]
pub struct Mutation {
    /// Patch operations, in order.
    pub patch: Vec<Value>,
    /// Warnings shown to whoever creates the pod.
    pub warnings: Vec<String>,
}

/// A JSON Pointer token (`/` and `~` escaped).
fn token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The scheduler a pod names when its author named none.
const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// What the webhook changes in `pod` (a Pod object as JSON).
pub fn mutate(pod: &Value, s: &WebhookSettings) -> Mutation {
    let mut m = Mutation::default();
    let n = &s.names;
    let vgpu = [&n.gpu, &n.memory, &n.memory_percent, &n.cores, &n.priority];
    let extra = [&n.memory, &n.memory_percent, &n.cores];
    let mut asks = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod["spec"][list].as_array() else {
            continue;
        };
        for (i, c) in containers.iter().enumerate() {
            let limits = &c["resources"]["limits"];
            let has = |r: &String| limits.get(r.as_str()).is_some();
            if !vgpu.iter().any(|r| has(r)) {
                continue;
            }
            asks = true;
            if has(&n.gpu) || !extra.iter().any(|r| has(r)) {
                continue;
            }
            let at = format!("/spec/{list}/{i}/resources");
            m.patch.push(json!({"op": "add", "path": format!("{at}/limits/{}", token(&n.gpu)), "value": "1"}));
            // Requests were already defaulted from limits: keep them equal, as the API server
            // requires of extended resources.
            if c["resources"]["requests"].is_object() {
                m.patch.push(json!({"op": "add", "path": format!("{at}/requests/{}", token(&n.gpu)), "value": "1"}));
            }
        }
    }
    if !asks {
        return m;
    }
    let name = pod["metadata"]["name"]
        .as_str()
        .or_else(|| pod["metadata"]["generateName"].as_str())
        .unwrap_or("");
    match pod["spec"]["schedulerName"].as_str() {
        None | Some("") | Some(DEFAULT_SCHEDULER) => m.patch.push(
            json!({"op": "add", "path": "/spec/schedulerName", "value": s.scheduler_name}),
        ),
        Some(x) if x == s.scheduler_name => {}
        Some(other) => m.warnings.push(format!(
            "pod {name}: asks for vGPUs but names the scheduler {other:?}, not {:?}: its cards will not be assigned and the node refuses it at Allocate",
            s.scheduler_name
        )),
    }
    if pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|x| !x.is_empty())
    {
        m.warnings.push(format!(
            "pod {name}: asks for vGPUs with spec.nodeName set: it skips the scheduler, gets no card assignment and the node refuses it at Allocate"
        ));
    }
    m
}

/// Base64 (standard alphabet, padded), for the patch in the response.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The answer to an `AdmissionReview` (`admission.k8s.io/v1`) request body. Anything but a
/// Pod is allowed unchanged; a body that is not an `AdmissionReview` is an error naming why.
pub fn review(body: &[u8], s: &WebhookSettings) -> Result<Value, ExtenderError> {
    review_text(body, s).map_err(ExtenderError::Refused)
}

fn review_text(body: &[u8], s: &WebhookSettings) -> Result<Value, String> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    if review["kind"] != "AdmissionReview" {
        return Err(format!("not an AdmissionReview: kind {}", review["kind"]));
    }
    let request = &review["request"];
    let uid = request["uid"]
        .as_str()
        .ok_or("AdmissionReview without request.uid")?;
    let mut response = json!({"uid": uid, "allowed": true});
    let is_pod = request["kind"]["group"].as_str().unwrap_or("").is_empty()
        && request["kind"]["kind"] == "Pod";
    if is_pod && request["object"].is_object() {
        let m = mutate(&request["object"], s);
        if !m.patch.is_empty() {
            let patch = serde_json::to_vec(&m.patch).map_err(|e| e.to_string())?;
            response["patchType"] = "JSONPatch".into();
            response["patch"] = base64(&patch).into();
        }
        if !m.warnings.is_empty() {
            response["warnings"] = m.warnings.into();
        }
    }
    let api_version = review["apiVersion"]
        .as_str()
        .unwrap_or("admission.k8s.io/v1");
    Ok(json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            scheduler_name: "gpupool-scheduler".into(),
            names: ResourceNames::default(),
        }
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn vgpu_pods_go_to_the_gpupool_scheduler() {
        let p = pod(json!({"containers": [
            {"name": "a", "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "4k"}}}]}));
        let m = mutate(&p, &settings());
        assert_eq!(
            m.patch,
            vec![json!({"op": "add", "path": "/spec/schedulerName", "value": "gpupool-scheduler"})]
        );
        // Named the default scheduler: the same; named ours already: nothing to do.
        let mut q = p.clone();
        q["spec"]["schedulerName"] = "default-scheduler".into();
        assert_eq!(mutate(&q, &settings()).patch.len(), 1);
        q["spec"]["schedulerName"] = "gpupool-scheduler".into();
        assert_eq!(mutate(&q, &settings()), Mutation::default());
    }

    #[test]
    fn memory_without_a_count_gets_one_vgpu() {
        let p = pod(json!({"containers": [
            {"name": "a", "resources": {"limits": {"nvidia.com/gpumem": "3000"},
                                         "requests": {"nvidia.com/gpumem": "3000"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1"}}},
            {"name": "c", "resources": {"limits": {"nvidia.com/gpucores": "30"}}},
            {"name": "d", "resources": {"limits": {"nvidia.com/gpu": "2", "nvidia.com/gpucores": "30"}}}]}));
        let m = mutate(&p, &settings());
        let paths: Vec<&str> = m
            .patch
            .iter()
            .map(|o| o["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "/spec/containers/0/resources/limits/nvidia.com~1gpu",
                "/spec/containers/0/resources/requests/nvidia.com~1gpu",
                "/spec/containers/2/resources/limits/nvidia.com~1gpu",
                "/spec/schedulerName",
            ]
        );
        assert!(m.patch[..3].iter().all(|o| o["value"] == "1"));
    }

    #[test]
    fn pods_without_vgpus_are_left_alone() {
        let p = pod(
            json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "1"}}}],
                           "schedulerName": "other", "nodeName": "n1"}),
        );
        assert_eq!(mutate(&p, &settings()), Mutation::default());
        assert_eq!(mutate(&pod(json!({})), &settings()), Mutation::default());
    }

    #[test]
    fn what_cannot_be_fixed_is_a_warning() {
        let p = pod(
            json!({"schedulerName": "volcano", "nodeName": "n1", "containers": [
            {"name": "a", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}),
        );
        let m = mutate(&p, &settings());
        assert!(m.patch.is_empty());
        assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
        assert!(m.warnings[0].contains("\"volcano\"") && m.warnings[0].contains("pod p"));
        assert!(m.warnings[1].contains("spec.nodeName"));
    }

    #[test]
    fn a_review_answers_with_the_patch_and_the_uid() {
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "object": pod(json!({"containers": [
                            {"name": "a", "resources": {"limits": {"nvidia.com/gpumem": "1"}}}]}))}});
        let out = review(body.to_string().as_bytes(), &settings()).unwrap();
        let r = &out["response"];
        assert_eq!(
            (r["uid"].as_str(), r["allowed"].as_bool()),
            (Some("u-1"), Some(true))
        );
        assert_eq!(r["patchType"], "JSONPatch");
        let patch = r["patch"].as_str().unwrap();
        // The patch is the mutation's operations, base64-encoded.
        let expected =
            serde_json::to_vec(&mutate(&body["request"]["object"], &settings()).patch).unwrap();
        assert_eq!(patch, base64(&expected));
        // Not a pod: allowed, untouched.
        let mut other = body.clone();
        other["request"]["kind"]["kind"] = "ConfigMap".into();
        let out = review(other.to_string().as_bytes(), &settings()).unwrap();
        assert!(out["response"].get("patch").is_none());
        for bad in [
            &b"{"[..],
            br#"{"kind": "Pod"}"#,
            br#"{"kind": "AdmissionReview", "request": {}}"#,
        ] {
            assert!(review(bad, &settings()).is_err());
        }
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"[{\"op\"}]"), "W3sib3AifV0=");
    }
}
