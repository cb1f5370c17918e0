//! A fake OpenID provider for the OIDC tests (SPEC §5 oidc, `jwt.jwks_url`,
//! §6): one in-process axum server per test on a loopback port, serving
//!
//! * `{issuer}/.well-known/openid-configuration` (discovery),
//! * `/jwks` (the published keys; every request counted),
//! * `/authorize` (no login page: straight back to `redirect_uri` with a
//!   code and the state, remembering nonce and PKCE challenge),
//! * `/token` (authorization_code, client_secret_post or _basic, PKCE
//!   checked; answers an `id_token` it signs),
//! * `/userinfo` (the user's claims for an access token it issued).
//!
//! The signing keys are the PEM fixtures in tests/fixtures (RSA, a second RSA
//! key for rotations, EC P-256, EC P-384, Ed25519); their JWKs are derived
//! from the private keys by `jsonwebtoken` and checked against `jose` in
//! tests/envoy/oidc.rs. What the ID token looks like is switchable
//! ([`IdToken`]): valid, or one defect at a time. [`FakeOidc::mint`] signs
//! access-token JWTs for API mode. Discovery and the JWKS can be made to fail
//! (500, an HTML page, a JSON document cut short, a connection dropped
//! mid-body), to hang or to answer slowly, the JWKS can be slowed down (to
//! test single-flight refreshes), and the keys rotated.
//!
//! Whatever the fake refuses is written to [`FakeOidc::rejections`], so that a
//! failing test says why; every request is recorded ([`FakeOidc::calls`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::fake_http::{self, FakeHttp, server_error};
pub use super::fake_http::{Call, pkce_s256};

pub const CLIENT_ID: &str = "authz-test";
pub const CLIENT_SECRET: &str = "fake-oidc-client-secret-5e8a1d";
/// How long [`Availability::Hang`] keeps a request waiting.
pub const HANG: Duration = Duration::from_secs(40);
/// How long [`Availability::Slow`] takes to answer: longer than a check
/// may wait, shorter than the service's 10 s provider timeout.
pub const SLOW: Duration = Duration::from_secs(5);
/// What every ID token's `aud` holds besides the client in
/// [`IdToken::ValidMultiAudience`] / [`IdToken::AzpMismatch`].
pub const OTHER_AUDIENCE: &str = "another-client";

/// The fixture keys the fake can sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// tests/fixtures/rsa.key, RS256 (its JWK says `alg: RS256`).
    Rsa,
    /// tests/fixtures/rsa2.key, RS256 (its JWK has no `alg`, as many
    /// providers publish RSA keys): the key a rotation moves to.
    Rsa2,
    /// tests/fixtures/ec256.key, ES256.
    Ec256,
    /// tests/fixtures/ec384.key, ES384.
    Ec384,
    /// tests/fixtures/ed25519.key, EdDSA.
    Ed25519,
}

impl KeyKind {
    pub const ALL: [Self; 5] = [
        Self::Rsa,
        Self::Rsa2,
        Self::Ec256,
        Self::Ec384,
        Self::Ed25519,
    ];

    pub fn algorithm(self) -> Algorithm {
        match self {
            Self::Rsa | Self::Rsa2 => Algorithm::RS256,
            Self::Ec256 => Algorithm::ES256,
            Self::Ec384 => Algorithm::ES384,
            Self::Ed25519 => Algorithm::EdDSA,
        }
    }

