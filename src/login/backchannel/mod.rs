//! OpenID Connect Back-Channel Logout 1.0 at `POST /oauth2/backchannel-logout`
//! (SPEC §13.3): the provider tells us a user's session there ended, and
//! every session we issued from it ends on every replica.
//!
//! The logout token is verified as an ID token is (the issuer's JWKS, the
//! algorithm fixed by the key, `iss`, `aud`, `exp`), then checked as §2.6
//! asks: a recent `iat`, a `jti` never seen before, the back-channel
//! logout event, `sid` and/or `sub`, and no `nonce`. The answer is 200 (with
//! `Cache-Control: no-store`), 400 with an OAuth-style error for any token
//! that fails, or 503 when the outcome could not be recorded (the provider
//! retries). The token itself is never logged nor echoed.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::Validation;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::auth::discovery::Metadata;
use crate::auth::jwks::VerifyError;
use crate::auth::validation::{Checks, validation};
use crate::engine::Engine;
use crate::state::Shared;
use crate::store::{Reach, Revocation, Store, StoreError};

mod claims;
mod rejection;
mod replay;

use claims::{Expected, Logout, check_claims};
use rejection::Rejection;
use replay::{ReplayKey, forget, remember};

/// The largest request body read: a logout token is a few KiB at most.
const MAX_BODY: usize = 64 * 1024;
/// Clock skew allowed on `exp` and `iat`, as for ID tokens.
const LEEWAY_SECS: u64 = 60;
/// How old (`iat`) a logout token may be: it is sent at once, and the
/// `jti`s seen are only remembered for this long.
const MAX_AGE_SECS: u64 = 300;
/// The event member a logout token's `events` must hold (§2.4).
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// `jti`s remembered without a store: more than any provider sends within
/// [`MAX_AGE_SECS`]; when full, tokens are refused (503) rather than
/// replays let through.
const MAX_LOCAL_JTIS: usize = 10_000;

/// The login client a token is for, and its issuer's keys.
struct Target {
    provider: String,
    client_id: String,
    meta: Arc<Metadata>,
}

/// What a carried-out logout did, for the audit line.
struct Done {
    provider: String,
    by: &'static str,
    user: Option<String>,
    reach: Reach,
}

pub async fn backchannel_logout(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut provider = None;
    let outcome = handle(&shared, &headers, body, &mut provider).await;
    let mut response = match outcome {
        Ok(done) => {
            let reach = match done.reach {
                Reach::EveryReplica => "every_replica",
                Reach::ThisReplica => "this_replica",
            };
            tracing::info!(target: "audit", event = "backchannel_logout", provider = %done.provider, by = done.by, user = done.user.as_deref().unwrap_or("-"), reach);
            StatusCode::OK.into_response()
        }
        Err(rejection) => {
            let status = rejection.status();
            if let Rejection::Store(e) = &rejection {
                tracing::warn!(error = %e, "store: a back-channel logout could not be recorded");
            }
            tracing::info!(target: "audit", event = "backchannel_logout_rejected", provider = provider.as_deref().unwrap_or("-"), reason = rejection.code(), status = status.as_u16());
            let error = if status == StatusCode::BAD_REQUEST {
                "invalid_request"
            } else {
                "temporarily_unavailable"
            };
            let body = serde_json::json!({
                "error": error,
                "error_description": rejection.to_string(),
            });
            (status, axum::Json(body)).into_response()
        }
    };
    // §2.8: the answer must not be cached.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The whole exchange; `provider` is set as soon as the token's client
/// is known, so that rejections after that say which provider sent it.
async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
    provider: &mut Option<String>,
) -> Result<Done, Rejection> {
    let token = logout_token(headers, body).await?;
    let (iss, aud) = peek(&token)?;
    let target = find_client(&shared.engine_arc(), &iss, &aud)?;
    *provider = Some(target.provider.clone());
    let expected = Expected {
        issuer: &target.meta.issuer,
        client_id: &target.client_id,
    };
    let logout = verify(shared, &target.meta, &token, &expected).await?;
    let replay = ReplayKey::new(&iss, &logout.jti);
    let now = crate::clock::unix_secs();
    // Remembered while the token could still be accepted (its iat window).
    let ttl = (logout.iat + MAX_AGE_SECS + LEEWAY_SECS)
        .saturating_sub(now)
        .max(1);
    let store = shared.runtime.store();
    if !remember(store.map(Arc::as_ref), &replay, ttl, now).await? {
        return Err(Rejection::Replayed);
    }
    match revoke(shared, &target.provider, &logout, now).await {
        Ok(done) => Ok(done),
        Err(e) => {
            // The provider retries with the same token: it must not then
            // be refused as a replay.
            forget(store.map(Arc::as_ref), &replay).await;
            Err(e)
        }
    }
}

