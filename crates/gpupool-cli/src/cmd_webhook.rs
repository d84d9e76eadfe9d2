//! `gpupool webhook`: the mutating admission webhook that sends pods asking for vGPUs to the
//! gpupool scheduler and gives `gpu: 1` to containers that ask memory or cores without a count.
//! Flags here; the webhook is `gpupool_extender::webhook`.

use crate::daemon;
use anyhow::{bail, Result};
use clap::Args;
use gpupool_extender::admission::WebhookSettings;
use gpupool_extender::tls::TlsFiles;
use gpupool_extender::webhook::WebhookOptions;
use gpupool_sched::protocol::is_dns_subdomain;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `gpupool webhook`.
#[derive(Args, Debug)]
pub struct WebhookArgs {
    /// Address to serve HTTPS on (the `MutatingWebhookConfiguration`'s Service points here).
    #[arg(long, default_value = "0.0.0.0:9443", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Server certificate (PEM), valid for the name the API server calls (the Service's DNS
    /// name); its CA goes into the configuration's `caBundle`.
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: PathBuf,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: PathBuf,
    /// Accept only clients with a certificate from this CA (an API server configured to
    /// present one); default: any client.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// The scheduler vGPU pods are sent to (kube-scheduler's profile with the gpupool extender).
    #[arg(long, default_value = "gpupool-scheduler", value_name = "NAME")]
    pub scheduler_name: String,
    /// Domain of the vGPU resources (`DOMAIN/gpu`, `DOMAIN/gpumem`, …).
    #[arg(long, default_value = "nvidia.com", value_name = "DOMAIN")]
    pub resource_domain: String,
    /// Log level (`error`, `warn`, `info`, `debug`).
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
    /// Print the settings and exit.
    #[arg(long)]
    pub dry_run: bool,
}

fn options(a: &WebhookArgs) -> Result<WebhookOptions> {
    let names = daemon::resource_names(&a.resource_domain)?;
    if !is_dns_subdomain(&a.scheduler_name) {
        bail!(
            "--scheduler-name {:?}: expected a scheduler name such as gpupool-scheduler",
            a.scheduler_name
        );
    }
    let tls = TlsFiles {
        cert: a.tls_cert_file.clone(),
        key: a.tls_key_file.clone(),
        client_ca: a.tls_client_ca_file.clone(),
    };
    gpupool_extender::tls::server_config(&tls)?;
    Ok(WebhookOptions {
        settings: WebhookSettings {
            scheduler_name: a.scheduler_name.clone(),
            names,
        },
        listen: a.listen,
        tls,
    })
}

/// Serves the webhook until SIGTERM / Ctrl-C.
pub fn run(a: WebhookArgs) -> Result<()> {
    let options = options(&a)?;
    if a.dry_run {
        println!("{options:#?}");
        return Ok(());
    }
    daemon::init_logging(&a.log_level)?;
    daemon::runtime()?.block_on(async { Ok(gpupool_extender::webhook::run(options).await?) })
}
