//! Every manifest under `deploy/` is read into its `k8s-openapi` type and written back: a field
//! the type does not know (a typo) is lost on the way and fails the test. The scheduler's
//! `KubeSchedulerConfiguration` is checked field by field against the extender it points to,
//! and the extender's command line is run through `gpupool scheduler --dry-run`.

mod common;
use common::*;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn manifests(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            manifests(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// Every document of every manifest, with where it came from.
fn documents() -> Vec<(String, Value)> {
    let mut files = Vec::new();
    manifests(&root().join("deploy"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no manifests under deploy/");
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, d) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let v = Value::deserialize(d)
                .unwrap_or_else(|e| panic!("{} document {i}: {e}", f.display()));
            if !v.is_null() {
                docs.push((format!("{} document {i}", f.display()), v));
            }
        }
    }
    docs
}

/// Drops nulls and empty objects, which a round trip may add or remove without meaning.
fn normalise(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalise(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

/// The first path where `a` and `b` differ.
fn difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x.iter().find_map(|(k, v)| match y.get(k) {
            None => Some(format!("{at}.{k}")),
            Some(w) => difference(v, w, &format!("{at}.{k}")),
        }),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| difference(v, w, &format!("{at}[{i}]"))),
        _ => (a != b).then(|| at.to_string()),
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(what: &str, v: &Value) -> T {
    let typed: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    if let Some(path) = difference(&normalise(v), &normalise(&back), "") {
        panic!("{what}: {path} is not part of the type (typo?) or changed on the way");
    }
    typed
}

#[test]
fn every_manifest_is_a_valid_kubernetes_object() {
    let mut kinds = Vec::new();
    for (what, v) in documents() {
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "ServiceAccount" => drop(round_trip::<ServiceAccount>(&what, &v)),
            "ClusterRole" => drop(round_trip::<ClusterRole>(&what, &v)),
            "ClusterRoleBinding" => drop(round_trip::<ClusterRoleBinding>(&what, &v)),
            "Role" => drop(round_trip::<Role>(&what, &v)),
            "RoleBinding" => drop(round_trip::<RoleBinding>(&what, &v)),
            "ConfigMap" => drop(round_trip::<ConfigMap>(&what, &v)),
            "Deployment" => drop(round_trip::<Deployment>(&what, &v)),
            "DaemonSet" => drop(round_trip::<DaemonSet>(&what, &v)),
            "Service" => drop(round_trip::<Service>(&what, &v)),
            "MutatingWebhookConfiguration" => {
                drop(round_trip::<MutatingWebhookConfiguration>(&what, &v))
            }
            other => panic!("{what}: kind {other:?} is not checked by this test"),
        }
        kinds.push(kind);
    }
    for k in [
        "Deployment",
        "DaemonSet",
        "ConfigMap",
        "ClusterRole",
        "ServiceAccount",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} in deploy/");
    }
}

