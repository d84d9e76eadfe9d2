//! `gpupool scheduler`: the kube-scheduler extender (filter, prioritize, bind over HTTP) that
//! places vGPU pods on cards. Flags here; the extender is `gpupool-extender`.

use crate::daemon::{self, AssignmentKeyArgs, DaemonArgs};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use gpupool_extender::state::Settings;
use gpupool_extender::Options;
use gpupool_sched::request::{Packing, Policy};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Binpack or spread, as a flag value.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PackingArg {
    /// Prefer fuller nodes / cards.
    Binpack,
    /// Prefer emptier nodes / cards.
    Spread,
}

impl From<PackingArg> for Packing {
    fn from(p: PackingArg) -> Packing {
        match p {
            PackingArg::Binpack => Packing::Binpack,
            PackingArg::Spread => Packing::Spread,
        }
    }
}

/// Arguments of `gpupool scheduler`.
#[derive(Args, Debug)]
pub struct SchedulerArgs {
    /// Address the extender listens on (kube-scheduler's `urlPrefix` points here).
    #[arg(long, default_value = "127.0.0.1:8888", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Domain of the vGPU resources (`DOMAIN/gpu`, `DOMAIN/gpumem`, …).
    #[arg(long, default_value = "nvidia.com", value_name = "DOMAIN")]
    pub resource_domain: String,
    /// Node preference of pods without a `gpupool.io/node-policy` annotation.
    #[arg(long, value_enum, default_value = "binpack")]
    pub node_policy: PackingArg,
    /// Card preference of pods without a `gpupool.io/gpu-policy` annotation.
    #[arg(long, value_enum, default_value = "binpack")]
    pub gpu_policy: PackingArg,
    /// Keep multi-card requests on one NUMA node unless a pod says otherwise.
    #[arg(long)]
    pub numa: bool,
    /// Device memory a card may promise, as a multiple of its size (1 = no oversubscription).
    #[arg(long, default_value = "1", value_name = "FACTOR")]
    pub memory_oversubscription: f64,
    /// How often nodes and pods are listed again (e.g. `10s`, `500ms`).
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub refresh: String,
    /// Server certificate (PEM): serve HTTPS. Point kube-scheduler's extender `tlsConfig` at
    /// its CA.
    #[arg(long, value_name = "FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Accept only clients with a certificate from this CA (PEM): kube-scheduler's extender
    /// `tlsConfig` `certFile` / `keyFile`. Needed to listen beyond loopback.
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Signing of the assignments.
    #[command(flatten)]
    pub assignment_key: AssignmentKeyArgs,
    /// Kubernetes API and logging.
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Check the flags, print the settings they give, and exit.
    #[arg(long)]
    pub dry_run: bool,
}

fn options(a: &SchedulerArgs) -> Result<Options> {
    let over = a.memory_oversubscription;
    if !(1.0..=16.0).contains(&over) {
        bail!("--memory-oversubscription {over}: must be from 1 to 16");
    }
    let refresh = gpupool_config::parse_duration_ns(&a.refresh)
        .map_err(|e| anyhow::anyhow!("--refresh {:?}: {e}", a.refresh))?;
    if refresh < 100_000_000 {
        bail!("--refresh {:?}: must be at least 100ms", a.refresh);
    }
    let names = daemon::resource_names(&a.resource_domain)?;
    if a.tls_client_ca_file.is_none() && !a.listen.ip().is_loopback() {
        bail!(
            "--listen {}: without --tls-client-ca-file anyone who reaches this address could place and bind pods; listen on loopback (kube-scheduler beside it in the pod), or serve HTTPS with client certificates (--tls-cert-file, --tls-key-file, --tls-client-ca-file)",
            a.listen
        );
    }
    let tls = a
        .tls_cert_file
        .as_ref()
        .map(|cert| gpupool_extender::tls::TlsFiles {
            cert: cert.clone(),
            key: a.tls_key_file.clone().unwrap_or_default(),
            client_ca: a.tls_client_ca_file.clone(),
        });
    if let Some(files) = &tls {
        gpupool_extender::tls::server_config(files)?;
    }
    Ok(Options {
        settings: Settings {
            names,
            defaults: Policy {
                node: a.node_policy.into(),
                gpu: a.gpu_policy.into(),
                numa: a.numa,
                ..Policy::default()
            },
            oversubscription: over,
            key: a.assignment_key.key()?,
            ..Settings::default()
        },
        listen: a.listen,
        refresh: Duration::from_nanos(refresh),
        tls,
    })
}

/// Runs the extender until SIGTERM / Ctrl-C.
pub fn run(a: SchedulerArgs) -> Result<()> {
    let options = options(&a)?;
    if a.dry_run {
        println!("{options:#?}");
        return Ok(());
    }
    a.daemon.init_logging()?;
    daemon::runtime()?.block_on(async {
        let client = a.daemon.kube_client().await?;
        Ok(gpupool_extender::run(options, client).await?)
    })
}
