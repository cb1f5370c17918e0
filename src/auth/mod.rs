//! Authentication methods: a closed set, one file each, dispatched by `match`.

pub mod basic;
pub mod bearer;
pub mod cache;
pub mod discovery;
pub mod jwks;
pub mod jwt;
pub mod login_client;
pub mod login_error;
pub mod methods;
pub mod oauth2;
pub mod oidc;
pub mod open_sessions;
pub mod pkce;
pub mod providers;
pub mod record_loads;
pub mod refresh_flights;
pub mod validation;
pub mod wire;

pub use login_error::LoginError;

use std::sync::Arc;

use crate::config::error::Diagnostic;
use crate::config::spec::MethodSpec;
use crate::decision::{Reason, Status};
use crate::request::RequestView;
use crate::session::SessionKeys;

/// Why an authenticator cannot be built from a checked spec (its text
/// becomes the config diagnostic at the method's location).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An endpoint joined from `base_url` is not a URL.
    #[error("invalid endpoint {url}: {source}")]
    Endpoint {
        url: String,
        #[source]
        source: url::ParseError,
    },
    /// auth0 and okta have no default tenant.
    #[error("{0} needs base_url")]
    NeedsBaseUrl(&'static str),
    /// oidc with neither a known provider nor an issuer.
    #[error("oidc needs `provider` or `issuer`")]
    NoIssuer,
    /// The connect signing key.
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
}

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

use crate::decision::Pending;
pub use crate::decision::{AuthKind, Denial, Redirect, UpstreamHeaders};
use crate::identity::Identity;

#[derive(Debug)]
pub enum AuthResult<'a> {
    /// A credential verified: who it names, and headers for the upstream.
    Allow {
        identity: Identity,
        upstream: UpstreamHeaders,
    },
    Deny(Denial<'a>),
    /// Work to do before deciding; `then` if it cannot be done.
    Pending {
        work: Pending,
        then: Denial<'a>,
    },
}

impl AuthResult<'_> {
    pub(crate) fn pending_keys(then: Denial<'_>) -> AuthResult<'_> {
        AuthResult::Pending {
            work: Pending::FetchKeys,
            then,
        }
    }
}

/// What building an authenticator needs besides its own config.
#[derive(Clone, Debug)]
pub struct BuildContext {
    pub keys: Arc<SessionKeys>,
    pub cookies: Arc<crate::cookies::CookieSettings>,
    /// Claim names any policy of the config reads: sessions keep these.
    pub policy_claims: Arc<[String]>,
    /// The revocations and store of the running server.
    pub runtime: Arc<crate::store::Runtime>,
    /// Whether sessions are sealed cookies or tickets to stored records.
    pub session_store: crate::config::spec::SessionStore,
}

/// What an authenticator must keep fresh for its route's policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct PolicyNeeds {
    /// Groups or claims, re-read after this many seconds.
    pub groups_ttl: Option<u64>,
    /// The policy reads groups (GitHub: ask for `read:org`).
    pub groups: bool,
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
            Self::Discovery(d) => {
                if !d.is_fresh() {
                    let _ = d.refresh(http).await;
                } else if let Some(meta) = d.metadata() {
                    let _ = meta.jwks.refresh(http).await;
                }
            }
            Self::Jwks(j) => {
                // A failure is logged by the refresh itself.
                let _ = j.refresh(http).await;
            }
        }
    }
}

impl Authenticator {
    /// The fetcher of an authenticator that depends on a remote issuer.
    pub fn fetcher(&self) -> Option<Fetcher> {
        match self {
            Self::Oidc(o) => Some(Fetcher::Discovery(o.discovery.clone())),
            Self::Jwt(j) => j.jwks().map(Fetcher::Jwks),
            _ => None,
        }
    }

