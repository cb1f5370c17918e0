//! What OpenID sends, typed: token responses, the claims the checks read,
//! and the validations made once per discovered issuer.

use jsonwebtoken::Validation;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::super::login_client::Refresh;
use super::super::validation::{Checks, validation};
use super::super::wire::{Lenient, Present};
use crate::auth::login_error::IdTokenError;
use crate::secret::Secret;

/// When a token response has no `expires_in`.
pub(super) const DEFAULT_RENEW_SECS: u64 = 300;

/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub(super) const LEEWAY_SECS: u64 = 60;

/// A token response (code exchange or refresh).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct TokenResponse {
    /// RFC 6749 §5.2's error (any non-null value).
    pub error: Option<IgnoredAny>,
    pub id_token: Lenient<String>,
    pub access_token: Lenient<String>,
    pub refresh_token: Lenient<String>,
    pub expires_in: Lenient<u64>,
}

impl TokenResponse {
    /// The refresh token, due shortly before the access token expires.
    pub(super) fn refresh(&self) -> Option<Refresh> {
        let token = self.refresh_token.get().filter(|t| !t.is_empty())?;
        let expires_in = self.expires_in.get().copied().unwrap_or(DEFAULT_RENEW_SECS);
        Some(Refresh {
            token: Secret::new(token.clone()),
            renew_in: expires_in.saturating_sub(expires_in / 10).max(1),
        })
    }
}

/// The claims of a verified token (or userinfo) that the checks and the
/// profile read; every other claim stays in the `Value` that identity
/// mapping reads by configured name.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Claims {
    pub iss: Lenient<String>,
    /// Microsoft's tenant id.
    pub tid: Lenient<String>,
    pub sub: Lenient<String>,
    pub iat: Lenient<u64>,
    pub nonce: Present,
    pub aud: Lenient<Vec<IgnoredAny>>,
    pub azp: Lenient<String>,
    pub preferred_username: Lenient<String>,
    pub nickname: Lenient<String>,
    pub email: Lenient<String>,
    pub name: Lenient<String>,
    pub picture: Lenient<String>,
}

impl Claims {
    pub(super) fn of(v: &Value) -> Self {
        Self::deserialize(v).unwrap_or_default()
    }
}

/// The token's `iss` fits a `{tenantid}` template with its own `tid`.
pub(super) fn issuer_holds(issuer: &str, claims: &Claims) -> bool {
    if !issuer.contains("{tenantid}") {
        return true; // checked by the validation itself
    }
    let tid = claims.tid.text();
    !tid.is_empty()
        && tid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && claims.iss.get().map(String::as_str) == Some(issuer.replace("{tenantid}", tid).as_str())
}

/// An ID token's checks after its signature and the validation's
/// (`iss`, `aud`, `exp`): the issuer's tenant, `iat`, the login's `nonce`,
/// `azp`, a non-empty `sub`.
pub(super) fn id_token_claims(
    issuer: &str,
    client_id: &str,
    claims: &Value,
    expected_nonce: Option<&str>,
    now: u64,
) -> Result<(), IdTokenError> {
    let c = Claims::of(claims);
    if !issuer_holds(issuer, &c) {
        return Err(IdTokenError::Tenant);
    }
    let iat = c.iat.get().copied().ok_or(IdTokenError::NoIat)?;
    if iat > now + LEEWAY_SECS {
        return Err(IdTokenError::IatInFuture);
    }
    let nonce = c.nonce.text.as_deref();
    if nonce.is_none() || nonce != expected_nonce {
        return Err(IdTokenError::Nonce);
    }
    let several_audiences = c.aud.get().is_some_and(|a| a.len() > 1);
    let azp = c.azp.get().map(String::as_str);
    if (several_audiences || azp.is_some()) && azp != Some(client_id) {
        return Err(IdTokenError::Azp);
    }
    if c.sub.text().is_empty() {
        return Err(IdTokenError::EmptySub);
    }
    Ok(())
}

/// The validations for one issuer, made when its metadata first arrives.
#[derive(Debug)]
pub(super) struct IssuerChecks {
    pub issuer: String,
    /// API mode: bearer JWTs for the configured `audience`.
    pub bearer: Validation,
    /// Login: ID tokens for the client.
    pub id_token: Validation,
    /// Refresh: a new ID token for the client.
    pub refresh: Validation,
}

impl IssuerChecks {
    pub(super) fn new(issuer: &str, audience: &[String], client_id: Option<&str>) -> Self {
        // A `{tenantid}` template (Microsoft multi-tenant) is checked after
        // verification by [`issuer_holds`].
        let exact = (!issuer.contains("{tenantid}")).then_some(issuer);
        let client = [client_id.unwrap_or_default().to_string()];
        let checks = |audience, required, not_before| {
            validation(&Checks {
                algorithms: &[],
                leeway: LEEWAY_SECS,
                issuer: exact,
                audience,
                required,
                not_before,
            })
        };
        Self {
            issuer: issuer.to_string(),
            // `audience` is required in API mode (config check): a token minted
            // for another client of the same issuer never passes. A login
            // client's bearer tokens are for the client, unless `audience` says.
            bearer: checks(
                if audience.is_empty() {
                    &client
                } else {
                    audience
                },
                &["exp", "iss", "aud"],
                true,
            ),
            id_token: checks(&client, &["exp", "iss", "aud", "sub"], false),
            refresh: checks(&client, &["exp"], false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_templates_take_the_tokens_own_tenant() {
        let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let of = |v: Value| Claims::of(&v);
        let good = of(
            serde_json::json!({"tid": "abc-123", "iss": "https://login.microsoftonline.com/abc-123/v2.0"}),
        );
        let other = of(
            serde_json::json!({"tid": "abc-123", "iss": "https://login.microsoftonline.com/evil/v2.0"}),
        );
        let hostile = of(
            serde_json::json!({"tid": "../x", "iss": "https://login.microsoftonline.com/../x/v2.0"}),
        );
        assert!(issuer_holds(template, &good));
        assert!(!issuer_holds(template, &other));
        assert!(!issuer_holds(template, &hostile));
        assert!(!issuer_holds(template, &of(serde_json::json!({}))));
        assert!(
            issuer_holds("https://exact.example", &other),
            "exact issuers are checked by the validation"
        );
    }
}
