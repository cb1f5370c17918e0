//! Authentication methods: a closed set, one file each, dispatched by `match`.

pub mod basic;
pub mod bearer;
mod cache;
pub mod jwt;
pub mod oauth2;
pub mod oidc;

use crate::config::error::Diagnostic;
use crate::config::spec::MethodSpec;
use crate::decision::{Reason, Status};
use crate::request::RequestView;

#[derive(Debug)]
pub enum Authenticator {
    Basic(basic::Basic),
    Bearer(bearer::Bearer),
    Jwt(jwt::Jwt),
    OAuth2(oauth2::OAuth2),
    Oidc(oidc::Oidc),
}

/// The auth type, as named in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthKind {
    Basic,
    Bearer,
    Jwt,
    OAuth2,
    Oidc,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Basic => "basic",
            AuthKind::Bearer => "bearer",
            AuthKind::Jwt => "jwt",
            AuthKind::OAuth2 => "oauth2",
            AuthKind::Oidc => "oidc",
        }
    }
}

/// A denial: status, why, and the `WWW-Authenticate` challenge if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denial<'a> {
    pub status: Status,
    pub reason: Reason,
    pub challenge: Option<&'a str>,
}

impl<'a> Denial<'a> {
    pub fn missing(challenge: Option<&'a str>) -> Self {
        Denial {
            status: Status::Unauthorized,
            reason: Reason::MissingCredentials,
            challenge,
        }
    }

    pub fn invalid(challenge: Option<&'a str>) -> Self {
        Denial {
            status: Status::Unauthorized,
            reason: Reason::InvalidCredentials,
            challenge,
        }
    }

    pub fn login_unavailable() -> Self {
        Denial {
            status: Status::Unauthorized,
            reason: Reason::LoginUnavailable,
            challenge: None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum AuthResult<'a> {
    /// Authenticated; `user` is the identity when the method knows one.
    Allow {
        user: Option<String>,
    },
    Deny(Denial<'a>),
}

impl Authenticator {
    pub fn build(spec: &MethodSpec) -> Result<Self, Vec<Diagnostic>> {
        Ok(match spec {
            MethodSpec::Basic(s) => Authenticator::Basic(basic::Basic::build(s)?),
            MethodSpec::Bearer(s) => Authenticator::Bearer(bearer::Bearer::build(s)?),
            MethodSpec::Jwt(s) => Authenticator::Jwt(jwt::Jwt::build(s)?),
            MethodSpec::OAuth2(s) => Authenticator::OAuth2(oauth2::OAuth2::build(s)),
            MethodSpec::Oidc(s) => Authenticator::Oidc(oidc::Oidc::build(s)),
        })
    }

    pub fn kind(&self) -> AuthKind {
        match self {
            Authenticator::Basic(_) => AuthKind::Basic,
            Authenticator::Bearer(_) => AuthKind::Bearer,
            Authenticator::Jwt(_) => AuthKind::Jwt,
            Authenticator::OAuth2(_) => AuthKind::OAuth2,
            Authenticator::Oidc(_) => AuthKind::Oidc,
        }
    }

    pub fn authenticate(&self, req: &RequestView<'_>) -> AuthResult<'_> {
        match self {
            Authenticator::Basic(a) => a.authenticate(req),
            Authenticator::Bearer(a) => a.authenticate(req),
            Authenticator::Jwt(a) => a.authenticate(req),
            Authenticator::OAuth2(a) => a.authenticate(req),
            Authenticator::Oidc(a) => a.authenticate(req),
        }
    }
}
