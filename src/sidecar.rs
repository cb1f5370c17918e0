//! The HTTP sidecar: `/healthz` now; the OAuth2 callback joins it later.

use axum::{routing::get, Router};

pub fn router() -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" }))
}