/// The request's `logout_token`: a form body of bounded size with exactly
/// one of it.
async fn logout_token(headers: &HeaderMap, body: Body) -> Result<String, Rejection> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(Rejection::ContentType);
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| Rejection::Body)?;
    let mut tokens = url::form_urlencoded::parse(&bytes)
        .filter(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    match (tokens.next(), tokens.next()) {
        (Some(token), None) if !token.is_empty() => Ok(token),
        _ => Err(Rejection::NoToken),
    }
}

/// The unverified `iss` and `aud`: only to choose whose keys verify the
/// token, which is then checked in full.
fn peek(token: &str) -> Result<(String, Vec<String>), Rejection> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Rejection::Malformed)?;
    let claims: Value = serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed)?;
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(Rejection::UnknownIssuer)?;
    Ok((iss.to_string(), audiences(claims.get("aud"))))
}

/// `aud` as a list (a string is a list of one; anything else is empty).
fn audiences(aud: Option<&Value>) -> Vec<String> {
    match aud {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// A logout token's checks without the network or a store, as the
/// endpoint applies them once it knows the client: the unverified peek,
/// then header, signature (by `jwks`) and the §2.6 claims at `now`. Ok is
/// the token's `jti`; Err the rejection's code. Public for the fuzz
/// targets; replay and revocation are not part of it.
pub fn check_logout_token(
    token: &str,
    jwks: &crate::auth::jwks::Jwks,
    issuer: &str,
    client_id: &str,
    now: u64,
) -> Result<String, &'static str> {
    peek(token).map_err(|r| r.code())?;
    let expected = Expected { issuer, client_id };
    validate(token, &expected, now, |t, v| jwks.verify::<Value>(t, v))
        .map(|logout| logout.jti)
        .map_err(|r| r.code())
}

/// The oidc login client of `iss` that `aud` names. Its provider is what
/// sessions are bound to, so every route of the issuer shares it.
/// Issuers are compared exactly: a `{tenantid}` template never matches.
fn find_client(engine: &Engine, iss: &str, aud: &[String]) -> Result<Target, Rejection> {
    let mut issuer_known = false;
    let mut keys_missing = false;
    for oidc in engine.oidc_routes() {
        let Some(client) = &oidc.client else { continue };
        let meta = oidc.discovery.metadata();
        let same_issuer = match &meta {
            Some(meta) => meta.issuer == iss,
            // Not discovered (yet): the configured issuer tells.
            None => oidc.discovery.issuer() == iss.trim_end_matches('/'),
        };
        if !same_issuer {
            continue;
        }
        issuer_known = true;
        if !aud.contains(&client.client_id) {
            continue;
        }
        match meta {
            Some(meta) => {
                return Ok(Target {
                    provider: client.provider.clone(),
                    client_id: client.client_id.clone(),
                    meta,
                });
            }
            None => keys_missing = true,
        }
    }
    Err(if keys_missing {
        Rejection::KeysUnavailable
    } else if issuer_known {
        Rejection::Audience
    } else {
        Rejection::UnknownIssuer
    })
}

/// Verifies with the issuer's JWKS; a key the set lacks (rotated at the
/// provider) gets one refresh, as at login.
async fn verify(
    shared: &Shared,
    meta: &Metadata,
    token: &str,
    expected: &Expected<'_>,
) -> Result<Logout, Rejection> {
    let keys = |t: &str, v: &Validation| meta.jwks.verify::<Value>(t, v);
    let now = crate::clock::unix_secs();
    match validate(token, expected, now, keys) {
        Err(Rejection::UnknownKey | Rejection::KeysUnavailable) => {
            let _ = meta.jwks.refresh(&shared.http).await;
            validate(token, expected, crate::clock::unix_secs(), keys)
        }
        other => other,
    }
}

/// The whole check of one token: header, signature (by `keys`, which fix
/// the algorithm), then the claims at `now`.
fn validate(
    token: &str,
    expected: &Expected<'_>,
    now: u64,
    keys: impl Fn(&str, &Validation) -> Result<Value, VerifyError>,
) -> Result<Logout, Rejection> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
    check_typ(header.typ.as_deref())?;
    let claims = keys(token, &signature_checks(expected)).map_err(rejection_of)?;
    check_claims(&claims, expected, now)
}

