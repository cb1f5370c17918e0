//! The logout token's claims as Back-Channel Logout 1.0 §2.4 and §2.6
//! ask, once its signature verified.

use super::*;

/// What a valid logout token asks to end.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Logout {
    pub(super) jti: String,
    pub(super) iat: u64,
    pub(super) sid: Option<String>,
    pub(super) sub: Option<String>,
}

/// Whom the token must come from and be for.
pub(super) struct Expected<'a> {
    pub(super) issuer: &'a str,
    pub(super) client_id: &'a str,
}

/// The claim checks of §2.6 on verified claims, at `now`.
pub(super) fn check_claims(
    claims: &Value,
    expected: &Expected<'_>,
    now: u64,
) -> Result<Logout, Rejection> {
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
pub(super) fn check_audience(
    claims: &Map<String, Value>,
    client_id: &str,
) -> Result<(), Rejection> {
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
pub(super) fn check_iat(iat: Option<&Value>, now: u64) -> Result<u64, Rejection> {
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
pub(super) fn check_events(events: Option<&Value>) -> Result<(), Rejection> {
    let events = events.ok_or(Rejection::NoEvent)?;
    let events = events.as_object().ok_or(Rejection::EventType)?;
    match events.get(EVENT) {
        None => Err(Rejection::NoEvent),
        Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(Rejection::EventType),
    }
}

/// A string claim: absent, null or empty is None; another type is an error.
pub(super) fn text(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, Rejection> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Rejection::ClaimFormat(name)),
    }
}
