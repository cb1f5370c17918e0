//! What the authorizer decided, before it is put on the wire.

use crate::auth::{AuthKind, Denial};

/// HTTP statuses a denial can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// A login redirect.
    Found,
    BadRequest,
    Unauthorized,
    Forbidden,
    /// The identity provider cannot be reached (discovery failed).
    ServiceUnavailable,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Found => 302,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::ServiceUnavailable => 503,
        }
    }
}

/// Machine-readable reason codes, used in audit lines and `explain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Credentials verified.
    Authenticated,
    /// The route has no auth (none configured, `enabled: false`, or a redirect/handler backend).
    Open,
    /// No rule matches the host and there is no fallback.
    NoRoute,
    /// The path cannot be normalised safely.
    BadPath,
    /// The CheckRequest has no HTTP attributes.
    BadRequest,
    MissingCredentials,
    InvalidCredentials,
    /// A browser navigation without a session: sent to the provider.
    LoginRedirect,
    /// A non-navigation without a session: 401, never a redirect.
    LoginRequired,
    /// Logged in, but not in `allowed_emails` / `allowed_domains`, or a
    /// required claim is missing.
    NotAllowed,
    /// The token's `kid` is not in the issuer's JWKS (even after a refresh).
    UnknownKey,
    /// OpenID discovery has not succeeded yet.
    IdpUnavailable,
    /// A session whose tokens are due for a refresh at the provider (the
    /// service refreshes and decides again; a failed refresh ends it).
    SessionRefresh,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::Authenticated => "authenticated",
            Reason::Open => "open",
            Reason::NoRoute => "no_route",
            Reason::BadPath => "bad_path",
            Reason::BadRequest => "bad_request",
            Reason::MissingCredentials => "missing_credentials",
            Reason::InvalidCredentials => "invalid_credentials",
            Reason::LoginRedirect => "login_redirect",
            Reason::LoginRequired => "login_required",
            Reason::NotAllowed => "not_allowed",
            Reason::UnknownKey => "unknown_key",
            Reason::IdpUnavailable => "idp_unavailable",
            Reason::SessionRefresh => "session_refresh",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    Allow {
        reason: Reason,
        user: Option<String>,
        /// Headers to set upstream (connect headers, the rewritten cookie).
        upstream: crate::auth::UpstreamHeaders,
        /// Headers to remove upstream.
        remove: Vec<&'static str>,
    },
    Deny(Denial<'a>),
}

/// A decision and where it was made.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    /// e.g. `rules[0].paths[1]`, `fallback`; None when nothing matched.
    pub route: Option<&'a str>,
    pub kind: Option<AuthKind>,
    pub verdict: Verdict<'a>,
}

impl<'a> Decision<'a> {
    pub fn deny(
        route: Option<&'a str>,
        kind: Option<AuthKind>,
        status: Status,
        reason: Reason,
    ) -> Self {
        Decision {
            route,
            kind,
            verdict: Verdict::Deny(Denial::status(status, reason)),
        }
    }

    pub fn is_allowed(&self) -> bool {
        matches!(self.verdict, Verdict::Allow { .. })
    }
}
