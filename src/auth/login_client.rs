//! What the redirect logins (oauth2 and oidc) share on the `Check` side:
//! the session check, the connect headers, and starting a login.

use std::sync::Arc;

use oauth2::{CsrfToken, PkceCodeChallenge};

use super::oauth2::{CookieSettings, cookie_value, is_navigation, scheme};
use super::open_sessions::OpenSessions;
use super::{AuthResult, Denial, Redirect};
use crate::config::spec::ConnectSpec;
use crate::connect::ConnectSigner;
use crate::decision::{Reason, Status};
use crate::request::RequestView;
use crate::secret::Secret;
use crate::session::{
    Identity, LoginState, Purpose, Session, SessionKeys, now_secs, same_host_path,
};

/// Browsers drop cookies over 4096 bytes (name, value and attributes):
/// stay below with room for the attributes.
const MAX_COOKIE_VALUE: usize = 3800;

/// A refresh token and when to use it (seconds from now).
#[derive(Debug, Clone)]
pub struct Refresh {
    pub token: String,
    pub renew_in: u64,
}

/// How long a login may take at the provider.
pub const LOGIN_TTL_SECS: u64 = 600;

/// One registered client at one provider.
#[derive(Debug)]
pub struct LoginClient {
    /// What sessions are bound to besides the client id (`github`, `oidc`, ...).
    pub provider: String,
    pub client_id: String,
    client_secret: Secret,
    redirect_url: Option<url::Url>,
    allowed_emails: Vec<String>,
    allowed_domains: Vec<String>,
    pub connect: Option<ConnectSigner>,
    pub keys: Arc<SessionKeys>,
    pub cookies: Arc<CookieSettings>,
    /// Cookies of this client already decrypted, with their connect tokens.
    opened: OpenSessions,
}

/// The parameters of one authorize redirect.
pub struct AuthorizeParams<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub challenge: Option<&'a str>,
    pub nonce: Option<&'a str>,
}

/// Settings of a login client, as the config gives them.
pub struct ClientSettings<'a> {
    pub provider: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_url: Option<url::Url>,
    pub allowed_emails: &'a [String],
    pub allowed_domains: &'a [String],
    pub connect: Option<&'a ConnectSpec>,
}

impl LoginClient {
    pub fn new(
        s: ClientSettings<'_>,
        keys: Arc<SessionKeys>,
        cookies: Arc<CookieSettings>,
    ) -> Result<Self, String> {
        let connect = match s.connect {
            Some(c) => ConnectSigner::from_spec(c)?,
            None => None,
        };
        Ok(LoginClient {
            provider: s.provider,
            client_id: s.client_id,
            client_secret: s.client_secret,
            redirect_url: s.redirect_url,
            allowed_emails: s
                .allowed_emails
                .iter()
                .map(|e| e.to_ascii_lowercase())
                .collect(),
            allowed_domains: s
                .allowed_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            connect,
            keys,
            cookies,
            opened: OpenSessions::default(),
        })
    }

    pub fn client_secret(&self) -> &str {
        self.client_secret.expose()
    }

