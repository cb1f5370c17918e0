//! The OpenID callback's provider side (code exchange, ID-token
//! validation, userinfo) and session refresh with the refresh token.

use serde_json::Value;

use super::Oidc;
use super::claims::{Claims, DEFAULT_RENEW_SECS, TokenResponse, id_token_claims};
use crate::auth::discovery::Metadata;
use crate::auth::jwks::VerifyError;
use crate::auth::login_client::{LoginClient, Refresh};
use crate::auth::login_error::{CallError, IdTokenError, LoginError};
use crate::auth::providers::{HttpError, ProviderHttp};
use crate::request::Scheme;
use crate::secret::Secret;
use crate::session::{Attributes, Identity as Profile, LoginState, Session};

/// A token request's form: `grant` pairs, then the client's credentials.
fn token_form<'a>(
    client: &'a LoginClient,
    grant: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut form = grant.to_vec();
    form.push(("client_id", client.client_id.as_str()));
    if !client.client_secret().is_empty() {
        form.push(("client_secret", client.client_secret()));
    }
    form
}

impl Oidc {
    /// The callback's provider side: code exchange, ID-token validation
    /// (OpenID Connect Core §3.1.3.7), identity, required claims.
    pub async fn finish_login(
        &self,
        http: &ProviderHttp,
        code: &str,
        login: &LoginState,
    ) -> Result<(Profile, Attributes, Option<Refresh>, Option<String>), LoginError> {
        let meta = self.discovery.metadata().ok_or(LoginError::Unavailable)?;
        let client = self.client.as_ref().ok_or(LoginError::Unavailable)?;
        let grant = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", login.redirect_uri.as_str()),
        ];
        let mut form = token_form(client, &grant);
        if let Some(v) = &login.verifier {
            form.push(("code_verifier", v.expose()));
        }
        let tokens: TokenResponse = http
            .post_form(&meta.token_endpoint, &form)
            .await
            .map_err(|e| LoginError::Exchange(e.into()))?;
        if tokens.error.is_some() {
            return Err(LoginError::Exchange(CallError::TokenEndpoint));
        }
        let id_token = tokens
            .id_token
            .get()
            .ok_or(LoginError::IdToken(IdTokenError::Missing))?;
        let mut claims = self
            .validate_id_token(http, &meta, client, id_token, login)
            .await
            .map_err(LoginError::IdToken)?;
        self.add_userinfo(http, &meta, &tokens, &mut claims, false)
            .await
            .map_err(LoginError::Userinfo)?;
        let c = Claims::of(&claims);
        let s = |v: &crate::auth::wire::Lenient<String>| v.text().to_string();
        let identity = Profile {
            id: s(&c.sub),
            username: [&c.preferred_username, &c.nickname, &c.email]
                .into_iter()
                .map(s)
                .find(|v| !v.is_empty())
                .unwrap_or_default(),
            email: s(&c.email),
            nickname: s(&c.name),
            avatar: s(&c.picture),
        };
        let attrs = self.attributes(&claims);
        // The provider's session, which a back-channel logout names.
        let sid = claims
            .get("sid")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .map(str::to_string);
        Ok((identity, attrs, tokens.refresh(), sid))
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
        // One flight per replica, and (with a store) one redeem across
        // every replica: the others reuse its outcome.
        self.flights
            .run(cookie, || {
                client.shared_refresh(cookie, scheme, || {
                    self.refresh_once(http, client, cookie, scheme)
                })
            })
            .await
    }

    async fn refresh_once(
        &self,
        http: &ProviderHttp,
        client: &LoginClient,
        cookie: &str,
        scheme: Scheme,
    ) -> Option<(String, String)> {
        let session: Session = client.read_session(cookie).await.ok()??;
        let refresh_token = session.refresh.clone()?;
        let meta = self.discovery.metadata()?;
        let grant = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        let answer: Result<TokenResponse, HttpError> = http
            .post_form(&meta.token_endpoint, &token_form(client, &grant))
            .await;
        let tokens = match answer {
            Ok(t) if t.error.is_none() => t,
            other => {
                tracing::info!(target: "audit", event = "session_refresh_failed", user = %session.identity.id, ok = other.is_ok());
                return None;
            }
        };
        // A new ID token must be about the same user (no nonce on refresh).
        let mut claims = serde_json::json!({ "sub": session.identity.id });
        if let Some(id_token) = tokens.id_token.get() {
            claims = meta
                .jwks
                .verify::<Value>(id_token, &self.checks(&meta).refresh)
                .ok()?;
            if Claims::of(&claims).sub.get() != Some(&session.identity.id) {
                return None;
            }
        }
        let next = tokens.refresh();
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
        client
            .save_session(renewed, scheme, Some(cookie))
            .await
            .inspect_err(
                |e| tracing::warn!(error = %e, "store: a refreshed session could not be saved"),
            )
            .ok()
    }

    async fn validate_id_token(
        &self,
        http: &ProviderHttp,
        meta: &Metadata,
        client: &LoginClient,
        id_token: &str,
        login: &LoginState,
    ) -> Result<Value, IdTokenError> {
        let validation = &self.checks(meta).id_token;
        let verified = match meta.jwks.verify::<Value>(id_token, validation) {
            Err(VerifyError::UnknownKey | VerifyError::NoKeys) => {
                // A key rotated at the provider: one refresh, then decide.
                let _ = meta.jwks.refresh(http).await;
                meta.jwks.verify::<Value>(id_token, validation)
            }
            other => other,
        };
        let claims = verified?;
        id_token_claims(
            &meta.issuer,
            &client.client_id,
            &claims,
            login.nonce.as_ref().map(Secret::expose),
            crate::clock::unix_secs(),
        )?;
        Ok(claims)
    }

    /// Fills what the ID token lacked from userinfo (whose `sub` must
    /// match): the profile, `email_verified`, groups and the claims
    /// policies read. `always`: ask even when the ID token looks complete
    /// (a refresh re-reads groups). No userinfo endpoint: nothing to add,
    /// unless `always` (then it is an error: groups cannot be re-read).
    /// Claims stay a JSON object: policies read them by configured name.
    async fn add_userinfo(
        &self,
        http: &ProviderHttp,
        meta: &Metadata,
        tokens: &TokenResponse,
        claims: &mut Value,
        always: bool,
    ) -> Result<(), CallError> {
        let lacks = |k: &str| claims.get(k).is_none_or(|v| v.is_null() || v == "");
        let needed = always
            || lacks("email")
            || (claims.get("email").is_some() && lacks("email_verified"))
            || lacks(&self.groups_claim)
            || self.policy_claims.iter().any(|c| lacks(c));
        if !needed {
            return Ok(());
        }
        let (Some(url), Some(access)) = (&meta.userinfo_endpoint, tokens.access_token.get()) else {
            return if always {
                Err(CallError::NoUserinfo)
            } else {
                Ok(())
            };
        };
        let info: Value = match http.get_bearer(url, access).await {
            Ok(info) => info,
            // The ID token alone is a complete login; only a re-read must succeed.
            Err(e) if !always && !lacks("sub") && !lacks("email") => {
                tracing::debug!(error = %e, "userinfo failed; using the ID token's claims");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if Claims::of(&info).sub != Claims::of(claims).sub {
            return Err(CallError::SubMismatch);
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
