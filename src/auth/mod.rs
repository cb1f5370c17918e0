//! Authentication methods: a closed set, one file each, dispatched by `match`.

pub mod basic;
pub mod bearer;
pub mod cache;
pub mod discovery;
pub mod jwks;
pub mod jwt;
pub mod login_client;
pub mod oauth2;
pub mod oidc;
pub mod open_sessions;
pub mod providers;

use std::sync::Arc;

use crate::config::error::Diagnostic;
use crate::config::spec::MethodSpec;
use crate::decision::{Reason, Status};
use crate::request::RequestView;
use crate::session::SessionKeys;

#[derive(Debug)]
pub enum Authenticator {
    /// Boxed, like every variant larger than a few words: a config can hold
    /// thousands of authenticators, each as large as the largest variant.
    Basic(Box<basic::Basic>),
    Bearer(bearer::Bearer),
    Jwt(Box<jwt::Jwt>),
    OAuth2(Box<oauth2::OAuth2>),
    Oidc(Box<oidc::Oidc>),
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

/// A redirect to an identity provider, with its login-state cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub location: String,
    pub set_cookie: String,
}

/// A denial: status, why, the `WWW-Authenticate` challenge if any, and for
/// a login the redirect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial<'a> {
    pub status: Status,
    pub reason: Reason,
    pub challenge: Option<&'a str>,
    pub redirect: Option<Redirect>,
}

impl<'a> Denial<'a> {
    pub fn status(status: Status, reason: Reason) -> Self {
        Denial {
            status,
            reason,
            challenge: None,
            redirect: None,
        }
    }

    pub fn missing(challenge: Option<&'a str>) -> Self {
        Denial {
            challenge,
            ..Self::status(Status::Unauthorized, Reason::MissingCredentials)
        }
    }

    pub fn invalid(challenge: Option<&'a str>) -> Self {
        Denial {
            challenge,
            ..Self::status(Status::Unauthorized, Reason::InvalidCredentials)
        }
    }

    pub fn redirect(reason: Reason, redirect: Redirect) -> Self {
        Denial {
            redirect: Some(redirect),
            ..Self::status(Status::Found, reason)
        }
    }
}

/// Headers to set on the request that goes upstream.
pub type UpstreamHeaders = Vec<(&'static str, String)>;

#[derive(Debug, PartialEq, Eq)]
pub enum AuthResult<'a> {
    /// Authenticated; `user` is the identity when the method knows one.
    Allow {
        user: Option<String>,
        upstream: UpstreamHeaders,
    },
    Deny(Denial<'a>),
}

/// What building an authenticator needs besides its own config.
#[derive(Clone, Debug)]
pub struct BuildContext {
    pub keys: Arc<SessionKeys>,
    pub cookies: Arc<oauth2::CookieSettings>,
}

/// Network work a route may need before it can decide: OpenID discovery
/// and JWKS refreshes. Each is single-flight and rate-limited.
#[derive(Clone, Debug)]
pub enum Fetcher {
    Discovery(Arc<discovery::Discovery>),
    Jwks(Arc<jwks::Jwks>),
}

impl Fetcher {
    /// Brings metadata and keys up to date as far as the rate limits allow.
    pub async fn run(&self, http: &providers::ProviderHttp) {
        match self {
            Fetcher::Discovery(d) => {
                if !d.is_fresh() {
                    let _ = d.refresh(http).await;
                } else if let Some(meta) = d.metadata() {
                    let _ = meta.jwks.refresh(http).await;
                }
            }
            Fetcher::Jwks(j) => {
                if let Err(e) = j.refresh(http).await {
                    tracing::warn!(url = %j.url(), error = %e, "JWKS fetch failed");
                }
            }
        }
    }
}

impl Authenticator {
    /// The fetcher of an authenticator that depends on a remote issuer.
    pub fn fetcher(&self) -> Option<Fetcher> {
        match self {
            Authenticator::Oidc(o) => Some(Fetcher::Discovery(o.discovery.clone())),
            Authenticator::Jwt(j) => j.jwks().map(Fetcher::Jwks),
            _ => None,
        }
    }

    pub fn build(spec: &MethodSpec, ctx: &BuildContext) -> Result<Self, Vec<Diagnostic>> {
        Ok(match spec {
            MethodSpec::Basic(s) => Authenticator::Basic(Box::new(basic::Basic::build(s)?)),
            MethodSpec::Bearer(s) => Authenticator::Bearer(bearer::Bearer::build(s)?),
            MethodSpec::Jwt(s) => Authenticator::Jwt(Box::new(jwt::Jwt::build(s)?)),
            MethodSpec::OAuth2(s) => Authenticator::OAuth2(Box::new(
                oauth2::OAuth2::build(s, ctx.keys.clone(), ctx.cookies.clone()).map_err(
                    |message| {
                        vec![Diagnostic {
                            loc: s.loc.clone(),
                            message,
                        }]
                    },
                )?,
            )),
            MethodSpec::Oidc(s) => Authenticator::Oidc(Box::new(
                oidc::Oidc::build(s, ctx.keys.clone(), ctx.cookies.clone()).map_err(|message| {
                    vec![Diagnostic {
                        loc: s.loc.clone(),
                        message,
                    }]
                })?,
            )),
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

    /// `route` names the route asking (a login remembers it for the callback).
    pub fn authenticate(&self, req: &RequestView<'_>, route: &str) -> AuthResult<'_> {
        match self {
            Authenticator::Basic(a) => a.authenticate(req),
            Authenticator::Bearer(a) => a.authenticate(req),
            Authenticator::Jwt(a) => a.authenticate(req),
            Authenticator::OAuth2(a) => a.authenticate(req, route),
            Authenticator::Oidc(a) => a.authenticate(req, route),
        }
    }
}
