//! Credentials as clients send them.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// `Authorization` value for HTTP basic auth.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// `Authorization` value for a bearer token (or a JWT).
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Claims for `iss`/`aud` valid for the next hour; adjust with `json!` merges.
pub fn claims(issuer: &str, audience: &str) -> Value {
    let now = now();
    json!({"sub": "user-1", "iss": issuer, "aud": audience, "iat": now, "exp": now + 3600})
}

/// An HS256 JWT signed with `secret`, by a standard library.
pub fn hs256(secret: &str, claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("HMAC key");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("sign JWT")
}

/// An unsigned `alg: none` JWT (which no standard library will produce).
pub fn alg_none(claims: &Value) -> String {
    let segment = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        segment(&json!({"alg": "none", "typ": "JWT"})),
        segment(claims)
    )
}
