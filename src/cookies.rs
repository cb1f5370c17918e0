//! Our cookies — the session cookie and one login-state cookie per login in
//! flight: their names, how they are set and expired, finding them in a
//! `Cookie` header, and keeping them from the upstream. Built on the
//! `cookie` crate's parser; `Set-Cookie` values are written in one place.

use cookie::Cookie;
use sha2::{Digest, Sha256};

use crate::request::Scheme;

/// On https our cookies carry this prefix: the browser then accepts them
/// only with `Secure`, `Path=/` and no `Domain`, so a subdomain or a plain
/// http page can never set or shadow them.
pub const HOST_PREFIX: &str = "__Host-";

/// Session cookie settings shared by every login route.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    pub max_age: u64,
    pub trust_forwarded_proto: bool,
}

/// A `Cookie` header with our cookies taken out.
#[derive(Debug, PartialEq, Eq)]
pub enum Stripped {
    /// None of ours was there: forward the header as it is.
    Untouched,
    /// Only ours was there: remove the header.
    Empty,
    /// The other cookies, to forward instead.
    Kept(String),
}

impl CookieSettings {
    /// `<name>_login_<id>`: one cookie per login in flight, so tabs and
    /// favicon requests never overwrite each other's state. `__Host-` on https.
    pub fn login_cookie(&self, state: &str, scheme: Scheme) -> String {
        let digest = Sha256::digest(state.as_bytes());
        let prefix = if scheme.is_secure() { HOST_PREFIX } else { "" };
        format!("{prefix}{}_login_{}", self.name, &hex::encode(digest)[..12])
    }

    /// The login-state cookie's path: `/oauth2/`, or `/` where `__Host-` demands it.
    pub fn login_path(scheme: Scheme) -> &'static str {
        if scheme.is_secure() { "/" } else { "/oauth2/" }
    }

    /// The session cookie's name: `__Host-<name>` on https.
    pub fn session_name(&self, scheme: Scheme) -> String {
        if scheme.is_secure() {
            format!("{HOST_PREFIX}{}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// The session cookie of a request: `__Host-<name>` on https, else (on
    /// http, or set by a release before the prefix) `<name>`. The value,
    /// and whether it is the plain-named one on https (to be replaced).
    pub fn session_in<'h>(&self, header: &'h str, scheme: Scheme) -> Option<(&'h str, bool)> {
        let prefixed = |name: &str| name.strip_prefix(HOST_PREFIX) == Some(self.name.as_str());
        if scheme.is_secure()
            && let Some(v) = find(header, prefixed)
        {
            return Some((v, false));
        }
        find(header, |n| n == self.name).map(|v| (v, scheme.is_secure()))
    }

    /// The sealed login state of `state`, under either name (a login begun
    /// on https, or by a release before the prefix, read on http).
    pub fn login_in<'h>(&self, header: &'h str, state: &str) -> Option<&'h str> {
        value(header, &self.login_cookie(state, Scheme::Https))
            .or_else(|| value(header, &self.login_cookie(state, Scheme::Http)))
    }

    /// Whether a cookie of this name is one of ours (under either name).
    pub fn is_ours(&self, cookie_name: &str) -> bool {
        let name = cookie_name.strip_prefix(HOST_PREFIX).unwrap_or(cookie_name);
        name == self.name
            || name
                .strip_prefix(&self.name)
                .is_some_and(|rest| rest.starts_with("_login_"))
    }

    /// The `Set-Cookie` of a login in flight.
    pub fn set_login(&self, state: &str, sealed: &str, max_age: u64, scheme: Scheme) -> String {
        render(
            &self.login_cookie(state, scheme),
            sealed,
            Self::login_path(scheme),
            max_age,
            scheme,
        )
    }

    /// The `Set-Cookie` of a session.
    pub fn set_session(&self, sealed: &str, max_age: u64, scheme: Scheme) -> String {
        render(&self.session_name(scheme), sealed, "/", max_age, scheme)
    }

    /// `Set-Cookie` values that delete the session cookie under both names
    /// (plain first).
    pub fn expire_session(&self) -> [String; 2] {
        [Scheme::Http, Scheme::Https].map(|s| render(&self.session_name(s), "", "/", 0, s))
    }

    /// `Set-Cookie` values that delete the login state of `state` under
    /// both names (https: `__Host-`, path `/`).
    pub fn expire_login(&self, state: &str) -> [String; 2] {
        [Scheme::Http, Scheme::Https]
            .map(|s| render(&self.login_cookie(state, s), "", Self::login_path(s), 0, s))
    }

    /// The request's `Cookie` header without ours.
    pub fn strip_ours(&self, header: &str) -> Stripped {
        let pairs = || Cookie::split_parse(header).filter_map(Result::ok);
        if !pairs().any(|c| self.is_ours(c.name())) {
            return Stripped::Untouched;
        }
        let kept = join(pairs().filter(|c| !self.is_ours(c.name())));
        if kept.is_empty() {
            Stripped::Empty
        } else {
            Stripped::Kept(kept)
        }
    }

    /// The request's `Cookie` header with every session cookie (either
    /// name) replaced by `replacement` (under this scheme's name), once —
    /// or by nothing.
    pub fn replace_session(
        &self,
        header: &str,
        replacement: Option<&str>,
        scheme: Scheme,
    ) -> String {
        let is_session = |name: &str| {
            name == self.name || name.strip_prefix(HOST_PREFIX) == Some(self.name.as_str())
        };
        let mut replaced = false;
        let mut out = Vec::new();
        for c in Cookie::split_parse(header).filter_map(Result::ok) {
            if !is_session(c.name()) {
                out.push(pair(&c));
            } else if let Some(value) = replacement
                && !std::mem::replace(&mut replaced, true)
            {
                out.push(format!("{}={value}", self.session_name(scheme)));
            }
        }
        out.join("; ")
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn value<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    find(header, |n| n == name)
}

