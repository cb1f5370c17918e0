//! `Identity`: who a verified credential says the caller is — the proof
//! type the policy stage ([`crate::policy`]) judges. Its constructors are
//! crate-private and called only by authenticators after a credential
//! verified, so holding one means a check passed.

use std::sync::Arc;

use serde_json::Value;

use crate::auth::open_sessions::Opened;
use crate::decision::AuthKind;

/// What a verified token (jwt, oidc API mode) says, reduced to what
/// policies and connect headers use.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TokenIdentity {
    pub sub: Option<String>,
    /// Only an email the issuer vouches for (`email_verified: true`).
    pub email: Option<String>,
    /// The domain of `email` (or the Workspace domain where a provider
    /// needs `hd`).
    pub domain: Option<String>,
    /// None when the token has no groups claim.
    pub groups: Option<Vec<String>>,
    /// The claims policies name, as the token has them.
    pub claims: serde_json::Map<String, Value>,
    /// For connect headers: `preferred_username`, `name`, `picture`.
    pub username: String,
    pub name: String,
    pub picture: String,
    /// Unix seconds.
    pub exp: Option<u64>,
}

/// Which email in verified claims counts (SPEC §13.1's trust table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailRule {
    /// `email` only with `email_verified: true`.
    EmailVerified,
    /// Google: as `EmailVerified`, and the domain only from `hd`.
    HostedDomain,
    /// Microsoft with a fixed tenant: the tenant's `email` counts.
    Tenant,
}

/// How to read an identity out of verified claims.
#[derive(Clone, Copy, Debug)]
pub struct ClaimsReader<'c> {
    pub groups_claim: &'c str,
    /// Claim names policies read (kept; the rest is dropped).
    pub policy_claims: &'c [String],
    pub email: EmailRule,
}

impl ClaimsReader<'_> {
    /// What verified `claims` say, by this reader's rules.
    pub fn read(&self, claims: &Value) -> TokenIdentity {
        let s = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default();
        let raw_email = s("email");
        let email = match self.email {
            EmailRule::EmailVerified | EmailRule::HostedDomain => email_verified(claims),
            EmailRule::Tenant => true,
        }
        .then(|| raw_email.to_string())
        .filter(|e| domain_of(e).is_some());
        let domain = match self.email {
            EmailRule::HostedDomain => {
                let hd = s("hd").to_ascii_lowercase();
                email
                    .as_deref()
                    .and_then(domain_of)
                    .filter(|d| !hd.is_empty() && *d == hd)
            }
            _ => email.as_deref().and_then(domain_of),
        };
        let mut kept = serde_json::Map::new();
        for name in self.policy_claims {
            if let Some(v) = at_path(claims, name) {
                kept.insert(name.clone(), v.clone());
            }
        }
        TokenIdentity {
            sub: Some(s("sub").to_string()).filter(|v| !v.is_empty()),
            email,
            domain,
            groups: groups_of(at_path(claims, self.groups_claim)),
            claims: kept,
            username: [s("preferred_username"), s("nickname"), raw_email]
                .into_iter()
                .find(|v| !v.is_empty())
                .unwrap_or_default()
                .to_string(),
            name: s("name").to_string(),
            picture: s("picture").to_string(),
            exp: claims.get("exp").and_then(Value::as_u64),
        }
    }
}

#[derive(Debug, Clone)]
enum Who {
    /// A basic username, a bearer token's name; None for an unnamed token.
    Name(Option<Arc<str>>),
    Token(Arc<TokenIdentity>),
    Session(Arc<Opened>),
}

/// A caller whose credential verified. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Identity {
    kind: AuthKind,
    who: Who,
}

/// Two identities are the same caller when kind, id and login agree.
impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.user() == other.user() && self.login() == other.login()
    }
}

impl Eq for Identity {}

impl Identity {
    pub(crate) fn named(kind: AuthKind, name: Option<Arc<str>>) -> Self {
        Self {
            kind,
            who: Who::Name(name),
        }
    }

