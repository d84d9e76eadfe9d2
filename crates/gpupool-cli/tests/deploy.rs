//! The Helm chart `deploy/helm/gpupool`, rendered by the real helm with its defaults and with
//! every switch turned: each object is read into its `k8s-openapi` type and written back (a
//! field the type does not know, a typo, is lost on the way and fails the test); values reach
//! the objects they configure and bad values are refused by name. The scheduler's
//! `KubeSchedulerConfiguration` is checked field by field against the extender it points to,
//! and the daemons' command lines are run through their `--dry-run`.

mod common;
use common::chart::{self, find, objects, render};
use common::*;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::process::Command;

/// The chart with its defaults.
fn documents() -> Vec<(String, Value)> {
    objects(&[])
}

/// Values that turn every switch away from its default.
const EVERY_SWITCH: &[&str] = &[
    "resourceDomain=example.com",
    "image.tag=9.9.9",
    "imagePullSecrets[0].name=registry",
    "assignmentKey.create=false",
    "scheduler.name=vgpu",
    "scheduler.nodePolicy=spread",
    "scheduler.gpuPolicy=spread",
    "scheduler.numa=true",
    "scheduler.memoryOversubscription=1.5",
    "scheduler.nodeSelector.role=control",
    "scheduler.tolerations[0].operator=Exists",
    "webhook.tls.create=false",
    "webhook.tls.caBundle=Q0E=",
    "webhook.failurePolicy=Fail",
    "node.split=4",
    "node.auditPolicy=kill",
    "node.cdi=true",
    "node.checkpointIdleAfter=5m",
    "node.roomWait=45s",
    "node.spillMemory=256Gi",
    "node.kubeletDir=/data/kubelet/device-plugins",
    "node.stateDir=/data/gpupool",
    "node.libraryDir=/opt/gpupool/lib",
    "node.metricsPort=9500",
    "metrics.serviceMonitor.enabled=true",
    "metrics.serviceMonitor.labels.release=prometheus",
    "remoteServer.enabled=true",
    "remoteServer.port=7443",
    "remoteServer.tlsSecret=remote-tls",
    "remoteServer.tlsClientCaSecret=remote-client-ca",
    "remoteServer.clientsSecret=remote-clients",
    "remoteServer.hostNetwork=false",
    "remoteServer.priorityClassName=gpu-servers",
    "remoteServer.metricsPort=9501",
];