    fn file(self) -> &'static str {
        match self {
            Self::Rsa => "rsa",
            Self::Rsa2 => "rsa2",
            Self::Ec256 => "ec256",
            Self::Ec384 => "ec384",
            Self::Ed25519 => "ed25519",
        }
    }

    /// The default `kid` of this key at the fake.
    pub fn default_kid(self) -> String {
        format!("{}-2024", self.file())
    }

    /// The private key (PKCS#8 PEM).
    pub fn private_pem(self) -> String {
        read_fixture(&format!("{}.key", self.file()))
    }

    /// The public key (SPKI PEM).
    pub fn public_pem(self) -> String {
        read_fixture(&format!("{}.pub", self.file()))
    }

    pub fn encoding_key(self) -> EncodingKey {
        let pem = self.private_pem();
        let key = match self {
            Self::Rsa | Self::Rsa2 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            Self::Ec256 | Self::Ec384 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Self::Ed25519 => EncodingKey::from_ed_pem(pem.as_bytes()),
        };
        key.unwrap_or_else(|e| panic!("fixture {}.key: {e}", self.file()))
    }

    /// The public JWK (with `kid` and `use: sig`).
    pub fn jwk(self, kid: &str) -> Value {
        static CACHE: OnceLock<Mutex<HashMap<KeyKind, Value>>> = OnceLock::new();
        let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
        let mut jwk = cache
            .entry(self)
            .or_insert_with(|| {
                let jwk = Jwk::from_encoding_key(&self.encoding_key(), self.algorithm())
                    .unwrap_or_else(|e| panic!("JWK of {}.key: {e}", self.file()));
                serde_json::to_value(jwk).expect("JWK JSON")
            })
            .clone();
        drop(cache);
        let object = jwk.as_object_mut().expect("JWK object");
        object.insert("kid".into(), json!(kid));
        object.insert("use".into(), json!("sig"));
        if self == Self::Rsa2 {
            object.remove("alg");
        }
        jwk
    }
}

fn read_fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the next ID tokens look like. Every defect is one that a relying
/// party must reject (OpenID Connect Core §3.1.3.7); the `Valid*` shapes must
/// be accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdToken {
    Valid,
    /// `aud: [client, OTHER_AUDIENCE]` with `azp: client`.
    ValidMultiAudience,
    /// `exp` 30 s in the past: inside the 60 s leeway.
    ValidExpiredWithinLeeway,
    /// `nonce` is not the one the authorize request carried.
    WrongNonce,
    /// No `nonce` claim at all.
    MissingNonce,
    /// `aud` is another client.
    WrongAudience,
    /// `iss` is another issuer.
    WrongIssuer,
    /// `exp` an hour ago.
    Expired,
    /// `iat` an hour from now.
    IatInFuture,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256 with the RSA public key PEM as the HMAC secret, and the RSA
    /// key's `kid` (the classic key-confusion attack).
    Hs256WithPublicKey,
    /// Signed by the current key but naming a `kid` the JWKS never had.
    UnknownKid,
    /// `aud: [client, OTHER_AUDIENCE]` with `azp: OTHER_AUDIENCE`.
    AzpMismatch,
    /// No `sub` claim.
    MissingSub,
    /// Signed by another key (rsa2) under the current key's `kid`.
    WrongKey,
    /// RS384 with the RS256 JWK's key and `kid`: the algorithm comes from
    /// the JWK, never from the token header.
    AlgNotTheJwks,
    /// A signature that does not match (last byte flipped).
    TamperedSignature,
    /// The token answer has no `id_token` at all.
    Absent,
}

impl IdToken {
    /// The defects: each must end in a 502 without a session.
    pub const DEFECTS: [Self; 15] = [
        Self::WrongNonce,
        Self::MissingNonce,
        Self::WrongAudience,
        Self::WrongIssuer,
        Self::Expired,
        Self::IatInFuture,
        Self::AlgNone,
        Self::Hs256WithPublicKey,
        Self::UnknownKid,
        Self::AzpMismatch,
        Self::MissingSub,
        Self::WrongKey,
        Self::AlgNotTheJwks,
        Self::TamperedSignature,
        Self::Absent,
    ];
}

/// How discovery or the JWKS endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    Up,
    /// HTTP 500 with an HTML body.
    Error,
    /// Answers only after [`HANG`].
    Hang,
    /// Discovery only: a document whose `issuer` is another one.
    WrongIssuer,
    /// The right answer, after [`SLOW`].
    Slow,
    /// HTTP 200 with an HTML page instead of JSON (a login portal, a
    /// proxy's error page).
    Html,
    /// HTTP 200 `application/json` whose document stops halfway (the
    /// message itself is complete: its length says so).
    Truncated,
    /// The right headers, then half the body, then the connection drops
    /// (the body is shorter than its `content-length`).
    CutOff,
}