    pub(crate) fn token(kind: AuthKind, token: Arc<TokenIdentity>) -> Self {
        Self {
            kind,
            who: Who::Token(token),
        }
    }

    pub(crate) fn session(kind: AuthKind, opened: Arc<Opened>) -> Self {
        Self {
            kind,
            who: Who::Session(opened),
        }
    }

    pub fn kind(&self) -> AuthKind {
        self.kind
    }

    /// The stable id: basic username, bearer token name, jwt/oidc `sub`,
    /// the provider's user id.
    pub fn user(&self) -> Option<&str> {
        match &self.who {
            Who::Name(n) => n.as_deref(),
            Who::Token(t) => t.sub.as_deref(),
            Who::Session(s) => Some(&s.session.identity.id),
        }
    }

    /// A provider login name (oauth2), which users can change.
    pub fn login(&self) -> Option<&str> {
        match &self.who {
            Who::Session(s) => Some(s.session.identity.username.as_str()).filter(|u| !u.is_empty()),
            _ => None,
        }
    }

    /// A verified email, as the provider gave it.
    pub fn email(&self) -> Option<&str> {
        match &self.who {
            Who::Name(_) => None,
            Who::Token(t) => t.email.as_deref(),
            Who::Session(s) => s.session.attrs.email.as_deref(),
        }
    }

    /// The domain the provider vouches for.
    pub fn domain(&self) -> Option<&str> {
        match &self.who {
            Who::Name(_) => None,
            Who::Token(t) => t.domain.as_deref(),
            Who::Session(s) => s.session.attrs.domain.as_deref(),
        }
    }

    /// Groups, when the credential or the provider told them.
    pub fn groups(&self) -> Option<&[String]> {
        match &self.who {
            Who::Name(_) => None,
            Who::Token(t) => t.groups.as_deref(),
            Who::Session(s) => s.session.attrs.groups.as_deref(),
        }
    }

    pub fn claim(&self, name: &str) -> Option<&Value> {
        match &self.who {
            Who::Name(_) => None,
            Who::Token(t) => t.claims.get(name),
            Who::Session(s) => s.session.attrs.claims.get(name),
        }
    }

    /// True for a session sealed before sessions carried policy
    /// attributes: what it lacks is unknown, not absent.
    pub fn predates_attributes(&self) -> bool {
        matches!(&self.who, Who::Session(s) if s.session.attrs.version == 0)
    }
}

/// A string at a dotted path (`realm_access.roles`) of a JSON object.
pub fn at_path<'v>(claims: &'v Value, path: &str) -> Option<&'v Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, key| v.get(key))
}

/// Groups from a claim: an array of strings, or one string.
pub fn groups_of(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

/// `email_verified` as OpenID Connect defines it: `true` (some providers
/// send the string `"true"`). Absent or anything else: not verified.
pub fn email_verified(claims: &Value) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The domain after the last `@`, lower-cased.
pub fn domain_of(email: &str) -> Option<String> {
    let (local, domain) = email.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_and_group_shapes() {
        let v = serde_json::json!({"realm_access": {"roles": ["a", "b"]}, "g": "one", "x.y": [1]});
        assert_eq!(
            groups_of(at_path(&v, "realm_access.roles")),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(groups_of(at_path(&v, "g")), Some(vec!["one".into()]));
        assert_eq!(groups_of(at_path(&v, "missing.x")), None);
        assert!(at_path(&v, "x.y").is_some(), "a literal dotted name wins");
    }

    #[test]
    fn only_true_is_verified() {
        for (v, want) in [
            (serde_json::json!({"email_verified": true}), true),
            (serde_json::json!({"email_verified": "true"}), true),
            (serde_json::json!({"email_verified": false}), false),
            (serde_json::json!({"email_verified": "yes"}), false),
            (serde_json::json!({}), false),
        ] {
            assert_eq!(email_verified(&v), want, "{v}");
        }
        assert_eq!(domain_of("A@Example.COM").as_deref(), Some("example.com"));
        assert_eq!(domain_of("@x.com"), None);
        assert_eq!(domain_of("nobody"), None);
    }
}
