//! OpenID Connect (SPEC §5, §6): discovery, a login with PKCE and nonce whose
//! ID token is fully validated, and API mode (bearer JWTs checked against the
//! issuer's JWKS).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::Validation;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::bearer::{CHALLENGE, CHALLENGE_INVALID};
use super::discovery::Discovery;
use super::jwks::VerifyError;
use super::login_client::{ClientSettings, LoginClient, Refresh};
use super::oauth2::CookieSettings;
use super::providers::ProviderHttp;
use super::{AuthResult, Denial};
use crate::config::spec::OidcSpec;
use crate::decision::{Reason, Status};
use crate::request::RequestView;
use crate::session::{Identity, LoginState, Purpose, Session, SessionKeys, now_secs};

/// Sets the issuer check: exact, or for a `{tenantid}` template (Microsoft
/// multi-tenant) checked after verification by [`issuer_holds`].
fn expect_issuer(validation: &mut Validation, issuer: &str) {
    if !issuer.contains("{tenantid}") {
        validation.set_issuer(&[issuer]);
    }
}

/// The token's `iss` fits a `{tenantid}` template with its own `tid`.
fn issuer_holds(issuer: &str, claims: &Value) -> bool {
    if !issuer.contains("{tenantid}") {
        return true; // checked by the validation itself
    }
    let tid = claims
        .get("tid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    !tid.is_empty()
        && tid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && claims.get("iss").and_then(Value::as_str)
            == Some(issuer.replace("{tenantid}", tid).as_str())
}

/// A refresh outcome is reused for requests still carrying the old cookie.
const REFRESH_MEMORY: std::time::Duration = std::time::Duration::from_secs(60);
/// When a token response has no `expires_in`.
const DEFAULT_RENEW_SECS: u64 = 300;

/// The refresh token of a token response, due shortly before the access
/// token expires.
fn refresh_of(tokens: &Value) -> Option<Refresh> {
    let token = tokens
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())?;
    let expires_in = tokens
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_RENEW_SECS);
    Some(Refresh {
        token: token.to_string(),
        renew_in: expires_in.saturating_sub(expires_in / 10).max(1),
    })
}

/// Clock skew allowed on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 60;

#[derive(Debug)]
pub struct Oidc {
    pub discovery: Arc<Discovery>,
    /// None in API mode (no `client_id`).
    pub client: Option<LoginClient>,
    scopes: Vec<String>,
    audience: Vec<String>,
    /// Required claims: the claim equals the value or is an array holding it.
    claims: Vec<(String, String)>,
    /// API mode: bearer tokens that verified recently.
    verified: super::cache::VerifiedTokens,
    /// `/oauth2/logout` also ends the session at the provider.
    pub logout_at_provider: bool,
    /// Refreshes in flight or just done, by session-cookie digest.
    refreshes: std::sync::Mutex<RefreshMemory>,
}

/// One refresh's outcome: (cookie value, Set-Cookie), or None if refused.
type RefreshCell = tokio::sync::OnceCell<Option<(String, String)>>;
/// Refreshes by session-cookie digest, with when they started.
type RefreshMemory = HashMap<[u8; 32], (Instant, Arc<RefreshCell>)>;

/// Why an OpenID login failed after the provider sent the user back.
#[derive(Debug, thiserror::Error)]
pub enum OidcLoginError {
    #[error("the provider's metadata is not available")]
    Unavailable,
    #[error("code exchange failed: {0}")]
    Exchange(String),
    #[error("invalid ID token: {0}")]
    IdToken(String),
    #[error("userinfo failed: {0}")]
    Userinfo(String),
    #[error("a required claim is missing or different")]
    Claims,
}

impl OidcLoginError {
    pub fn code(&self) -> &'static str {
        match self {
            OidcLoginError::Unavailable => "idp_unavailable",
            OidcLoginError::Exchange(_) => "exchange_failed",
            OidcLoginError::IdToken(_) => "invalid_id_token",
            OidcLoginError::Userinfo(_) => "profile_failed",
            OidcLoginError::Claims => "not_allowed",
        }
    }
}

/// The issuer of a known provider (SPEC §5), or the configured one.
fn issuer_of(spec: &OidcSpec) -> Result<String, String> {
    if let Some(issuer) = &spec.issuer {
        return Ok(issuer.as_str().trim_end_matches('/').to_string());
    }
    let base = spec
        .base_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_string());
    Ok(match spec.provider.as_deref() {
        Some("google") => "https://accounts.google.com".into(),
        Some("microsoft") => format!(
            "https://login.microsoftonline.com/{}/v2.0",
            spec.tenant.as_deref().unwrap_or("common")
        ),
        Some("auth0") => format!("{}/", base.ok_or("auth0 needs base_url")?),
        Some("okta") => format!("{}/oauth2/default", base.ok_or("okta needs base_url")?),
        Some("gitlab") => base.unwrap_or_else(|| "https://gitlab.com".into()),
        _ => return Err("oidc needs `provider` or `issuer`".into()),
    })
}

