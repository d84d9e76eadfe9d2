//! `gpupool scheduler`: a kube-scheduler extender that chooses which cards every container of a
//! vGPU pod gets (placement from `gpupool-sched`), and binds the pod with that decision recorded
//! in its `gpupool.io/assignment` annotation (`docs/kubernetes.md`).
//!
//! - [`api`]: the extender wire format.
//! - [`state`]: the cluster view and the decisions, without I/O.
//! - [`kube_api`]: `bind` and the rebuild through the Kubernetes API.
//! - [`server`]: the HTTP routes.
//! - [`tls`]: HTTPS with client certificates.
//! - [`error`]: the one error type.
//! - [`admission`], [`webhook`]: the mutating admission webhook (`gpupool webhook`) that sends
//!   vGPU pods to the gpupool scheduler.

#![warn(missing_docs)]

pub mod admission;
pub mod api;
pub mod error;
pub mod kube_api;
pub mod server;
pub mod state;
pub mod tls;
pub mod webhook;

pub use error::ExtenderError;
use server::App;
use state::{Extender, Settings};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How `gpupool scheduler` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Placement settings.
    pub settings: Settings,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// How often the view is rebuilt from the API.
    pub refresh: Duration,
    /// HTTPS (and which clients may call); `None`: plain HTTP, for a loopback address only.
    pub tls: Option<tls::TlsFiles>,
}

/// Runs the extender until SIGTERM / Ctrl-C, with `client` for the Kubernetes API.
pub async fn run(options: Options, client: kube::Client) -> Result<(), ExtenderError> {
    let extender = Arc::new(Extender::new(options.settings.clone()));
    let app = Arc::new(App {
        extender: extender.clone(),
        client: client.clone(),
        ready: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(ExtenderError::listen(options.listen))?;
    tracing::info!("gpupool scheduler extender listening on {}", options.listen);
    let refresher = {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                match kube_api::rebuild(&app.extender, &app.client).await {
                    Ok(_) => {
                        if !app.ready.swap(true, Ordering::AcqRel) {
                            tracing::info!(
                                pods = app.extender.placed_pods(),
                                "cluster state read; serving"
                            );
                        }
                    }
                    Err(e) => tracing::warn!("cluster state not refreshed: {e}"),
                }
                tokio::time::sleep(options.refresh).await;
            }
        })
    };
    let router = server::router(app);
    let served = match &options.tls {
        Some(files) => {
            let config = tls::server_config(files)?;
            let listener = tls::TlsListener::new(listener, config)
                .map_err(ExtenderError::listen(options.listen))?;
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown())
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown())
                .await
        }
    }
    .map_err(ExtenderError::Serve);
    refresher.abort();
    served
}

/// Resolves at SIGTERM or Ctrl-C (the daemons' signal to stop).
pub async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