    /// Some(decision) when the request carries a valid session of this client.
    pub fn session_result<'s>(&self, req: &RequestView<'_>) -> Option<AuthResult<'s>> {
        let value = cookie_value(req.header("cookie")?, &self.cookies.name)?;
        let opened = self.opened.get_or_open(value, || self.open_cookie(value))?;
        let session = &opened.session;
        if session.expires <= now_secs() {
            return None;
        }
        if session.refresh.is_some() && session.renew_at != 0 && session.renew_at <= now_secs() {
            // Due: the service refreshes it at the provider, then decides again.
            return Some(AuthResult::Deny(Denial::status(
                Status::Unauthorized,
                Reason::SessionRefresh,
            )));
        }
        if !self.is_allowed(&session.identity) {
            return Some(AuthResult::Deny(Denial::status(
                Status::Forbidden,
                Reason::NotAllowed,
            )));
        }
        let mut upstream = Vec::new();
        if let Some(signer) = &self.connect {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let signed = match opened.connect.load_full() {
                Some(signed) if signer.is_fresh(&signed, now) => signed,
                // None yet, or near expiry: sign (two requests racing here
                // both sign; either token is valid).
                _ => {
                    let signed = Arc::new(signer.sign(&session.identity, now));
                    opened.connect.store(Some(signed.clone()));
                    signed
                }
            };
            upstream.push(("x-connect-token", signed.token.clone()));
            upstream.push(("x-connect-timestamp", signed.issued_ms.to_string()));
        }
        Some(AuthResult::Allow {
            user: Some(session.identity.id.clone()),
            upstream,
        })
    }

    /// No session: a navigation goes to the provider, anything else gets 401.
    pub fn login_or_401<'s>(
        &self,
        req: &RequestView<'_>,
        route: &str,
        pkce: bool,
        nonce: bool,
        authorize: impl FnOnce(&AuthorizeParams<'_>) -> String,
    ) -> AuthResult<'s> {
        if !is_navigation(req) {
            return AuthResult::Deny(Denial::status(Status::Unauthorized, Reason::LoginRequired));
        }
        let redirect_uri = self.redirect_uri(req);
        let state = CsrfToken::new_random_len(32).secret().clone();
        let (challenge, verifier) = if pkce {
            let (c, v) = PkceCodeChallenge::new_random_sha256();
            (Some(c.as_str().to_string()), Some(v.secret().clone()))
        } else {
            (None, None)
        };
        let nonce = nonce.then(|| CsrfToken::new_random_len(32).secret().clone());
        let login = LoginState {
            state: state.clone(),
            verifier,
            nonce: nonce.clone(),
            route: route.to_string(),
            original: same_host_path(req.path).to_string(),
            redirect_uri: redirect_uri.clone(),
            expires: now_secs() + LOGIN_TTL_SECS,
        };
        let sealed = self.keys.seal_json(Purpose::LoginState, &login);
        let secure = if scheme(req, self.cookies.trust_forwarded_proto) == "https" {
            "; Secure"
        } else {
            ""
        };
        let set_cookie = format!(
            "{}={sealed}; Path=/oauth2/; Max-Age={LOGIN_TTL_SECS}; HttpOnly; SameSite=Lax{secure}",
            self.cookies.login_cookie(&state)
        );
        let location = authorize(&AuthorizeParams {
            client_id: &self.client_id,
            redirect_uri: &redirect_uri,
            state: &state,
            challenge: challenge.as_deref(),
            nonce: nonce.as_deref(),
        });
        AuthResult::Deny(Denial::redirect(
            Reason::LoginRedirect,
            Redirect {
                location,
                set_cookie,
            },
        ))
    }

    /// Seals a session: (cookie value, `Set-Cookie`). Trims the identity
    /// (avatar first) rather than make a cookie the browser would drop.
    pub fn seal_session(&self, mut session: Session, secure: bool) -> (String, String) {
        let mut sealed = self.keys.seal_json(Purpose::Session, &session);
        for trim in [
            |s: &mut Session| s.identity.avatar.clear(),
            |s: &mut Session| truncate_at_char(&mut s.identity.nickname, 64),
            |s: &mut Session| truncate_at_char(&mut s.identity.username, 64),
            |s: &mut Session| truncate_at_char(&mut s.identity.email, 128),
        ] {
            if sealed.len() <= MAX_COOKIE_VALUE {
                break;
            }
            trim(&mut session);
            sealed = self.keys.seal_json(Purpose::Session, &session);
        }
        let max_age = session.expires.saturating_sub(now_secs());
        let secure = if secure { "; Secure" } else { "" };
        let set_cookie = format!(
            "{}={sealed}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
            self.cookies.name
        );
        (sealed, set_cookie)
    }

    /// The session in a request, valid or not (for a refresh).
    pub fn open_session(&self, req: &RequestView<'_>) -> Option<(String, Session)> {
        let value = cookie_value(req.header("cookie")?, &self.cookies.name)?;
        self.open_cookie(value).map(|s| (value.to_string(), s))
    }

    /// Decrypts a session cookie; None unless it is a session of this client.
    fn open_cookie(&self, value: &str) -> Option<Session> {
        let session: Session = self.keys.open_json(Purpose::Session, value)?;
        (session.provider == self.provider && session.client_id == self.client_id)
            .then_some(session)
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
}

/// Cuts to at most `max` bytes without splitting a character.
fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_characters() {
        let mut s = "홍".repeat(30);
        truncate_at_char(&mut s, 64);
        assert_eq!(s, "홍".repeat(21));
        let mut short = "abc".to_string();
        truncate_at_char(&mut short, 64);
        assert_eq!(short, "abc");
    }

    fn client(client_id: &str, keys: &Arc<SessionKeys>) -> LoginClient {
        let settings = ClientSettings {
            provider: "github".into(),
            client_id: client_id.into(),
            client_secret: Secret::new("s".into()),
            redirect_url: None,
            allowed_emails: &[],
            allowed_domains: &[],
            connect: None,
        };
        let cookies = Arc::new(CookieSettings {
            name: "ingress_authz".into(),
            max_age: 3600,
            trust_forwarded_proto: false,
        });
        LoginClient::new(settings, keys.clone(), cookies).unwrap()
    }

    fn allowed(client: &LoginClient, cookie: &str) -> bool {
        let headers = std::collections::HashMap::from([(
            "cookie".to_string(),
            format!("ingress_authz={cookie}"),
        )]);
        let req = RequestView {
            host: "app.example.com",
            path: "/",
            method: "GET",
            scheme: "https",
            headers: &headers,
            client: None,
        };
        matches!(client.session_result(&req), Some(AuthResult::Allow { .. }))
    }

    /// The opened-session cache saves decryption only: expiry is still
    /// checked on every request, and a cookie of another client is refused.
    #[test]
    fn a_cached_session_still_expires_and_stays_bound_to_its_client() {
        let keys = Arc::new(SessionKeys::from_secrets(&[Secret::new(
            "a-session-secret-of-enough-length".into(),
        )]));
        let ours = client("ours", &keys);
        let theirs = client("theirs", &keys);
        let session = Session {
            identity: Identity {
                id: "42".into(),
                ..Default::default()
            },
            provider: "github".into(),
            client_id: "ours".into(),
            issued: now_secs(),
            expires: now_secs() + 1,
            refresh: None,
            renew_at: 0,
        };
        let cookie = keys.seal_json(Purpose::Session, &session);
        assert!(allowed(&ours, &cookie));
        assert!(allowed(&ours, &cookie), "again, from the cache");
        assert!(!allowed(&theirs, &cookie));
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(!allowed(&ours, &cookie), "expired while cached");
    }
}
