//! The `tokens` target's input: a JWK Set document and a token, made
//! from a structure (see fuzz_targets/tokens.rs), and what an accepted
//! token must hold.

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::Engine as _;
use ingress_authz::auth::jwks::Jwks;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://idp.example.com";
pub const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
pub const CLIENT: &str = "fuzz-oidc-client";
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

pub struct Key {
    pub name: &'static str,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub jwk: Value,
    pub pem_public: &'static str,
}

pub fn keys() -> &'static [Key] {
    static KEYS: OnceLock<Vec<Key>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let make = |name: &'static str, alg, private: &str, public: &'static str| {
            let (encoding, decoding) = match alg {
                Algorithm::RS256 => (
                    EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
                    DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
                ),
                Algorithm::EdDSA => (
                    EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
                    DecodingKey::from_ed_pem(public.as_bytes()).unwrap(),
                ),
                _ => (
                    EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
                    DecodingKey::from_ec_pem(public.as_bytes()).unwrap(),
                ),
            };
            let mut jwk =
                serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
            jwk["kid"] = json!(name);
            jwk["use"] = json!("sig");
            Key {
                name,
                alg,
                encoding,
                decoding,
                jwk,
                pem_public: public,
            }
        };
        vec![
            make(
                "ec256",
                Algorithm::ES256,
                include_str!("../../tests/fixtures/ec256.key"),
                include_str!("../../tests/fixtures/ec256.pub"),
            ),
            make(
                "ed25519",
                Algorithm::EdDSA,
                include_str!("../../tests/fixtures/ed25519.key"),
                include_str!("../../tests/fixtures/ed25519.pub"),
            ),
            make(
                "ec384",
                Algorithm::ES384,
                include_str!("../../tests/fixtures/ec384.key"),
                include_str!("../../tests/fixtures/ec384.pub"),
            ),
            make(
                "rsa",
                Algorithm::RS256,
                include_str!("../../tests/fixtures/rsa.key"),
                include_str!("../../tests/fixtures/rsa.pub"),
            ),
        ]
    })
}

#[derive(Arbitrary, Debug)]
pub enum JwksInput {
    /// The fixture keys in `mask`, each JWK edited or not.
    Fixture {
        mask: u8,
        edits: Vec<(u8, String, JsonValue)>,
    },
    /// Any JSON.
    Json(String),
}

/// A small JSON value.
#[derive(Arbitrary, Debug)]
pub enum JsonValue {
    Null,
    Bool(bool),
    Int(i64),
    Text(String),
    List(Vec<String>),
    Raw(String),
    Remove,
}

