//! The methods of one route (`type: [oidc, bearer]`) and which of them a
//! request's credential belongs to: by its syntax, never by trying every
//! method in turn.
//!
//! A session cookie of ours goes to the route's login method (oauth2, or
//! oidc with `client_id`); `Authorization: Basic` to basic; `Authorization:
//! Bearer` to the bearer-style methods (bearer, jwt, oidc in API mode or
//! with `accept_bearer`) in list order, the first that accepts winning.
//! A credential no listed method takes counts as none: a navigation then
//! goes to the login method, anything else gets 401 with every method's
//! challenge. A token that fails never falls through to a method of
//! another kind, and never earns a login redirect.

use super::{AuthKind, AuthResult, Authenticator, Denial};
use crate::decision::{Reason, Status};
use crate::policy::Policy;
use crate::request::RequestView;

/// One method of a route: who it verifies, and its own `allow`.
#[derive(Debug)]
pub struct Method {
    pub authenticator: Authenticator,
    /// The `allow` written in the method's block: it judges only identities
    /// this method verified, besides the route's. Boxed: most have none.
    pub allow: Option<Box<Policy>>,
}

impl Method {
    pub fn kind(&self) -> AuthKind {
        self.authenticator.kind()
    }
}

/// A route's methods in config order, with the lookups the dispatch and
/// the pending work (keys, password hash, session refresh) need.
#[derive(Debug)]
pub struct Methods {
    list: Box<[Method]>,
    /// Index of the login method, if one is listed.
    session: Option<u8>,
    /// Index of basic, if listed.
    basic: Option<u8>,
    /// Indexes of the bearer-style methods, in list order.
    bearers: Box<[u8]>,
    /// Every listed method's challenge, combined (RFC 9110 §11.6.1 allows
    /// several in one `WWW-Authenticate`): for a request without a
    /// credential, and for a bearer token none accepted. None with one method.
    missing: Option<Box<str>>,
    invalid: Option<Box<str>>,
}

impl Methods {
    /// `list` is non-empty, holds each kind at most once and at most one
    /// login method (the config walk's checks).
    pub fn new(list: Vec<Method>) -> Self {
        debug_assert!(!list.is_empty() && list.len() <= usize::from(u8::MAX));
        let index = |pred: &dyn Fn(&Authenticator) -> bool| {
            list.iter()
                .position(|m| pred(&m.authenticator))
                .map(|i| i as u8)
        };
        let session = index(&|a| a.login_client().is_some());
        let basic = index(&|a| matches!(a, Authenticator::Basic(_)));
        let bearers: Box<[u8]> = (0..list.len())
            .filter(|i| list[*i].authenticator.takes_bearer())
            .map(|i| i as u8)
            .collect();
        let (missing, invalid) = if list.len() > 1 {
            let basic_challenge = basic.and_then(|i| match &list[usize::from(i)].authenticator {
                Authenticator::Basic(b) => Some(b.challenge().to_string()),
                _ => None,
            });
            let join = |bearer: &str| {
                let parts: Vec<String> = (!bearers.is_empty())
                    .then(|| bearer.to_string())
                    .into_iter()
                    .chain(basic_challenge.clone())
                    .collect();
                (!parts.is_empty()).then(|| parts.join(", ").into_boxed_str())
            };
            (
                join(super::bearer::CHALLENGE),
                join(super::bearer::CHALLENGE_INVALID),
            )
        } else {
            (None, None)
        };
        Self {
            list: list.into_boxed_slice(),
            session,
            basic,
            bearers,
            missing,
            invalid,
        }
    }

