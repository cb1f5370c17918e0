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

/// Why a logout was not carried out. The description names the check
/// that failed and never holds token content.
#[derive(Debug, thiserror::Error)]
enum Rejection {
    #[error("the request body is not application/x-www-form-urlencoded")]
    ContentType,
    #[error("the request body is too large or could not be read")]
    Body,
    #[error("the request has no single logout_token parameter")]
    NoToken,
    #[error("the logout token is not a signed JWT")]
    Malformed,
    #[error("the logout token's typ header is neither JWT nor logout+jwt")]
    Typ,
    #[error("the logout token's iss is not a configured OpenID provider")]
    UnknownIssuer,
    #[error("the logout token's aud does not name this client")]
    Audience,
    #[error("the logout token's azp does not name this client")]
    Azp,
    #[error("no key of the issuer matches the logout token's kid")]
    UnknownKey,
    #[error("the logout token's algorithm is not the one of the issuer's key")]
    Algorithm,
    #[error("the logout token's signature is invalid")]
    Signature,
    #[error("the logout token's iss does not match the issuer")]
    Issuer,
    #[error("the logout token has expired")]
    Expired,
    #[error("the logout token's {0} claim has the wrong type")]
    ClaimFormat(&'static str),
    #[error("the logout token has no iat claim")]
    NoIat,
    #[error("the logout token's iat is too old")]
    IatTooOld,
    #[error("the logout token's iat is in the future")]
    IatInFuture,
    #[error("the logout token carries a nonce claim")]
    Nonce,
    #[error("the logout token has no back-channel logout event")]
    NoEvent,
    #[error("the logout token's events claim or back-channel logout event is not a JSON object")]
    EventType,
    #[error("the logout token has no jti claim")]
    NoJti,
    #[error("the logout token has neither sid nor sub")]
    NoSubject,
    #[error("the logout token was already used (jti)")]
    Replayed,
    #[error("the issuer's keys are not available")]
    KeysUnavailable,
    #[error("too many recent logout tokens to remember another")]
    ReplayCacheFull,
    #[error("the logout could not be recorded: {0}")]
    Store(#[source] StoreError),
}

impl Rejection {
    /// The audit reason: stable, for alerts and dashboards.
    fn code(&self) -> &'static str {
        match self {
            Self::ContentType => "content_type",
            Self::Body => "body",
            Self::NoToken => "missing_token",
            Self::Malformed => "malformed",
            Self::Typ => "typ",
            Self::UnknownIssuer => "unknown_issuer",
            Self::Audience => "aud",
            Self::Azp => "azp",
            Self::UnknownKey => "unknown_key",
            Self::Algorithm => "algorithm",
            Self::Signature => "signature",
            Self::Issuer => "iss",
            Self::Expired => "expired",
            Self::ClaimFormat(_) => "claim_format",
            Self::NoIat => "missing_iat",
            Self::IatTooOld => "iat_too_old",
            Self::IatInFuture => "iat_in_future",
            Self::Nonce => "nonce",
            Self::NoEvent => "missing_event",
            Self::EventType => "event_type",
            Self::NoJti => "missing_jti",
            Self::NoSubject => "missing_sid_sub",
            Self::Replayed => "replayed",
            Self::KeysUnavailable => "keys_unavailable",
            Self::ReplayCacheFull => "replay_cache_full",
            Self::Store(_) => "store_unavailable",
        }
    }

    /// 503 when trying again later may work (the provider retries); 400
    /// for a request or token that will never do (§2.8).
    fn status(&self) -> StatusCode {
        match self {
            Self::KeysUnavailable | Self::ReplayCacheFull | Self::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// What a valid logout token asks to end.
#[derive(Debug, PartialEq, Eq)]
struct Logout {
    jti: String,
    iat: u64,
    sid: Option<String>,
    sub: Option<String>,
}

/// Whom the token must come from and be for.
struct Expected<'a> {
    issuer: &'a str,
    client_id: &'a str,
}

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

/// The claim checks of §2.6 on verified claims, at `now`.
fn check_claims(claims: &Value, expected: &Expected<'_>, now: u64) -> Result<Logout, Rejection> {
    let claims = claims.as_object().ok_or(Rejection::Malformed)?;
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(Rejection::Issuer);
    }
    check_audience(claims, expected.client_id)?;
    match claims.get("exp") {
        None => {}
        Some(exp) => {
            let exp = exp.as_u64().ok_or(Rejection::ClaimFormat("exp"))?;
            if exp.saturating_add(LEEWAY_SECS) < now {
                return Err(Rejection::Expired);
            }
        }
    }
    let iat = check_iat(claims.get("iat"), now)?;
    // A nonce would make it an ID token from a browser login (§2.4).
    if claims.contains_key("nonce") {
        return Err(Rejection::Nonce);
    }
    check_events(claims.get("events"))?;
    let jti = text(claims, "jti")?.ok_or(Rejection::NoJti)?;
    let sid = text(claims, "sid")?;
    let sub = text(claims, "sub")?;
    if sid.is_none() && sub.is_none() {
        return Err(Rejection::NoSubject);
    }
    Ok(Logout { jti, iat, sid, sub })
}

/// `aud` names the client; with several audiences (or an `azp`), `azp`
/// must be the client, as for ID tokens.
fn check_audience(claims: &Map<String, Value>, client_id: &str) -> Result<(), Rejection> {
    let aud = audiences(claims.get("aud"));
    if !aud.iter().any(|a| a == client_id) {
        return Err(Rejection::Audience);
    }
    let azp = claims.get("azp");
    if (aud.len() > 1 || azp.is_some()) && azp.and_then(Value::as_str) != Some(client_id) {
        return Err(Rejection::Azp);
    }
    Ok(())
}

/// `iat`: present, not in the future, not older than [`MAX_AGE_SECS`]
/// (each beyond the leeway).
fn check_iat(iat: Option<&Value>, now: u64) -> Result<u64, Rejection> {
    let iat = iat.ok_or(Rejection::NoIat)?;
    let iat = iat.as_u64().ok_or(Rejection::ClaimFormat("iat"))?;
    if iat > now.saturating_add(LEEWAY_SECS) {
        return Err(Rejection::IatInFuture);
    }
    if iat.saturating_add(MAX_AGE_SECS + LEEWAY_SECS) < now {
        return Err(Rejection::IatTooOld);
    }
    Ok(iat)
}

/// `events` is an object whose back-channel logout member is an object.
fn check_events(events: Option<&Value>) -> Result<(), Rejection> {
    let events = events.ok_or(Rejection::NoEvent)?;
    let events = events.as_object().ok_or(Rejection::EventType)?;
    match events.get(EVENT) {
        None => Err(Rejection::NoEvent),
        Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(Rejection::EventType),
    }
}

/// A string claim: absent, null or empty is None; another type is an error.
fn text(claims: &Map<String, Value>, name: &'static str) -> Result<Option<String>, Rejection> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Rejection::ClaimFormat(name)),
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

/// Identifies one (issuer, jti): hashed, so keys have a fixed size and
/// hold nothing the provider sent.
struct ReplayKey([u8; 32]);

impl ReplayKey {
    fn new(iss: &str, jti: &str) -> Self {
        let mut h = Sha256::new();
        h.update(iss.as_bytes());
        // A separator: ("ab", "c") and ("a", "bc") are different tokens.
        h.update([0]);
        h.update(jti.as_bytes());
        Self(h.finalize().into())
    }

    fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Records the `jti` for `ttl` seconds; false when it was already there.
/// With a store every replica sees it (`SET NX`); without, this one does.
async fn remember(
    store: Option<&Store>,
    key: &ReplayKey,
    ttl: u64,
    now: u64,
) -> Result<bool, Rejection> {
    let Some(store) = store else {
        return local_jtis().record(key.0, now + ttl, now);
    };
    let mut set = redis::cmd("SET");
    set.arg(store.key("jti", &key.hex()))
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(ttl);
    let answer: Option<String> = store
        .call("backchannel_jti", &set)
        .await
        .map_err(Rejection::Store)?;
    Ok(answer.is_some())
}

/// Undoes [`remember`] (best effort: the store may be what failed).
async fn forget(store: Option<&Store>, key: &ReplayKey) {
    let Some(store) = store else {
        local_jtis().forget(&key.0);
        return;
    };
    let mut del = redis::cmd("DEL");
    del.arg(store.key("jti", &key.hex()));
    if let Err(e) = store.call::<i64>("backchannel_jti", &del).await {
        tracing::warn!(error = %e, "store: a failed back-channel logout's jti stays recorded");
    }
}

/// The `jti`s this replica saw (no store), until each may no longer come.
struct SeenJtis {
    until: HashMap<[u8; 32], u64>,
    capacity: usize,
}

impl SeenJtis {
    fn new(capacity: usize) -> Self {
        Self {
            until: HashMap::new(),
            capacity,
        }
    }

    /// Records `key` until `until`; false when it is there and current.
    fn record(&mut self, key: [u8; 32], until: u64, now: u64) -> Result<bool, Rejection> {
        if self.until.get(&key).is_some_and(|u| *u > now) {
            return Ok(false);
        }
        if self.until.len() >= self.capacity {
            self.until.retain(|_, u| *u > now);
        }
        if self.until.len() >= self.capacity {
            return Err(Rejection::ReplayCacheFull);
        }
        self.until.insert(key, until);
        Ok(true)
    }

    fn forget(&mut self, key: &[u8; 32]) {
        self.until.remove(key);
    }
}

/// Process-wide: it outlives config reloads, as replays would.
fn local_jtis() -> std::sync::MutexGuard<'static, SeenJtis> {
    static SEEN: LazyLock<Mutex<SeenJtis>> =
        LazyLock::new(|| Mutex::new(SeenJtis::new(MAX_LOCAL_JTIS)));
    SEEN.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
    use serde_json::json;

    const ISS: &str = "https://idp.example";
    const CLIENT: &str = "rp-1";
    const KID: &str = "k1";
    const EC_KEY: &str = include_str!("../../tests/fixtures/ec256.key");
    const EC_PUB: &str = include_str!("../../tests/fixtures/ec256.pub");

    fn expected() -> Expected<'static> {
        Expected {
            issuer: ISS,
            client_id: CLIENT,
        }
    }

    fn now() -> u64 {
        crate::clock::unix_secs()
    }

    /// A valid logout token's claims.
    fn claims() -> Value {
        json!({
            "iss": ISS,
            "aud": CLIENT,
            "iat": now(),
            "exp": now() + 120,
            "jti": "jti-1",
            "sid": "op-session",
            "sub": "alice",
            "events": { EVENT: {} },
        })
    }

    fn header(typ: Option<&str>) -> Header {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(KID.into());
        h.typ = typ.map(Into::into);
        h
    }

    fn sign_with(header: &Header, claims: &Value) -> String {
        let key = EncodingKey::from_ec_pem(EC_KEY.as_bytes()).unwrap();
        jsonwebtoken::encode(header, claims, &key).unwrap()
    }

    fn sign(claims: &Value) -> String {
        sign_with(&header(Some("logout+jwt")), claims)
    }

    /// Stands in for the issuer's JWKS as `Jwks::verify` works: the key
    /// is found by `kid`, and the algorithm is the key's own.
    fn keys(token: &str, template: &Validation) -> Result<Value, VerifyError> {
        let kind = |e: jsonwebtoken::errors::Error| {
            let kind = format!("{:?}", e.kind());
            VerifyError::Invalid(kind.split(['(', ' ', '{']).next().unwrap().to_string())
        };
        let header = jsonwebtoken::decode_header(token).map_err(kind)?;
        if header.kid.as_deref() != Some(KID) {
            return Err(VerifyError::UnknownKey);
        }
        let mut v = template.clone();
        v.algorithms = vec![Algorithm::ES256];
        let key = DecodingKey::from_ec_pem(EC_PUB.as_bytes()).unwrap();
        jsonwebtoken::decode::<Value>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(kind)
    }

    fn check(token: &str) -> Result<Logout, Rejection> {
        validate(token, &expected(), now(), keys)
    }

    fn reason(token: &str) -> &'static str {
        check(token).map(|_| "ok").unwrap_or_else(|e| e.code())
    }

    fn with(changes: Value) -> Value {
        let mut c = claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    #[test]
    fn a_valid_token_names_the_provider_session() {
        let logout = check(&sign(&claims())).unwrap();
        assert_eq!(logout.sid.as_deref(), Some("op-session"));
        assert_eq!(logout.sub.as_deref(), Some("alice"));
        assert_eq!(logout.jti, "jti-1");
    }

    #[test]
    fn a_token_with_only_sub_names_the_user() {
        let logout = check(&sign(&with(json!({"sid": null, "exp": null})))).unwrap();
        assert_eq!(logout.sid, None);
        assert_eq!(logout.sub.as_deref(), Some("alice"));
    }

    #[test]
    fn neither_sid_nor_sub_is_refused() {
        let token = sign(&with(json!({"sid": null, "sub": null})));
        assert_eq!(reason(&token), "missing_sid_sub");
    }

    #[test]
    fn a_nonce_makes_it_an_id_token() {
        assert_eq!(reason(&sign(&with(json!({"nonce": "n"})))), "nonce");
    }

    #[test]
    fn the_logout_event_is_required_and_an_object() {
        assert_eq!(
            reason(&sign(&with(json!({"events": null})))),
            "missing_event"
        );
        assert_eq!(
            reason(&sign(&with(json!({"events": {"other": {}}})))),
            "missing_event"
        );
        assert_eq!(
            reason(&sign(&with(json!({"events": [EVENT]})))),
            "event_type"
        );
        assert_eq!(
            reason(&sign(&with(json!({"events": {EVENT: "yes"}})))),
            "event_type"
        );
    }

    #[test]
    fn the_audience_and_issuer_must_be_ours() {
        assert_eq!(reason(&sign(&with(json!({"aud": "other"})))), "aud");
        assert_eq!(
            reason(&sign(&with(json!({"aud": ["other", CLIENT]})))),
            "azp",
            "several audiences need azp = us"
        );
        assert_eq!(
            reason(&sign(&with(
                json!({"aud": ["other", CLIENT], "azp": CLIENT})
            ))),
            "ok"
        );
        assert_eq!(
            reason(&sign(&with(json!({"iss": "https://evil.example"})))),
            "iss"
        );
        assert_eq!(
            check_claims(&with(json!({"aud": "other"})), &expected(), now())
                .unwrap_err()
                .code(),
            "aud",
            "the claim checks hold without the signature step"
        );
    }

    #[test]
    fn iat_must_be_recent_and_not_ahead() {
        let t = now();
        assert_eq!(reason(&sign(&with(json!({"iat": null})))), "missing_iat");
        assert_eq!(
            reason(&sign(&with(
                json!({"iat": t - MAX_AGE_SECS - LEEWAY_SECS - 10})
            ))),
            "iat_too_old"
        );
        assert_eq!(
            reason(&sign(&with(json!({"iat": t + LEEWAY_SECS + 10})))),
            "iat_in_future"
        );
        assert_eq!(
            reason(&sign(&with(json!({"iat": t - MAX_AGE_SECS})))),
            "ok",
            "within the window"
        );
        assert_eq!(
            reason(&sign(&with(json!({"exp": t - LEEWAY_SECS - 10})))),
            "expired"
        );
    }

    #[test]
    fn unsigned_and_wrongly_signed_tokens_are_refused() {
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let unsigned = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT", "kid": KID})),
            b64(&claims())
        );
        assert_eq!(reason(&unsigned), "malformed");

        // The header's algorithm never chooses: the key's does.
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(KID.into());
        let forged = jsonwebtoken::encode(
            &hs,
            &claims(),
            &EncodingKey::from_secret(EC_PUB.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(reason(&forged), "algorithm");

        let token = sign(&claims());
        let (rest, sig) = token.rsplit_once('.').unwrap();
        let other = sign(&with(json!({"jti": "jti-2"})));
        let other_sig = other.rsplit_once('.').unwrap().1;
        assert_ne!(sig, other_sig);
        assert_eq!(reason(&format!("{rest}.{other_sig}")), "signature");

        let mut unknown = header(None);
        unknown.kid = Some("rotated".into());
        assert_eq!(reason(&sign_with(&unknown, &claims())), "unknown_key");
        assert_eq!(reason("not-a-jwt"), "malformed");
    }

    #[test]
    fn typ_is_absent_jwt_or_logout_jwt() {
        for ok in [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("logout+jwt"),
            Some("Logout+JWT"),
            Some("application/logout+jwt"),
        ] {
            assert_eq!(reason(&sign_with(&header(ok), &claims())), "ok", "{ok:?}");
        }
        for bad in ["at+jwt", "secevent+jwt", "JOSE", "application/at+jwt", ""] {
            assert_eq!(
                reason(&sign_with(&header(Some(bad)), &claims())),
                "typ",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_jti_is_accepted_once_while_it_matters() {
        let mut seen = SeenJtis::new(2);
        let a = ReplayKey::new(ISS, "a").0;
        let b = ReplayKey::new(ISS, "b").0;
        assert!(seen.record(a, 200, 100).unwrap());
        assert!(!seen.record(a, 200, 150).unwrap(), "a replay");
        assert!(
            seen.record(ReplayKey::new("https://other", "a").0, 200, 150)
                .unwrap(),
            "another issuer's jti is another token"
        );
        assert!(
            matches!(seen.record(b, 300, 150), Err(Rejection::ReplayCacheFull)),
            "full of current entries: refused rather than forgetting one"
        );
        assert!(
            seen.record(b, 300, 250).unwrap(),
            "expired entries make room"
        );
        seen.forget(&b);
        assert!(
            seen.record(b, 300, 260).unwrap(),
            "forgotten after a failure"
        );
    }

    #[tokio::test]
    async fn without_a_store_a_replayed_jti_is_refused() {
        let key = ReplayKey::new(ISS, "replay-test-jti");
        let t = now();
        assert!(remember(None, &key, 60, t).await.unwrap());
        assert!(!remember(None, &key, 60, t).await.unwrap());
        forget(None, &key).await;
        assert!(remember(None, &key, 60, t).await.unwrap());
    }

    #[test]
    fn rejections_describe_the_check_never_the_token() {
        let token = sign(&with(json!({"nonce": "n"})));
        let e = check(&token).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(!e.to_string().contains(&token));
        assert_eq!(
            Rejection::Store(StoreError::Timeout).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn the_form_needs_its_content_type_and_one_token() {
        let form = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            h
        };
        let ok = form("application/x-www-form-urlencoded; charset=UTF-8");
        let body = |b: &'static str| Body::from(b);
        assert_eq!(
            logout_token(&ok, body("logout_token=a.b.c")).await.unwrap(),
            "a.b.c"
        );
        assert!(matches!(
            logout_token(&form("application/json"), body("logout_token=a.b.c")).await,
            Err(Rejection::ContentType)
        ));
        assert!(matches!(
            logout_token(&HeaderMap::new(), body("logout_token=a.b.c")).await,
            Err(Rejection::ContentType)
        ));
        assert!(matches!(
            logout_token(&ok, body("other=1")).await,
            Err(Rejection::NoToken)
        ));
        assert!(matches!(
            logout_token(&ok, body("logout_token=a&logout_token=b")).await,
            Err(Rejection::NoToken)
        ));
        let big = "x".repeat(MAX_BODY + 1);
        assert!(matches!(
            logout_token(&ok, Body::from(big)).await,
            Err(Rejection::Body)
        ));
    }

    #[test]
    fn peek_reads_iss_and_aud_only_to_choose_keys() {
        let token = sign(&with(json!({"aud": [CLIENT, "x"]})));
        let (iss, aud) = peek(&token).unwrap();
        assert_eq!(iss, ISS);
        assert_eq!(aud, vec![CLIENT.to_string(), "x".to_string()]);
        assert!(matches!(peek("a.b"), Err(Rejection::Malformed)));
    }
}
