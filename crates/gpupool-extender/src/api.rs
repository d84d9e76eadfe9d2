//! kube-scheduler's extender wire format (`k8s.io/kube-scheduler/extender/v1`): the Go structs
//! carry no JSON tags, so their fields travel with their Go names (`Pod`, `NodeNames`, …). Go's
//! decoder matches names without regard to case; ours accepts the lower-camel spellings too.

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The highest score an extender may give a node (`MaxExtenderPriority`).
pub const MAX_PRIORITY: i64 = 10;

/// A `v1.NodeList` as the scheduler sends it (kind and apiVersion may be absent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeList {
    /// List metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ListMeta>,
    /// The nodes.
    #[serde(default)]
    pub items: Vec<Node>,
}

/// Body of `filter` and `prioritize`: the pod and its candidate nodes, as full objects or, when
/// the extender is `nodeCacheCapable`, as names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtenderArgs {
    /// The pod being scheduled.
    #[serde(rename = "Pod", alias = "pod", default)]
    pub pod: Option<Pod>,
    /// Candidate nodes (`nodeCacheCapable: false`).
    #[serde(
        rename = "Nodes",
        alias = "nodes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nodes: Option<NodeList>,
    /// Candidate node names (`nodeCacheCapable: true`).
    #[serde(
        rename = "NodeNames",
        alias = "nodeNames",
        alias = "nodenames",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node_names: Option<Vec<String>>,
}

/// Answer to `filter`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExtenderFilterResult {
    /// Nodes that fit (when full objects were sent).
    #[serde(rename = "Nodes", alias = "nodes", default)]
    pub nodes: Option<NodeList>,
    /// Names of the nodes that fit (when names were sent).
    #[serde(rename = "NodeNames", alias = "nodeNames", default)]
    pub node_names: Option<Vec<String>>,
    /// Nodes that do not fit now, with the reason (preemption may help).
    #[serde(rename = "FailedNodes", alias = "failedNodes", default)]
    pub failed_nodes: BTreeMap<String, String>,
    /// Nodes that cannot fit whatever is preempted, with the reason.
    #[serde(
        rename = "FailedAndUnresolvableNodes",
        alias = "failedAndUnresolvableNodes",
        default
    )]
    pub failed_and_unresolvable: BTreeMap<String, String>,
    /// A failure of the whole call.
    #[serde(rename = "Error", alias = "error", default)]
    pub error: String,
}

impl PartialEq for NodeList {
    fn eq(&self, other: &NodeList) -> bool {
        self.items == other.items
    }
}

/// One node's score in the answer to `prioritize` (a `HostPriorityList` is a list of these).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostPriority {
    /// Node name.
    #[serde(rename = "Host", alias = "host")]
    pub host: String,
    /// Score, 0..=[`MAX_PRIORITY`].
    #[serde(rename = "Score", alias = "score")]
    pub score: i64,
}

/// Body of `bind`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtenderBindingArgs {
    /// Pod name.
    #[serde(rename = "PodName", alias = "podName", default)]
    pub pod_name: String,
    /// Pod namespace.
    #[serde(rename = "PodNamespace", alias = "podNamespace", default)]
    pub pod_namespace: String,
    /// Pod UID.
    #[serde(rename = "PodUID", alias = "podUID", alias = "podUid", default)]
    pub pod_uid: String,
    /// The node chosen.
    #[serde(rename = "Node", alias = "node", default)]
    pub node: String,
}

/// Answer to `bind`: empty `Error` on success.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExtenderBindingResult {
    /// What went wrong, if anything.
    #[serde(rename = "Error", alias = "error", default)]
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_field_names_and_lower_camel_both_parse() {
        let a: ExtenderArgs =
            serde_json::from_str(r#"{"Pod":{"metadata":{"name":"p"}},"NodeNames":["n1"]}"#)
                .unwrap();
        assert_eq!(a.node_names.unwrap(), ["n1"]);
        let b: ExtenderArgs =
            serde_json::from_str(r#"{"pod":{"metadata":{"name":"p"}},"nodenames":["n2"]}"#)
                .unwrap();
        assert_eq!(b.node_names.unwrap(), ["n2"]);
        assert_eq!(b.pod.unwrap().metadata.name.as_deref(), Some("p"));
    }

    #[test]
    fn answers_use_the_go_field_names() {
        let r = ExtenderFilterResult {
            node_names: Some(vec!["a".into()]),
            ..Default::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["NodeNames"][0], "a");
        assert_eq!(v["Error"], "");
        assert!(v.get("FailedAndUnresolvableNodes").is_some());
        let h = serde_json::to_value(HostPriority {
            host: "a".into(),
            score: 3,
        })
        .unwrap();
        assert_eq!(h, serde_json::json!({"Host": "a", "Score": 3}));
    }
}

/// Appends `s` to `out` as a JSON string. Node names are DNS names (nothing to escape) and
/// are copied as they are; anything else goes through `serde_json`.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // What JSON escapes: control characters, quote and backslash (serde_json writes the rest,
    // UTF-8 included, as it is). Folded without stopping early, which compiles to a few
    // instructions a byte for thousands of node names per answer.
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a str to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Appends `names` to `out` as a JSON array of strings.
pub fn push_json_names<'a>(out: &mut Vec<u8>, names: impl IntoIterator<Item = &'a str>) {
    out.push(b'[');
    for (i, n) in names.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, n);
    }
    out.push(b']');
}

/// Appends `entries` to `out` as a JSON object of strings, in the order given.
pub fn push_json_map<'a>(out: &mut Vec<u8>, entries: impl IntoIterator<Item = (&'a str, &'a str)>) {
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, k);
        out.push(b':');
        push_json_str(out, v);
    }
    out.push(b'}');
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn names_are_written_as_serde_json_writes_them() {
        let names = [
            "node-1",
            "a.b.example.com",
            "we\"ird\n",
            "ünï",
            "",
            "back\\slash",
            "tab\tand\u{7f}del",
            "\u{1f}",
        ];
        let mut out = Vec::new();
        push_json_names(&mut out, names);
        assert_eq!(out, serde_json::to_vec(&names).unwrap());
        let back: Vec<String> = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, names);
        let mut out = Vec::new();
        let entries = names.iter().zip(names.iter().rev()).map(|(k, v)| (*k, *v));
        push_json_map(&mut out, entries.clone());
        let want: serde_json::Map<String, serde_json::Value> = entries
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
            .collect();
        let back: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&out).unwrap();
        assert_eq!(back, want);
        out.clear();
        push_json_map(&mut out, []);
        assert_eq!(out, b"{}");
    }
}
