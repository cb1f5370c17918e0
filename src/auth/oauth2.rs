//! OAuth2 redirect login (SPEC §5, §6): the `Check` side. A valid session
//! cookie allows (with connect headers); a browser navigation without one is
//! sent to the provider; anything else gets 401. The provider's answer comes
//! back to the sidecar's `/oauth2/callback` ([`crate::login`]).

use std::sync::Arc;

use oauth2::{CsrfToken, PkceCodeChallenge};
use sha2::{Digest, Sha256};

use super::providers::{Provider, ProviderHttp};
use super::{AuthResult, Denial, Redirect};
use crate::config::spec::OAuth2Spec;
use crate::connect::ConnectSigner;
use crate::decision::{Reason, Status};
use crate::request::RequestView;
use crate::secret::Secret;
use crate::session::{
    Identity, LoginState, Purpose, Session, SessionKeys, now_secs, same_host_path,
};

/// How long a login may take at the provider.
pub const LOGIN_TTL_SECS: u64 = 600;

/// Session cookie settings shared by every login route.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    pub max_age: u64,
    pub trust_forwarded_proto: bool,
}

impl CookieSettings {
    /// `<name>_login_<id>`: one cookie per login in flight, so tabs and
    /// favicon requests never overwrite each other's state.
    pub fn login_cookie(&self, state: &str) -> String {
        let digest = Sha256::digest(state.as_bytes());
        format!("{}_login_{}", self.name, &hex::encode(digest)[..12])
    }

    pub fn is_ours(&self, cookie_name: &str) -> bool {
        cookie_name == self.name
            || cookie_name
                .strip_prefix(&self.name)
                .is_some_and(|rest| rest.starts_with("_login_"))
    }
}

#[derive(Debug)]
pub struct OAuth2 {
    pub provider: Provider,
    pub client_id: String,
    client_secret: Secret,
    redirect_url: Option<url::Url>,
    allowed_emails: Vec<String>,
    allowed_domains: Vec<String>,
    pub connect: Option<ConnectSigner>,
    pub keys: Arc<SessionKeys>,
    pub cookies: Arc<CookieSettings>,
}

impl OAuth2 {
    pub fn build(
        spec: &OAuth2Spec,
        keys: Arc<SessionKeys>,
        cookies: Arc<CookieSettings>,
    ) -> Result<Self, String> {
        let connect = match &spec.connect {
            Some(c) => ConnectSigner::from_spec(c)?,
            None => None,
        };
        Ok(OAuth2 {
            provider: Provider::from_spec(spec)?,
            client_id: spec.client_id.clone(),
            client_secret: spec.client_secret.clone(),
            redirect_url: spec.redirect_url.clone(),
            allowed_emails: spec
                .allowed_emails
                .iter()
                .map(|e| e.to_ascii_lowercase())
                .collect(),
            allowed_domains: spec
                .allowed_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            connect,
            keys,
            cookies,
        })
    }

    pub fn authenticate(&self, req: &RequestView<'_>, route: &str) -> AuthResult<'_> {
        if let Some((cookie, session)) = self.session(req) {
            if !self.is_allowed(&session.identity) {
                return AuthResult::Deny(Denial::status(Status::Forbidden, Reason::NotAllowed));
            }
            let mut upstream = Vec::new();
            if let Some(signer) = &self.connect {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let signed = signer.token_for(cookie, &session.identity, now);
                upstream.push(("x-connect-token", signed.token));
                upstream.push(("x-connect-timestamp", signed.issued_ms.to_string()));
            }
            return AuthResult::Allow {
                user: Some(session.identity.id),
                upstream,
            };
        }
        if !is_navigation(req) {
            return AuthResult::Deny(Denial::status(Status::Unauthorized, Reason::LoginRequired));
        }
        AuthResult::Deny(self.start_login(req, route))
    }

    /// The session cookie, if present, valid and made for this provider and client.
    fn session<'r>(&self, req: &RequestView<'r>) -> Option<(&'r str, Session)> {
        let value = cookie_value(req.header("cookie")?, &self.cookies.name)?;
        let session: Session = self.keys.open_json(Purpose::Session, value)?;
        let valid = session.expires > now_secs()
            && session.provider == self.provider.kind.as_str()
            && session.client_id == self.client_id;
        valid.then_some((value, session))
    }

    pub fn is_allowed(&self, identity: &Identity) -> bool {
        if self.allowed_emails.is_empty() && self.allowed_domains.is_empty() {
            return true;
        }
        let email = identity.email.to_ascii_lowercase();
        if email.is_empty() {
            return false;
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        self.allowed_emails.contains(&email) || self.allowed_domains.iter().any(|d| d == domain)
    }

    fn start_login(&self, req: &RequestView<'_>, route: &str) -> Denial<'_> {
        let redirect_uri = self.redirect_uri(req);
        let state = CsrfToken::new_random_len(32).secret().clone();
        let (challenge, verifier) = if self.provider.pkce {
            let (c, v) = PkceCodeChallenge::new_random_sha256();
            (Some(c.as_str().to_string()), Some(v.secret().clone()))
        } else {
            (None, None)
        };
        let login = LoginState {
            state: state.clone(),
            verifier,
            route: route.to_string(),
            original: same_host_path(req.path).to_string(),
            redirect_uri: redirect_uri.clone(),
            expires: now_secs() + LOGIN_TTL_SECS,
        };
        let sealed = self.keys.seal_json(Purpose::LoginState, &login);
        let secure = if self.is_https(req) { "; Secure" } else { "" };
        let set_cookie = format!(
            "{}={sealed}; Path=/oauth2/; Max-Age={LOGIN_TTL_SECS}; HttpOnly; SameSite=Lax{secure}",
            self.cookies.login_cookie(&state)
        );
        let location = self.provider.authorize_url(
            &self.client_id,
            &redirect_uri,
            &state,
            challenge.as_deref(),
        );
        Denial::redirect(
            Reason::LoginRedirect,
            Redirect {
                location,
                set_cookie,
            },
        )
    }

    pub fn client_secret(&self) -> &str {
        self.client_secret.expose()
    }

    fn is_https(&self, req: &RequestView<'_>) -> bool {
        scheme(req, self.cookies.trust_forwarded_proto) == "https"
    }

    /// The configured redirect_url, or `{scheme}://{host}/oauth2/callback`.
    fn redirect_uri(&self, req: &RequestView<'_>) -> String {
        match &self.redirect_url {
            Some(u) => u.to_string(),
            None => format!(
                "{}://{}/oauth2/callback",
                scheme(req, self.cookies.trust_forwarded_proto),
                req.host
            ),
        }
    }

    /// Completes a login at the provider (called by the callback).
    pub async fn finish_login(
        &self,
        http: &ProviderHttp,
        code: &str,
        login: &LoginState,
    ) -> Result<Identity, super::providers::LoginError> {
        self.provider
            .login(
                http,
                &self.client_id,
                self.client_secret.expose(),
                code,
                &login.redirect_uri,
                login.verifier.as_deref(),
            )
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
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
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
                && !c.is_ours("ingress_authzx")
                && !c.is_ours("other")
        );
        assert_ne!(c.login_cookie("s1"), c.login_cookie("s2"));
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