/// The value of the first cookie whose name `is` accepts, quotes removed.
fn find(header: &str, is: impl Fn(&str) -> bool) -> Option<&str> {
    Cookie::split_parse(header)
        .filter_map(Result::ok)
        .find(|c| is(c.name()))
        .and_then(|c| c.value_raw())
        .map(|v| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
}

/// One of ours: host-only, HttpOnly, SameSite=Lax, Secure on https, in
/// the attribute order every release has sent (`Path`, `Max-Age`, then the
/// flags). The value is sealed base64url or empty: nothing to quote.
fn render(name: &str, value: &str, path: &str, max_age: u64, scheme: Scheme) -> String {
    let secure = if scheme.is_secure() { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// `name=value` as it came (raw, quotes kept).
fn pair(c: &Cookie<'_>) -> String {
    let name = c.name_raw().unwrap_or_else(|| c.name());
    let value = c.value_raw().unwrap_or_else(|| c.value());
    format!("{name}={value}")
}

fn join<'c>(cookies: impl Iterator<Item = Cookie<'c>>) -> String {
    cookies.map(|c| pair(&c)).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CookieSettings {
        CookieSettings {
            name: "ingress_authz".into(),
            max_age: 1,
            trust_forwarded_proto: true,
        }
    }

    #[test]
    fn values_and_names() {
        assert_eq!(
            value("a=1; ingress_authz=xyz; b=2", "ingress_authz"),
            Some("xyz")
        );
        assert_eq!(value("ingress_authz_login_abc=1", "ingress_authz"), None);
        assert_eq!(value("a=\"quoted\"", "a"), Some("quoted"));
        assert_eq!(value("", "x"), None);
        let c = settings();
        assert!(
            c.is_ours("ingress_authz")
                && c.is_ours("ingress_authz_login_0123")
                && c.is_ours("__Host-ingress_authz")
                && c.is_ours("__Host-ingress_authz_login_0123")
                && !c.is_ours("ingress_authzx")
                && !c.is_ours("__Host-other")
                && !c.is_ours("other")
        );
        assert_ne!(
            c.login_cookie("s1", Scheme::Http),
            c.login_cookie("s2", Scheme::Http)
        );
        assert!(
            c.login_cookie("s1", Scheme::Https)
                .starts_with("__Host-ingress_authz_login_")
        );
        // https: the prefixed cookie wins; a plain one is read (and flagged
        // for replacement); http reads only the plain name.
        let both = "ingress_authz=old; __Host-ingress_authz=new";
        assert_eq!(c.session_in(both, Scheme::Https), Some(("new", false)));
        assert_eq!(
            c.session_in("ingress_authz=old", Scheme::Https),
            Some(("old", true))
        );
        assert_eq!(c.session_in(both, Scheme::Http), Some(("old", false)));
        assert_eq!(c.session_in("__Host-ingress_authz=new", Scheme::Http), None);
    }

    #[test]
    fn set_and_expire() {
        let c = settings();
        let set = c.set_session("v", 60, Scheme::Https);
        for part in [
            "__Host-ingress_authz=v",
            "Path=/",
            "Max-Age=60",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
        ] {
            assert!(set.contains(part), "{set}");
        }
        let login = c.set_login("s", "v", 600, Scheme::Http);
        assert!(login.contains("Path=/oauth2/") && !login.contains("Secure"));
        let [plain, prefixed] = c.expire_session();
        assert!(plain.starts_with("ingress_authz=;") && plain.contains("Max-Age=0"));
        assert!(prefixed.starts_with("__Host-ingress_authz=;") && prefixed.contains("Secure"));
        let [http, https] = c.expire_login("s");
        assert!(http.contains("Path=/oauth2/") && https.contains("Path=/;"));
    }

    #[test]
    fn strip_and_replace() {
        let c = settings();
        assert_eq!(c.strip_ours("a=1; b=2"), Stripped::Untouched);
        assert_eq!(
            c.strip_ours("ingress_authz=x; __Host-ingress_authz_login_1=y"),
            Stripped::Empty
        );
        assert_eq!(
            c.strip_ours("a=1; __Host-ingress_authz=x; b=\"2\""),
            Stripped::Kept("a=1; b=\"2\"".into())
        );
        let header = "a=1; ingress_authz=old; __Host-ingress_authz=old2; b=2";
        assert_eq!(
            c.replace_session(header, Some("new"), Scheme::Https),
            "a=1; __Host-ingress_authz=new; b=2"
        );
        assert_eq!(c.replace_session(header, None, Scheme::Https), "a=1; b=2");
    }
}
