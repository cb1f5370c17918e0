//! Identity headers for upstreams (`auth.identity_headers`,
//! `auth.strip_credentials`): which verified facts each route sends
//! upstream under which names, and which client copies never get through.
//!
//! Values come only from a verified [`Identity`]; a fact it lacks, or one
//! that cannot be written as a header value unambiguously, leaves the header
//! out (and the client's copy is removed all the same). Every configured
//! name, from any route, is removed from every allowed request, open routes
//! included, as the connect headers are.

use std::sync::Arc;

use crate::config::spec::{AuthSpec, BackendKind, BackendSpec, ConfigSpec, IdentityHeadersSpec};
use crate::decision::RouteId;
use crate::identity::Identity;

/// Header names an identity header may not take: hop-by-hop headers, the
/// credentials and cookies we read or strip, what Envoy or we set
/// ourselves. Compared lower-cased.
const RESERVED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "host",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-proto",
];

/// Why a configured header name is refused (the message of a config error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not an RFC 9110 token.
    #[error("`{0}` is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)")]
    NotAToken(String),
    /// A header the proxy or the authorizer sets or relies on.
    #[error("`{0}` cannot be an identity header: the proxy or the authorizer owns it")]
    Reserved(String),
}

/// The configured name, lower-cased, if it can be an identity header.
pub fn check_name(name: &str) -> Result<String, NameError> {
    let lower = name.to_ascii_lowercase();
    if lower.is_empty() || !lower.bytes().all(is_token_byte) {
        return Err(NameError::NotAToken(name.to_string()));
    }
    if crate::response::CONNECT_HEADERS.contains(&lower.as_str())
        || RESERVED.contains(&lower.as_str())
        || lower.starts_with("x-envoy-")
    {
        return Err(NameError::Reserved(name.to_string()));
    }
    Ok(lower)
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One route's identity headers (names lower-cased).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteHeaders {
    pub user: Option<Box<str>>,
    pub email: Option<Box<str>>,
    pub groups: Option<Box<str>>,
    pub strip_credentials: bool,
}

impl RouteHeaders {
    /// None when the block asks for nothing.
    fn of(spec: &IdentityHeadersSpec) -> Option<Self> {
        let name =
            |n: &Option<(String, crate::config::Loc)>| n.as_ref().map(|(s, _)| s.as_str().into());
        let headers = Self {
            user: name(&spec.user),
            email: name(&spec.email),
            groups: name(&spec.groups),
            strip_credentials: spec.strip_credentials,
        };
        (headers != Self::default()).then_some(headers)
    }
}

/// Every route's identity headers, by [`RouteId`], and every configured name.
#[derive(Debug, Default)]
pub struct IdentityHeaders {
    by_route: Vec<Option<Arc<RouteHeaders>>>,
    /// Every name any route sets, deduplicated: removed from every allow.
    names: Vec<Box<str>>,
}

/// Where a route's auth comes from, in the order routes are numbered.
#[derive(Clone, Copy, Debug)]
pub enum RouteSource {
    Rule(usize),
    /// Rule index, index among the rule's paths.
    Path(usize, usize),
    Fallback,
}

impl IdentityHeaders {
    /// The table of a config whose routes are `sources` (by route id);
    /// paths without `auth` take their rule's, as their auth does.
    pub fn build(spec: &ConfigSpec, sources: impl Iterator<Item = RouteSource>) -> Self {
        let mut table = Self::default();
        for source in sources {
            let auth = match source {
                RouteSource::Rule(i) => spec.rules.get(i).and_then(|r| auth_of(&r.backend)),
                RouteSource::Path(i, j) => spec.rules.get(i).and_then(|r| {
                    let p = r.paths.get(j)?;
                    match (&p.backend.kind, &p.backend.auth) {
                        (BackendKind::Service, None) => auth_of(&r.backend),
                        _ => auth_of(&p.backend),
                    }
                }),
                RouteSource::Fallback => spec.fallback.as_ref().and_then(auth_of),
            };
            let headers = auth.and_then(|a| RouteHeaders::of(&a.identity_headers));
            if let Some(h) = &headers {
                for name in [&h.user, &h.email, &h.groups].into_iter().flatten() {
                    if !table.names.contains(name) {
                        table.names.push(name.clone());
                    }
                }
            }
            table.by_route.push(headers.map(Arc::new));
        }
        table
    }