impl JsonValue {
    fn to_value(&self) -> Option<Value> {
        Some(match self {
            JsonValue::Null => Value::Null,
            JsonValue::Bool(b) => json!(b),
            JsonValue::Int(i) => json!(i),
            JsonValue::Text(s) => json!(s),
            JsonValue::List(l) => json!(l),
            JsonValue::Raw(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
            JsonValue::Remove => return None,
        })
    }
}

#[derive(Arbitrary, Debug)]
pub enum Sign {
    /// Signed by fixture key `key` (its own algorithm, or `alg`).
    Key { key: u8, alg: Option<u8> },
    /// HMAC whose secret is a fixture public key (algorithm confusion).
    HmacOverPublicKey { key: u8, alg: u8 },
    /// `alg: none`, no signature.
    Unsigned,
}

#[derive(Arbitrary, Debug)]
pub enum Kid {
    Right,
    None,
    Other(String),
}

#[derive(Arbitrary, Debug)]
pub enum Str {
    Right,
    Missing,
    Text(String),
    Json(JsonValue),
}

#[derive(Arbitrary, Debug)]
pub enum Time {
    Offset(i32),
    Missing,
    Json(JsonValue),
}

#[derive(Arbitrary, Debug)]
pub struct Claims {
    iss: Str,
    aud: Str,
    extra_aud: Option<String>,
    azp: Option<Str>,
    sub: Str,
    exp: Time,
    iat: Time,
    nbf: Option<Time>,
    nonce: Option<Str>,
    events: Option<JsonValue>,
    event_right: bool,
    jti: Str,
    sid: Option<Str>,
    tid: Option<String>,
    extra: Vec<(String, JsonValue)>,
}

/// An input structure: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Arbitrary, Debug)]
pub enum TokenInput {
    Made {
        sign: Sign,
        kid: Kid,
        typ: Option<String>,
        claims: Claims,
        flip: Option<(u16, u8)>,
    },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    pub jwks: JwksInput,
    pub token: TokenInput,
    pub template_issuer: bool,
    pub nonce: Option<String>,
}

pub const NONCE: &str = "fuzz-nonce-0123";

fn put(map: &mut serde_json::Map<String, Value>, name: &str, s: &Str, right: &str) {
    let v = match s {
        Str::Right => json!(right),
        Str::Missing => return,
        Str::Text(t) => json!(t),
        Str::Json(j) => match j.to_value() {
            Some(v) => v,
            None => return,
        },
    };
    map.insert(name.into(), v);
}

fn put_time(map: &mut serde_json::Map<String, Value>, name: &str, t: &Time, now: u64) {
    let v = match t {
        Time::Offset(o) => json!(now as i64 + i64::from(*o)),
        Time::Missing => return,
        Time::Json(j) => match j.to_value() {
            Some(v) => v,
            None => return,
        },
    };
    map.insert(name.into(), v);
}

fn claims_json(c: &Claims, issuer: &str, now: u64) -> Value {
    let mut m = serde_json::Map::new();
    let tid = c.tid.clone().unwrap_or_else(|| "tenant-1".into());
    let right_iss = issuer.replace("{tenantid}", &tid);
    put(&mut m, "iss", &c.iss, &right_iss);
    put(&mut m, "aud", &c.aud, CLIENT);
    if let (Some(extra), Some(Value::String(a))) = (&c.extra_aud, m.get("aud").cloned()) {
        m.insert("aud".into(), json!([a, extra]));
    }
    if let Some(azp) = &c.azp {
        put(&mut m, "azp", azp, CLIENT);
    }
    put(&mut m, "sub", &c.sub, "fuzz-subject");
    put_time(&mut m, "exp", &c.exp, now);
    put_time(&mut m, "iat", &c.iat, now);
    if let Some(nbf) = &c.nbf {
        put_time(&mut m, "nbf", nbf, now);
    }
    if let Some(n) = &c.nonce {
        put(&mut m, "nonce", n, NONCE);
    }
    if c.event_right {
        m.insert("events".into(), json!({EVENT: {}}));
    } else if let Some(v) = c.events.as_ref().and_then(JsonValue::to_value) {
        m.insert("events".into(), v);
    }
    put(&mut m, "jti", &c.jti, "fuzz-jti-1");
    if let Some(sid) = &c.sid {
        put(&mut m, "sid", sid, "fuzz-sid-1");
    }
    if c.tid.is_some() {
        m.insert("tid".into(), json!(tid));
    }
    for (k, v) in &c.extra {
        if let Some(v) = v.to_value() {
            m.insert(k.clone(), v);
        }
    }
    Value::Object(m)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hmac(alg: Algorithm, secret: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    match alg {
        Algorithm::HS384 => {
            let mut m = hmac::Hmac::<sha2::Sha384>::new_from_slice(secret).unwrap();
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Algorithm::HS512 => {
            let mut m = hmac::Hmac::<sha2::Sha512>::new_from_slice(secret).unwrap();
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        _ => crate::mint::hmac_sha256(secret, data),
    }
}

const FAMILY: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

thread_local! {
    /// Tokens signed before, by key, header and claims. Signing (an RSA
    /// private-key operation above all) was half of this target's time,
    /// and mutations of the other fields repeat the same token often.
    /// RSA PKCS#1, ECDSA (RFC 6979) and Ed25519 signatures are
    /// deterministic; a PSS one from the cache is as valid as a new one.
    static SIGNED: std::cell::RefCell<std::collections::HashMap<(usize, String, String), Option<String>>> =
        Default::default();
}

/// `jsonwebtoken::encode` with fixture key `key`, remembered; `None`
/// where that key cannot sign with the header's algorithm.
fn signed(key: usize, header: &Header, payload: &Value) -> Option<String> {
    let id = (
        key,
        serde_json::to_string(header).expect("a header serialises"),
        payload.to_string(),
    );
    if let Some(hit) = SIGNED.with(|c| c.borrow().get(&id).cloned()) {
        return hit;
    }
    let token = jsonwebtoken::encode(header, payload, &keys()[key].encoding).ok();
    SIGNED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 20_000 {
            c.clear();
        }
        c.insert(id, token.clone());
    });
    token
}

pub fn make_token(t: &TokenInput, issuer: &str, now: u64) -> String {
    let TokenInput::Made {
        sign,
        kid,
        typ,
        claims,
        flip,
    } = t
    else {
        let TokenInput::Raw(s) = t else {
            unreachable!()
        };
        return s.clone();
    };
    let keys = keys();
    let payload = claims_json(claims, issuer, now);
    let (alg_name, key_index) = match sign {
        Sign::Key { key, alg } => {
            let k = &keys[usize::from(*key) % keys.len()];
            let alg = alg.map_or(k.alg, |a| FAMILY[usize::from(a) % FAMILY.len()]);
            (format!("{alg:?}"), Some(usize::from(*key) % keys.len()))
        }
        Sign::HmacOverPublicKey { key, alg } => {
            let alg = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512][usize::from(*alg) % 3];
            (format!("{alg:?}"), Some(usize::from(*key) % keys.len()))
        }
        Sign::Unsigned => ("none".to_string(), None),
    };
    let mut header = json!({"alg": alg_name});
    if let Some(t) = typ {
        header["typ"] = json!(t);
    }
    match kid {
        Kid::Right => {
            if let Some(i) = key_index {
                header["kid"] = json!(keys[i].name);
            }
        }
        Kid::None => {}
        Kid::Other(s) => header["kid"] = json!(s),
    }
    let token = match sign {
        Sign::Key { key, alg } => {
            let k = &keys[usize::from(*key) % keys.len()];
            let alg = alg.map_or(k.alg, |a| FAMILY[usize::from(a) % FAMILY.len()]);
            let mut h = Header::new(alg);
            h.typ = header
                .get("typ")
                .and_then(Value::as_str)
                .map(str::to_string);
            h.kid = header
                .get("kid")
                .and_then(Value::as_str)
                .map(str::to_string);
            // A key that cannot sign with `alg` gives a token it never signed.
            signed(usize::from(*key) % keys.len(), &h, &payload).unwrap_or_else(|| {
                format!(
                    "{}.{}.{}",
                    b64(header.to_string().as_bytes()),
                    b64(payload.to_string().as_bytes()),
                    b64(b"sig")
                )
            })
        }
        Sign::HmacOverPublicKey { key, alg } => {
            let alg = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512][usize::from(*alg) % 3];
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(payload.to_string().as_bytes())
            );
            let secret = keys[usize::from(*key) % keys.len()].pem_public.as_bytes();
            format!("{input}.{}", b64(&hmac(alg, secret, input.as_bytes())))
        }
        Sign::Unsigned => format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        ),
    };
    match flip {
        Some((at, xor)) if !token.is_empty() => {
            let mut b = token.into_bytes();
            let at = usize::from(*at) % b.len();
            b[at] ^= (*xor).max(1);
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => token,
    }
}

