//! The HTTP sidecar: the OAuth2 callback and logout, OpenID back-channel
//! logout, the login host's start, health, readiness and metrics. Envoy
//! routes `/oauth2/` here with ext_authz disabled.

use std::sync::Arc;

use crate::config::spec::SessionStore;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{
    Router,
    routing::{get, post},
};

use crate::state::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/oauth2/callback", get(crate::login::callback))
        .route("/oauth2/logout", get(crate::login::logout))
        .route(
            "/oauth2/backchannel-logout",
            post(crate::login::backchannel_logout),
        )
        .route(crate::sso::START_PATH, get(crate::login::start))
        .with_state(shared)
}

/// Ready once a valid config is loaded, which `serve` guarantees before it
/// binds; the generation tells which config serves.
/// A failed reload keeps the previous config serving (still ready) and
/// says so on a second line, where operators look.
/// With a store: not ready until its revocations were loaded once (before
/// that no session can be checked); afterwards ready whatever the store's
/// state (an outage must not take basic, bearer and jwt routes out of
/// service: server-side session checks answer 503 themselves), with a line
/// saying how the store is.
async fn ready(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut status = StatusCode::OK;
    let mut body = format!("ready generation={}\n", shared.generation());
    if let Some(stale) = shared.stale() {
        body.push_str(&format!("{stale}\n"));
    }
    if let Some(store) = shared.runtime.store() {
        let server_side = shared.engine().login.session_store == SessionStore::Redis;
        let line = match (store.loaded(), store.is_up()) {
            (false, _) => "store down: revocations not loaded yet",
            (true, true) => "store up",
            (true, false) if server_side => "store down: server-side sessions answer 503",
            (true, false) => "store down: cookie sessions use the revocations known so far",
        };
        if !store.loaded() {
            status = StatusCode::SERVICE_UNAVAILABLE;
            body = body.replacen("ready", "not ready", 1);
        }
        body.push_str(line);
        body.push('\n');
    }
    (status, body)
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
