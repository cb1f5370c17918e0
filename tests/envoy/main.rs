//! The integration tests: the real `ingress-authz` binary on ephemeral
//! loopback ports, most of them behind a real Envoy, with a real OpenID
//! provider and a real headless Chromium where a test says so. One test
//! binary of modules, so the harness in `tests/common` compiles once.

// These run against real processes and wall time, not the service's clock.
#![allow(clippy::disallowed_methods)]
// A test binary has no public API: `pub` in the harness means "used by
// another module".
#![allow(unreachable_pub)]

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod cli;
mod faults;
mod headers;
mod hostile;
mod identity_headers;
mod idp;
mod methods;
mod oauth2;
mod oidc;
mod ops;
mod paths;
mod policy;
mod policy_oidc;
mod routing;
mod routing_examples;
mod server_ops;
mod soak;
mod sso;
mod store;
mod store_throttle;
mod xds;