/// How the token and userinfo endpoints misbehave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    None,
    /// The token endpoint answers 500.
    TokenError,
    /// The userinfo endpoint answers 500.
    UserinfoError,
}

/// What the authorize endpoint was asked, kept until the code is redeemed.
#[derive(Clone, Debug)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    scope: String,
    nonce: Option<String>,
    code_challenge: String,
}

struct FakeState {
    issuer: String,
    client_id: String,
    client_secret: String,
    /// Keys in the JWKS, in order: (key, kid).
    published: Vec<(KeyKind, String)>,
    /// The key ID tokens are signed with, and its kid.
    signing: (KeyKind, String),
    user: Value,
    /// Claims of `user` left out of ID tokens (only userinfo has them).
    userinfo_only: Vec<String>,
    /// Merged into userinfo answers (`null` removes a claim).
    userinfo_patch: Value,
    /// Raw JWKs published after the keys (an `oct` key, an `enc` key, ...).
    extra_jwks: Vec<Value>,
    id_token: IdToken,
    discovery: Availability,
    jwks: Availability,
    jwks_delay: Duration,
    failure: Failure,
    grants: HashMap<String, Grant>,
    access_tokens: Vec<String>,
    id_tokens: Vec<String>,
    rejections: Vec<String>,
    hits: HashMap<&'static str, u64>,
    last_jwks_hit: Option<Instant>,
}

type Shared = fake_http::Shared<FakeState>;

/// A running fake OpenID provider.
pub struct FakeOidc {
    issuer: String,
    http: FakeHttp<FakeState>,
}

