//! OAuth2 redirect login (SPEC §6, §7).
//!
//! The configuration is fully validated; the login flow itself is not in
//! this version, so a route protected by oauth2 fails closed: every request
//! is denied with 401 and reason `login_unavailable`.

use super::{AuthResult, Denial};
use crate::config::spec::OAuth2Spec;
use crate::request::RequestView;

#[derive(Debug)]
pub struct OAuth2 {
    pub provider: String,
    pub client_id: String,
}

impl OAuth2 {
    pub fn build(spec: &OAuth2Spec) -> Self {
        OAuth2 {
            provider: spec.provider.clone(),
            client_id: spec.client_id.clone(),
        }
    }

    pub fn authenticate(&self, _req: &RequestView<'_>) -> AuthResult<'_> {
        AuthResult::Deny(Denial::login_unavailable())
    }
}
