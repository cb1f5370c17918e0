//! Why a back-channel logout was refused, as a status and a stable code.

use super::*;

/// Why a logout was not carried out. The description names the check
/// that failed and never holds token content.
#[derive(Debug, thiserror::Error)]
pub(super) enum Rejection {
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
    pub(super) fn code(&self) -> &'static str {
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
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Self::KeysUnavailable | Self::ReplayCacheFull | Self::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}