pub fn jwks_doc(j: &JwksInput) -> Value {
    match j {
        JwksInput::Fixture { mask, edits } => {
            let mut list: Vec<Value> = keys()
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0 || *mask == 0)
                .map(|(_, k)| k.jwk.clone())
                .collect();
            for (which, member, value) in edits {
                if list.is_empty() {
                    break;
                }
                let i = usize::from(*which) % list.len();
                let Some(obj) = list[i].as_object_mut() else {
                    continue;
                };
                match value.to_value() {
                    Some(v) => obj.insert(member.clone(), v),
                    None => obj.remove(member),
                };
            }
            json!({ "keys": list })
        }
        JwksInput::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
    }
}

/// The token's signature verifies with one of the fixture's public keys
/// (PEM), whatever the JWKS said.
pub fn signed_by_fixture_key(token: &str) -> bool {
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    keys().iter().any(|k| {
        FAMILY.iter().any(|alg| {
            let mut v = v.clone();
            v.algorithms = vec![*alg];
            jsonwebtoken::decode::<Value>(token, &k.decoding, &v).is_ok()
        })
    })
}

pub fn payload(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

pub fn names(aud: Option<&Value>, client: &str) -> bool {
    match aud {
        Some(Value::String(a)) => a == client,
        Some(Value::Array(l)) => l.iter().any(|a| a == client),
        _ => false,
    }
}

pub fn non_empty(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// One input: the JWKS loaded, the token made and checked both ways;
/// panics where a check promises more than it holds. Whether it was
/// accepted as an ID token, and as a logout token.
pub fn run(input: &Input) -> (bool, bool) {
    run_at(input, crate::fixture::now())
}

/// Text inputs: `token\njwks-json[\nnow]`, checked for the plain issuer
/// and nonce [`NONCE`] at `now` (default: the clock), so that seeds of
/// accepted tokens stay accepted.
pub fn run_text(text: &str) -> (bool, bool) {
    let mut lines = text.splitn(3, '\n');
    let token = lines.next().unwrap_or_default().to_string();
    let jwks = lines.next().unwrap_or_default().to_string();
    let now = lines
        .next()
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(crate::fixture::now);
    let input = Input {
        jwks: JwksInput::Json(jwks),
        token: TokenInput::Raw(token),
        template_issuer: false,
        nonce: Some(NONCE.to_string()),
    };
    run_at(&input, now)
}

fn run_at(input: &Input, now: u64) -> (bool, bool) {
    let issuer = if input.template_issuer {
        TEMPLATE
    } else {
        ISSUER
    };
    let jwks = Jwks::new("https://idp.example.com/jwks".parse().unwrap());
    let loaded = jwks.load(jwks_doc(&input.jwks));
    let token = make_token(&input.token, issuer, now);
    let nonce = input
        .nonce
        .as_deref()
        .map(|n| if n.is_empty() { NONCE } else { n });

    let id = ingress_authz::auth::oidc::check_id_token(&jwks, issuer, CLIENT, &token, nonce, now);
    if let Ok(claims) = &id {
        assert!(
            loaded.is_ok(),
            "a token verified with keys that did not load"
        );
        assert!(
            signed_by_fixture_key(&token),
            "an ID token accepted without a fixture key's signature"
        );
        assert_eq!(claims, &payload(&token), "the claims are the token's");
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if issuer == ISSUER {
            assert_eq!(iss, ISSUER);
        } else {
            let tid = claims
                .get("tid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            assert!(
                !tid.is_empty() && iss == TEMPLATE.replace("{tenantid}", tid),
                "{iss} for tenant {tid}"
            );
        }
        assert!(names(claims.get("aud"), CLIENT), "aud");
        assert!(non_empty(claims.get("sub")), "sub");
        assert_eq!(claims.get("nonce").and_then(Value::as_str), nonce, "nonce");
        assert!(nonce.is_some());
        let exp = claims.get("exp").and_then(Value::as_f64).expect("exp");
        assert!(exp + 61.0 >= now as f64, "expired");
        let iat = claims.get("iat").and_then(Value::as_f64).expect("iat");
        assert!(iat <= now as f64 + 61.0, "iat in the future");
    }

    let logout = ingress_authz::login::check_logout_token(&token, &jwks, ISSUER, CLIENT, now);
    if let Ok(jti) = &logout {
        assert!(
            signed_by_fixture_key(&token),
            "a logout token accepted without a fixture key's signature"
        );
        let claims = payload(&token);
        assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
        assert!(names(claims.get("aud"), CLIENT), "aud");
        assert!(claims.get("nonce").is_none(), "a nonce");
        assert!(
            claims
                .get("events")
                .and_then(|e| e.get(EVENT))
                .is_some_and(Value::is_object),
            "the logout event"
        );
        assert!(!jti.is_empty() && claims.get("jti").and_then(Value::as_str) == Some(jti.as_str()));
        assert!(
            non_empty(claims.get("sid")) || non_empty(claims.get("sub")),
            "sid or sub"
        );
        let iat = claims.get("iat").and_then(Value::as_u64).expect("iat");
        assert!(
            iat <= now + 61 && iat + 300 + 61 >= now,
            "iat {iat} at {now}"
        );
    }
    (id.is_ok(), logout.is_ok())
}
