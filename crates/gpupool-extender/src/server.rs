//! The HTTP side: `POST /filter`, `/prioritize`, `/bind` in kube-scheduler's extender format,
//! `GET /healthz` and `/readyz`. A malformed body is answered `400` with the reason in the
//! protocol's `Error` field; the verbs refuse to decide (`503`) until the view was read from
//! the cluster once, so nothing is placed on stale state after a restart.

use crate::api::{ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult};
use crate::kube_api;
use crate::state::Extender;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest request body accepted. With `nodeCacheCapable: true` (as shipped) kube-scheduler
/// sends node names only: 5 000 nodes and a large pod take well under 1 MiB. Full node objects of
/// a big cluster do not fit: configure `nodeCacheCapable`.
pub const BODY_LIMIT: usize = 8 << 20;

/// What the handlers share.
pub struct App {
    /// The decisions.
    pub extender: Arc<Extender>,
    /// The API client for `bind`.
    pub client: kube::Client,
    /// Whether the view has been read from the cluster.
    pub ready: AtomicBool,
}

/// The extender's routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/filter", post(filter))
        .route("/prioritize", post(prioritize))
        .route("/bind", post(bind))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

fn parse<T: DeserializeOwned>(verb: &str, body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("{verb}: malformed request body: {e}"))
}

fn not_ready(app: &App) -> Option<String> {
    (!app.ready.load(Ordering::Acquire))
        .then(|| "gpupool scheduler is starting: cluster state not read yet".to_string())
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    match not_ready(&app) {
        None => "ok".into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

fn filter_error(status: StatusCode, error: String) -> Response {
    let body = ExtenderFilterResult {
        error,
        ..ExtenderFilterResult::default()
    };
    (status, Json(body)).into_response()
}

async fn filter(State(app): State<Arc<App>>, body: Bytes) -> Response {
    if let Some(why) = not_ready(&app) {
        return filter_error(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let args: ExtenderArgs = match parse("filter", &body) {
        Ok(a) => a,
        Err(e) => return filter_error(StatusCode::BAD_REQUEST, e),
    };
    if args.pod.is_none() {
        return filter_error(
            StatusCode::BAD_REQUEST,
            "filter: the request has no Pod".into(),
        );
    }
    let ext = app.extender.clone();
    match tokio::task::spawn_blocking(move || ext.filter_json(&args)).await {
        Ok(json) => ([(http::header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => filter_error(StatusCode::INTERNAL_SERVER_ERROR, format!("filter: {e}")),
    }
}

async fn prioritize(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let error = |status: StatusCode, e: String| (status, e).into_response();
    if let Some(why) = not_ready(&app) {
        return error(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let args: ExtenderArgs = match parse("prioritize", &body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let ext = app.extender.clone();
    match tokio::task::spawn_blocking(move || ext.prioritize_json(&args)).await {
        Ok(json) => ([(http::header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("prioritize: {e}"),
        ),
    }
}

async fn bind(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let answer = |status: StatusCode, error: String| {
        (status, Json(ExtenderBindingResult { error })).into_response()
    };
    if let Some(why) = not_ready(&app) {
        return answer(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let args: ExtenderBindingArgs = match parse("bind", &body) {
        Ok(a) => a,
        Err(e) => return answer(StatusCode::BAD_REQUEST, e),
    };
    match kube_api::bind(&app.extender, &app.client, &args).await {
        Ok(()) => {
            tracing::info!(pod = %args.pod_name, namespace = %args.pod_namespace, node = %args.node, "bound");
            answer(StatusCode::OK, String::new())
        }
        Err(e) => {
            tracing::warn!(pod = %args.pod_name, namespace = %args.pod_namespace, node = %args.node, "bind failed: {e}");
            // The extender protocol carries a failed bind in `Error` with status 200.
            answer(StatusCode::OK, e.to_string())
        }
    }
}