/// `monitoring.coreos.com/v1` `ServiceMonitor`, the parts the chart sets (unknown fields are
/// refused so that a typo fails).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ServiceMonitorSpec {
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    namespace_selector: NamespaceSelector,
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct NamespaceSelector {
    match_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Endpoint {
    port: String,
    path: String,
    interval: String,
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

/// Checks every object of `docs` against its type; returns the kinds seen.
fn check_objects(docs: &[(String, Value)]) -> Vec<String> {
    let mut kinds = Vec::new();
    for (what, v) in docs {
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let labels = &v["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/part-of"], "gpupool",
            "{what}: labels"
        );
        match kind.as_str() {
            "ServiceAccount" => drop(round_trip::<ServiceAccount>(what, v)),
            "ClusterRole" => drop(round_trip::<ClusterRole>(what, v)),
            "ClusterRoleBinding" => drop(round_trip::<ClusterRoleBinding>(what, v)),
            "Role" => drop(round_trip::<Role>(what, v)),
            "RoleBinding" => drop(round_trip::<RoleBinding>(what, v)),
            "ConfigMap" => drop(round_trip::<ConfigMap>(what, v)),
            "Secret" => drop(round_trip::<Secret>(what, v)),
            "Deployment" => drop(round_trip::<Deployment>(what, v)),
            "DaemonSet" => drop(round_trip::<DaemonSet>(what, v)),
            "Service" => drop(round_trip::<Service>(what, v)),
            "MutatingWebhookConfiguration" => {
                drop(round_trip::<MutatingWebhookConfiguration>(what, v))
            }
            "ServiceMonitor" => drop(
                serde_json::from_value::<ServiceMonitor>(v.clone())
                    .unwrap_or_else(|e| panic!("{what}: {e}")),
            ),
            other => panic!("{what}: kind {other:?} is not checked by this test"),
        }
        kinds.push(kind);
    }
    kinds
}

#[test]
fn every_object_the_chart_renders_is_a_valid_kubernetes_object() {
    let out = Command::new(chart::helm())
        .args(["lint", "--strict"])
        .arg(chart::chart())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm lint: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let kinds = check_objects(&documents());
    for k in [
        "Deployment",
        "DaemonSet",
        "ConfigMap",
        "ClusterRole",
        "ServiceAccount",
        "Secret",
        "MutatingWebhookConfiguration",
        "Service",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} in the chart");
    }
    assert!(
        !kinds.iter().any(|x| x == "ServiceMonitor"),
        "off by default"
    );
    let kinds = check_objects(&objects(EVERY_SWITCH));
    assert!(kinds.iter().any(|x| x == "ServiceMonitor"));
    assert!(!kinds.iter().any(|x| x == "Secret"), "both Secrets brought");
    // Parts switched off leave nothing of theirs behind.
    let docs = objects(&["scheduler.enabled=false", "metrics.service=false"]);
    check_objects(&docs);
    assert!(docs.iter().all(|(_, v)| {
        let name = v["metadata"]["name"].as_str().unwrap();
        !name.starts_with("gpupool-scheduler") && !name.contains("webhook") && name != "gpupool"
    }));
    let docs = objects(&["node.enabled=false"]);
    assert!(docs.iter().all(|(_, v)| !v["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("gpupool-node")));
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
    // Its certificate files come from the Secret the chart made: the CA in the configuration's
    // caBundle signed a certificate for the Service's name, and the webhook accepts the files.
    let volume = spec
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "webhook-tls")
        .unwrap();
    let secret_name = volume.secret.as_ref().unwrap().secret_name.clone().unwrap();
    let secret: Secret = serde_json::from_value(find("Secret", &secret_name)).unwrap();
    let data = secret.data.unwrap();
    assert_eq!(
        hook.client_config.ca_bundle.as_ref(),
        Some(&data["ca.crt"]),
        "caBundle is the Secret's CA"
    );
    let mount = c.volume_mounts.as_ref().unwrap()[0].mount_path.clone();
    let dir = std::env::temp_dir().join(format!("gpupool-deploy-webhook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["ca.crt", "tls.crt", "tls.key"] {
        std::fs::write(dir.join(f), &data[f].0).unwrap();
    }
    let host = format!("{}.{}.svc", svc_ref.name, svc_ref.namespace);
    let out = Command::new("openssl")
        .args(["verify", "-verify_hostname", &host, "-CAfile"])
        .arg(dir.join("ca.crt"))
        .arg(dir.join("tls.crt"))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "the certificate for {host}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("openssl")
        .args(["verify", "-verify_hostname", "elsewhere.example", "-CAfile"])
        .arg(dir.join("ca.crt"))
        .arg(dir.join("tls.crt"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "the check can fail");
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
    node_agent_runs_with_its_config(&documents());
    node_agent_runs_with_its_config(&objects(EVERY_SWITCH));
}

/// The node agent of `docs` accepts its command line and ConfigMap, and the host paths it
/// writes into Allocate answers are where its volumes are mounted.
fn node_agent_runs_with_its_config(docs: &[(String, Value)]) {
    let find = |kind: &str, name: &str| find(docs, kind, name);
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

#[test]
fn the_remote_servers_run_with_their_flags_and_secrets() {
    assert!(
        documents()
            .iter()
            .all(|(_, v)| v["metadata"]["name"] != "gpupool-remote-server"),
        "off by default"
    );
    remote_server_runs_with_its_flags(&objects(&["remoteServer.enabled=true"]), "tcp", 7070);
    let every = objects(EVERY_SWITCH);
    remote_server_runs_with_its_flags(&every, "tls", 7443);
    let ds = find(&every, "DaemonSet", "gpupool-remote-server");
    assert!(
        containers(&ds)[0]["command"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--tls-client-ca=/etc/gpupool-remote-client-ca/ca.crt"),
        "client certificates asked for"
    );
    exporter_sees_the_server_s_tenants(&objects(&["remoteServer.enabled=true"]), 9401);
    exporter_sees_the_server_s_tenants(&every, 9501);
    let without = objects(&["remoteServer.enabled=true", "remoteServer.metricsPort=0"]);
    let ds = find(&without, "DaemonSet", "gpupool-remote-server");
    assert_eq!(containers(&ds).len(), 1, "no exporter");
}

/// The exporter beside the remote server of `docs` reads the folders the server's sessions
/// write (the same volume at the same path), serves on `port`, and starts with its command line.
fn exporter_sees_the_server_s_tenants(docs: &[(String, Value)], port: u16) {
    let ds = find(docs, "DaemonSet", "gpupool-remote-server");
    let all = containers(&ds);
    let by_name = |n: &str| all.iter().find(|c| c["name"] == n).unwrap().clone();
    let (server, exporter) = (by_name("gpupool-remote-server"), by_name("metrics"));
    let tmp = |c: &Value| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "tmp")
            .map(|m| m["mountPath"].clone())
    };
    assert!(tmp(&server).is_some());
    assert_eq!(tmp(&server), tmp(&exporter), "the sessions' folders");
    assert_eq!(exporter["ports"][0]["containerPort"], port);
    assert_eq!(
        ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
        port.to_string()
    );
    let cmd: Vec<String> = exporter["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(&cmd[..2], ["gpupool", "exporter"]);
    assert_eq!(flag(&exporter, "listen"), format!("0.0.0.0:{port}"));
    // The rendered flags start an exporter (on a free local port, on a simulated card).
    let state = std::env::temp_dir().join(format!(
        "gpupool-deploy-exporter-{}-{port}",
        std::process::id()
    ));
    let mut args: Vec<String> = cmd[1..]
        .iter()
        .map(|a| {
            if a.starts_with("--listen=") {
                "--listen=127.0.0.1:0".to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    args.extend(["--sim".into(), "1xH100".into(), "--state".into()]);
    args.push(state.display().to_string());
    let mut child = Command::new(gpupool())
        .args(&args)
        .env("GPUPOOL_LIB_DIR", lib_dir())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&state);
    assert!(line.contains("serving http://127.0.0.1:"), "{line}");
}

/// The remote server of `docs` listens on `scheme://0.0.0.0:port` with the node's cards, its
/// Service names that port, and its command line, with the files of its Secrets where they
/// are mounted, is accepted by `gpupool serve --check`.
fn remote_server_runs_with_its_flags(docs: &[(String, Value)], scheme: &str, port: i32) {
    let ds: DaemonSet =
        serde_json::from_value(find(docs, "DaemonSet", "gpupool-remote-server")).unwrap();
    let spec = ds.spec.unwrap().template.spec.unwrap();
    let server = &spec.containers[0];
    let env = server.env.clone().unwrap();
    assert!(env
        .iter()
        .any(|e| e.name == "NVIDIA_VISIBLE_DEVICES" && e.value.as_deref() == Some("all")));
    assert_eq!(server.ports.as_ref().unwrap()[0].container_port, port);
    let svc: Service =
        serde_json::from_value(find(docs, "Service", "gpupool-remote-server")).unwrap();
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, port);

    let dir = std::env::temp_dir().join(format!(
        "gpupool-deploy-remote-{}-{scheme}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    common::certs::ca_and_server(&dir, "deploy-ca", "gpu-server");
    std::fs::write(
        dir.join("clients"),
        "alpha 0123456789abcdef0123456789abcdef memory=8GiB\nbeta fedcba9876543210fedcba9876543210\n",
    )
    .unwrap();
    // Each file flag names a file of a mounted Secret: the local stand-in takes its place.
    let volumes = spec.volumes.clone().unwrap();
    let mounts = server.volume_mounts.clone().unwrap();
    let local = |arg: &str| -> String {
        let Some((flag, path)) = arg.split_once('=') else {
            return arg.to_string();
        };
        let (volume, key, file) = match flag {
            "--clients" => ("clients", "clients", "clients"),
            "--tls-cert" => ("tls", "tls.crt", "server.crt"),
            "--tls-key" => ("tls", "tls.key", "server.key"),
            "--tls-client-ca" => ("client-ca", "ca.crt", "ca.crt"),
            _ => return arg.to_string(),
        };
        let mount = mounts.iter().find(|m| m.name == volume).unwrap();
        assert_eq!(path, format!("{}/{key}", mount.mount_path), "{flag}");
        assert!(
            volumes
                .iter()
                .any(|v| v.name == volume && v.secret.is_some()),
            "{volume} is a Secret"
        );
        format!("{flag}={}", dir.join(file).display())
    };
    let cmd = server.command.clone().unwrap();
    assert_eq!(&cmd[..2], ["gpupool", "serve"]);
    let mut args: Vec<String> = cmd[1..].iter().map(|a| local(a)).collect();
    args.push("--check".into());
    let out = gpupool_ok(&args);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "would listen on {scheme}://0.0.0.0:{port} for 2 client(s): alpha, beta"
        )),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The containers (init containers too) of the pod template of `v`.
fn containers(v: &Value) -> Vec<Value> {
    let spec = &v["spec"]["template"]["spec"];
    let mut all = spec["containers"].as_array().cloned().unwrap_or_default();
    all.extend(
        spec["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    all
}

/// The argument of flag `--name=` in container `c`'s command.
fn flag(c: &Value, name: &str) -> String {
    c["command"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| a.as_str().unwrap().strip_prefix(&format!("--{name}=")))
        .unwrap_or_else(|| panic!("--{name} in {}", c["name"]))
        .to_string()
}

#[test]
fn the_chart_s_values_reach_the_objects_they_configure() {
    let docs = objects(EVERY_SWITCH);
    let find = |kind: &str, name: &str| find(&docs, kind, name);
    let scheduler = find("Deployment", "gpupool-scheduler");
    let node = find("DaemonSet", "gpupool-node");
    let mut gpupool_containers = 0;
    for c in containers(&scheduler).iter().chain(&containers(&node)) {
        if c["command"][0] == "gpupool" {
            assert_eq!(c["image"], "ghcr.io/gpupool/gpupool:9.9.9", "{}", c["name"]);
            gpupool_containers += 1;
        }
    }
    assert_eq!(
        gpupool_containers, 4,
        "extender, webhook, agent, library installer"
    );
    for pod in [&scheduler, &node] {
        assert_eq!(
            pod["spec"]["template"]["spec"]["imagePullSecrets"][0]["name"],
            "registry"
        );
    }

    // The scheduler's name: profile, lease, the role allowing that lease, the account, the
    // webhook's mutation.
    let cm: ConfigMap =
        serde_json::from_value(find("ConfigMap", "gpupool-scheduler-config")).unwrap();
    let config: SchedulerConfig = serde_yaml::from_str(&cm.data.unwrap()["config.yaml"]).unwrap();
    assert_eq!(config.profiles[0].scheduler_name, "vgpu");
    let lease = config.leader_election.unwrap();
    assert_eq!(
        (
            lease.resource_namespace.as_str(),
            lease.resource_name.as_str()
        ),
        (chart::NAMESPACE, "vgpu")
    );
    let role: Role =
        serde_json::from_value(find("Role", "gpupool-scheduler-leader-election")).unwrap();
    assert!(role
        .rules
        .unwrap()
        .iter()
        .any(
            |r| r.resource_names.as_deref() == Some(&["vgpu".to_string()][..])
                && r.verbs.contains(&"update".to_string())
        ));
    drop(find("ServiceAccount", "vgpu"));
    assert_eq!(
        scheduler["spec"]["template"]["spec"]["serviceAccountName"],
        "vgpu"
    );
    assert_eq!(
        scheduler["spec"]["template"]["spec"]["nodeSelector"]["role"],
        "control"
    );
    let pods = containers(&scheduler);
    let by_name = |n: &str| pods.iter().find(|c| c["name"] == n).unwrap().clone();
    assert_eq!(flag(&by_name("gpupool-webhook"), "scheduler-name"), "vgpu");

    // The resource domain and policies.
    assert!(config.extenders[0]
        .managed_resources
        .iter()
        .all(|m| m.name.starts_with("example.com/")));
    for c in ["gpupool-extender", "gpupool-webhook"] {
        assert_eq!(flag(&by_name(c), "resource-domain"), "example.com");
    }
    assert_eq!(flag(&by_name("gpupool-extender"), "node-policy"), "spread");
    assert_eq!(flag(&by_name("gpupool-extender"), "gpu-policy"), "spread");
    assert_eq!(
        flag(&by_name("gpupool-extender"), "memory-oversubscription"),
        "1.5"
    );
    assert!(by_name("gpupool-extender")["command"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "--numa"));
    // That command line is accepted as rendered.
    let extender = by_name("gpupool-extender");
    let mounts: Option<Vec<k8s_openapi::api::core::v1::VolumeMount>> =
        serde_json::from_value(extender["volumeMounts"].clone()).unwrap();
    let key = test_key_file("every-switch");
    let mut args: Vec<String> = extender["command"].as_array().unwrap()[1..]
        .iter()
        .map(|a| with_local_key(a.as_str().unwrap(), &key, &mounts))
        .collect();
    args.push("--dry-run".into());
    let out = gpupool_ok(&args);
    let settings = String::from_utf8_lossy(&out.stdout);
    assert!(settings.contains("example.com"), "{settings}");

    // The node agent's settings.
    let cm: ConfigMap = serde_json::from_value(find("ConfigMap", "gpupool-node-config")).unwrap();
    let settings: serde_yaml::Value =
        serde_yaml::from_str(&cm.data.unwrap()["config.yaml"]).unwrap();
    for (key, want) in [
        ("resourceDomain", serde_yaml::Value::from("example.com")),
        ("split", 4.into()),
        ("auditPolicy", "kill".into()),
        ("cdi", true.into()),
        ("library", "/opt/gpupool/lib/libgpupool.so".into()),
        ("stateDir", "/data/gpupool".into()),
        ("memoryOversubscription", 1.5.into()),
        ("checkpointIdleAfter", "5m".into()),
        ("roomWait", "45s".into()),
        ("spillMemory", "256Gi".into()),
    ] {
        assert_eq!(settings[key], want, "{key}");
    }
    let agent = containers(&node)
        .into_iter()
        .find(|c| c["name"] == "gpupool-node")
        .unwrap();
    assert_eq!(flag(&agent, "metrics-listen"), "0.0.0.0:9500");
    let capabilities = |docs: &[(String, Value)]| {
        let ds = crate::find(docs, "DaemonSet", "gpupool-node");
        let agent = containers(&ds)
            .into_iter()
            .find(|c| c["name"] == "gpupool-node")
            .unwrap();
        agent["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "NVIDIA_DRIVER_CAPABILITIES")
            .map(|e| e["value"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(
        capabilities(&docs),
        "compute,utility",
        "checkpoints need the driver in the agent's container"
    );
    assert_eq!(capabilities(&documents()), "utility");

    // Metrics and the webhook configuration.
    let sm = find("ServiceMonitor", "gpupool-node");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let svc: Service = serde_json::from_value(find("Service", "gpupool-node-metrics")).unwrap();
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 9500);
    let mwc: MutatingWebhookConfiguration =
        serde_json::from_value(find("MutatingWebhookConfiguration", "gpupool")).unwrap();
    let hook = &mwc.webhooks.unwrap()[0];
    assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(hook.client_config.ca_bundle.as_ref().unwrap().0, b"CA");
}

#[test]
fn bad_values_are_refused_naming_the_value() {
    for (set, named) in [
        ("node.split=0", "node.split 0"),
        ("node.split=65", "node.split 65"),
        ("resourceDomain=Bad_Domain", "resourceDomain \"Bad_Domain\""),
        (
            "scheduler.nodePolicy=random",
            "scheduler.nodePolicy \"random\"",
        ),
        ("scheduler.gpuPolicy=first", "scheduler.gpuPolicy \"first\""),
        ("node.auditPolicy=warn", "node.auditPolicy \"warn\""),
        (
            "scheduler.memoryOversubscription=20",
            "scheduler.memoryOversubscription 20",
        ),
        (
            "webhook.failurePolicy=Never",
            "webhook.failurePolicy \"Never\"",
        ),
        ("webhook.tls.create=false", "webhook.tls.caBundle is empty"),
    ] {
        let err = render(&[set]).expect_err(set);
        assert!(err.contains(named), "{set}: {err}");
    }
    // The remote servers, enabled: each with the rest of its values as they are.
    for (sets, named) in [
        (&["remoteServer.port=0"][..], "remoteServer.port 0"),
        (&["remoteServer.port=70000"][..], "remoteServer.port 70000"),
        (
            &["remoteServer.metricsPort=7070"][..],
            "remoteServer.metricsPort 7070",
        ),
        (
            &["remoteServer.tlsClientCaSecret=cas"][..],
            "remoteServer.tlsClientCaSecret needs remoteServer.tlsSecret",
        ),
        (
            &["remoteServer.clientsSecret="][..],
            "remoteServer.clientsSecret is empty",
        ),
        (
            // The node agent's selector, exactly.
            &[
                "remoteServer.nodeSelector.gpupool\\.io/remote-server=null",
                "remoteServer.nodeSelector.gpupool\\.io/enabled=true",
            ][..],
            "remoteServer.nodeSelector picks the node agent's nodes",
        ),
    ] {
        let mut all = vec!["remoteServer.enabled=true"];
        all.extend_from_slice(sets);
        let err = render(&all).expect_err(sets[0]);
        assert!(err.contains(named), "{sets:?}: {err}");
    }
}

#[test]
fn the_chart_makes_its_secrets_once_and_keeps_them() {
    let key = |docs: &[(String, Value)]| {
        let s: Secret =
            serde_json::from_value(find(docs, "Secret", "gpupool-assignment-key")).unwrap();
        s.data.unwrap()["key"].0.clone()
    };
    let (a, b) = (key(&documents()), key(&documents()));
    assert!(a.len() >= 32, "the daemons refuse keys under 32 bytes");
    assert_ne!(a, b, "a fresh install gets a random key");
    // Upgrades keep what the cluster holds (helm's lookup); the template says so, since a
    // render without a cluster cannot show it.
    for t in ["assignment-key.yaml", "webhook.yaml"] {
        let text = std::fs::read_to_string(chart::chart().join("templates").join(t)).unwrap();
        assert!(text.contains("lookup \"v1\" \"Secret\""), "{t}");
    }
}

/// The blob `digest` (`sha256:…`) of the OCI layout `dir`, checked against its digest.
fn oci_blob(dir: &std::path::Path, digest: &Value, size: &Value) -> Vec<u8> {
    let digest = digest.as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let path = dir.join("blobs/sha256").join(hex);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(sha256_hex(&path), hex, "{digest} holds other bytes");
    assert_eq!(size.as_u64(), Some(bytes.len() as u64), "{digest} size");
    bytes
}

fn sha256_hex(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// `cmd` run with `root` as its root folder and only `env` (chroot; in a user namespace when
/// not root).
fn in_root(root: &std::path::Path, env: &[String], cmd: &[&str]) -> std::process::Output {
    let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chroot (coreutils)");
    let mut c = if unsafe { libc::geteuid() } == 0 {
        Command::new(chroot)
    } else {
        let mut c = Command::new("/usr/bin/unshare");
        c.args(["-r", chroot]);
        c
    };
    c.env_clear();
    for kv in env {
        let (k, v) = kv.split_once('=').unwrap();
        c.env(k, v);
    }
    c.arg(root).args(cmd).output().unwrap()
}

#[test]
fn the_image_runs_gpupool_and_installs_the_container_library() {
    let dir = std::env::temp_dir().join(format!("gpupool-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let layout = dir.join("oci");
    let out = Command::new(root().join("scripts/build-image"))
        .arg(&layout)
        .arg("0.1.0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/build-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The layout: index → manifest → config and layer, every blob matching its digest.
    assert!(std::fs::read_to_string(layout.join("oci-layout"))
        .unwrap()
        .contains("\"imageLayoutVersion\": \"1.0.0\""));
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "0.1.0"
    );
    let manifest: Value =
        serde_json::from_slice(&oci_blob(&layout, &entry["digest"], &entry["size"])).unwrap();
    let config: Value = serde_json::from_slice(&oci_blob(
        &layout,
        &manifest["config"]["digest"],
        &manifest["config"]["size"],
    ))
    .unwrap();
    assert_eq!(
        (config["os"].as_str(), config["architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let gz = oci_blob(&layout, &layers[0]["digest"], &layers[0]["size"]);
    let tar = dir.join("layer.tar");
    let out = Command::new("sh")
        .arg("-c")
        .arg("gzip -dc > \"$0\"")
        .arg(&tar)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&gz)?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        config["rootfs"]["diff_ids"][0].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(&tar)),
        "diff_id is the uncompressed layer's digest"
    );

    // The file tree: gpupool, the container library, the C libraries gpupool links; no shell.
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&rootfs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("find")
        .arg(".")
        .args(["-type", "f"])
        .current_dir(&rootfs)
        .output()
        .unwrap();
    let mut files: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect();
    files.sort();
    assert!(
        files.contains(&"usr/local/bin/gpupool".to_string()),
        "{files:?}"
    );
    assert!(files.contains(&"usr/local/gpupool/lib/libgpupool.so".to_string()));
    for f in &files {
        assert!(
            f.starts_with("usr/local/") || f.starts_with("lib/") || f.starts_with("lib64/"),
            "{f} in the image"
        );
        assert!(
            !f.ends_with("/sh") && !f.ends_with("/bash"),
            "{f}: no shell"
        );
    }
    assert!(files.len() <= 8, "{files:?}");

    // The entrypoint, run as the runtime would (the config's environment, the tree as root).
    let env: Vec<String> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let entrypoint: Vec<&str> = config["config"]["Entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(entrypoint, ["gpupool"]);
    let out = in_root(&rootfs, &env, &[entrypoint[0], "--version"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("gpupool {}", env!("CARGO_PKG_VERSION"))
    );

    // The chart's init container command installs the glibc-2.17 build the image carries.
    let docs = documents();
    let node = find(&docs, "DaemonSet", "gpupool-node");
    let init = &node["spec"]["template"]["spec"]["initContainers"][0];
    let cmd: Vec<&str> = init["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let host_dir = cmd.last().unwrap().trim_start_matches('/');
    let out = in_root(&rootfs, &env, &cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = rootfs.join(host_dir).join("libgpupool.so");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(
            root().join("target/glibc217/x86_64-unknown-linux-gnu/release/libgpupool.so")
        )
        .unwrap(),
        "the container build"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
