//! A real Kubernetes control plane for end-to-end tests: etcd, kube-apiserver (TLS with a test
//! CA, static bearer tokens, RBAC: an administrator and the service accounts the shipped
//! manifests bind, which hold only what those manifests grant them) and, on demand,
//! kube-scheduler with a configuration of the test's, all from `.cache/k8s/bin`
//! (`scripts/fetch-k8s`). Processes are
//! killed and the folder removed when the value is dropped; their logs are printed when the
//! test is failing.

#![allow(dead_code)]

use super::certs::openssl;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The administrator's bearer token (the test's own requests).
pub const TOKEN: &str = "gpupool-e2e-token";

/// The service accounts (in `kube-system`) that have a token: those the shipped manifests bind.
pub const SERVICE_ACCOUNTS: [&str; 2] = ["gpupool-scheduler", "gpupool-node"];

/// A running control plane.
pub struct ControlPlane {
    /// Its folder: certificates, kubeconfig, logs, etcd data.
    pub dir: PathBuf,
    /// The API server's URL.
    pub url: String,
    /// A kubeconfig for the API server (CA and token).
    pub kubeconfig: PathBuf,
    children: Vec<(String, Child)>,
}

/// The folder with etcd, kube-apiserver and kube-scheduler.
pub fn binaries() -> PathBuf {
    let bin = super::root().join(".cache/k8s/bin");
    for b in ["etcd", "kube-apiserver", "kube-scheduler"] {
        assert!(
            bin.join(b).is_file(),
            "{} missing: run scripts/fetch-k8s (scripts/test does)",
            bin.join(b).display()
        );
    }
    bin
}

/// A local TCP port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// A CA, a serving certificate for 127.0.0.1 signed by it, and the service-account key pair.
fn make_certificates(dir: &Path) {
    super::certs::ca_and_server(dir, "gpupool-e2e-ca", "kube-apiserver");
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"]);
    openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
}