/// The manifest of `kind` named `name`.
fn find(docs: &[(String, Value)], kind: &str, name: &str) -> Value {
    docs.iter()
        .find(|(_, v)| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
        .1
        .clone()
}

/// `kubescheduler.config.k8s.io/v1` `KubeSchedulerConfiguration`, the parts we set (unknown
/// fields are refused so that a typo fails).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct SchedulerConfig {
    api_version: String,
    kind: String,
    leader_election: Option<LeaderElection>,
    profiles: Vec<Profile>,
    extenders: Vec<ExtenderConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct LeaderElection {
    leader_elect: bool,
    resource_namespace: String,
    resource_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Profile {
    scheduler_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ExtenderConfig {
    url_prefix: String,
    filter_verb: String,
    prioritize_verb: String,
    bind_verb: String,
    weight: i64,
    #[serde(rename = "enableHTTPS")]
    enable_https: bool,
    node_cache_capable: bool,
    ignorable: bool,
    http_timeout: String,
    managed_resources: Vec<ManagedResource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ManagedResource {
    name: String,
    ignored_by_scheduler: bool,
}

#[test]
fn the_scheduler_configuration_points_at_the_extender_it_runs_with() {
    let docs = documents();
    let find = |kind: &str, name: &str| find(&docs, kind, name);
    let cm: ConfigMap =
        serde_json::from_value(find("ConfigMap", "gpupool-scheduler-config")).unwrap();
    let text = &cm.data.unwrap()["config.yaml"];
    let config: SchedulerConfig = serde_yaml::from_str(text).expect("KubeSchedulerConfiguration");
    assert_eq!(config.api_version, "kubescheduler.config.k8s.io/v1");
    assert_eq!(config.kind, "KubeSchedulerConfiguration");
    assert_eq!(config.profiles[0].scheduler_name, "gpupool-scheduler");
    let ext = &config.extenders[0];
    // The verbs are the extender's routes.
    assert_eq!(
        (
            ext.filter_verb.as_str(),
            ext.prioritize_verb.as_str(),
            ext.bind_verb.as_str()
        ),
        ("filter", "prioritize", "bind")
    );
    assert!(ext.node_cache_capable && !ext.enable_https && ext.weight >= 1);
    // Every vGPU resource is left to the extender.
    let managed: Vec<&str> = ext
        .managed_resources
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    let names = gpupool_sched::request::ResourceNames::default();
    for r in [
        &names.gpu,
        &names.memory,
        &names.memory_percent,
        &names.cores,
        &names.priority,
    ] {
        assert!(
            managed.contains(&r.as_str()),
            "{r} not managed by the extender"
        );
    }
    assert!(ext.managed_resources.iter().all(|m| m.ignored_by_scheduler));

    // The Deployment mounts that ConfigMap, runs kube-scheduler on it, and runs the extender
    // where urlPrefix points; its flags are accepted by `gpupool scheduler`.
    let d: Deployment = serde_json::from_value(find("Deployment", "gpupool-scheduler")).unwrap();
    let spec = d.spec.unwrap().template.spec.unwrap();
    let volume = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "config")
        .unwrap();
    assert_eq!(volume.config_map.unwrap().name, "gpupool-scheduler-config");
    let sched = spec
        .containers
        .iter()
        .find(|c| c.name == "kube-scheduler")
        .unwrap();
    let mount = &sched.volume_mounts.as_ref().unwrap()[0].mount_path;
    assert!(sched
        .command
        .as_ref()
        .unwrap()
        .contains(&format!("--config={mount}/config.yaml")));
    let extender = spec
        .containers
        .iter()
        .find(|c| c.name == "gpupool-extender")
        .unwrap();
    let cmd = extender.command.clone().unwrap();
    assert_eq!(&cmd[..2], ["gpupool", "scheduler"]);
    let listen = cmd
        .iter()
        .find_map(|a| a.strip_prefix("--listen="))
        .expect("--listen");
    assert_eq!(ext.url_prefix, format!("http://{listen}"));
    let key = test_key_file("scheduler");
    let mut args: Vec<String> = cmd[1..]
        .iter()
        .map(|a| with_local_key(a, &key, &extender.volume_mounts))
        .collect();
    args.push("--dry-run".into());
    let out = gpupool_ok(&args);
    assert!(String::from_utf8_lossy(&out.stdout).contains(listen));
    // Without the key (the Secret not created), it says what is missing.
    let out = Command::new(gpupool())
        .args(
            cmd[1..]
                .iter()
                .filter(|a| !a.starts_with("--assignment-key-file")),
        )
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--assignment-key-file"));
    // The extender refuses the resource domains the node agent refuses.
    for bad in ["Example.com", "example.com/gpu", "-x.io"] {
        let out = Command::new(gpupool())
            .args([
                "scheduler",
                "--dry-run",
                &format!("--resource-domain={bad}"),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("--resource-domain") && err.contains(bad),
            "{bad}: {err}"
        );
    }
}

#[test]
fn the_webhook_is_reached_where_it_listens_and_runs_with_its_flags() {
    let docs = documents();
    let find = |kind: &str, name: &str| find(&docs, kind, name);
    let mwc: MutatingWebhookConfiguration =
        serde_json::from_value(find("MutatingWebhookConfiguration", "gpupool")).unwrap();
    let hook = &mwc.webhooks.unwrap()[0];
    let svc_ref = hook
        .client_config
        .service
        .clone()
        .expect("a Service reference");
    assert_eq!(
        svc_ref.path.as_deref(),
        Some("/mutate"),
        "the webhook's route"
    );
    assert_eq!(hook.admission_review_versions, ["v1"]);
    assert_eq!(
        hook.failure_policy.as_deref(),
        Some("Ignore"),
        "pods are never blocked"
    );
    let rule = &hook.rules.as_ref().unwrap()[0];
    assert_eq!(rule.resources.as_deref(), Some(&["pods".to_string()][..]));
    let svc: Service = serde_json::from_value(find("Service", &svc_ref.name)).unwrap();
    assert_eq!(
        svc.metadata.namespace.as_deref(),
        Some(svc_ref.namespace.as_str())
    );
    let port = svc
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| Some(p.port) == svc_ref.port)
        .expect("the Service has the referenced port")
        .clone();
    let target = match port.target_port {
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p)) => p,
        other => panic!("targetPort {other:?}"),
    };
    // The Service selects the pod that runs the webhook, on the port it listens on.
    let d: Deployment = serde_json::from_value(find("Deployment", "gpupool-scheduler")).unwrap();
    let template = d.spec.unwrap().template;
    let labels = template.metadata.unwrap().labels.unwrap();
    for (k, v) in svc.spec.unwrap().selector.unwrap() {
        assert_eq!(labels.get(&k), Some(&v), "selector {k}={v}");
    }
    let spec = template.spec.unwrap();
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == "gpupool-webhook")
        .expect("the webhook container");
    let cmd = c.command.clone().unwrap();
    assert_eq!(&cmd[..2], ["gpupool", "webhook"]);
    let listen = cmd
        .iter()
        .find_map(|a| a.strip_prefix("--listen="))
        .expect("--listen");
    assert!(
        listen.ends_with(&format!(":{target}")),
        "{listen} vs {target}"
    );
    // Its certificate files come from the mounted Secret; with test files in their place the
    // flags are accepted.
    let mount = c.volume_mounts.as_ref().unwrap()[0].mount_path.clone();
    let dir = std::env::temp_dir().join(format!("gpupool-deploy-webhook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=gpupool-webhook.kube-system.svc"])
        .arg("-keyout")
        .arg(dir.join("tls.key"))
        .arg("-out")
        .arg(dir.join("tls.crt"))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args: Vec<String> = cmd[1..]
        .iter()
        .map(|a| a.replace(&mount, &dir.display().to_string()))
        .collect();
    assert!(args.iter().any(|a| a.contains(&dir.display().to_string())));
    args.push("--dry-run".into());
    let out = gpupool_ok(&args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("gpupool-scheduler"));
    // A missing certificate is named.
    let out = Command::new(gpupool())
        .args(cmd[1..].iter())
        .arg("--dry-run")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--tls-cert-file"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A signing key in a file of its own, standing in for the mounted Secret.
fn test_key_file(name: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("gpupool-deploy-key-{}-{name}", std::process::id()));
    std::fs::write(&path, "k".repeat(32)).unwrap();
    path
}