    pub fn build(
        spec: &MethodSpec,
        ctx: &BuildContext,
        needs: PolicyNeeds,
    ) -> Result<Self, Vec<Diagnostic>> {
        Ok(match spec {
            MethodSpec::Basic(s) => Self::Basic(Box::new(basic::Basic::build(s)?)),
            MethodSpec::Bearer(s) => Self::Bearer(bearer::Bearer::build(s)?),
            MethodSpec::Jwt(s) => {
                Self::Jwt(Box::new(jwt::Jwt::build(s, ctx.policy_claims.clone())?))
            }
            MethodSpec::OAuth2(s) => Self::OAuth2(Box::new(
                oauth2::OAuth2::build(s, ctx, needs)
                    .map_err(|e| vec![Diagnostic::at(&s.loc, e)])?,
            )),
            MethodSpec::Oidc(s) => Self::Oidc(Box::new(
                oidc::Oidc::build(s, ctx, needs).map_err(|e| vec![Diagnostic::at(&s.loc, e)])?,
            )),
        })
    }

    pub fn kind(&self) -> AuthKind {
        match self {
            Self::Basic(_) => AuthKind::Basic,
            Self::Bearer(_) => AuthKind::Bearer,
            Self::Jwt(_) => AuthKind::Jwt,
            Self::OAuth2(_) => AuthKind::OAuth2,
            Self::Oidc(_) => AuthKind::Oidc,
        }
    }

    /// Starts a fresh login (a navigation) or answers 401, ignoring any
    /// session the request carries.
    pub fn login(&self, req: &RequestView<'_>, route: &str) -> AuthResult<'_> {
        match self {
            Self::OAuth2(a) => a.login(req, route),
            Self::Oidc(a) => a.login(req, route),
            _ => AuthResult::Deny(Denial::status(Status::Unauthorized, Reason::LoginRequired)),
        }
    }

    /// A login begun at the login host that returns to `return_to`, an
    /// absolute URL the caller checked against the cookie domain.
    pub fn login_returning(
        &self,
        req: &RequestView<'_>,
        route: &str,
        return_to: &str,
    ) -> AuthResult<'_> {
        let to = login_client::ReturnTo::Url(return_to);
        match self {
            Self::OAuth2(a) => a.login_to(req, route, to),
            Self::Oidc(a) => a.login_to(req, route, to),
            _ => AuthResult::Deny(Denial::status(Status::Unauthorized, Reason::LoginRequired)),
        }
    }

    /// Whether `Authorization: Bearer` tokens are this method's credential
    /// (bearer, jwt, oidc in API mode or with `accept_bearer`).
    pub fn takes_bearer(&self) -> bool {
        match self {
            Self::Bearer(_) | Self::Jwt(_) => true,
            Self::Oidc(o) => o.takes_bearer(),
            Self::Basic(_) | Self::OAuth2(_) => false,
        }
    }

    /// Checks the request's bearer token only (one of several methods).
    pub fn authenticate_bearer(&self, req: &RequestView<'_>) -> AuthResult<'_> {
        match self {
            Self::Bearer(a) => a.authenticate(req),
            Self::Jwt(a) => a.authenticate(req),
            Self::Oidc(a) if a.takes_bearer() => a.authenticate_bearer(req),
            _ => AuthResult::Deny(Denial::missing(None)),
        }
    }

    /// The login client of a redirect-login route.
    pub fn login_client(&self) -> Option<&login_client::LoginClient> {
        match self {
            Self::OAuth2(a) => Some(&a.client),
            Self::Oidc(a) => a.client.as_ref(),
            _ => None,
        }
    }

    /// `route` names the route asking (a login remembers it for the callback).
    pub fn authenticate(&self, req: &RequestView<'_>, route: &str) -> AuthResult<'_> {
        match self {
            Self::Basic(a) => a.authenticate(req),
            Self::Bearer(a) => a.authenticate(req),
            Self::Jwt(a) => a.authenticate(req),
            Self::OAuth2(a) => a.authenticate(req, route),
            Self::Oidc(a) => a.authenticate(req, route),
        }
    }
}
