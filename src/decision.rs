//! What the authorizer decided, before it is put on the wire: the leaf
//! vocabulary every stage speaks (`auth`, `policy`, `engine`, `response`).
//! It imports nothing of theirs.

/// HTTP statuses a denial can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// A login redirect.
    Found,
    BadRequest,
    Unauthorized,
    Forbidden,
    /// Throttled, or the password-hash pool is full (with `Retry-After`).
    TooManyRequests,
    /// The identity provider cannot be reached (discovery failed).
    ServiceUnavailable,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Self::Found => 302,
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::TooManyRequests => 429,
            Self::ServiceUnavailable => 503,
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
    /// A verified identity that the route's `allow` policy refuses.
    NotAllowed,
    /// The token's `kid` is not in the issuer's JWKS (even after a refresh).
    UnknownKey,
    /// OpenID discovery has not succeeded yet.
    IdpUnavailable,
    /// The session store is unreachable (a server-side session cannot be
    /// read), or its revocations were never loaded: fail closed.
    StoreUnavailable,
    /// The `Host` is not a valid host name.
    BadHost,
    /// Too many failed authentications from this client (or for this user).
    Throttled,
    /// The password-hash pool and its queue are full.
    Busy,
    /// A `report_only` route let through a request it would have denied.
    ReportOnly,
    /// Envoy routed the request by a route (its `context_extensions`)
    /// other than the one the rules give it: an allow is refused.
    RouteMismatch,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Self::Authenticated => "authenticated",
            Self::Open => "open",
            Self::NoRoute => "no_route",
            Self::BadPath => "bad_path",
            Self::BadRequest => "bad_request",
            Self::MissingCredentials => "missing_credentials",
            Self::InvalidCredentials => "invalid_credentials",
            Self::LoginRedirect => "login_redirect",
            Self::LoginRequired => "login_required",
            Self::NotAllowed => "not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::IdpUnavailable => "idp_unavailable",
            Self::StoreUnavailable => "store_unavailable",
            Self::BadHost => "bad_host",
            Self::Throttled => "throttled",
            Self::Busy => "busy",
            Self::ReportOnly => "report_only",
            Self::RouteMismatch => "route_mismatch",
        }
    }
}

/// The kinds of condition an `allow` policy can hold (SPEC §13.1). A
/// denial names the kind that failed, never the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    Users,
    Logins,
    Emails,
    Domains,
    Groups,
    Claims,
}

impl Condition {
    pub const ALL: [Self; 6] = [
        Self::Users,
        Self::Logins,
        Self::Emails,
        Self::Domains,
        Self::Groups,
        Self::Claims,
    ];

    /// The key under `allow:`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Logins => "logins",
            Self::Emails => "emails",
            Self::Domains => "domains",
            Self::Groups => "groups",
            Self::Claims => "claims",
        }
    }
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
            Self::Basic => "basic",
            Self::Bearer => "bearer",
            Self::Jwt => "jwt",
            Self::OAuth2 => "oauth2",
            Self::Oidc => "oidc",
        }
    }

    /// Methods whose users log in through a browser (a 403 page offers
    /// to switch account).
    pub fn is_login(self) -> bool {
        matches!(self, Self::OAuth2 | Self::Oidc)
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
    /// For `not_allowed`: the kind of condition that failed.
    pub condition: Option<Condition>,
    /// For `not_allowed` on a login route: the page links to
    /// `/oauth2/logout`, so the user can sign in as someone else.
    pub switch_account: bool,
    /// Seconds for `Retry-After` (429).
    pub retry_after: Option<u64>,
}

impl<'a> Denial<'a> {
    pub fn status(status: Status, reason: Reason) -> Self {
        Denial {
            status,
            reason,
            challenge: None,
            redirect: None,
            condition: None,
            switch_account: false,
            retry_after: None,
        }
    }

    /// 429 with `Retry-After`.
    pub fn too_many(reason: Reason, retry_after: u64) -> Self {
        Denial {
            retry_after: Some(retry_after.max(1)),
            ..Self::status(Status::TooManyRequests, reason)
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

    /// 403: a verified identity the policy refuses.
    pub fn not_allowed(condition: Condition, kind: AuthKind) -> Self {
        Denial {
            condition: Some(condition),
            switch_account: kind.is_login(),
            ..Self::status(Status::Forbidden, Reason::NotAllowed)
        }
    }
}

/// Headers to set on the request that goes upstream.
pub type UpstreamHeaders = Vec<(&'static str, String)>;

/// Work a decision needs before it can be made; the service runs it under
/// the check's time budget and decides once more (never a denial reason
/// callers must recognise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// The issuer's metadata or keys are missing or lack the token's `kid`:
    /// fetch them (single flight, rate-limited).
    FetchKeys,
    /// The session's tokens, or the groups and claims a policy uses, are
    /// due: refresh them at the provider.
    RefreshSession,
    /// A password hash to verify, on the bounded hash pool.
    VerifyPassword,
    /// A server-side session this replica has not read lately: read its
    /// record from the store.
    LoadSession,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    Allow {
        reason: Reason,
        /// Who passed, when a credential said (audit lines).
        user: Option<crate::identity::Identity>,
        /// Headers to set upstream (connect headers, identity headers,
        /// the rewritten cookie); names may be the config's.
        upstream: Vec<(&'a str, String)>,
        /// Headers to remove upstream.
        remove: Vec<&'a str>,
        /// `report_only`: what the route would have answered.
        would_deny: Option<(Status, Reason)>,
    },
    Deny(Denial<'a>),
    /// Not a decision yet; `then` is the answer if the work cannot be done.
    Pending {
        work: Pending,
        then: Denial<'a>,
    },
}

/// A route's place in the engine's route table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteId(pub u32);

/// A decision and where it was made.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Which route decided; None when nothing matched.
    pub route: Option<RouteId>,
    /// e.g. `rules[0].paths[1]`, `fallback`; None when nothing matched.
    pub label: Option<&'a str>,
    pub kind: Option<AuthKind>,
    pub verdict: Verdict<'a>,
    /// A failed authentication was counted by this replica's throttle:
    /// the service also counts it across replicas (`Engine::share_failure`).
    pub failure_counted: bool,
}

impl<'a> Decision<'a> {
    pub fn unrouted(status: Status, reason: Reason) -> Self {
        Decision {
            route: None,
            label: None,
            kind: None,
            verdict: Verdict::Deny(Denial::status(status, reason)),
            failure_counted: false,
        }
    }

    pub fn is_allowed(&self) -> bool {
        matches!(self.verdict, Verdict::Allow { .. })
    }

    /// The denial this decision amounts to, if it is not an allow.
    pub fn denial(&self) -> Option<&Denial<'a>> {
        match &self.verdict {
            Verdict::Deny(d) | Verdict::Pending { then: d, .. } => Some(d),
            Verdict::Allow { .. } => None,
        }
    }
}