/// A loopback port that was free a moment ago: for a provider that is not up
/// yet when the service starts ([`FakeOidc::start_on`] later).
pub fn reserve_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl FakeOidc {
    /// A provider on an ephemeral port; issuer `http://127.0.0.1:PORT`.
    pub async fn start() -> Self {
        Self::start_with(0, "").await
    }

    /// A provider on `port` (from [`reserve_port`]).
    pub async fn start_on(port: u16) -> Self {
        Self::start_with(port, "").await
    }

    /// A provider whose issuer has a path (`http://127.0.0.1:PORT/realms/x`,
    /// as Keycloak, Okta or Azure AD have): every endpoint lives under it.
    /// The path is kept as given: `"/"` makes an Auth0-style issuer with a
    /// trailing slash (`iss` and discovery say `http://127.0.0.1:PORT/`).
    pub async fn start_with(port: u16, issuer_path: &str) -> Self {
        let listener = fake_http::listen(port, "fake OpenID provider").await;
        let addr = listener.local_addr().expect("fake provider address");
        let issuer = format!("http://{addr}{issuer_path}");
        let signing = (KeyKind::Rsa, KeyKind::Rsa.default_kid());
        let state = FakeState {
            issuer: issuer.clone(),
            client_id: CLIENT_ID.to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
            published: vec![
                signing.clone(),
                (KeyKind::Ec256, KeyKind::Ec256.default_kid()),
                (KeyKind::Ec384, KeyKind::Ec384.default_kid()),
                (KeyKind::Ed25519, KeyKind::Ed25519.default_kid()),
            ],
            signing,
            user: default_user(),
            userinfo_only: Vec::new(),
            userinfo_patch: json!({}),
            extra_jwks: Vec::new(),
            id_token: IdToken::Valid,
            discovery: Availability::Up,
            jwks: Availability::Up,
            jwks_delay: Duration::ZERO,
            failure: Failure::None,
            grants: HashMap::new(),
            access_tokens: Vec::new(),
            id_tokens: Vec::new(),
            rejections: Vec::new(),
            hits: HashMap::new(),
            last_jwks_hit: None,
        };
        Self {
            issuer,
            http: FakeHttp::serve(listener, state, handle),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// Sends `request` to the fake directly (not through Envoy).
    pub async fn send(&self, request: super::Request) -> super::Response {
        self.http.send(request).await
    }

    /// The issuer, exactly as `iss` and discovery name it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The issuer without a trailing slash: where the endpoints live.
    pub fn base(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base())
    }

    pub fn authorize_url(&self) -> String {
        format!("{}/authorize", self.base())
    }

    // ------------------------------------------------------------ switches

    pub fn set_id_token(&self, shape: IdToken) {
        self.lock().id_token = shape;
    }

    pub fn set_discovery(&self, availability: Availability) {
        self.lock().discovery = availability;
    }

    pub fn set_jwks(&self, availability: Availability) {
        self.lock().jwks = availability;
    }

    /// Every JWKS answer waits this long first (a slow provider: refreshes
    /// overlap).
    pub fn set_jwks_delay(&self, delay: Duration) {
        self.lock().jwks_delay = delay;
    }

    pub fn set_failure(&self, failure: Failure) {
        self.lock().failure = failure;
    }

    /// Replaces the user's claims (`sub`, `email`, `name`, ...).
    pub fn set_user(&self, user: Value) {
        self.lock().user = user;
    }

    /// Edits the user's claims in place.
    pub fn edit_user(&self, edit: impl FnOnce(&mut Value)) {
        edit(&mut self.lock().user);
    }

    pub fn user(&self) -> Value {
        self.lock().user.clone()
    }

    /// These claims are left out of ID tokens: only userinfo has them.
    pub fn set_userinfo_only(&self, claims: &[&str]) {
        self.lock().userinfo_only = claims.iter().map(|c| (*c).to_owned()).collect();
    }

    /// Userinfo answers the user's claims with these changed (`null`
    /// removes one): e.g. another `sub` than the ID token's.
    pub fn set_userinfo_patch(&self, patch: Value) {
        self.lock().userinfo_patch = patch;
    }

    /// Publishes a raw JWK as well (after the keys).
    pub fn publish_raw(&self, jwk: Value) {
        self.lock().extra_jwks.push(jwk);
    }

    /// Signs ID tokens (and [`FakeOidc::mint`]) with `key`, under its default
    /// kid; publishes it if it is not yet.
    pub fn sign_with(&self, key: KeyKind) {
        self.publish(key);
        let mut state = self.lock();
        let kid = state
            .published
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, kid)| kid.clone())
            .expect("published");
        state.signing = (key, kid);
    }

    /// Adds `key` (under its default kid) to the JWKS without signing with it.
    pub fn publish(&self, key: KeyKind) {
        let mut state = self.lock();
        if !state.published.iter().any(|(k, _)| *k == key) {
            state.published.push((key, key.default_kid()));
        }
    }

    /// Publishes `n` more copies of `key`'s public key, under the kids
    /// `{prefix}-0` .. `{prefix}-{n-1}` (a big JWKS); returns the kids.
    pub fn publish_copies(&self, key: KeyKind, prefix: &str, n: usize) -> Vec<String> {
        let kids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
        let mut state = self.lock();
        state
            .published
            .extend(kids.iter().map(|kid| (key, kid.clone())));
        kids
    }

    /// A key rotation: `key` under a new kid becomes the only published key
    /// and signs from now on; the old keys are gone from the JWKS. Returns
    /// the new kid.
    pub fn rotate_to(&self, key: KeyKind) -> String {
        let mut state = self.lock();
        let kid = format!("{}-rotated-{}", key.file(), random_token(6));
        state.published = vec![(key, kid.clone())];
        state.signing = (key, kid.clone());
        kid
    }

    /// The (key, kid) pairs the JWKS publishes.
    pub fn published(&self) -> Vec<(KeyKind, String)> {
        self.lock().published.clone()
    }

    /// The current signing key and kid.
    pub fn signing(&self) -> (KeyKind, String) {
        self.lock().signing.clone()
    }

    // ----------------------------------------------------------- counters

    /// Requests served per endpoint: `discovery`, `jwks`, `authorize`,
    /// `token`, `userinfo`.
    pub fn hits(&self, endpoint: &str) -> u64 {
        self.lock().hits.get(endpoint).copied().unwrap_or(0)
    }

    pub fn jwks_hits(&self) -> u64 {
        self.hits("jwks")
    }

    /// When the JWKS was last asked for.
    pub fn last_jwks_hit(&self) -> Option<Instant> {
        self.lock().last_jwks_hit
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.http.calls()
    }

    /// The requests to one endpoint path (without the issuer's path).
    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        let prefix = self.issuer_path();
        self.calls()
            .into_iter()
            .filter(|c| c.path.strip_prefix(&prefix) == Some(path))
            .collect()
    }

    /// Why the fake refused requests (empty when all was in order).
    pub fn rejections(&self) -> Vec<String> {
        self.lock().rejections.clone()
    }

    /// Access tokens and ID tokens it handed out (none may be logged).
    pub fn issued_tokens(&self) -> Vec<String> {
        let state = self.lock();
        state
            .access_tokens
            .iter()
            .chain(&state.id_tokens)
            .cloned()
            .collect()
    }

    // ------------------------------------------------------------ minting

    /// Claims of a valid access token for `audience`, an hour long.
    pub fn access_claims(&self, audience: &str) -> Value {
        let now = now();
        json!({
            "iss": self.issuer,
            "sub": "api-client-7",
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "scope": "api:read",
            "jti": random_token(8),
        })
    }

    /// A JWT over `claims` signed by the current signing key, under its kid.
    pub fn mint(&self, claims: &Value) -> String {
        let (key, kid) = self.signing();
        sign(key, Some(&kid), key.algorithm(), "at+jwt", claims)
    }

    /// A JWT over `claims` signed by `key` (its algorithm), under `kid`.
    pub fn mint_with(&self, key: KeyKind, kid: Option<&str>, claims: &Value) -> String {
        sign(key, kid, key.algorithm(), "at+jwt", claims)
    }

    fn issuer_path(&self) -> String {
        url::Url::parse(&self.issuer)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.http.lock()
    }
}

