//! `gpupool exporter`: Prometheus metrics of this host's cards and tenants on `/metrics`, for
//! hosts without the node agent. Each scrape reads NVML and private copies of the tenants'
//! regions afresh (never a lock a tenant waits on).

use crate::cmd_info::{snapshot, snapshot_of};
use crate::cmd_run::tenants_dir;
use crate::sim_env::{SimArgs, SimEnv};
use anyhow::{Context, Result};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use clap::Args;
use gpupool_observe::snapshot::InfoSnapshot;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `gpupool exporter`.
#[derive(Args, Debug)]
pub struct ExporterArgs {
    /// Address to serve `/metrics` on (port 0: any free port, printed at start).
    #[arg(long, default_value = "0.0.0.0:9400", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// The `Hostname` label of every series (DCGM exporter's; default: this host's name).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// The machine to look at.
    #[command(flatten)]
    pub machine: SimArgs,
}

/// OpenMetrics text, which Prometheus reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Adds what only the caller knows (the node agent's audit findings) to a snapshot.
pub type AddToSnapshot = Arc<dyn Fn(&mut InfoSnapshot) + Send + Sync>;

async fn metrics(
    sim: Arc<Option<SimEnv>>,
    tenants: Arc<PathBuf>,
    add: Option<AddToSnapshot>,
    host: Arc<str>,
) -> impl IntoResponse {
    let taken = tokio::task::spawn_blocking(move || {
        let mut snap = snapshot_of(sim.as_ref().as_ref(), &tenants)?;
        if let Some(add) = add {
            add(&mut snap);
        }
        Ok::<_, anyhow::Error>(snap)
    })
    .await;
    match taken {
        Ok(Ok(snap)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            gpupool_observe::metrics::render(&snap, &host),
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("gpupool exporter: reading the GPUs: {e:#}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// `/metrics` (cards through NVML, the tenants in the folders of `tenants`, every series
/// labelled `Hostname=host`) and `/healthz`.
pub fn router(
    sim: Arc<Option<SimEnv>>,
    tenants: PathBuf,
    add: Option<AddToSnapshot>,
    host: &str,
) -> Router {
    let tenants = Arc::new(tenants);
    let host: Arc<str> = Arc::from(host);
    Router::new()
        .route(
            "/metrics",
            get(move || metrics(sim.clone(), tenants.clone(), add.clone(), host.clone())),
        )
        .route("/healthz", get(|| async { "ok" }))
}

/// Serves metrics until SIGTERM / Ctrl-C.
pub fn run(a: ExporterArgs) -> Result<()> {
    let sim = a.machine.prepare()?;
    // Read once before serving: a machine that cannot be read is an error at start, and the
    // simulator's environment is set before any thread exists.
    snapshot(sim.as_ref()).context("reading the GPUs")?;
    let sim = Arc::new(sim);
    crate::daemon::runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("listening on {}", a.listen))?;
        let addr = listener.local_addr()?;
        eprintln!("gpupool exporter: serving http://{addr}/metrics");
        let tenants = tenants_dir(sim.as_ref().as_ref().map(|s| s.state.as_path()));
        let host = a
            .hostname
            .clone()
            .unwrap_or_else(gpupool_observe::metrics::host_name);
        axum::serve(listener, router(sim, tenants, None, &host))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })
}
