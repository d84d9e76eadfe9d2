//! `gpupool webhook`: the mutating admission webhook over HTTPS (`POST /mutate` in the
//! `AdmissionReview` format, `GET /healthz`). The decisions are in [`crate::admission`]; a body
//! that is not an `AdmissionReview` is answered `400` with the reason.

use crate::admission::{review, WebhookSettings};
use crate::error::ExtenderError;
use crate::server::BODY_LIMIT;
use crate::tls;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;

/// How `gpupool webhook` runs.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// What it does to pods.
    pub settings: WebhookSettings,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Its certificate (the API server calls webhooks over HTTPS only).
    pub tls: tls::TlsFiles,
}

async fn mutate(State(s): State<Arc<WebhookSettings>>, body: Bytes) -> Response {
    match review(&body, &s) {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => {
            tracing::warn!("refused an admission request: {e}");
            (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
    }
}

/// The webhook's routes.
pub fn router(settings: WebhookSettings) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(Arc::new(settings))
}

/// Serves the webhook until SIGTERM / Ctrl-C.
pub async fn run(options: WebhookOptions) -> Result<(), ExtenderError> {
    let config = tls::server_config(&options.tls)?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(ExtenderError::listen(options.listen))?;
    let listener =
        tls::TlsListener::new(listener, config).map_err(ExtenderError::listen(options.listen))?;
    tracing::info!(
        "gpupool webhook listening on https://{}/mutate",
        options.listen
    );
    axum::serve(listener, router(options.settings))
        .with_graceful_shutdown(crate::shutdown())
        .await
        .map_err(ExtenderError::Serve)
}