    /// Every header name any route configures (lower-cased).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    /// Whether any route configures identity headers or credential stripping.
    pub fn is_empty(&self) -> bool {
        self.by_route.iter().all(Option::is_none)
    }

    /// Adds `route`'s headers for `user` to what goes upstream, and removes
    /// every configured name (ours overwrite instead: see
    /// [`crate::response`]) and, with `strip_credentials`, `Authorization`.
    pub fn apply<'e>(
        &'e self,
        route: Option<RouteId>,
        user: Option<&Identity>,
        upstream: &mut Vec<(&'e str, String)>,
        remove: &mut Vec<&'e str>,
    ) {
        remove.extend(self.names.iter().map(|n| &**n));
        let Some(headers) = route.and_then(|r| self.by_route.get(r.0 as usize)?.as_deref()) else {
            return;
        };
        if headers.strip_credentials {
            remove.push("authorization");
        }
        let Some(user) = user else {
            return;
        };
        let facts = [
            (&headers.user, user.user().and_then(value)),
            (&headers.email, user.email().and_then(value)),
            (&headers.groups, user.groups().and_then(joined)),
        ];
        for (name, fact) in facts {
            if let (Some(name), Some(fact)) = (name, fact) {
                upstream.push((name, fact));
            }
        }
    }
}

/// A service backend's auth, when it is on.
fn auth_of(backend: &BackendSpec) -> Option<&AuthSpec> {
    let auth = backend.auth.as_ref()?;
    (backend.kind == BackendKind::Service
        && auth.enabled != Some(false)
        && !auth.methods.is_empty())
    .then_some(auth)
}

/// A fact as a header value, or None when it cannot be one as it is: empty,
/// a control character (CR, LF, NUL, tab, DEL), or surrounding whitespace
/// a proxy would trim.
fn value(fact: &str) -> Option<String> {
    let clean = !fact.is_empty() && fact.trim() == fact && !fact.chars().any(|c| c.is_control());
    clean.then(|| fact.to_string())
}

/// Groups joined with `,`. A group that cannot be told apart in that list
/// (it contains `,`, or is no clean header value) is left out: the upstream
/// then sees fewer groups, never one the identity does not have. None when
/// no group is left.
fn joined(groups: &[String]) -> Option<String> {
    let kept: Vec<&str> = groups
        .iter()
        .map(String::as_str)
        .filter(|g| !g.contains(',') && value(g).is_some())
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_tokens_and_not_ours() {
        assert_eq!(
            check_name("X-Auth-Request-User").unwrap(),
            "x-auth-request-user"
        );
        for bad in ["", "x user", "x:y", "x\r\ny", "é"] {
            assert!(
                matches!(check_name(bad), Err(NameError::NotAToken(_))),
                "{bad:?}"
            );
        }
        for ours in [
            "X-Connect-Token",
            "authorization",
            "Cookie",
            "host",
            "Connection",
            "x-envoy-original-path",
        ] {
            assert!(
                matches!(check_name(ours), Err(NameError::Reserved(_))),
                "{ours}"
            );
        }
    }

    #[test]
    fn values_fail_closed() {
        assert_eq!(value("alice").as_deref(), Some("alice"));
        assert_eq!(value("Zoë Example").as_deref(), Some("Zoë Example"));
        for bad in ["", " alice", "alice ", "a\r\nx-admin: 1", "a\0", "a\tb"] {
            assert_eq!(value(bad), None, "{bad:?}");
        }
        let groups = |g: &[&str]| joined(&g.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            groups(&["admins", "staff"]).as_deref(),
            Some("admins,staff")
        );
        assert_eq!(groups(&["x,admins", "staff"]).as_deref(), Some("staff"));
        assert_eq!(groups(&["a\nb"]), None);
        assert_eq!(groups(&[]), None);
    }
}