/// The test user: claims as a provider has them (`groups` for `claims:`).
pub fn default_user() -> Value {
    json!({
        "sub": "248289761001",
        "email": "jane.doe@example.com",
        "email_verified": true,
        "name": "Jane Doe",
        "preferred_username": "j.doe",
        "nickname": "janie",
        "picture": "https://avatars.example.com/jane.png",
        "groups": ["staff", "admins"],
        "department": "engineering",
    })
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// URL-safe random text of `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A compact JWS by a standard library.
pub fn sign(key: KeyKind, kid: Option<&str>, alg: Algorithm, typ: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding_key()).expect("sign JWT")
}

/// `alg: none`, no signature.
pub fn unsigned(kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": "none", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let segment = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", segment(&header), segment(claims))
}

/// HS256 with `secret` as the HMAC key.
pub fn hs256(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_secret(secret).expect("HMAC key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign HS256")
}

/// An `oct` JWK for `secret` (which no verifier may take from a JWKS).
pub fn oct_jwk(secret: &[u8], kid: &str) -> Value {
    json!({"kty": "oct", "kid": kid, "alg": "HS256", "use": "sig", "k": URL_SAFE_NO_PAD.encode(secret)})
}

/// HS256 with `key`'s public PEM as the HMAC secret.
pub fn hs256_with_public_key(key: KeyKind, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    let secret = EncodingKey::from_secret(key.public_pem().as_bytes()).expect("HMAC key");
    jsonwebtoken::encode(&header, claims, &secret).expect("sign HS256")
}

