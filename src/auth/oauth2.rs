//! OAuth2 redirect login (SPEC §5, §6): the `Check` side. A valid session
//! cookie allows (with connect headers); a browser navigation without one is
//! sent to the provider; anything else gets 401. The provider's answer comes
//! back to the sidecar's `/oauth2/callback` ([`crate::login`]).

use sha2::{Digest, Sha256};

use super::login_client::{ClientSettings, LoginClient, RefreshFlights};
use super::providers::{Provider, ProviderHttp};
use super::{AuthKind, AuthResult, BuildContext, BuildError, PolicyNeeds};
use crate::config::spec::OAuth2Spec;
use crate::request::RequestView;
use crate::session::{Attributes, Identity, LoginState, Session};

/// Session cookie settings shared by every login route.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    pub max_age: u64,
    pub trust_forwarded_proto: bool,
}

/// On https our cookies carry this prefix: the browser then accepts them
/// only with `Secure`, `Path=/` and no `Domain`, so a subdomain or a plain
/// http page can never set or shadow them.
pub const HOST_PREFIX: &str = "__Host-";

impl CookieSettings {
    /// `<name>_login_<id>`: one cookie per login in flight, so tabs and
    /// favicon requests never overwrite each other's state. `__Host-` on https.
    pub fn login_cookie(&self, state: &str, secure: bool) -> String {
        let digest = Sha256::digest(state.as_bytes());
        let prefix = if secure { HOST_PREFIX } else { "" };
        format!("{prefix}{}_login_{}", self.name, &hex::encode(digest)[..12])
    }

