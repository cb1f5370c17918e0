use super::replay::SeenJtis;
use super::*;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::json;

const ISS: &str = "https://idp.example";
const CLIENT: &str = "rp-1";
const KID: &str = "k1";
const EC_KEY: &str = include_str!("../../../tests/fixtures/ec256.key");
const EC_PUB: &str = include_str!("../../../tests/fixtures/ec256.pub");

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
