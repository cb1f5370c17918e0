//! The HTTP sidecar: the OAuth2 callback and logout, the login host's
//! start, health, readiness and metrics. Envoy routes `/oauth2/` here
//! with ext_authz disabled.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Router, routing::get};

use crate::state::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/oauth2/callback", get(crate::login::callback))
        .route("/oauth2/logout", get(crate::login::logout))
        .route(crate::sso::START_PATH, get(crate::login::start))
        .with_state(shared)
}

/// Ready once a valid config is loaded, which `serve` guarantees before it
/// binds; the generation tells which config serves.
/// A failed reload keeps the previous config serving (still ready) and
/// says so on a second line, where operators look.
async fn ready(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut body = format!("ready generation={}\n", shared.generation());
    if let Some(stale) = shared.stale() {
        body.push_str(&format!("{stale}\n"));
    }
    (StatusCode::OK, body)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}