/// `typ` (§2.4 recommends `logout+jwt`; plain JWTs are common): absent,
/// `JWT` or `logout+jwt`, with or without `application/` (RFC 7515
/// §4.1.9). Anything else is another kind of token.
fn check_typ(typ: Option<&str>) -> Result<(), Rejection> {
    let Some(typ) = typ else { return Ok(()) };
    let bare = typ
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("application/"))
        .map_or(typ, |_| &typ[12..]);
    if bare.eq_ignore_ascii_case("JWT") || bare.eq_ignore_ascii_case("logout+jwt") {
        Ok(())
    } else {
        Err(Rejection::Typ)
    }
}

/// What the signature step checks besides the signature: as for ID tokens
/// (`iss`, `aud` = our client, `exp` when present). [`check_claims`] checks
/// them again, with a precise reason, along with the rest.
fn signature_checks(expected: &Expected<'_>) -> Validation {
    let audience = [expected.client_id.to_string()];
    validation(&Checks {
        algorithms: &[],
        leeway: LEEWAY_SECS,
        issuer: Some(expected.issuer),
        audience: &audience,
        required: &["iss", "aud"],
        not_before: false,
    })
}

/// A verification failure as a rejection reason.
fn rejection_of(e: VerifyError) -> Rejection {
    match e {
        VerifyError::UnknownKey => Rejection::UnknownKey,
        VerifyError::NoKeys => Rejection::KeysUnavailable,
        VerifyError::Invalid(kind) => match kind.as_str() {
            "InvalidSignature" => Rejection::Signature,
            "InvalidAlgorithm" | "MissingAlgorithm" => Rejection::Algorithm,
            "ExpiredSignature" => Rejection::Expired,
            "InvalidIssuer" => Rejection::Issuer,
            "InvalidAudience" => Rejection::Audience,
            "InvalidClaimFormat" => Rejection::ClaimFormat("exp, iss or aud"),
            _ => Rejection::Malformed,
        },
    }
}

/// Ends the provider session's sessions (`sid`), or else all of the
/// user's sessions at the provider (`sub`), issued up to now.
async fn revoke(
    shared: &Shared,
    provider: &str,
    logout: &Logout,
    now: u64,
) -> Result<Done, Rejection> {
    let (revocation, by) = match (&logout.sid, &logout.sub) {
        (Some(sid), _) => (
            Revocation::Sid {
                provider: provider.to_string(),
                sid: sid.clone(),
                before: now,
            },
            "sid",
        ),
        (None, Some(sub)) => (
            Revocation::User {
                provider: provider.to_string(),
                user: sub.clone(),
                before: now,
            },
            "sub",
        ),
        (None, None) => return Err(Rejection::NoSubject),
    };
    let reach = shared
        .runtime
        .revoke(revocation)
        .await
        .map_err(Rejection::Store)?;
    Ok(Done {
        provider: provider.to_string(),
        by,
        user: logout.sub.clone(),
        reach,
    })
}

#[cfg(test)]
mod tests;