/// Flips the last signature character of a compact JWS.
pub fn tamper_signature(token: &str) -> String {
    let mut token = token.to_owned();
    let last = token.pop().expect("non-empty token");
    token.push(if last == 'A' { 'B' } else { 'A' });
    token
}

// ---------------------------------------------------------------- serving

async fn handle(state: Shared, call: Call) -> Response {
    let issuer_path = {
        let s = state.lock().unwrap();
        url::Url::parse(&s.issuer)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    };
    let Some(path) = call.path.strip_prefix(&issuer_path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    match (call.method.as_str(), path) {
        ("GET", "/.well-known/openid-configuration") => discovery(&state).await,
        ("GET", "/jwks") => jwks(&state).await,
        ("GET", "/authorize") => authorize(&state, &call),
        ("POST", "/token") => token(&state, &call),
        ("GET" | "POST", "/userinfo") => userinfo(&state, &call),
        _ => {
            reject(&state, format!("unexpected {} {}", call.method, call.path));
            (StatusCode::NOT_FOUND, "not found").into_response()
        }
    }
}

fn count(state: &Shared, endpoint: &'static str) {
    let mut s = state.lock().unwrap();
    *s.hits.entry(endpoint).or_default() += 1;
    if endpoint == "jwks" {
        s.last_jwks_hit = Some(Instant::now());
    }
}

fn reject(state: &Shared, why: String) {
    state.lock().unwrap().rejections.push(why);
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    fake_http::json_response(status, "application/json", body)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

async fn discovery(state: &Shared) -> Response {
    count(state, "discovery");
    let (availability, issuer) = {
        let s = state.lock().unwrap();
        (s.discovery, s.issuer.clone())
    };
    let claimed = if availability == Availability::WrongIssuer {
        "https://evil.example.com".to_owned()
    } else {
        issuer.clone()
    };
    let issuer = issuer.trim_end_matches('/');
    let document = json!({
        "issuer": claimed,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "ES384", "EdDSA"],
        "scopes_supported": ["openid", "email", "profile", "groups"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email",
            "email_verified", "name", "preferred_username", "nickname", "picture", "groups"],
    });
    answer(availability, &document).await
}

/// `document` as JSON, as `availability` says: whole, late, or broken.
async fn answer(availability: Availability, document: &Value) -> Response {
    match availability {
        Availability::Up | Availability::WrongIssuer => json_response(StatusCode::OK, document),
        Availability::Error => server_error(),
        Availability::Hang => {
            tokio::time::sleep(HANG).await;
            server_error()
        }
        Availability::Slow => {
            tokio::time::sleep(SLOW).await;
            json_response(StatusCode::OK, document)
        }
        Availability::Html => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><head><title>Sign in</title></head>\
             <body><form method=post><input name=user></form></body></html>",
        )
            .into_response(),
        Availability::Truncated => {
            let text = document.to_string();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                text[..text.len() / 2].to_owned(),
            )
                .into_response()
        }
        Availability::CutOff => {
            let text = document.to_string();
            let half = axum::body::Bytes::from(text[..text.len() / 2].to_owned());
            let chunks: [std::io::Result<axum::body::Bytes>; 2] = [
                Ok(half),
                Err(std::io::Error::other(
                    "the fake provider drops the connection",
                )),
            ];
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (header::CONTENT_LENGTH, text.len().to_string()),
                ],
                axum::body::Body::from_stream(tokio_stream::iter(chunks)),
            )
                .into_response()
        }
    }
}

