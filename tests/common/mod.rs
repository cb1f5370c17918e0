//! Harness for the integration tests (`tests/envoy/`).
//!
//! A [`Stack`] is what a user deploys, on ephemeral loopback ports: an echo
//! upstream that records what reaches it, the `ingress-authz` binary with the
//! test's config, and Envoy with the shipped `envoy/envoy.yaml`. Every test
//! starts its own stack, so tests run in parallel. Envoy comes from
//! `ENVOY_BIN`, `.venv/bin/envoy` (scripts/install-deps) or PATH.

pub mod authz;
pub mod client;
pub mod configs;
pub mod creds;
pub mod envoy;
pub mod expect;
pub mod fake_http;
pub mod fake_oidc;
pub mod idp;
pub mod login;
pub mod providers;
pub mod redis;
pub mod secrets;
pub mod upstream;

use std::time::{Duration, Instant};

pub use authz::Authz;
pub use client::{Request, Response};
pub use envoy::{Backends, Envoy, Normalize};
pub use upstream::{EchoUpstream, Recorded};

pub struct Stack {
    pub upstream: EchoUpstream,
    pub authz: Authz,
    pub envoy: Envoy,
}

impl Stack {
    /// The shipped Envoy config (path normalisation on) in front of `config`.
    pub async fn start(config_yaml: &str) -> Self {
        Self::start_with(config_yaml, Normalize::On).await
    }

    pub async fn start_with(config_yaml: &str, normalize: Normalize) -> Self {
        let upstream = EchoUpstream::start().await;
        let authz = Authz::start(config_yaml).await;
        let backends = Backends {
            authz_grpc: authz.grpc_addr(),
            authz_http: authz.http_addr(),
            upstream: upstream.addr(),
        };
        let envoy = Envoy::start(backends, normalize).await;
        // Envoy's readiness probe may have been let through; start from zero.
        upstream.clear();
        Self {
            upstream,
            authz,
            envoy,
        }
    }

    /// Sends `request` through Envoy.
    pub async fn send(&self, request: Request) -> Response {
        client::send(self.envoy.addr(), &request)
            .await
            .unwrap_or_else(|e| panic!("{request:?} through envoy: {e}\n{}", self.debug_logs()))
    }

    /// Sends `request` through Envoy from the loopback address `source`.
    pub async fn send_from(&self, source: std::net::Ipv4Addr, request: Request) -> Response {
        client::send_from(self.envoy.addr(), source, &request)
            .await
            .unwrap_or_else(|e| panic!("{request:?} from {source}: {e}\n{}", self.debug_logs()))
    }

    pub async fn get(&self, host: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        let request = headers
            .iter()
            .fold(Request::get(host, target), |r, (n, v)| r.header(n, v));
        self.send(request).await
    }

    /// A GET with an optional `Authorization` header.
    pub async fn get_auth(
        &self,
        host: &str,
        target: &str,
        authorization: Option<&str>,
    ) -> Response {
        let request = Request::get(host, target);
        let request = match authorization {
            Some(value) => request.header("authorization", value),
            None => request,
        };
        self.send(request).await
    }

    /// What reached the upstream so far.
    pub fn upstream_requests(&self) -> Vec<Recorded> {
        self.upstream.requests()
    }

    /// The targets that reached the upstream, in order.
    pub fn upstream_targets(&self) -> Vec<String> {
        let requests = self.upstream_requests();
        requests.into_iter().map(|r| r.target).collect()
    }

    /// Both processes' logs, for assertion messages.
    pub fn debug_logs(&self) -> String {
        format!(
            "--- ingress-authz ({}):\n{}\n--- envoy ({}):\n{}",
            self.authz.stderr_path().display(),
            tail(&self.authz.logs()),
            self.envoy.log_path().display(),
            tail(&self.envoy.logs()),
        )
    }
}

/// Tests whose assertions depend on CPU to spare (floods, bcrypt within a
/// deadline, tens of thousands of requests) hold this, so that two of them
/// never share the machine's cores.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// Polls `check` every `poll` until it holds; panics after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, poll: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(poll).await;
    }
}

/// The last 40 lines of a log, for assertion messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
