//! OpenID Connect (SPEC §5, §6): discovery, a login with PKCE and nonce whose
//! ID token is fully validated, and API mode (bearer JWTs checked against the
//! issuer's JWKS).

use std::sync::Arc;

use jsonwebtoken::Validation;
use serde_json::Value;

use super::bearer::{CHALLENGE, CHALLENGE_INVALID};
use super::discovery::Discovery;
use super::jwks::VerifyError;
use super::login_client::{ClientSettings, LoginClient, Refresh, RefreshFlights};
use super::providers::{ProviderHttp, is_multi_tenant};
use super::{AuthKind, AuthResult, BuildContext, Denial, PolicyNeeds};
use crate::config::spec::OidcSpec;
use crate::connect::{ConnectClaims, ConnectSigner};
use crate::decision::{Reason, Status};
use crate::identity::{ClaimsReader, EmailRule, Identity, TokenIdentity};
use crate::request::{RequestView, Scheme};
use crate::secret::Secret;
use crate::session::{
    ATTRIBUTES_VERSION, Attributes, Identity as Profile, LoginState, Purpose, Session,
};

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
        token: Secret::new(token.to_string()),
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
    /// How identities are read out of verified claims.
    groups_claim: String,
    email_rule: EmailRule,
    policy_claims: Arc<[String]>,
    /// API mode: ID tokens (never with a nonce) count as bearer credentials.
    accept_id_tokens: bool,
    /// API mode: connect headers signed from the token's claims.
    api_connect: Option<ConnectSigner>,
    /// API mode: bearer tokens that verified recently.
    verified: super::cache::VerifiedTokens,
    /// `/oauth2/logout` also ends the session at the provider.
    pub logout_at_provider: bool,
    /// Refreshes in flight or just done.
    flights: RefreshFlights,
}

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
}