async fn jwks(state: &Shared) -> Response {
    count(state, "jwks");
    let (availability, delay, published, extra) = {
        let s = state.lock().unwrap();
        (
            s.jwks,
            s.jwks_delay,
            s.published.clone(),
            s.extra_jwks.clone(),
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut keys: Vec<Value> = published.iter().map(|(k, kid)| k.jwk(kid)).collect();
    keys.extend(extra);
    answer(availability, &json!({ "keys": keys })).await
}

fn authorize(state: &Shared, call: &Call) -> Response {
    count(state, "authorize");
    let q = |name: &str| call.query_param(name).map(str::to_owned);
    let client_id = state.lock().unwrap().client_id.clone();
    let mut problems = Vec::new();
    if q("client_id").as_deref() != Some(client_id.as_str()) {
        problems.push(format!("authorize: client_id {:?}", q("client_id")));
    }
    if q("response_type").as_deref() != Some("code") {
        problems.push(format!("authorize: response_type {:?}", q("response_type")));
    }
    if q("code_challenge_method").as_deref() != Some("S256") {
        problems.push(format!(
            "authorize: code_challenge_method {:?}",
            q("code_challenge_method")
        ));
    }
    let scope = q("scope").unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        problems.push(format!("authorize: scope without openid: {scope:?}"));
    }
    let (Some(redirect_uri), Some(state_param), Some(challenge)) =
        (q("redirect_uri"), q("state"), q("code_challenge"))
    else {
        problems.push("authorize: redirect_uri, state and code_challenge needed".into());
        let why = problems.join("; ");
        reject(state, why.clone());
        return (StatusCode::BAD_REQUEST, why).into_response();
    };
    if !problems.is_empty() {
        let why = problems.join("; ");
        reject(state, why.clone());
        return (StatusCode::BAD_REQUEST, why).into_response();
    }
    let code = random_token(24);
    state.lock().unwrap().grants.insert(
        code.clone(),
        Grant {
            client_id,
            redirect_uri: redirect_uri.clone(),
            scope,
            nonce: q("nonce"),
            code_challenge: challenge,
        },
    );
    let mut back = match url::Url::parse(&redirect_uri) {
        Ok(u) => u,
        Err(e) => {
            reject(
                state,
                format!("authorize: redirect_uri {redirect_uri:?}: {e}"),
            );
            return (StatusCode::BAD_REQUEST, "bad redirect_uri").into_response();
        }
    };
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &state_param);
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

fn token(state: &Shared, call: &Call) -> Response {
    count(state, "token");
    let form = call.form();
    let f = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut s = state.lock().unwrap();
    if s.failure == Failure::TokenError {
        return server_error();
    }
    let (client_id, client_secret) = match (f("client_id"), f("client_secret")) {
        (Some(id), Some(secret)) => (id, secret),
        _ => call.basic_credentials().unwrap_or_default(),
    };
    if client_id != s.client_id || client_secret != s.client_secret {
        s.rejections
            .push(format!("token: client credentials for {client_id:?}"));
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "bad client");
    }
    if f("grant_type").as_deref() != Some("authorization_code") {
        s.rejections
            .push(format!("token: grant_type {:?}", f("grant_type")));
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "authorization_code only",
        );
    }
    let Some(grant) = f("code").and_then(|c| s.grants.remove(&c)) else {
        s.rejections.push("token: unknown or spent code".into());
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "bad code");
    };
    if grant.client_id != client_id || f("redirect_uri").as_deref() != Some(&grant.redirect_uri) {
        s.rejections.push(format!(
            "token: redirect_uri {:?} (authorize had {:?})",
            f("redirect_uri"),
            grant.redirect_uri
        ));
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "redirect_uri");
    }
    let verifier = f("code_verifier").unwrap_or_default();
    if pkce_s256(&verifier) != grant.code_challenge {
        s.rejections
            .push("token: code_verifier does not match the challenge".into());
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "PKCE");
    }
    let access_token = random_token(24);
    s.access_tokens.push(access_token.clone());
    let mut answer = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": grant.scope,
    });
    if s.id_token != IdToken::Absent {
        let id_token = id_token(&s, &grant);
        s.id_tokens.push(id_token.clone());
        answer["id_token"] = json!(id_token);
    }
    json_response(StatusCode::OK, &answer)
}

