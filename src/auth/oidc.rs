//! OpenID Connect login and API mode (SPEC §5, §6).
//!
//! The configuration is fully validated; discovery and login are not in
//! this version, so a route protected by oidc fails closed: every request is
//! denied with 401 and reason `login_unavailable`.

use super::{AuthResult, Denial};
use crate::config::spec::OidcSpec;
use crate::request::RequestView;

#[derive(Debug)]
pub struct Oidc {
    pub issuer: String,
}

impl Oidc {
    pub fn build(spec: &OidcSpec) -> Self {
        let issuer = spec
            .issuer
            .as_ref()
            .map(|u| u.to_string())
            .or_else(|| spec.provider.clone())
            .unwrap_or_default();
        Oidc { issuer }
    }

    pub fn authenticate(&self, _req: &RequestView<'_>) -> AuthResult<'_> {
        AuthResult::Deny(Denial::login_unavailable())
    }
}