impl Oidc {
    pub fn build(
        spec: &OidcSpec,
        keys: Arc<SessionKeys>,
        cookies: Arc<CookieSettings>,
    ) -> Result<Self, String> {
        let issuer = issuer_of(spec)?;
        let client = match &spec.client_id {
            Some(client_id) => Some(LoginClient::new(
                ClientSettings {
                    // Sessions are bound to the issuer, not just "oidc".
                    provider: format!("oidc:{issuer}"),
                    client_id: client_id.clone(),
                    client_secret: spec
                        .client_secret
                        .clone()
                        .unwrap_or_else(|| crate::secret::Secret::new(String::new())),
                    redirect_url: spec.redirect_url.clone(),
                    allowed_emails: &spec.allowed_emails,
                    allowed_domains: &spec.allowed_domains,
                    connect: spec.connect.as_ref(),
                },
                keys,
                cookies,
            )?),
            None => None,
        };
        let mut scopes = spec.scopes.clone();
        if scopes.is_empty() {
            scopes = vec!["openid".into(), "profile".into(), "email".into()];
        }
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        Ok(Oidc {
            discovery: Arc::new(Discovery::new(&issuer)),
            client,
            scopes,
            audience: spec.audience.clone(),
            claims: spec.claims.clone(),
            refreshes: std::sync::Mutex::new(HashMap::new()),
            logout_at_provider: spec.logout_at_provider,
            verified: Default::default(),
        })
    }