impl OidcLoginError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable => "idp_unavailable",
            Self::Exchange(_) => "exchange_failed",
            Self::IdToken(_) => "invalid_id_token",
            Self::Userinfo(_) => "profile_failed",
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
    pub fn build(spec: &OidcSpec, ctx: &BuildContext, needs: PolicyNeeds) -> Result<Self, String> {
        let issuer = issuer_of(spec)?;
        let email_rule = match spec.provider.as_deref() {
            Some("google") => EmailRule::HostedDomain,
            Some("microsoft") if !is_multi_tenant(spec.tenant.as_deref()) => EmailRule::Tenant,
            _ if issuer == "https://accounts.google.com" => EmailRule::HostedDomain,
            _ => EmailRule::EmailVerified,
        };
        let client = match &spec.client_id {
            Some(client_id) => Some(LoginClient::new(
                ClientSettings {
                    // Sessions are bound to the issuer, not just "oidc".
                    provider: format!("oidc:{issuer}"),
                    client_id: client_id.clone(),
                    client_secret: spec
                        .client_secret
                        .clone()
                        .unwrap_or_else(|| Secret::new(String::new())),
                    redirect_url: spec.redirect_url.clone(),
                    kind: AuthKind::Oidc,
                    needs,
                    connect: spec.connect.as_ref(),
                },
                ctx.keys.clone(),
                ctx.cookies.clone(),
            )?),
            None => None,
        };
        let api_connect = match (&spec.client_id, &spec.connect) {
            (None, Some(c)) => ConnectSigner::from_spec(c)?,
            _ => None,
        };
        let mut scopes = spec.scopes.clone();
        if scopes.is_empty() {
            scopes = vec!["openid".into(), "profile".into(), "email".into()];
        }
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        Ok(Self {
            discovery: Arc::new(Discovery::new(&issuer)),
            client,
            scopes,
            audience: spec.audience.clone(),
            groups_claim: spec.groups_claim.clone(),
            email_rule,
            policy_claims: ctx.policy_claims.clone(),
            accept_id_tokens: spec.accept_id_tokens,
            api_connect,
            flights: RefreshFlights::default(),
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
        self.login(req, route)
    }

    fn reader(&self) -> ClaimsReader<'_> {
        ClaimsReader {
            groups_claim: &self.groups_claim,
            policy_claims: &self.policy_claims,
            email: self.email_rule,
        }
    }

    /// No (usable) session: API mode checks the bearer token; a navigation
    /// goes to the provider; anything else gets 401.
    pub fn login(&self, req: &RequestView<'_>, route: &str) -> AuthResult<'_> {
        let Some(meta) = self.discovery.metadata() else {
            return AuthResult::pending_keys(Denial::status(
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
        let cache_key = super::cache::VerifiedTokens::key(token);
        if let Some(who) = self.verified.get(&cache_key) {
            return self.allow_token(req, who);
        }
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        expect_issuer(&mut validation, &meta.issuer);
        // `audience` is required in API mode (config check): a token minted
        // for another client of the same issuer never passes.
        validation.set_audience(&self.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let access_token = jsonwebtoken::decode_header(token).is_ok_and(|h| {
            h.typ.is_some_and(|t| {
                t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
            })
        });
        if !access_token && !self.accept_id_tokens {
            tracing::debug!("oidc bearer token is not a JWT access token (typ at+jwt)");
            return AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID)));
        }
        match meta.jwks.verify::<Value>(token, &validation) {
            Ok(claims) if !issuer_holds(&meta.issuer, &claims) => {
                AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID)))
            }
            // An ID token that carries a nonce was issued to a browser
            // login: never a bearer credential.
            Ok(claims) if !access_token && claims.get("nonce").is_some() => {
                AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID)))
            }
            Ok(claims) => {
                let who = Arc::new(self.reader().read(&claims));
                self.verified.insert(cache_key, who.exp, who.clone());
                self.allow_token(req, who)
            }
            Err(VerifyError::NoKeys) => AuthResult::pending_keys(Denial::status(
                Status::ServiceUnavailable,
                Reason::IdpUnavailable,
            )),
            Err(VerifyError::UnknownKey) => AuthResult::pending_keys(Denial {
                reason: Reason::UnknownKey,
                ..Denial::invalid(Some(CHALLENGE_INVALID))
            }),
            Err(VerifyError::Invalid(e)) => {
                tracing::debug!(error = %e, "oidc bearer token rejected");
                AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID)))
            }
        }
    }

    /// API mode: a verified token, with connect headers from its claims.
    fn allow_token(&self, req: &RequestView<'_>, who: Arc<TokenIdentity>) -> AuthResult<'_> {
        let mut upstream = Vec::new();
        if let Some(signer) = &self.api_connect {
            let now = crate::clock::unix_now();
            let audience = signer.audience_for(req.host);
            let signed = signer.sign(&ConnectClaims::of_token(&who, &audience), now);
            upstream.push(("x-connect-token", signed.token));
            upstream.push(("x-connect-timestamp", signed.issued_ms.to_string()));
        }
        AuthResult::Allow {
            identity: Identity::token(AuthKind::Oidc, who),
            upstream,
        }
    }

    /// The callback's provider side: code exchange, ID-token validation
    /// (OpenID Connect Core §3.1.3.7), identity, required claims.
    pub async fn finish_login(
        &self,
        http: &ProviderHttp,
        code: &str,
        login: &LoginState,
    ) -> Result<(Profile, Attributes, Option<Refresh>), OidcLoginError> {
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
            form.push(("code_verifier", v.expose()));
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
        let mut claims = self
            .validate_id_token(http, &meta, client, id_token, login)
            .await?;
        self.add_userinfo(http, &meta, &tokens, &mut claims, false)
            .await?;
        let s = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let identity = Profile {
            id: s("sub"),
            username: [s("preferred_username"), s("nickname"), s("email")]
                .into_iter()
                .find(|v| !v.is_empty())
                .unwrap_or_default(),
            email: s("email"),
            nickname: s("name"),
            avatar: s("picture"),
        };
        let attrs = self.attributes(&claims);
        Ok((identity, attrs, refresh_of(&tokens)))
    }

    /// The policy attributes of verified (and userinfo-completed) claims.
    fn attributes(&self, claims: &Value) -> Attributes {
        let who = self.reader().read(claims);
        Attributes {
            version: ATTRIBUTES_VERSION,
            email: who.email,
            domain: who.domain,
            groups: who.groups,
            claims: who.claims,
            read_at: crate::clock::unix_secs(),
            access: None,
        }
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
        scheme: Scheme,
    ) -> Option<(String, String)> {
        let client = self.client.as_ref()?;
        self.flights
            .run(cookie, || self.refresh_once(http, client, cookie, scheme))
            .await
    }

    async fn refresh_once(
        &self,
        http: &ProviderHttp,
        client: &LoginClient,
        cookie: &str,
        scheme: Scheme,
    ) -> Option<(String, String)> {
        let session: Session = client.keys.open_json(Purpose::Session, cookie)?;
        let refresh_token = session.refresh.clone()?;
        let meta = self.discovery.metadata()?;
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
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
        let mut claims = serde_json::json!({ "sub": session.identity.id });
        if let Some(id_token) = tokens.get("id_token").and_then(Value::as_str) {
            let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.leeway = LEEWAY_SECS;
            expect_issuer(&mut validation, &meta.issuer);
            validation.set_audience(&[&client.client_id]);
            claims = meta.jwks.verify::<Value>(id_token, &validation).ok()?;
            if claims.get("sub").and_then(Value::as_str) != Some(session.identity.id.as_str()) {
                return None;
            }
        }
        let next = refresh_of(&tokens);
        let now = crate::clock::unix_secs();
        let mut attrs = session.attrs.clone();
        if client.needs.groups_ttl.is_some() {
            // Groups and claims a policy reads are read again here, or the
            // session ends: never allowed on stale data.
            if self
                .add_userinfo(http, &meta, &tokens, &mut claims, true)
                .await
                .is_err()
            {
                return None;
            }
            attrs = self.attributes(&claims);
        }
        let renewed = Session {
            refresh: Some(next.as_ref().map_or(refresh_token, |r| r.token.clone())),
            renew_at: (now + next.map_or(DEFAULT_RENEW_SECS, |r| r.renew_in)).min(session.expires),
            attrs,
            ..session
        };
        tracing::info!(target: "audit", event = "session_refreshed", user = %renewed.identity.id);
        Some(client.seal_session(renewed, scheme))
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
        if iat > crate::clock::unix_secs() + LEEWAY_SECS {
            return Err(OidcLoginError::IdToken("iat in the future".into()));
        }
        let nonce = claims.get("nonce").and_then(Value::as_str);
        if nonce.is_none() || nonce != login.nonce.as_ref().map(Secret::expose) {
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

    /// Fills what the ID token lacked from userinfo (whose `sub` must
    /// match): the profile, `email_verified`, groups and the claims
    /// policies read. `always`: ask even when the ID token looks complete
    /// (a refresh re-reads groups). No userinfo endpoint: nothing to add,
    /// unless `always` (then it is an error: groups cannot be re-read).
    async fn add_userinfo(
        &self,
        http: &ProviderHttp,
        meta: &super::discovery::Metadata,
        tokens: &Value,
        claims: &mut Value,
        always: bool,
    ) -> Result<(), OidcLoginError> {
        let lacks = |k: &str| claims.get(k).is_none_or(|v| v.is_null() || v == "");
        let needed = always
            || lacks("email")
            || (claims.get("email").is_some() && lacks("email_verified"))
            || lacks(&self.groups_claim)
            || self.policy_claims.iter().any(|c| lacks(c));
        if !needed {
            return Ok(());
        }
        let (Some(url), Some(access)) = (
            &meta.userinfo_endpoint,
            tokens.get("access_token").and_then(Value::as_str),
        ) else {
            return if always {
                Err(OidcLoginError::Userinfo(
                    "no userinfo endpoint or access token".into(),
                ))
            } else {
                Ok(())
            };
        };
        let info = match http.get_bearer(url, access).await {
            Ok(info) => info,
            // The ID token alone is a complete login; only a re-read must succeed.
            Err(e) if !always && !lacks("sub") && !lacks("email") => {
                tracing::debug!(error = %e, "userinfo failed; using the ID token's claims");
                return Ok(());
            }
            Err(e) => return Err(OidcLoginError::Userinfo(e)),
        };
        if info.get("sub").and_then(Value::as_str) != claims.get("sub").and_then(Value::as_str) {
            return Err(OidcLoginError::Userinfo(
                "userinfo sub differs from the ID token".into(),
            ));
        }
        if let (Some(into), Value::Object(from)) = (claims.as_object_mut(), info) {
            for (k, v) in from {
                // userinfo is the fresher source for what changes (groups).
                if always || into.get(&k).is_none_or(|old| old.is_null() || old == "") {
                    into.insert(k, v);
                }
            }
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
