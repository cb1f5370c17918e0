//! The protected application: an in-process axum server that records every
//! request it gets, so tests can assert what Envoy let through (and what it
//! did not).

use std::net::SocketAddr;

use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use super::fake_http::{self, FakeHttp, Shared};

/// One request as the upstream received it.
pub type Recorded = fake_http::Call;

pub struct EchoUpstream {
    http: FakeHttp<()>,
}

impl EchoUpstream {
    pub async fn start() -> Self {
        let listener = fake_http::listen(0, "echo upstream").await;
        Self {
            http: FakeHttp::serve(listener, (), echo),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.http.calls()
    }

    pub fn clear(&self) {
        self.http.clear_calls();
    }
}

async fn echo(_: Shared<()>, recorded: Recorded) -> Response {
    Json(json!({
        "upstream": true,
        "method": recorded.method,
        "target": recorded.target,
        "headers": recorded.headers,
        "body": String::from_utf8_lossy(&recorded.body),
    }))
    .into_response()
}