/// The ID token for `grant` in the current [`IdToken`] shape.
fn id_token(s: &FakeState, grant: &Grant) -> String {
    let now = now();
    let mut claims = json!({
        "iss": s.issuer,
        "aud": s.client_id,
        "iat": now,
        "exp": now + 3600,
        "auth_time": now,
    });
    if let Some(nonce) = &grant.nonce {
        claims["nonce"] = json!(nonce);
    }
    if let Some(user) = s.user.as_object() {
        for (k, v) in user {
            if !s.userinfo_only.contains(k) {
                claims[k] = v.clone();
            }
        }
    }
    let (key, kid) = s.signing.clone();
    let mut alg = key.algorithm();
    let mut kid = Some(kid);
    let mut sign_key = key;
    match s.id_token {
        IdToken::Valid | IdToken::Absent => {}
        IdToken::ValidMultiAudience => {
            claims["aud"] = json!([s.client_id, OTHER_AUDIENCE]);
            claims["azp"] = json!(s.client_id);
        }
        IdToken::ValidExpiredWithinLeeway => {
            claims["iat"] = json!(now - 600);
            claims["exp"] = json!(now - 30);
        }
        IdToken::WrongNonce => claims["nonce"] = json!(format!("x{}", random_token(16))),
        IdToken::MissingNonce => {
            claims.as_object_mut().unwrap().remove("nonce");
        }
        IdToken::WrongAudience => claims["aud"] = json!(OTHER_AUDIENCE),
        IdToken::WrongIssuer => claims["iss"] = json!("https://evil.example.com"),
        IdToken::Expired => {
            claims["iat"] = json!(now - 7200);
            claims["exp"] = json!(now - 3600);
        }
        IdToken::IatInFuture => {
            claims["iat"] = json!(now + 3600);
            claims["exp"] = json!(now + 7200);
        }
        IdToken::AlgNone => return unsigned(kid.as_deref(), &claims),
        IdToken::Hs256WithPublicKey => {
            return hs256_with_public_key(key, kid.as_deref(), &claims);
        }
        IdToken::UnknownKid => kid = Some(format!("unknown-{}", random_token(6))),
        IdToken::AzpMismatch => {
            claims["aud"] = json!([s.client_id, OTHER_AUDIENCE]);
            claims["azp"] = json!(OTHER_AUDIENCE);
        }
        IdToken::MissingSub => {
            claims.as_object_mut().unwrap().remove("sub");
        }
        IdToken::WrongKey => {
            sign_key = if key == KeyKind::Rsa2 {
                KeyKind::Rsa
            } else {
                KeyKind::Rsa2
            };
            alg = Algorithm::RS256;
        }
        IdToken::AlgNotTheJwks => {
            alg = match alg {
                Algorithm::RS256 => Algorithm::RS384,
                Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => {
                    // No other algorithm for these keys in jsonwebtoken:
                    // sign with the RSA fixture under this key's kid.
                    sign_key = KeyKind::Rsa;
                    Algorithm::RS256
                }
                other => other,
            };
        }
        IdToken::TamperedSignature => {
            return tamper_signature(&sign(key, kid.as_deref(), alg, "JWT", &claims));
        }
    }
    sign(sign_key, kid.as_deref(), alg, "JWT", &claims)
}

fn userinfo(state: &Shared, call: &Call) -> Response {
    count(state, "userinfo");
    let mut s = state.lock().unwrap();
    if s.failure == Failure::UserinfoError {
        return server_error();
    }
    match call.bearer() {
        Some(token) if s.access_tokens.iter().any(|t| t == token) => {
            let mut user = s.user.clone();
            for (k, v) in s.userinfo_patch.as_object().into_iter().flatten() {
                match (v.is_null(), user.as_object_mut()) {
                    (true, Some(u)) => {
                        u.remove(k);
                    }
                    (false, Some(u)) => {
                        u.insert(k.clone(), v.clone());
                    }
                    _ => {}
                }
            }
            json_response(StatusCode::OK, &user)
        }
        other => {
            s.rejections
                .push(format!("userinfo: access token {:?}", other.map(|_| "…")));
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
                "",
            )
                .into_response()
        }
    }
}