/// `--assignment-key-file=…` pointed at `local`, after checking it lies in a mounted Secret.
fn with_local_key(
    arg: &str,
    local: &std::path::Path,
    mounts: &Option<Vec<k8s_openapi::api::core::v1::VolumeMount>>,
) -> String {
    let Some(path) = arg.strip_prefix("--assignment-key-file=") else {
        return arg.to_string();
    };
    let mount = mounts
        .iter()
        .flatten()
        .find(|m| m.name == "assignment-key")
        .expect("the assignment-key volume is mounted");
    assert!(
        path.starts_with(&mount.mount_path),
        "{path} in {}",
        mount.mount_path
    );
    format!("--assignment-key-file={}", local.display())
}

#[test]
fn the_node_agent_runs_with_its_config_and_sees_host_paths_as_they_are() {
    let docs = documents();
    let find = |kind: &str, name: &str| find(&docs, kind, name);
    let cm: ConfigMap = serde_json::from_value(find("ConfigMap", "gpupool-node-config")).unwrap();
    let text = cm.data.unwrap()["config.yaml"].clone();
    let ds: DaemonSet = serde_json::from_value(find("DaemonSet", "gpupool-node")).unwrap();
    let spec = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("gpupool-node"));
    assert_eq!(
        spec.host_pid,
        Some(true),
        "the audit needs the host's pids (NVML reports them)"
    );
    let agent = spec
        .containers
        .iter()
        .find(|c| c.name == "gpupool-node")
        .unwrap();
    // NODE_NAME comes from the downward API.
    let env = agent.env.clone().unwrap();
    let node_name = env.iter().find(|e| e.name == "NODE_NAME").unwrap();
    assert_eq!(
        node_name
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "spec.nodeName"
    );
    // The command line with the ConfigMap's file is accepted; the settings it prints are the
    // ones the hostPath volumes are mounted at (the agent writes host paths into Allocate).
    let cmd = agent.command.clone().unwrap();
    assert_eq!(&cmd[..2], ["gpupool", "node"]);
    let config_path = cmd
        .iter()
        .find_map(|a| a.strip_prefix("--config="))
        .expect("--config");
    let mounts = agent.volume_mounts.clone().unwrap();
    let config_mount = mounts.iter().find(|m| m.name == "config").unwrap();
    assert!(config_path.starts_with(&config_mount.mount_path));
    let dir = std::env::temp_dir().join(format!("gpupool-deploy-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let local = dir.join("config.yaml");
    std::fs::write(&local, &text).unwrap();
    let key = test_key_file("node");
    let mut args: Vec<String> = cmd[1..]
        .iter()
        .map(|a| {
            if a.starts_with("--config=") {
                format!("--config={}", local.display())
            } else {
                with_local_key(a, &key, &agent.volume_mounts)
            }
        })
        .collect();
    args.extend(["--dry-run".into(), "--node-name".into(), "n1".into()]);
    let out = gpupool_ok(&args);
    let settings = String::from_utf8_lossy(&out.stdout);
    let volumes = spec.volumes.unwrap();
    for (name, setting) in [("device-plugins", "kubelet_dir"), ("state", "state_dir")] {
        let host = volumes
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.host_path.clone())
            .unwrap_or_else(|| panic!("hostPath volume {name}"))
            .path;
        let mount = &mounts.iter().find(|m| m.name == name).unwrap().mount_path;
        assert_eq!(&host, mount, "{name} is mounted at its host path");
        assert!(
            settings.contains(&format!("{setting}: \"{host}\"")),
            "{setting} is {host}: {settings}"
        );
    }
    let library = volumes
        .iter()
        .find(|v| v.name == "library")
        .and_then(|v| v.host_path.clone())
        .unwrap()
        .path;
    assert!(
        settings.contains(&format!("library: \"{library}/libgpupool.so\"")),
        "{settings}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
