//! The Helm chart `deploy/helm/gpupool`, rendered by the real helm (`scripts/fetch-helm`).

use super::root;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The namespace the tests install into (the service-account tokens of the control plane
/// name it).
pub const NAMESPACE: &str = "kube-system";

/// The helm binary, fetched once.
pub fn helm() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = Command::new(root().join("scripts/fetch-helm"))
            .output()
            .expect("scripts/fetch-helm");
        assert!(
            out.status.success(),
            "scripts/fetch-helm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// The chart's folder.
pub fn chart() -> PathBuf {
    root().join("deploy/helm/gpupool")
}

/// `helm template` with `--set` values `sets`: the rendered text, or helm's error.
pub fn render(sets: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(helm());
    cmd.args(["template", "gpupool"])
        .arg(chart())
        .args(["--namespace", NAMESPACE]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("helm template");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Every object of a multi-document YAML text, with where it came from (helm's `# Source:`).
pub fn documents(text: &str) -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    for (i, part) in text.split("\n---").enumerate() {
        let source = part
            .lines()
            .find_map(|l| l.strip_prefix("# Source: "))
            .unwrap_or("?")
            .to_string();
        let v = Value::deserialize(serde_yaml::Deserializer::from_str(part))
            .unwrap_or_else(|e| panic!("{source} (document {i}): {e}\n{part}"));
        if !v.is_null() {
            docs.push((format!("{source} (document {i})"), v));
        }
    }
    docs
}

/// The chart rendered with `sets`, as objects; panics with helm's error.
pub fn objects(sets: &[&str]) -> Vec<(String, Value)> {
    documents(&render(sets).unwrap_or_else(|e| panic!("helm template {sets:?}: {e}")))
}

/// The object of `kind` named `name`.
pub fn find(docs: &[(String, Value)], kind: &str, name: &str) -> Value {
    docs.iter()
        .find(|(_, v)| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
        .1
        .clone()
}