/// Standard base64 (kubeconfig and `caBundle` fields).
pub fn base64(bytes: &[u8]) -> String {
    gpupool_extender::admission::base64(bytes)
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver in a fresh folder named after `test`; returns once the
    /// API server answers.
    pub fn start(test: &str) -> ControlPlane {
        let bin = binaries();
        let dir = std::env::temp_dir().join(format!("gpupool-cp-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        make_certificates(&dir);
        let mut tokens = format!("{TOKEN},admin,admin,system:masters\n");
        for sa in SERVICE_ACCOUNTS {
            tokens.push_str(&format!(
                "sa-{sa},system:serviceaccount:kube-system:{sa},uid-{sa},\"system:serviceaccounts,system:serviceaccounts:kube-system\"\n"
            ));
        }
        std::fs::write(dir.join("tokens.csv"), tokens).unwrap();
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let mut cp = ControlPlane {
            url: format!("https://127.0.0.1:{api_port}"),
            kubeconfig: dir.join("kubeconfig"),
            dir,
            children: Vec::new(),
        };
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let mut etcd = Command::new(bin.join("etcd"));
        etcd.arg("--data-dir")
            .arg(cp.dir.join("etcd"))
            .args(["--listen-client-urls", &etcd_url])
            .args(["--advertise-client-urls", &etcd_url])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer_port}"),
            ]);
        cp.spawn("etcd", etcd);
        let mut api = Command::new(bin.join("kube-apiserver"));
        api.args(["--etcd-servers", &etcd_url])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
            ])
            .args(["--secure-port", &api_port.to_string()])
            .args([
                "--tls-cert-file",
                "server.crt",
                "--tls-private-key-file",
                "server.key",
            ])
            .args(["--token-auth-file", "tokens.csv"])
            .args(["--authorization-mode", "RBAC"])
            .args(["--service-account-key-file", "sa.pub"])
            .args(["--service-account-signing-key-file", "sa.key"])
            .args(["--service-account-issuer", "https://kubernetes.default.svc"])
            .args(["--service-cluster-ip-range", "10.96.0.0/24"])
            .args([
                "--disable-admission-plugins",
                "ServiceAccount,TaintNodesByCondition",
            ])
            .current_dir(&cp.dir);
        cp.spawn("kube-apiserver", api);
        cp.write_kubeconfig(&cp.kubeconfig, TOKEN);
        cp.wait_ready();
        cp
    }

    /// Writes a kubeconfig for the API server that authenticates with `token`.
    fn write_kubeconfig(&self, path: &Path, token: &str) {
        let ca = std::fs::read(self.dir.join("ca.crt")).unwrap();
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: e2e\ncurrent-context: e2e\nusers:\n- name: e2e\n  user:\n    token: {token}\n",
                self.url,
                base64(&ca)
            ),
        )
        .unwrap();
    }

    /// A kubeconfig that acts as the service account `kube-system/<account>` (one of
    /// [`SERVICE_ACCOUNTS`]): it may do only what the RBAC objects created so far grant.
    pub fn kubeconfig_as(&self, account: &str) -> PathBuf {
        assert!(
            SERVICE_ACCOUNTS.contains(&account),
            "{account} has no token: add it to SERVICE_ACCOUNTS"
        );
        let path = self.dir.join(format!("kubeconfig-{account}"));
        self.write_kubeconfig(&path, &format!("sa-{account}"));
        path
    }

    /// Creates `objects` (Kubernetes objects as JSON) as the administrator.
    pub async fn apply(&self, objects: &[serde_json::Value]) -> Result<(), String> {
        use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
        let client = self.client_async().await?;
        for v in objects {
            let obj: DynamicObject =
                serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
            let types = obj
                .types
                .clone()
                .ok_or("a document without apiVersion/kind")?;
            let gvk = GroupVersionKind::try_from(&types).map_err(|e| e.to_string())?;
            let resource = ApiResource::from_gvk(&gvk);
            let api: Api<DynamicObject> = match &obj.metadata.namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            api.create(&PostParams::default(), &obj)
                .await
                .map_err(|e| format!("{} {:?}: {e}", types.kind, obj.metadata.name))?;
        }
        Ok(())
    }

    fn spawn(&mut self, name: &str, mut cmd: Command) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        self.children.push((name.to_string(), child));
    }

    /// Starts a process that belongs with the control plane (killed with it, its output in
    /// `<name>.log` in the folder, shown if the test fails).
    pub fn spawn_process(&mut self, name: &str, cmd: Command) {
        self.spawn(name, cmd);
    }

    /// The log of component `name`.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.kubectl_get("/readyz");
            if out.as_deref() == Some("ok") {
                return;
            }
            let names: Vec<String> = self.children.iter().map(|(n, _)| n.clone()).collect();
            for name in names {
                self.assert_running(&name);
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready within 60 s:\n{}",
                tail(&self.log("kube-apiserver"))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A GET on the API server with the token (a blocking HTTPS client of the test's own:
    /// the kube client below is async).
    fn kubectl_get(&self, path: &str) -> Option<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let client = rt.block_on(self.client_async()).ok()?;
        rt.block_on(async {
            let req = http::Request::get(path).body(Vec::new()).ok()?;
            client.request_text(req).await.ok()
        })
    }

    /// A kube client on the API server (must be called within a tokio runtime).
    pub async fn client_async(&self) -> Result<kube::Client, String> {
        let text = std::fs::read_to_string(&self.kubeconfig).map_err(|e| e.to_string())?;
        let kc = kube::config::Kubeconfig::from_yaml(&text).map_err(|e| e.to_string())?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())?;
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }

    /// Starts kube-scheduler with `config` (a `KubeSchedulerConfiguration`, v1beta1, whose
    /// `clientConnection.kubeconfig` is filled in here with `kubeconfig`).
    pub fn start_scheduler(&mut self, config: &str, kubeconfig: &Path) {
        let path = self.dir.join("scheduler.yaml");
        // Health and metrics on ports of their own (the defaults would collide between
        // tests running at once).
        let config = format!(
            "{config}\nclientConnection:\n  kubeconfig: {}\nhealthzBindAddress: 127.0.0.1:{}\nmetricsBindAddress: 127.0.0.1:{}\n",
            kubeconfig.display(),
            free_port(),
            free_port()
        );
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(binaries().join("kube-scheduler"));
        cmd.arg("--config")
            .arg(&path)
            .args(["--port", "0", "--secure-port", "0"]);
        self.spawn("kube-scheduler", cmd);
    }

    /// Whether the component `name` still runs; panics with its log if it exited.
    pub fn assert_running(&mut self, name: &str) {
        let dir = self.dir.clone();
        for (n, child) in &mut self.children {
            if n == name {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(dir.join(format!("{name}.log")))
                        .unwrap_or_default();
                    panic!("{name} exited ({status}):\n{}", tail(&log));
                }
            }
        }
    }
}

/// The last lines of a log.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for (name, _) in &self.children {
                eprintln!("--- {name} (last lines) ---\n{}", tail(&self.log(name)));
            }
            eprintln!("control plane folder kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
