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

/// On https a session cookie with `Domain` (single sign-on) carries this
/// prefix instead: `__Host-` forbids `Domain`, but `__Secure-` still keeps
/// plain-http pages from setting it.
pub const SECURE_PREFIX: &str = "__Secure-";

/// Session cookie settings shared by every login route.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    pub max_age: u64,
    pub trust_forwarded_proto: bool,
    /// `session.cookie_domain`: the session cookie is set with this
    /// `Domain` (it and its subdomains), no longer host-only.
    pub domain: Option<String>,
    /// `authz.login_host`: where hosts under `domain` log in.
    pub login_host: Option<String>,
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

    /// The session cookie's name: `__Host-<name>` on https
    /// (`__Secure-<name>` with a cookie domain).
    pub fn session_name(&self, scheme: Scheme) -> String {
        match (scheme.is_secure(), &self.domain) {
            (false, _) => self.name.clone(),
            (true, None) => format!("{HOST_PREFIX}{}", self.name),
            (true, Some(_)) => format!("{SECURE_PREFIX}{}", self.name),
        }
    }

    /// The session cookie of a request: `__Host-<name>` on https, else (on
    /// http, or set by a release before the prefix) `<name>`. The value,
    /// and whether it is the plain-named one on https (to be replaced).
    /// With a cookie domain, `__Secure-<name>` is the current one on https
    /// and a host-only `__Host-<name>` from before is read (and replaced).
    pub fn session_in<'h>(&self, header: &'h str, scheme: Scheme) -> Option<(&'h str, bool)> {
        let named = |prefix: &'static str| {
            move |name: &str| name.strip_prefix(prefix) == Some(self.name.as_str())
        };
        if scheme.is_secure() {
            if self.domain.is_some()
                && let Some(v) = find(header, named(SECURE_PREFIX))
            {
                return Some((v, false));
            }
            if let Some(v) = find(header, named(HOST_PREFIX)) {
                return Some((v, self.domain.is_some()));
            }
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
        let name = cookie_name
            .strip_prefix(HOST_PREFIX)
            .or_else(|| cookie_name.strip_prefix(SECURE_PREFIX))
            .unwrap_or(cookie_name);
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
            None,
        )
    }

    /// The `Set-Cookie` of a session (with `Domain` when one is configured).
    pub fn set_session(&self, sealed: &str, max_age: u64, scheme: Scheme) -> String {
        let name = self.session_name(scheme);
        render(&name, sealed, "/", max_age, scheme, self.domain.as_deref())
    }

    /// `Set-Cookie` values that delete the session cookie under every name
    /// it can have: host-only plain and `__Host-` (plain first), and with a
    /// cookie domain, the domain's plain and `__Secure-` ones (a `Domain`
    /// cookie is deleted only by one with the same `Domain`).
    pub fn expire_session(&self) -> Vec<String> {
        let mut expire = vec![self.expire_plain_session()];
        let prefixed = format!("{HOST_PREFIX}{}", self.name);
        expire.push(render(&prefixed, "", "/", 0, Scheme::Https, None));
        if let Some(domain) = &self.domain {
            for s in [Scheme::Http, Scheme::Https] {
                let name = self.session_name(s);
                expire.push(render(&name, "", "/", 0, s, Some(domain)));
            }
        }
        expire
    }

    /// The `Set-Cookie` that deletes the host-only, plain-named session.
    pub fn expire_plain_session(&self) -> String {
        render(&self.name, "", "/", 0, Scheme::Http, None)
    }

    /// `Set-Cookie` values that delete the login state of `state` under
    /// both names (https: `__Host-`, path `/`).
    pub fn expire_login(&self, state: &str) -> [String; 2] {
        [Scheme::Http, Scheme::Https].map(|s| {
            let name = self.login_cookie(state, s);
            render(&name, "", Self::login_path(s), 0, s, None)
        })
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
            name == self.name
                || name.strip_prefix(HOST_PREFIX) == Some(self.name.as_str())
                || name.strip_prefix(SECURE_PREFIX) == Some(self.name.as_str())
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

/// One of ours: host-only unless a `domain` is given, HttpOnly,
/// SameSite=Lax, Secure on https, in the attribute order every release has
/// sent (`Path`, `Max-Age`, then the flags; `Domain` first when there is
/// one). The value is sealed base64url or empty: nothing to quote.
fn render(
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    scheme: Scheme,
    domain: Option<&str>,
) -> String {
    let secure = if scheme.is_secure() { "; Secure" } else { "" };
    let domain = domain.map(|d| format!("; Domain={d}")).unwrap_or_default();
    format!(
        "{name}={value}{domain}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    )
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
            domain: None,
            login_host: None,
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
        let [plain, prefixed] = <[String; 2]>::try_from(c.expire_session()).unwrap();
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

    #[test]
    fn a_cookie_domain_covers_subdomains_without_the_host_prefix() {
        let c = CookieSettings {
            domain: Some("example.test".into()),
            ..settings()
        };
        assert_eq!(
            c.set_session("v", 60, Scheme::Http),
            "ingress_authz=v; Domain=example.test; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            c.set_session("v", 60, Scheme::Https),
            "__Secure-ingress_authz=v; Domain=example.test; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        // Login state stays host-only.
        assert!(!c.set_login("s", "v", 600, Scheme::Https).contains("Domain"));
        let both = "__Host-ingress_authz=old; __Secure-ingress_authz=new";
        assert_eq!(c.session_in(both, Scheme::Https), Some(("new", false)));
        assert_eq!(
            c.session_in("__Host-ingress_authz=old", Scheme::Https),
            Some(("old", true))
        );
        assert!(c.is_ours("__Secure-ingress_authz"));
        assert_eq!(
            c.strip_ours("__Secure-ingress_authz=x; a=1"),
            Stripped::Kept("a=1".into())
        );
        let expire = c.expire_session();
        assert_eq!(expire.len(), 4);
        assert!(expire[2].starts_with("ingress_authz=; Domain=example.test; Path=/; Max-Age=0"));
        assert!(expire[3].starts_with("__Secure-ingress_authz=; Domain=example.test;"));
    }
}