    pub fn authenticate(&self, req: &RequestView<'_>, route: &str) -> AuthResult<'_> {
        // A session is ours to check: a provider that is down blocks new
        // logins, not the users already logged in.
        if let Some(result) = self.client.as_ref().and_then(|c| c.session_result(req)) {
            return result;
        }
        let Some(meta) = self.discovery.metadata() else {
            return AuthResult::Deny(Denial::status(
                Status::ServiceUnavailable,
                Reason::IdpUnavailable,
            ));
        };
        let Some(client) = &self.client else {
            return self.check_bearer(req, &meta);
        };
        let scope = self.scopes.join(" ");
        let offline = self.scopes.iter().any(|s| s == "offline_access");
        client.login_or_401(req, route, true, true, |p| {
            let mut u = meta.authorization_endpoint.clone();
            u.query_pairs_mut()
                .append_pair("client_id", p.client_id)
                .append_pair("redirect_uri", p.redirect_uri)
                .append_pair("response_type", "code")
                .append_pair("scope", &scope)
                .append_pair("state", p.state)
                .append_pair("nonce", p.nonce.unwrap_or_default())
                .append_pair("code_challenge", p.challenge.unwrap_or_default())
                .append_pair("code_challenge_method", "S256");
            if offline {
                // OpenID Connect Core §11: offline_access needs prompt=consent.
                u.query_pairs_mut().append_pair("prompt", "consent");
            }
            u.to_string()
        })
    }

    /// API mode: a bearer JWT signed by the issuer.
    fn check_bearer(
        &self,
        req: &RequestView<'_>,
        meta: &super::discovery::Metadata,
    ) -> AuthResult<'_> {
        let Some(token) = req.authorization("bearer") else {
            return AuthResult::Deny(Denial::missing(Some(CHALLENGE)));
        };
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        expect_issuer(&mut validation, &meta.issuer);
        let mut required = vec!["exp", "iss"];
        if self.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let cache_key = super::cache::VerifiedTokens::key(token);
        if let Some(user) = self.verified.get(&cache_key) {
            return AuthResult::Allow {
                user,
                upstream: Vec::new(),
            };
        }
        match meta.jwks.verify::<Value>(token, &validation) {
            Ok(claims) if !issuer_holds(&meta.issuer, &claims) => {
                AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID)))
            }
            Ok(claims) if self.claims_hold(&claims) => {
                let user = claims
                    .get("sub")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let exp = claims.get("exp").and_then(Value::as_u64);
                self.verified.insert(cache_key, exp, user.clone());
                AuthResult::Allow {
                    user,
                    upstream: Vec::new(),
                }
            }
            Ok(_) => AuthResult::Deny(Denial::status(Status::Forbidden, Reason::NotAllowed)),
            Err(VerifyError::NoKeys) => AuthResult::Deny(Denial::status(
                Status::ServiceUnavailable,
                Reason::IdpUnavailable,
            )),
            Err(VerifyError::UnknownKey) => AuthResult::Deny(Denial {
                reason: Reason::UnknownKey,
                ..Denial::invalid(Some(CHALLENGE_INVALID))
            }),
            Err(VerifyError::Invalid(e)) => {
                tracing::debug!(error = %e, "oidc bearer token rejected");
                AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID)))
            }
        }
    }

    fn claims_hold(&self, claims: &Value) -> bool {
        // A string claim equals the value; an array holds it; a number or
        // boolean prints as it (`email_verified: true`).
        let matches = |v: &Value, want: &str| match v {
            Value::String(s) => s == want,
            Value::Bool(b) => want == if *b { "true" } else { "false" },
            Value::Number(n) => want == n.to_string().as_str(),
            _ => false,
        };
        self.claims
            .iter()
            .all(|(name, want)| match claims.get(name) {
                Some(Value::Array(items)) => items.iter().any(|v| matches(v, want)),
                Some(v) => matches(v, want),
                None => false,
            })
    }

    /// The callback's provider side: code exchange, ID-token validation
    /// (OpenID Connect Core §3.1.3.7), identity, required claims.
    pub async fn finish_login(
        &self,
        http: &ProviderHttp,
        code: &str,
        login: &LoginState,
    ) -> Result<(Identity, Option<Refresh>), OidcLoginError> {
        let meta = self
            .discovery
            .metadata()
            .ok_or(OidcLoginError::Unavailable)?;
        let client = self.client.as_ref().ok_or(OidcLoginError::Unavailable)?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", login.redirect_uri.as_str()),
            ("client_id", client.client_id.as_str()),
        ];
        if !client.client_secret().is_empty() {
            form.push(("client_secret", client.client_secret()));
        }
        if let Some(v) = &login.verifier {
            form.push(("code_verifier", v));
        }
        let tokens = http
            .post_form(&meta.token_endpoint, &form)
            .await
            .map_err(OidcLoginError::Exchange)?;
        if tokens.get("error").is_some_and(|e| !e.is_null()) {
            return Err(OidcLoginError::Exchange(
                "the token endpoint answered an error".into(),
            ));
        }
        let id_token = tokens
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| OidcLoginError::IdToken("no id_token in the token response".into()))?;
        let claims = self
            .validate_id_token(http, &meta, client, id_token, login)
            .await?;
        let s = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut identity = Identity {
            id: s("sub"),
            username: [s("preferred_username"), s("nickname"), s("email")]
                .into_iter()
                .find(|v| !v.is_empty())
                .unwrap_or_default(),
            email: s("email"),
            nickname: s("name"),
            avatar: s("picture"),
        };
        if identity.email.is_empty() {
            self.add_userinfo(http, &meta, &tokens, &mut identity)
                .await?;
        }
        if !self.claims_hold(&claims) {
            return Err(OidcLoginError::Claims);
        }
        Ok((identity, refresh_of(&tokens)))
    }

    /// Refreshes a due session at the provider (single flight per session:
    /// concurrent requests with the same cookie share one refresh, so a
    /// provider that rotates refresh tokens does not log the user out).
    /// Some((cookie value, Set-Cookie)) on success; None when the provider
    /// refused (the session ends).
    pub async fn refresh_session(
        &self,
        http: &ProviderHttp,
        cookie: &str,
        secure: bool,
    ) -> Option<(String, String)> {
        let client = self.client.as_ref()?;
        let key: [u8; 32] = Sha256::digest(cookie.as_bytes()).into();
        let cell = {
            let mut inflight = self.refreshes.lock().unwrap_or_else(|e| e.into_inner());
            inflight.retain(|_, (started, _)| started.elapsed() < REFRESH_MEMORY);
            inflight
                .entry(key)
                .or_insert_with(|| (Instant::now(), Arc::new(tokio::sync::OnceCell::new())))
                .1
                .clone()
        };
        cell.get_or_init(|| self.refresh_once(http, client, cookie, secure))
            .await
            .clone()
    }

    async fn refresh_once(
        &self,
        http: &ProviderHttp,
        client: &LoginClient,
        cookie: &str,
        secure: bool,
    ) -> Option<(String, String)> {
        let session: Session = client.keys.open_json(Purpose::Session, cookie)?;
        let refresh_token = session.refresh.clone()?;
        let meta = self.discovery.metadata()?;
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("client_id", client.client_id.as_str()),
        ];
        if !client.client_secret().is_empty() {
            form.push(("client_secret", client.client_secret()));
        }
        let tokens = match http.post_form(&meta.token_endpoint, &form).await {
            Ok(t) if t.get("error").is_none_or(Value::is_null) => t,
            other => {
                tracing::info!(target: "audit", event = "session_refresh_failed", user = %session.identity.id, ok = other.is_ok());
                return None;
            }
        };
        // A new ID token must be about the same user (no nonce on refresh).
        if let Some(id_token) = tokens.get("id_token").and_then(Value::as_str) {
            let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.leeway = LEEWAY_SECS;
            expect_issuer(&mut validation, &meta.issuer);
            validation.set_audience(&[&client.client_id]);
            let claims = meta.jwks.verify::<Value>(id_token, &validation).ok()?;
            if claims.get("sub").and_then(Value::as_str) != Some(session.identity.id.as_str()) {
                return None;
            }
        }
        let next = refresh_of(&tokens);
        let now = now_secs();
        let renewed = Session {
            refresh: Some(next.as_ref().map_or(refresh_token, |r| r.token.clone())),
            renew_at: (now + next.map_or(DEFAULT_RENEW_SECS, |r| r.renew_in)).min(session.expires),
            ..session
        };
        tracing::info!(target: "audit", event = "session_refreshed", user = %renewed.identity.id);
        Some(client.seal_session(renewed, secure))
    }

    async fn validate_id_token(
        &self,
        http: &ProviderHttp,
        meta: &super::discovery::Metadata,
        client: &LoginClient,
        id_token: &str,
        login: &LoginState,
    ) -> Result<Value, OidcLoginError> {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.leeway = LEEWAY_SECS;
        expect_issuer(&mut validation, &meta.issuer);
        validation.set_audience(&[&client.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let verified = match meta.jwks.verify::<Value>(id_token, &validation) {
            Err(VerifyError::UnknownKey | VerifyError::NoKeys) => {
                // A key rotated at the provider: one refresh, then decide.
                let _ = meta.jwks.refresh(http).await;
                meta.jwks.verify::<Value>(id_token, &validation)
            }
            other => other,
        };
        let claims = verified.map_err(|e| OidcLoginError::IdToken(e.to_string()))?;
        if !issuer_holds(&meta.issuer, &claims) {
            return Err(OidcLoginError::IdToken(
                "iss does not fit the tenant".into(),
            ));
        }
        let iat = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or_else(|| OidcLoginError::IdToken("no iat".into()))?;
        if iat > now_secs() + LEEWAY_SECS {
            return Err(OidcLoginError::IdToken("iat in the future".into()));
        }
        let nonce = claims.get("nonce").and_then(Value::as_str);
        if nonce.is_none() || nonce != login.nonce.as_deref() {
            return Err(OidcLoginError::IdToken("nonce does not match".into()));
        }
        let several_audiences = claims
            .get("aud")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 1);
        let azp = claims.get("azp").and_then(Value::as_str);
        if (several_audiences || azp.is_some()) && azp != Some(client.client_id.as_str()) {
            return Err(OidcLoginError::IdToken("azp is not this client".into()));
        }
        if claims
            .get("sub")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(OidcLoginError::IdToken("empty sub".into()));
        }
        Ok(claims)
    }

    /// Fills what the ID token lacked from userinfo, whose `sub` must match.
    async fn add_userinfo(
        &self,
        http: &ProviderHttp,
        meta: &super::discovery::Metadata,
        tokens: &Value,
        identity: &mut Identity,
    ) -> Result<(), OidcLoginError> {
        let (Some(url), Some(access)) = (
            &meta.userinfo_endpoint,
            tokens.get("access_token").and_then(Value::as_str),
        ) else {
            return Ok(());
        };
        let info = http
            .get_bearer(url, access)
            .await
            .map_err(OidcLoginError::Userinfo)?;
        let s = |k: &str| {
            info.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        if s("sub") != identity.id {
            return Err(OidcLoginError::Userinfo(
                "userinfo sub differs from the ID token".into(),
            ));
        }
        identity.email = s("email");
        if identity.nickname.is_empty() {
            identity.nickname = s("name");
        }
        if identity.avatar.is_empty() {
            identity.avatar = s("picture");
        }
        if identity.username.is_empty() {
            identity.username = [s("preferred_username"), s("nickname"), s("email")]
                .into_iter()
                .find(|v| !v.is_empty())
                .unwrap_or_default();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_templates_take_the_tokens_own_tenant() {
        let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let good = serde_json::json!({"tid": "abc-123", "iss": "https://login.microsoftonline.com/abc-123/v2.0"});
        let other = serde_json::json!({"tid": "abc-123", "iss": "https://login.microsoftonline.com/evil/v2.0"});
        let hostile = serde_json::json!({"tid": "../x", "iss": "https://login.microsoftonline.com/../x/v2.0"});
        assert!(issuer_holds(template, &good));
        assert!(!issuer_holds(template, &other));
        assert!(!issuer_holds(template, &hostile));
        assert!(!issuer_holds(template, &serde_json::json!({})));
        assert!(
            issuer_holds("https://exact.example", &other),
            "exact issuers are checked by the validation"
        );
    }
}