    /// Every method, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Method> {
        self.list.iter()
    }

    /// The first listed method (the route's only one, most often).
    pub fn first(&self) -> &Method {
        &self.list[0]
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The method of this kind (each kind is listed at most once).
    pub fn get(&self, kind: AuthKind) -> Option<&Method> {
        self.list.iter().find(|m| m.kind() == kind)
    }

    /// The login method (oauth2, or oidc with `client_id`).
    pub fn session(&self) -> Option<&Method> {
        self.session.map(|i| &self.list[usize::from(i)])
    }

    pub fn basic(&self) -> Option<&Method> {
        self.basic.map(|i| &self.list[usize::from(i)])
    }

    /// The methods an `Authorization: Bearer` token is tried with, in order.
    pub fn bearers(&self) -> impl Iterator<Item = &Method> {
        self.bearers.iter().map(|i| &self.list[usize::from(*i)])
    }

    /// Kinds in config order, as `explain` and the admin API name them
    /// (`oidc, bearer`).
    pub fn describe(&self) -> String {
        let kinds: Vec<&str> = self.list.iter().map(|m| m.kind().as_str()).collect();
        kinds.join(", ")
    }

    /// The method the request's credential belongs to and its answer.
    /// `route` names the route asking (a login remembers it).
    pub fn authenticate<'e>(
        &'e self,
        req: &RequestView<'_>,
        route: &str,
    ) -> (&'e Method, AuthResult<'e>) {
        // One method: exactly what that type always did.
        if let [only] = &*self.list {
            return (only, only.authenticator.authenticate(req, route));
        }
        self.dispatch(req, route)
    }

    fn dispatch<'e>(&'e self, req: &RequestView<'_>, route: &str) -> (&'e Method, AuthResult<'e>) {
        // Our own sealed session first: a provider that is down blocks new
        // logins, not the users already logged in.
        if let Some(session) = self.session()
            && let Some(client) = session.authenticator.login_client()
            && let Some(result) = client.session_result(req)
        {
            return (session, result);
        }
        // By the scheme alone: a malformed or doubled `Bearer` header is
        // that method's 401, not a credential-less request to log in.
        let scheme = req
            .header("authorization")
            .and_then(|v| v.split_whitespace().next());
        let is = |name: &str| scheme.is_some_and(|s| s.eq_ignore_ascii_case(name));
        if let Some(basic) = self.basic()
            && is("basic")
        {
            let result = basic.authenticator.authenticate(req, route);
            return (basic, self.with_challenge(result, self.missing.as_deref()));
        }
        if !self.bearers.is_empty() && is("bearer") {
            return self.bearer(req);
        }
        // No credential any listed method takes.
        if let Some(session) = self.session()
            && req.is_navigation()
        {
            return (session, session.authenticator.login(req, route));
        }
        let denial = Denial {
            reason: if self.session.is_some() {
                Reason::LoginRequired
            } else {
                Reason::MissingCredentials
            },
            ..Denial::missing(self.missing.as_deref())
        };
        (
            self.session().unwrap_or_else(|| self.first()),
            AuthResult::Deny(denial),
        )
    }

    /// A bearer token, tried with each bearer-style method in list order:
    /// the first allow wins; else the first pending work (keys to fetch,
    /// then decided again); else the first method's denial, with every
    /// challenge.
    fn bearer<'e>(&'e self, req: &RequestView<'_>) -> (&'e Method, AuthResult<'e>) {
        let mut pending = None;
        let mut denied = None;
        for method in self.bearers() {
            match method.authenticator.authenticate_bearer(req) {
                allow @ AuthResult::Allow { .. } => return (method, allow),
                work @ AuthResult::Pending { .. } => {
                    pending.get_or_insert((method, work));
                }
                deny @ AuthResult::Deny(_) => {
                    denied.get_or_insert((method, deny));
                }
            }
        }
        let (method, result) = pending.or(denied).unwrap_or_else(|| {
            let denial = Denial::invalid(self.invalid.as_deref());
            (self.first(), AuthResult::Deny(denial))
        });
        (method, self.with_challenge(result, self.invalid.as_deref()))
    }

    /// A 401 names every listed method's challenge.
    fn with_challenge<'e>(
        &self,
        result: AuthResult<'e>,
        challenge: Option<&'e str>,
    ) -> AuthResult<'e> {
        let fix = |d: Denial<'e>| {
            if d.status == Status::Unauthorized && challenge.is_some() {
                Denial { challenge, ..d }
            } else {
                d
            }
        };
        match result {
            AuthResult::Deny(d) => AuthResult::Deny(fix(d)),
            AuthResult::Pending { work, then } => AuthResult::Pending {
                work,
                then: fix(then),
            },
            allow => allow,
        }
    }
}
