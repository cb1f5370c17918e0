//! The `allow:` block, compiled (SPEC §13.1): may this verified identity
//! pass this route? Kinds combine with AND, the entries of one kind with
//! OR. It knows nothing of how the identity was made; what an identity
//! cannot show (an unverified email, unknown groups) fails.

use std::fmt::Write as _;

use serde_json::Value;

use crate::config::spec::AllowSpec;
use crate::decision::Condition;
use crate::identity::Identity;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    users: Vec<String>,
    /// Lower-cased: login names are case-insensitive at every provider.
    logins: Vec<String>,
    /// Lower-cased.
    emails: Vec<String>,
    /// Lower-cased, without a leading `@`.
    domains: Vec<String>,
    groups: Vec<String>,
    /// Every named claim must hold; a claim holds when it equals any of the
    /// values (or, for an array, contains one).
    claims: Vec<(String, Vec<String>)>,
}

fn lower(items: &[String]) -> Vec<String> {
    items.iter().map(|s| s.to_ascii_lowercase()).collect()
}

impl Policy {
    /// None for an empty block: no policy, every verified identity passes.
    pub fn compile(spec: &AllowSpec) -> Option<Self> {
        let policy = Self {
            users: spec.users.clone(),
            logins: lower(&spec.logins),
            emails: lower(&spec.emails),
            domains: spec
                .domains
                .iter()
                .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
                .collect(),
            groups: spec.groups.clone(),
            claims: spec.claims.clone(),
        };
        (policy != Self::default()).then_some(policy)
    }

    /// Ok, or the first kind of condition that failed.
    pub fn check(&self, identity: &Identity) -> Result<(), Condition> {
        let fails = |ok: bool, c| if ok { Ok(()) } else { Err(c) };
        if !self.users.is_empty() {
            let user = identity.user().unwrap_or_default();
            fails(
                !user.is_empty() && self.users.iter().any(|u| u == user),
                Condition::Users,
            )?;
        }
        if !self.logins.is_empty() {
            let login = identity.login().unwrap_or_default();
            fails(
                !login.is_empty() && self.logins.iter().any(|l| l.eq_ignore_ascii_case(login)),
                Condition::Logins,
            )?;
        }
        if !self.emails.is_empty() {
            let email = identity.email().unwrap_or_default();
            fails(
                !email.is_empty() && self.emails.iter().any(|e| e.eq_ignore_ascii_case(email)),
                Condition::Emails,
            )?;
        }
        if !self.domains.is_empty() {
            let domain = identity.domain().unwrap_or_default();
            fails(
                !domain.is_empty() && self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)),
                Condition::Domains,
            )?;
        }
        if !self.groups.is_empty() {
            let groups = identity.groups().unwrap_or_default();
            fails(
                self.groups.iter().any(|g| groups.contains(g)),
                Condition::Groups,
            )?;
        }
        for (name, wanted) in &self.claims {
            let held = identity
                .claim(name)
                .is_some_and(|v| wanted.iter().any(|w| claim_holds(name, v, w)));
            fails(held, Condition::Claims)?;
        }
        Ok(())
    }

    /// Whether the policy reads groups or claims, which change at the
    /// provider and so must be re-read (`groups_ttl`).
    pub fn uses_groups_or_claims(&self) -> bool {
        !self.groups.is_empty() || !self.claims.is_empty()
    }

    /// One line for `explain`: the policy's kinds and values (no secrets
    /// live here: names, emails and groups are the operator's own text).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut kind = |key: &str, values: &[String]| {
            if !values.is_empty() {
                let sep = if out.is_empty() { "" } else { " AND " };
                let _ = write!(out, "{sep}{key} any of [{}]", values.join(", "));
            }
        };
        kind("users", &self.users);
        kind("logins", &self.logins);
        kind("emails", &self.emails);
        kind("domains", &self.domains);
        kind("groups", &self.groups);
        for (name, values) in &self.claims {
            let sep = if out.is_empty() { "" } else { " AND " };
            let _ = write!(out, "{sep}claim {name} any of [{}]", values.join(", "));
        }
        out
    }
}

