//! The integration tests: the real `ingress-authz` binary on ephemeral
//! loopback ports, most of them behind a real Envoy, with a real OpenID
//! provider and a real headless Chromium where a test says so. One test
//! binary of modules, so the harness in `tests/common` compiles once.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod headers;
mod hostile;
mod idp;
mod oauth2;
mod oidc;
mod ops;
mod paths;
mod policy;
mod policy_oidc;
mod server_ops;
