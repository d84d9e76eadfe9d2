//! What the daemons (`gpupool scheduler`, `gpupool node`, `gpupool exporter`) share: their
//! async runtime, logging, and the Kubernetes client from a kubeconfig or the cluster.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// `--kubeconfig` and `--log-level` of the Kubernetes daemons.
#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// Kubeconfig file (default: `$KUBECONFIG`, `~/.kube/config`, or the in-cluster account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Log level (`error`, `warn`, `info`, `debug`).
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
}

/// `--assignment-key-file` / `--unsigned-assignments` of the scheduler and the node agent.
#[derive(clap::Args, Debug, Clone)]
pub struct AssignmentKeyArgs {
    /// File with the key that signs pods' assignments (at least 32 bytes; the same Secret
    /// mounted into the scheduler and every node agent). Without it any pod author could give
    /// their pod any card's memory by writing the annotation.
    #[arg(long, value_name = "FILE")]
    pub assignment_key_file: Option<PathBuf>,
    /// Trust assignments without a signature (test clusters where every pod author is trusted).
    #[arg(long, conflicts_with = "assignment_key_file")]
    pub unsigned_assignments: bool,
}

impl AssignmentKeyArgs {
    /// The key; `None` only with `--unsigned-assignments`.
    pub fn key(&self) -> Result<Option<gpupool_sched::signing::AssignmentKey>> {
        match (&self.assignment_key_file, self.unsigned_assignments) {
            (Some(path), _) => Ok(Some(
                gpupool_sched::signing::AssignmentKey::from_file(path)
                    .map_err(|e| anyhow::anyhow!("--assignment-key-file: {e}"))?,
            )),
            (None, true) => Ok(None),
            (None, false) => anyhow::bail!(
                "--assignment-key-file FILE is needed (a Secret shared with the {}; `head -c 32 /dev/urandom > key`), or --unsigned-assignments to trust every pod author",
                "scheduler and the node agents"
            ),
        }
    }
}

impl DaemonArgs {
    /// Logs to stderr at `--log-level`.
    pub fn init_logging(&self) -> Result<()> {
        init_logging(&self.log_level)
    }

    /// A client for the API server of `--kubeconfig` (or the defaults).
    pub async fn kube_client(&self) -> Result<kube::Client> {
        kube_client(self.kubeconfig.as_deref()).await
    }
}

/// The daemons' async runtime (two workers: they mostly wait).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Logs to stderr at `level` (`error`, `warn`, `info`, `debug`, or a tracing filter).
pub fn init_logging(level: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| anyhow::anyhow!("--log-level {level:?}: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// A client for the API server of `kubeconfig`, else `$KUBECONFIG`, `~/.kube/config` or the
/// in-cluster service account.
pub async fn kube_client(kubeconfig: Option<&Path>) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no Kubernetes API found (no in-cluster account, $KUBECONFIG or ~/.kube/config); \
             pass --kubeconfig",
        )?,
    };
    kube::Client::try_from(config).context("creating the Kubernetes client")
}

/// The vGPU resource names under `--resource-domain` (the scheduler's and the webhook's flag;
/// the node agent refuses the same domains).
pub fn resource_names(domain: &str) -> Result<gpupool_sched::request::ResourceNames> {
    if !gpupool_sched::protocol::is_dns_subdomain(domain) {
        anyhow::bail!(
            "--resource-domain {domain:?}: expected a DNS domain such as nvidia.com (lower-case letters, digits, '-' and '.')"
        );
    }
    Ok(gpupool_sched::request::ResourceNames::new(domain))
}