/// A claim holds `want`: a string equal to it, an array holding it, a
/// number or boolean that prints as it; `scope`/`scp` as a space-separated
/// string of which it is one word (RFC 8693 §4.2).
fn claim_holds(name: &str, value: &Value, want: &str) -> bool {
    let scalar = |v: &Value| match v {
        Value::String(s) => s == want,
        Value::Bool(b) => want == if *b { "true" } else { "false" },
        Value::Number(n) => n.to_string() == want,
        _ => false,
    };
    match value {
        Value::Array(items) => items.iter().any(scalar),
        Value::String(s) if name == "scope" || name == "scp" => {
            s.split(' ').any(|word| word == want)
        }
        v => scalar(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::AuthKind;
    use crate::identity::TokenIdentity;
    use std::sync::Arc;

    fn spec(f: impl FnOnce(&mut AllowSpec)) -> Policy {
        let mut s = AllowSpec::default();
        f(&mut s);
        Policy::compile(&s).expect("a policy")
    }

    fn token(f: impl FnOnce(&mut TokenIdentity)) -> Identity {
        let mut t = TokenIdentity::default();
        f(&mut t);
        Identity::token(AuthKind::Jwt, Arc::new(t))
    }

    #[test]
    fn kinds_and_or_entries() {
        let p = spec(|s| {
            s.users = vec!["alice".into(), "bob".into()];
            s.groups = vec!["admins".into()];
        });
        let who = |sub: &str, groups: &[&str]| {
            token(|t| {
                t.sub = Some(sub.into());
                t.groups = Some(groups.iter().map(|g| g.to_string()).collect());
            })
        };
        assert_eq!(p.check(&who("bob", &["x", "admins"])), Ok(()));
        assert_eq!(p.check(&who("carol", &["admins"])), Err(Condition::Users));
        assert_eq!(p.check(&who("alice", &["staff"])), Err(Condition::Groups));
        assert_eq!(
            p.check(&token(|t| t.sub = Some("alice".into()))),
            Err(Condition::Groups),
            "unknown groups fail"
        );
        assert!(Policy::compile(&AllowSpec::default()).is_none());
    }

    #[test]
    fn emails_and_domains_need_verified_values() {
        let p = spec(|s| s.domains = vec!["@Example.com".into()]);
        assert_eq!(
            p.check(&token(|t| t.domain = Some("example.com".into()))),
            Ok(())
        );
        assert_eq!(p.check(&token(|_| {})), Err(Condition::Domains));
        let p = spec(|s| s.emails = vec!["A@x.com".into()]);
        assert_eq!(
            p.check(&token(|t| t.email = Some("a@X.com".into()))),
            Ok(())
        );
        assert_eq!(
            p.check(&token(|t| t.email = Some("b@x.com".into()))),
            Err(Condition::Emails)
        );
    }

    #[test]
    fn claims_equal_contain_or_scope_words() {
        let p = spec(|s| {
            s.claims = vec![
                ("tenant".into(), vec!["acme".into()]),
                ("scope".into(), vec!["read".into()]),
            ];
        });
        let with = |tenant: Value, scope: Value| {
            token(|t| {
                t.claims.insert("tenant".into(), tenant);
                t.claims.insert("scope".into(), scope);
            })
        };
        assert_eq!(p.check(&with("acme".into(), "write read".into())), Ok(()));
        assert_eq!(
            p.check(&with(
                serde_json::json!(["x", "acme"]),
                serde_json::json!(["read"])
            )),
            Ok(())
        );
        assert_eq!(
            p.check(&with("other".into(), "read".into())),
            Err(Condition::Claims)
        );
        assert_eq!(
            p.check(&with("acme".into(), "reader".into())),
            Err(Condition::Claims)
        );
        assert!(
            !claim_holds("tenant", &"acme corp".into(), "acme"),
            "only scope splits"
        );
        assert!(claim_holds("n", &serde_json::json!(7), "7"));
        assert!(claim_holds("b", &serde_json::json!(true), "true"));
    }
}