    /// The login-state cookie's path: `/oauth2/`, or `/` where `__Host-` demands it.
    pub fn login_path(secure: bool) -> &'static str {
        if secure { "/" } else { "/oauth2/" }
    }

    /// The session cookie's name: `__Host-<name>` on https.
    pub fn session_name(&self, secure: bool) -> String {
        if secure {
            format!("{HOST_PREFIX}{}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// The session cookie of a request: `__Host-<name>` on https, else (on
    /// http, or set by a release before the prefix) `<name>`. The value,
    /// and whether it is the plain-named one on https (to be replaced).
    pub fn session_in<'h>(&self, header: &'h str, secure: bool) -> Option<(&'h str, bool)> {
        let prefixed = |name: &str| name.strip_prefix(HOST_PREFIX) == Some(self.name.as_str());
        if secure && let Some(v) = cookie_where(header, prefixed) {
            return Some((v, false));
        }
        cookie_value(header, &self.name).map(|v| (v, secure))
    }

    pub fn is_ours(&self, cookie_name: &str) -> bool {
        let name = cookie_name.strip_prefix(HOST_PREFIX).unwrap_or(cookie_name);
        name == self.name
            || name
                .strip_prefix(&self.name)
                .is_some_and(|rest| rest.starts_with("_login_"))
    }

    /// `Set-Cookie` values that delete the session cookie under both names.
    pub fn expire_session(&self) -> [String; 2] {
        [
            format!("{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax", self.name),
            format!(
                "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure",
                self.session_name(true)
            ),
        ]
    }
}

#[derive(Debug)]
pub struct OAuth2 {
    pub provider: Provider,
    pub client: LoginClient,
    /// Refreshes of group memberships in flight, by session cookie.
    flights: RefreshFlights,
}

impl OAuth2 {
    pub fn build(
        spec: &OAuth2Spec,
        ctx: &BuildContext,
        needs: PolicyNeeds,
    ) -> Result<Self, BuildError> {
        let mut provider = Provider::from_spec(spec)?;
        if needs.groups
            && let Some(scope) = provider.kind.descriptor().groups_scope
            && !provider.scopes.iter().any(|s| s == scope)
        {
            provider.scopes.push(scope.to_string());
        }
        let client = LoginClient::new(
            ClientSettings {
                provider: provider.kind.as_str().to_string(),
                client_id: spec.client_id.clone(),
                client_secret: spec.client_secret.clone(),
                redirect_url: spec.redirect_url.clone(),
                kind: AuthKind::OAuth2,
                needs,
                connect: spec.connect.as_ref(),
            },
            ctx.keys.clone(),
            ctx.cookies.clone(),
        )?;
        Ok(Self {
            provider,
            client,
            flights: RefreshFlights::default(),
        })
    }

    pub fn authenticate(&self, req: &RequestView<'_>, route: &str) -> AuthResult<'_> {
        if let Some(result) = self.client.session_result(req) {
            return result;
        }
        self.login(req, route)
    }

    /// No (usable) session: a navigation goes to the provider, else 401.
    pub fn login(&self, req: &RequestView<'_>, route: &str) -> AuthResult<'_> {
        let provider = &self.provider;
        self.client
            .login_or_401(req, route, provider.pkce, false, |p| {
                provider.authorize_url(p.client_id, p.redirect_uri, p.state, p.challenge)
            })
    }

    /// Completes a login at the provider (called by the callback).
    pub async fn finish_login(
        &self,
        http: &ProviderHttp,
        code: &str,
        login: &LoginState,
    ) -> Result<(Identity, Attributes), super::LoginError> {
        self.provider
            .login(
                http,
                &super::providers::CodeExchange {
                    client_id: &self.client.client_id,
                    client_secret: self.client.client_secret(),
                    code,
                    redirect_uri: &login.redirect_uri,
                    verifier: login.verifier.as_deref(),
                },
                self.client.needs.groups,
            )
            .await
    }

    /// Reads a session's groups again with its access token (single flight
    /// per cookie). Some((cookie value, Set-Cookie)), or None when the
    /// provider no longer answers for the token (the session ends).
    pub async fn refresh_session(
        &self,
        http: &ProviderHttp,
        cookie: &str,
        secure: bool,
    ) -> Option<(String, String)> {
        self.flights
            .run(cookie, || async {
                let mut session: Session = self.client.open_cookie(cookie)?;
                let token = session.attrs.access.clone()?;
                let groups = self.provider.groups(http, &token).await?;
                session.attrs.groups = Some(groups);
                session.attrs.read_at = crate::clock::unix_secs();
                session.attrs.version = crate::session::ATTRIBUTES_VERSION;
                tracing::info!(target: "audit", event = "groups_refreshed", user = %session.identity.id);
                Some(self.client.seal_session(session, secure))
            })
            .await
    }
}

/// `https` or `http`: `x-forwarded-proto` when trusted (Envoy sets it),
/// else the CheckRequest's scheme.
pub fn scheme<'r>(req: &RequestView<'r>, trust_forwarded_proto: bool) -> &'r str {
    let forwarded = trust_forwarded_proto
        .then(|| req.header("x-forwarded-proto"))
        .flatten()
        .map(|p| p.split(',').next().unwrap_or_default().trim());
    match forwarded.or(Some(req.scheme)) {
        Some(s) if s.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    }
}

/// SPEC §6.1: `Sec-Fetch-Mode: navigate`; without Sec-Fetch headers, a
/// GET/HEAD whose Accept lists `text/html` explicitly.
pub fn is_navigation(req: &RequestView<'_>) -> bool {
    if let Some(mode) = req.header("sec-fetch-mode") {
        return mode.trim().eq_ignore_ascii_case("navigate");
    }
    (req.method.eq_ignore_ascii_case("GET") || req.method.eq_ignore_ascii_case("HEAD"))
        && req.header("accept").is_some_and(|a| {
            a.split(',')
                .map(|m| m.split(';').next().unwrap_or_default().trim())
                .any(|m| m.eq_ignore_ascii_case("text/html"))
        })
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    cookie_where(header, |k| k == name)
}

/// The value of the first cookie whose name `is` accepts.
fn cookie_where(header: &str, is: impl Fn(&str) -> bool) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| is(k))
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn view<'a>(method: &'a str, headers: &'a HashMap<String, String>) -> RequestView<'a> {
        RequestView {
            host: "a.com",
            path: "/",
            method,
            scheme: "http",
            headers,
            client: None,
        }
    }

    #[test]
    fn navigation_table() {
        let h = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let cases = [
            ("GET", h(&[("sec-fetch-mode", "navigate")]), true),
            (
                "GET",
                h(&[("sec-fetch-mode", "cors"), ("accept", "text/html")]),
                false,
            ),
            (
                "GET",
                h(&[("accept", "text/html,application/xhtml+xml")]),
                true,
            ),
            ("HEAD", h(&[("accept", "text/html")]), true),
            ("GET", h(&[("accept", "*/*")]), false),
            ("GET", h(&[("accept", "application/json")]), false),
            ("POST", h(&[("accept", "text/html")]), false),
            ("GET", h(&[]), false),
        ];
        for (method, headers, want) in cases {
            assert_eq!(
                is_navigation(&view(method, &headers)),
                want,
                "{method} {headers:?}"
            );
        }
    }

    #[test]
    fn cookie_parsing() {
        assert_eq!(
            cookie_value("a=1; ingress_authz=xyz; b=2", "ingress_authz"),
            Some("xyz")
        );
        assert_eq!(
            cookie_value("ingress_authz_login_abc=1", "ingress_authz"),
            None
        );
        assert_eq!(cookie_value("", "x"), None);
        let c = CookieSettings {
            name: "ingress_authz".into(),
            max_age: 1,
            trust_forwarded_proto: true,
        };
        assert!(
            c.is_ours("ingress_authz")
                && c.is_ours("ingress_authz_login_0123")
                && c.is_ours("__Host-ingress_authz")
                && c.is_ours("__Host-ingress_authz_login_0123")
                && !c.is_ours("ingress_authzx")
                && !c.is_ours("__Host-other")
                && !c.is_ours("other")
        );
        assert_ne!(c.login_cookie("s1", false), c.login_cookie("s2", false));
        assert!(
            c.login_cookie("s1", true)
                .starts_with("__Host-ingress_authz_login_")
        );
        // https: the prefixed cookie wins; a plain one is read (and flagged
        // for replacement); http reads only the plain name.
        let both = "ingress_authz=old; __Host-ingress_authz=new";
        assert_eq!(c.session_in(both, true), Some(("new", false)));
        assert_eq!(c.session_in("ingress_authz=old", true), Some(("old", true)));
        assert_eq!(c.session_in(both, false), Some(("old", false)));
        assert_eq!(c.session_in("__Host-ingress_authz=new", false), None);
    }

    #[test]
    fn forwarded_proto_is_honoured_only_when_trusted() {
        let headers: HashMap<String, String> =
            [("x-forwarded-proto".to_string(), "https".to_string())].into();
        let req = view("GET", &headers);
        assert_eq!(scheme(&req, true), "https");
        assert_eq!(scheme(&req, false), "http");
    }
}
