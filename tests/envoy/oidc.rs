//! OpenID Connect (SPEC §5 `oidc` and `jwt.jwks_url`, §6) through real Envoy.
//!
//! Against a **real OpenID provider** (`oidc-provider` 8, tests/idp/server.mjs):
//! discovery, the whole login (programmatic and in headless Chromium), the
//! identity from ID token and userinfo, the `X-Connect-Token` verified by
//! `jose`, logout, other signing algorithms, a key rotation at the provider,
//! and API mode with the provider's own JWT access tokens (RFC 9068, by
//! resource indicators).
//!
//! Against the **fake provider** (tests/common/fake_oidc.rs), what a real one
//! will not do on demand: every ID-token defect of OpenID Connect Core
//! §3.1.3.7 (each must end in a 502 without a session), `claims` and
//! `allowed_*` (403), key rotation, a provider that is down at start (503,
//! then recovery without restart), API-mode tokens of every kind, the JWKS
//! cache (one fetch per rate window under a flood of unknown `kid`s, stale
//! keys while the JWKS is down) and `type: jwt` with `jwks_url`.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tonic::transport::Channel;
use url::Url;

use crate::common::client::{Request, Response};
use crate::common::configs::{self, rule_head};
use crate::common::expect::{INVALID_TOKEN, assert_401, assert_upstream_ok};
use crate::common::fake_oidc::{
    self, Availability, CLIENT_ID, CLIENT_SECRET, Failure, FakeOidc, IdToken, KeyKind, pkce_s256,
    reserve_port,
};
use crate::common::idp::{
    self, AtProvider, IDP_CLIENT_SECRET, Jar, LOGIN_COOKIE_PREFIX, NAVIGATE, SESSION_COOKIE,
    SetCookie, new_session, set_cookies,
};
use crate::common::login::{self, Browser, CALLBACK, IdpStack, Login, Provider};
use crate::common::{self, Authz, Stack, authz};

const HOST: &str = "app.example.com";
const API_HOST: &str = "api.example.com";
const JWT_HOST: &str = "jwt.example.com";
const TARGET: &str = "/dashboard?tab=1";
const SESSION_SECRET: &str = "oidc-test-session-secret-0123456789abcdef";
const CONNECT_SECRET: &str = "oidc-connect-shared-secret-6b1f0e9d";
const API_AUDIENCE: &str = "my-api";
/// The resource (and so the `aud`) of the real provider's JWT access tokens.
const API_RESOURCE: &str = "https://api.example.com";
/// SPEC: an unknown `kid` refreshes the JWKS at most once per 10 s per URL.
const JWKS_RATE_WINDOW: Duration = Duration::from_secs(10);
/// The 503 body of a route whose provider cannot be discovered.
fn idp_unavailable_body() -> Value {
    json!({
        "status": 503,
        "error": "Service Unavailable",
        "message": "The identity provider is unavailable."
    })
}

// ---------------------------------------------------------------------------
// Configs

fn config(rules: &[String]) -> String {
    configs::with_session(SESSION_SECRET, &[], rules)
}

/// `type: oidc` for `host`, the guide's flat form (fields under `auth`).
fn oidc_rule(host: &str, fields: &[String]) -> String {
    configs::rule(host, &format!("type: oidc\n{}", configs::indent(0, fields)))
}

/// `type: oidc` for `host`, the nested form (`auth.oidc.*`).
fn nested_oidc_rule(host: &str, fields: &[String]) -> String {
    configs::rule(
        host,
        &format!("type: oidc\noidc:\n{}", configs::indent(2, fields)),
    )
}

/// A stack with one login rule for [`HOST`] at `fake`.
async fn login_stack(fake: &FakeOidc) -> Stack {
    Stack::start(&config(&[fake_login_rule(HOST, fake, &[])])).await
}

/// One API-mode rule for [`API_HOST`] at `fake`, audience [`API_AUDIENCE`].
fn api_config(fake: &FakeOidc) -> String {
    config(&[oidc_rule(
        API_HOST,
        &api_fields(fake.issuer(), Some(API_AUDIENCE)),
    )])
}

/// A login rule for `host` at `fake` (connect on), plus `extra` lines.
fn fake_login_rule(host: &str, fake: &FakeOidc, extra: &[&str]) -> String {
    oidc_rule(host, &login_fields(fake.issuer(), CLIENT_SECRET, extra))
}

/// Login mode at `issuer` (connect on), plus `extra` lines.
fn login_fields(issuer: &str, client_secret: &str, extra: &[&str]) -> Vec<String> {
    let mut fields = vec![
        format!("issuer: \"{issuer}\""),
        format!("client_id: {CLIENT_ID}"),
        format!("client_secret: {client_secret}"),
        "scopes: [openid, email, profile]".to_owned(),
        format!("connect: {{ enabled: true, jwt: {{ secret: {CONNECT_SECRET} }} }}"),
    ];
    // An extra `scopes:` replaces the default one.
    if extra.iter().any(|l| l.starts_with("scopes:")) {
        fields.retain(|f| !f.starts_with("scopes:"));
    }
    fields.extend(extra.iter().map(|l| (*l).to_owned()));
    fields
}

/// API mode at `issuer` (no client_id), with an optional required audience.
fn api_fields(issuer: &str, audience: Option<&str>) -> Vec<String> {
    let mut fields = vec![format!("issuer: \"{issuer}\"")];
    if let Some(audience) = audience {
        fields.push(format!("audience: [\"{audience}\"]"));
    }
    fields
}

/// `type: jwt` verified by the keys at `jwks_url`.
fn jwks_rule(host: &str, jwks_url: &str, issuer: &str, audience: &str) -> String {
    format!(
        "{}        auth:\n          type: jwt\n          jwt:\n            jwks_url: \"{jwks_url}\"\n            issuer: \"{issuer}\"\n            audience: \"{audience}\"\n",
        rule_head(host)
    )
}

// ---------------------------------------------------------------------------
// The login dance against the fake

/// A browser on `host`.
fn browser<'a>(stack: &'a Stack, host: &str) -> Browser<'a> {
    Browser::new(stack, host, NAVIGATE)
}

/// A navigation to `target` without a session: the 302 to the discovered
/// authorization endpoint, with every parameter of SPEC §6 checked.
async fn begin_login(stack: &Stack, fake: &FakeOidc, host: &str, target: &str) -> Login {
    let login = browser(stack, host).begin(target).await;
    assert_eq!(
        &login.authorize[..url::Position::AfterPath],
        fake.authorize_url(),
        "the discovered authorization_endpoint"
    );
    login_cookie(&login.redirect);
    assert_authorize_params(&login, &format!("http://{host}{CALLBACK}"));
    login
}

/// The authorize parameters of an OIDC login (SPEC §6).
#[track_caller]
fn assert_authorize_params(login: &Login, redirect_uri: &str) {
    let all = login.authorize.as_str();
    assert_eq!(login.param("client_id"), CLIENT_ID, "{all}");
    assert_eq!(login.param("response_type"), "code", "{all}");
    assert_eq!(login.param("redirect_uri"), redirect_uri, "{all}");
    assert_eq!(login.param("code_challenge_method"), "S256", "{all}");
    assert_eq!(login.param("code_challenge").len(), 43, "{all}");
    let state = login.param("state");
    assert!(state.len() >= 22, "state under 128 bits: {all}");
    let nonce = login.param("nonce");
    assert!(
        nonce.len() >= 22,
        "OIDC needs a nonce of >= 128 bits: {all}"
    );
    assert_ne!(nonce, state, "{all}");
    let scopes: Vec<&str> = login.param("scope").split(' ').collect();
    assert!(scopes.contains(&"openid"), "openid is always asked: {all}");
    assert!(
        !login.set_cookie.value.contains(state) && !login.set_cookie.value.contains(nonce),
        "the login-state cookie is encrypted: {:?}",
        login.set_cookie
    );
}

/// The one login-state cookie a redirect to the provider sets.
#[track_caller]
fn login_cookie(response: &Response) -> SetCookie {
    let cookies = set_cookies(response);
    let login: Vec<SetCookie> = cookies
        .iter()
        .filter(|c| c.name.starts_with(LOGIN_COOKIE_PREFIX))
        .cloned()
        .collect();
    let [cookie] = <[SetCookie; 1]>::try_from(login)
        .unwrap_or_else(|c| panic!("one login-state cookie expected: {c:?}"));
    cookie.assert_protected("/oauth2/");
    assert!(!cookie.deletes(), "{cookie:?}");
    assert!(new_session(response).is_none(), "{cookies:?}");
    cookie
}

/// The fake's authorize endpoint (no login page): where it sends the browser
/// back, `/oauth2/callback?code=..&state=..`.
async fn at_fake(fake: &FakeOidc, login: &Login, host: &str) -> String {
    let back = fake.sign_in(&login.authorize).await;
    assert_eq!(back.host_str(), Some(host), "{back}");
    assert_eq!(back.path(), CALLBACK, "{back}");
    back[url::Position::BeforePath..].to_owned()
}

/// The browser coming back from the provider with its login-state cookie.
async fn callback(stack: &Stack, host: &str, target: &str, login: &Login) -> Response {
    browser(stack, host)
        .navigate(target, &[&login.cookie])
        .await
}

/// The dance up to the callback's answer, whatever it is.
async fn attempt_login(
    stack: &Stack,
    fake: &FakeOidc,
    host: &str,
    target: &str,
) -> (Login, Response) {
    let login = begin_login(stack, fake, host, target).await;
    let back = at_fake(fake, &login, host).await;
    let response = callback(stack, host, &back, &login).await;
    (login, response)
}

/// The whole dance; asserts it succeeds. Returns the session cookie
/// (`ingress_authz=...`) and the login.
async fn log_in(stack: &Stack, fake: &FakeOidc, host: &str, target: &str) -> (String, Login) {
    let (login, response) = attempt_login(stack, fake, host, target).await;
    let session = login::assert_session(stack, &response, target, &fake.rejections());
    session.assert_protected("/");
    assert!(session.value.len() < 4000, "{} bytes", session.value.len());
    assert!(
        set_cookies(&response)
            .iter()
            .any(|c| c.name == login.set_cookie.name && c.deletes()),
        "the login-state cookie is cleared: {:?}",
        response.headers
    );
    (format!("{SESSION_COOKIE}={}", session.value), login)
}

/// A request with the session (and an application cookie).
async fn as_user(stack: &Stack, host: &str, target: &str, session: &str) -> Response {
    let cookie = format!("{session}; theme=dark");
    stack.get(host, target, &[("cookie", &cookie)]).await
}

/// A failed login: `status`, an HTML error page (a navigation), no session.
#[track_caller]
fn assert_failed_login(response: &Response, status: u16, what: &str, stack: &Stack) {
    assert_eq!(
        response.status,
        status,
        "{what}: {}\n{}",
        response.text(),
        stack.debug_logs()
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html")),
        "{what}: an error page for the browser: {:?}",
        response.headers
    );
    assert!(
        new_session(response).is_none(),
        "{what}: a session was set: {:?}",
        response.headers
    );
}

// ---------------------------------------------------------------------------
// What the upstream and the audit log saw

/// The identity in the X-Connect-Token of the upstream's last request.
fn upstream_identity(stack: &Stack) -> Value {
    let requests = stack.upstream_requests();
    let last = requests.last().expect("a request reached the upstream");
    let cookie = last.header("cookie").unwrap_or_default();
    assert!(
        !cookie.contains(SESSION_COOKIE),
        "our cookies reach the upstream: {cookie}"
    );
    login::decode_connect_token(
        last.header("x-connect-token").expect("X-Connect-Token"),
        CONNECT_SECRET,
    )
}

/// The identity SPEC §6 maps an OpenID user to, written independently of the
/// implementation: id←sub, username←preferred_username (else nickname, else
/// email), email, nickname←name, avatar←picture.
fn expected_identity(user: &Value) -> BTreeMap<&'static str, String> {
    let s = |k: &str| user[k].as_str().unwrap_or_default().to_owned();
    let username = [s("preferred_username"), s("nickname"), s("email")]
        .into_iter()
        .find(|v| !v.is_empty())
        .unwrap_or_default();
    BTreeMap::from([
        ("id", s("sub")),
        ("username", username),
        ("email", s("email")),
        ("nickname", s("name")),
        ("avatar", s("picture")),
    ])
}

#[track_caller]
fn assert_identity(claims: &Value, user: &Value) {
    for (field, value) in expected_identity(user) {
        assert_eq!(
            claims[field].as_str().unwrap_or_default(),
            value,
            "X-Connect-Token `{field}` for user {user}: {claims}"
        );
    }
    assert_eq!(claims["sub"], claims["id"], "{claims}");
}

/// The reasons of the failed logins so far.
fn login_failures(stack: &Stack) -> Vec<String> {
    stack
        .authz
        .audit_events()
        .iter()
        .filter(|e| e["event"] == "login_failed")
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Denials with `reason`.
fn denials(logs: &str, reason: &str) -> usize {
    authz::audit_events(logs)
        .iter()
        .filter(|e| e["event"] == "denied" && e["reason"] == reason)
        .count()
}

/// No token the provider issued appears in the service's logs.
#[track_caller]
fn assert_no_token_logged(stack: &Stack, tokens: &[String]) {
    let logs = stack.authz.logs();
    for token in tokens {
        // A JWT's signature is its most specific part.
        let needle = token.rsplit('.').next().unwrap_or(token);
        assert!(
            needle.len() < 16 || !logs.contains(needle),
            "a token the provider issued is in the log {}",
            stack.authz.stderr_path().display()
        );
    }
}

// ---------------------------------------------------------------------------
// Direct gRPC checks and timing helpers

/// The HTTP status Envoy would apply: 200 for OK, else the denied status.
async fn grpc_status(
    client: &mut AuthorizationClient<Channel>,
    host: &str,
    authorization: &str,
) -> u16 {
    try_grpc_status(client, host, authorization)
        .await
        .expect("Check never fails at the gRPC level")
}

async fn try_grpc_status(
    client: &mut AuthorizationClient<Channel>,
    host: &str,
    authorization: &str,
) -> Result<u16, tonic::Status> {
    let headers = [("authorization", authorization)];
    let request = authz::check_request(host, "/api/items", "http", &headers);
    Ok(authz::check_status(
        &client.check(request).await?.into_inner(),
    ))
}

/// Sleeps until the JWKS rate window since the fake's last JWKS request has
/// passed (plus a margin), so that an unknown kid may refresh again.
async fn wait_out_jwks_window(fake: &FakeOidc) {
    if let Some(last) = fake.last_jwks_hit() {
        let until = last + JWKS_RATE_WINDOW + Duration::from_millis(600);
        tokio::time::sleep_until(until.into()).await;
    }
}

/// Polls `f` every 200 ms until it returns true; panics after `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    common::eventually(what, timeout, Duration::from_millis(200), f).await;
}

/// The last `n` lines of `log` that are not transport chatter.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            let chatter = l.contains("\"target\":\"h2::") || l.contains("hyper_util");
            !chatter || l.contains("too many") || l.contains("too_many") || l.contains("GoAway")
        })
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `base` with the fields of `patch` replaced (`null` removes one).
fn with(base: &Value, patch: Value) -> Value {
    let mut out = base.clone();
    for (k, v) in patch.as_object().expect("patch object") {
        if v.is_null() {
            out.as_object_mut().unwrap().remove(k);
        } else {
            out[k] = v.clone();
        }
    }
    out
}

// ---------------------------------------------------------------------------
// A reference ID-token validator, for the fake's self-test

/// OpenID Connect Core §3.1.3.7 as a relying party does it, with a standard
/// library: the JWK by `kid`, the algorithm from the JWK, `iss`, `aud`,
/// `azp`, `exp`/`iat` (60 s leeway), `nonce`, `sub`.
fn reference_validate(
    token: &str,
    jwks: &Value,
    issuer: &str,
    nonce: &str,
) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
    let kid = header.kid.clone().ok_or("no kid")?;
    let jwk_json = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .ok_or_else(|| format!("unknown kid {kid}"))?;
    let alg = match (jwk_json["kty"].as_str(), jwk_json["crv"].as_str()) {
        (Some("RSA"), _) => match jwk_json["alg"].as_str() {
            Some("RS384") => Algorithm::RS384,
            Some("RS512") => Algorithm::RS512,
            _ => Algorithm::RS256,
        },
        (Some("EC"), Some("P-256")) => Algorithm::ES256,
        (Some("EC"), Some("P-384")) => Algorithm::ES384,
        (Some("OKP"), Some("Ed25519")) => Algorithm::EdDSA,
        other => return Err(format!("unsupported key {other:?}")),
    };
    if header.alg != alg {
        return Err(format!(
            "token alg {:?} is not the JWK's {alg:?}",
            header.alg
        ));
    }
    let jwk: Jwk = serde_json::from_value(jwk_json.clone()).map_err(|e| e.to_string())?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(alg);
    validation.leeway = 60;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|e| format!("verify: {e}"))?
        .claims;
    let iat = claims["iat"].as_u64().ok_or("no iat")?;
    if iat > fake_oidc::now() + 60 {
        return Err("iat in the future".into());
    }
    if claims["aud"].as_array().is_some_and(|a| a.len() > 1) && claims["azp"] != CLIENT_ID {
        return Err("azp is not the client".into());
    }
    if claims["nonce"] != nonce {
        return Err("nonce mismatch".into());
    }
    Ok(claims)
}

/// Runs authorize + token at the fake by hand; returns (id_token, nonce).
async fn manual_code_flow(fake: &FakeOidc) -> (Option<String>, String) {
    let nonce = fake_oidc::random_token(16);
    let verifier = fake_oidc::random_token(32);
    let redirect_uri = format!("http://{HOST}{CALLBACK}");
    let query = idp::form_body(&[
        ("client_id", CLIENT_ID),
        ("redirect_uri", &redirect_uri),
        ("response_type", "code"),
        ("scope", "openid email profile"),
        ("state", "state-123"),
        ("nonce", &nonce),
        ("code_challenge", &pkce_s256(&verifier)),
        ("code_challenge_method", "S256"),
    ]);
    let authority = fake.addr().to_string();
    let response = fake
        .send(Request::get(&authority, &format!("/authorize?{query}")))
        .await;
    assert_eq!(response.status, 302, "{:?}", fake.rejections());
    let back = Url::parse(response.header("location").unwrap()).unwrap();
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let form = idp::form_body(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", &redirect_uri),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("code_verifier", &verifier),
    ]);
    let response = post_token(fake, form).await;
    assert_eq!(response.status, 200, "{:?}", fake.rejections());
    let answer = response.json();
    (answer["id_token"].as_str().map(str::to_owned), nonce)
}

/// A form POST to the fake's token endpoint.
async fn post_token(fake: &FakeOidc, form: String) -> Response {
    let request = Request::new("POST", &fake.addr().to_string(), "/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form);
    fake.send(request).await
}

async fn fetch_json(fake: &FakeOidc, path: &str) -> Value {
    let response = fake
        .send(Request::get(&fake.addr().to_string(), path))
        .await;
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response.json()
}

/// Verifies `token` with jose against the JWKS at `jwks_url`: the fake's
/// keys are standard JWKs.
fn jose_verifies_with_jwks(token: &str, jwks_url: &str, issuer: &str) -> Result<Value, String> {
    let script = "import { createRemoteJWKSet, jwtVerify } from 'jose';\n\
        const jwks = createRemoteJWKSet(new URL(process.env.JWKS_URL));\n\
        try {\n\
          const { payload, protectedHeader } = await jwtVerify(process.env.JWT, jwks, \
            { issuer: process.env.ISSUER, audience: process.env.AUDIENCE });\n\
          console.log(JSON.stringify({ header: protectedHeader, payload }));\n\
        } catch (e) { console.error(`${e.code}: ${e.message}`); process.exit(1); }\n";
    let output = std::process::Command::new(idp::node())
        .current_dir(idp::repo().join("tests/idp"))
        .args(["--input-type=module", "-e", script])
        .env("JWT", token)
        .env("JWKS_URL", jwks_url)
        .env("ISSUER", issuer)
        .env("AUDIENCE", CLIENT_ID)
        .output()
        .expect("run node");
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).expect("JSON"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

// ===========================================================================
// The fake provider itself

/// The fake is what the other tests take it for: a standard discovery
/// document, standard JWKs (jose verifies its ID tokens for every key kind),
/// strict PKCE and codes, and every ID-token defect really is one for a
/// reference validator while the valid shapes pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_provider_is_a_conforming_openid_provider() {
    let fake = FakeOidc::start().await;
    let doc = fetch_json(&fake, "/.well-known/openid-configuration").await;
    assert_eq!(doc["issuer"], fake.issuer());
    assert_eq!(doc["jwks_uri"], fake.jwks_url());
    assert_eq!(doc["authorization_endpoint"], fake.authorize_url());
    assert_eq!(fake.hits("discovery"), 1);

    // Every key kind: the ID token verifies with jose and with the reference
    // validator; jose checks the JWKS from the fake's own URL.
    for key in KeyKind::ALL {
        fake.sign_with(key);
        let (token, nonce) = manual_code_flow(&fake).await;
        let token = token.expect("an id_token");
        let jwks = fetch_json(&fake, "/jwks").await;
        let claims = reference_validate(&token, &jwks, fake.issuer(), &nonce)
            .unwrap_or_else(|e| panic!("{key:?}: {e}"));
        assert_eq!(claims["sub"], fake_oidc::default_user()["sub"]);
        let verified = jose_verifies_with_jwks(&token, &fake.jwks_url(), fake.issuer())
            .unwrap_or_else(|e| panic!("jose, {key:?}: {e}"));
        assert_eq!(verified["payload"]["nonce"], nonce.as_str());
        assert_eq!(
            verified["header"]["kid"],
            fake.signing().1.as_str(),
            "{key:?}"
        );
    }
    fake.sign_with(KeyKind::Rsa);

    for shape in [
        IdToken::Valid,
        IdToken::ValidMultiAudience,
        IdToken::ValidExpiredWithinLeeway,
    ] {
        fake.set_id_token(shape);
        let (token, nonce) = manual_code_flow(&fake).await;
        let jwks = fetch_json(&fake, "/jwks").await;
        reference_validate(&token.unwrap(), &jwks, fake.issuer(), &nonce)
            .unwrap_or_else(|e| panic!("{shape:?} must be valid: {e}"));
    }
    for defect in IdToken::DEFECTS {
        fake.set_id_token(defect);
        let (token, nonce) = manual_code_flow(&fake).await;
        let jwks = fetch_json(&fake, "/jwks").await;
        match token {
            None => assert_eq!(defect, IdToken::Absent),
            Some(token) => {
                let verdict = reference_validate(&token, &jwks, fake.issuer(), &nonce);
                assert!(verdict.is_err(), "{defect:?} passes validation: {token}");
            }
        }
    }
    fake.set_id_token(IdToken::Valid);

    // A code is good once, and only with its verifier.
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
    let authority = fake.addr().to_string();
    let spent = idp::form_body(&[
        ("grant_type", "authorization_code"),
        ("code", "never-issued"),
        ("redirect_uri", "http://app.example.com/oauth2/callback"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("code_verifier", "x"),
    ]);
    let response = post_token(&fake, spent).await;
    assert_eq!(response.status, 400);
    assert_eq!(fake.rejections().len(), 1);

    // Switches: JWKS down, discovery with another issuer, a path issuer.
    fake.set_jwks(Availability::Error);
    let response = fake.send(Request::get(&authority, "/jwks")).await;
    assert_eq!(response.status, 500);
    fake.set_discovery(Availability::WrongIssuer);
    let doc = fetch_json(&fake, "/.well-known/openid-configuration").await;
    assert_ne!(doc["issuer"], fake.issuer());
    let before = fake.jwks_hits();
    let rotated = fake.rotate_to(KeyKind::Rsa2);
    assert_eq!(fake.published(), [(KeyKind::Rsa2, rotated)]);
    assert!(fake.jwks_hits() == before && fake.last_jwks_hit().is_some());

    let realm = FakeOidc::start_with(0, "/realms/test").await;
    assert!(
        realm.issuer().ends_with("/realms/test"),
        "{}",
        realm.issuer()
    );
    let doc = fetch_json(&realm, "/realms/test/.well-known/openid-configuration").await;
    assert_eq!(doc["jwks_uri"], realm.jwks_url());
    let jwks = fetch_json(&realm, "/realms/test/jwks").await;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(4));
    assert_eq!(realm.calls_to("/jwks").len(), 1);
}

// ===========================================================================
// Login against the fake

/// The login with each kind of signing key (RSA with and without `alg` in its
/// JWK, P-256, P-384, Ed25519): the authorize request, the token request
/// (client_secret_post, PKCE verifier), the identity upstream; discovery and
/// the JWKS fetched once for all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_every_kind_of_signing_key() {
    let fake = FakeOidc::start().await;
    fake.publish(KeyKind::Rsa2);
    let stack = login_stack(&fake).await;
    let user = fake.user();

    for key in [
        KeyKind::Rsa,
        KeyKind::Ec256,
        KeyKind::Ec384,
        KeyKind::Ed25519,
        KeyKind::Rsa2,
    ] {
        fake.sign_with(key);
        let target = format!("/dashboard?key={key:?}&x=%2Fy");
        let (session, login) = log_in(&stack, &fake, HOST, &target).await;

        // The token request: form-encoded, client_secret_post, the code,
        // redirect_uri and the PKCE verifier of this login.
        let calls = fake.calls_to("/token");
        let token_call = calls.last().expect("a token request");
        let form = |k: &str| token_call.form_param(k).unwrap_or_default();
        assert_eq!(form("grant_type"), "authorization_code", "{key:?}");
        assert_eq!(form("client_id"), CLIENT_ID);
        assert_eq!(form("client_secret"), CLIENT_SECRET, "client_secret_post");
        assert_eq!(form("redirect_uri"), login.param("redirect_uri"));
        assert_eq!(
            pkce_s256(&form("code_verifier")),
            login.param("code_challenge"),
            "the verifier of this login's challenge"
        );

        let response = as_user(&stack, HOST, &target, &session).await;
        assert_upstream_ok(&response);
        assert_eq!(response.json()["target"], target.as_str());
        let claims = upstream_identity(&stack);
        assert_identity(&claims, &user);
        assert_eq!(claims["iss"], "ingress-authz");
    }

    assert!(
        fake.hits("discovery") <= 2,
        "discovery is cached: {} requests for 5 logins",
        fake.hits("discovery")
    );
    assert_eq!(
        fake.jwks_hits(),
        1,
        "every kid was in the first JWKS: no second fetch"
    );
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
    assert_no_token_logged(&stack, &fake.issued_tokens());
}

/// The nested form (`auth.oidc.*`) works like the flat one; `openid` is added
/// to scopes that lack it; an issuer with a path (Keycloak-style) is
/// discovered under that path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_form_path_issuer_and_scopes_without_openid() {
    let fake = FakeOidc::start_with(0, "/realms/acme").await;
    let mut fields = login_fields(fake.issuer(), CLIENT_SECRET, &[]);
    fields.retain(|l| !l.starts_with("scopes:"));
    fields.push("scopes: [email, groups]".to_owned());
    let custom = "custom.example.com";
    let redirect = "https://login.custom.example.com/oauth2/callback";
    let custom_fields = login_fields(
        fake.issuer(),
        CLIENT_SECRET,
        &[&format!("redirect_url: \"{redirect}\"")],
    );
    let stack = Stack::start(&config(&[
        nested_oidc_rule(HOST, &fields),
        oidc_rule(custom, &custom_fields),
    ]))
    .await;

    // A configured redirect_url is the one sent.
    let response = stack.get(custom, TARGET, NAVIGATE).await;
    assert_eq!(response.status, 302, "{}", response.text());
    let location = Url::parse(response.header("location").unwrap()).unwrap();
    let redirect_uri = location
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned());
    assert_eq!(redirect_uri.as_deref(), Some(redirect));

    let (session, login) = log_in(&stack, &fake, HOST, TARGET).await;
    let scopes: Vec<&str> = login.param("scope").split(' ').collect();
    for scope in ["openid", "email", "groups"] {
        assert!(scopes.contains(&scope), "{scope} in {scopes:?}");
    }
    assert_upstream_ok(&as_user(&stack, HOST, TARGET, &session).await);
    assert_identity(&upstream_identity(&stack), &fake.user());
    assert_eq!(
        fake.calls_to("/.well-known/openid-configuration").len(),
        fake.hits("discovery") as usize
    );
}

/// `provider:` names a known OpenID provider whose issuer follows from
/// `base_url`: auth0 (`{base_url}/`, with Auth0's trailing slash in `iss`),
/// okta (`{base_url}/oauth2/default`), gitlab (`{base_url}`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_providers_derive_their_issuer_from_base_url() {
    let auth0 = FakeOidc::start_with(0, "/").await;
    let okta = FakeOidc::start_with(0, "/oauth2/default").await;
    let gitlab = FakeOidc::start().await;
    let fields = |provider: &str, fake: &FakeOidc| {
        vec![
            format!("provider: {provider}"),
            format!("base_url: \"http://{}\"", fake.addr()),
            format!("client_id: {CLIENT_ID}"),
            format!("client_secret: {CLIENT_SECRET}"),
            format!("connect: {{ enabled: true, jwt: {{ secret: {CONNECT_SECRET} }} }}"),
        ]
    };
    let cases = [
        ("auth0.example.com", "auth0", &auth0),
        ("okta.example.com", "okta", &okta),
        ("gitlab.example.com", "gitlab", &gitlab),
    ];
    let rules: Vec<String> = cases
        .iter()
        .map(|(host, provider, fake)| oidc_rule(host, &fields(provider, fake)))
        .collect();
    let stack = Stack::start(&config(&rules)).await;
    assert!(auth0.issuer().ends_with('/'), "{}", auth0.issuer());
    for (host, provider, fake) in cases {
        assert!(
            fake.rejections().is_empty(),
            "{provider}: {:?}",
            fake.rejections()
        );
        let (session, _) = log_in(&stack, fake, host, TARGET).await;
        assert_upstream_ok(&as_user(&stack, host, TARGET, &session).await);
        assert_identity(&upstream_identity(&stack), &fake.user());
        assert_eq!(fake.hits("discovery"), 1, "{provider}");
    }
}

/// A session is valid for the issuer and client that made it: presented to
/// a rule of another issuer, or of another client at the same issuer, it is
/// no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_only_good_for_its_issuer_and_client() {
    let first = FakeOidc::start().await;
    let second = FakeOidc::start().await;
    let other_client = "other.example.com";
    let mut other_fields = login_fields(first.issuer(), CLIENT_SECRET, &[]);
    other_fields[1] = "client_id: another-client".to_owned();
    let stack = Stack::start(&config(&[
        fake_login_rule(HOST, &first, &[]),
        fake_login_rule("second.example.com", &second, &[]),
        oidc_rule(other_client, &other_fields),
    ]))
    .await;
    let (session, _) = log_in(&stack, &first, HOST, TARGET).await;
    assert_upstream_ok(&as_user(&stack, HOST, TARGET, &session).await);

    for host in ["second.example.com", other_client] {
        let api = stack
            .get(
                host,
                "/api/items",
                &[("accept", "application/json"), ("cookie", &session)],
            )
            .await;
        assert_eq!(api.status, 401, "{host}: {}", api.text());
        let page = stack
            .get(host, TARGET, &[NAVIGATE[0], ("cookie", &session)])
            .await;
        assert_eq!(page.status, 302, "{host}: a navigation goes to log in");
    }
    assert_eq!(stack.upstream_requests().len(), 1);
}

/// Every ID-token defect ends the login with a 502 error page, reason
/// `invalid_id_token` in the audit log, and never a session; the shapes the
/// spec allows (several audiences with the right `azp`, `exp` within the
/// leeway) are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_token_defect_is_a_502_without_a_session() {
    let fake = FakeOidc::start().await;
    let stack = login_stack(&fake).await;
    // A first good login: the JWKS is cached before the defects.
    log_in(&stack, &fake, HOST, TARGET).await;

    let mut wrong = Vec::new();
    for defect in IdToken::DEFECTS {
        fake.set_id_token(defect);
        let failures_before = login_failures(&stack).len();
        let target = format!("/defect/{defect:?}");
        let (_, response) = attempt_login(&stack, &fake, HOST, &target).await;
        let failures = login_failures(&stack);
        let reason = failures.get(failures_before).cloned();
        let reason_ok = match defect {
            // No ID token: the exchange did not give what OIDC needs.
            IdToken::Absent => reason.is_some(),
            _ => reason.as_deref() == Some("invalid_id_token"),
        };
        let html = response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html"));
        let session = new_session(&response).is_some();
        if response.status != 502 || !html || session || !reason_ok {
            wrong.push(format!(
                "{defect:?}: status {} (want 502), html {html}, session set {session}, audit reason {reason:?}",
                response.status
            ));
        }
        // Without a session, the page still sends the browser to log in.
        assert_eq!(stack.get(HOST, &target, NAVIGATE).await.status, 302);
    }
    assert!(
        wrong.is_empty(),
        "ID-token defects not rejected as they must be:\n  {}\n{}",
        wrong.join("\n  "),
        stack.debug_logs()
    );

    for shape in [
        IdToken::ValidMultiAudience,
        IdToken::ValidExpiredWithinLeeway,
    ] {
        fake.set_id_token(shape);
        let target = format!("/valid/{shape:?}");
        let (session, _) = log_in(&stack, &fake, HOST, &target).await;
        assert_upstream_ok(&as_user(&stack, HOST, &target, &session).await);
    }
    assert!(
        stack
            .upstream_requests()
            .iter()
            .all(|r| !r.path().starts_with("/defect/")),
        "a rejected login reached the upstream"
    );
    assert_no_token_logged(&stack, &fake.issued_tokens());
}

/// `claims` (a value, or an array containing it; every entry must hold),
/// `allowed_domains` and `allowed_emails`: anyone else gets 403 at the
/// callback and no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_allowed_addresses_are_403_otherwise() {
    let fake = FakeOidc::start().await;
    let strict = "strict.example.com";
    let listed = "listed.example.com";
    let verified = "verified.example.com";
    let stack = Stack::start(&config(&[
        fake_login_rule(verified, &fake, &["claims: { email_verified: true }"]),
        fake_login_rule(
            strict,
            &fake,
            &[
                "allowed_domains: [example.com]",
                "claims: { groups: admins, department: engineering }",
            ],
        ),
        fake_login_rule(listed, &fake, &["allowed_emails: [jane.doe@example.com]"]),
    ]))
    .await;

    // The default user: groups [staff, admins], department engineering.
    let (session, _) = log_in(&stack, &fake, strict, TARGET).await;
    assert_upstream_ok(&as_user(&stack, strict, TARGET, &session).await);
    log_in(&stack, &fake, listed, TARGET).await;
    // A boolean claim required as a YAML boolean.
    log_in(&stack, &fake, verified, TARGET).await;

    // A claim that is a string equal to the value.
    fake.edit_user(|u| u["groups"] = json!("admins"));
    log_in(&stack, &fake, strict, TARGET).await;

    let cases: [(&str, &str, Value); 6] = [
        (
            verified,
            "email not verified",
            json!({"email_verified": false}),
        ),
        (strict, "not in the group", json!({"groups": ["staff"]})),
        (strict, "a claim missing", json!({"department": null})),
        (strict, "another value", json!({"department": "sales"})),
        (
            strict,
            "another domain",
            json!({"email": "jane.doe@example.org"}),
        ),
        (
            listed,
            "another address",
            json!({"email": "john.doe@example.com"}),
        ),
    ];
    for (host, what, patch) in cases {
        fake.set_user(with(&fake_oidc::default_user(), patch));
        let (_, response) = attempt_login(&stack, &fake, host, TARGET).await;
        assert_failed_login(&response, 403, what, &stack);
    }
}

/// The identity: ID-token claims first; userinfo when the ID token has no
/// email; username falls back to nickname, then email. A failing token or
/// userinfo endpoint is a 502 without a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_from_id_token_and_userinfo() {
    let fake = FakeOidc::start().await;
    let stack = login_stack(&fake).await;

    let users = [
        fake_oidc::default_user(),
        with(
            &fake_oidc::default_user(),
            json!({"preferred_username": null}),
        ),
        with(
            &fake_oidc::default_user(),
            json!({"preferred_username": null, "nickname": null, "picture": null}),
        ),
    ];
    for user in users {
        fake.set_user(user.clone());
        let (session, _) = log_in(&stack, &fake, HOST, TARGET).await;
        assert_upstream_ok(&as_user(&stack, HOST, TARGET, &session).await);
        assert_identity(&upstream_identity(&stack), &user);
    }

    // The ID token carries only sub: the profile comes from userinfo, with
    // the access token of this login.
    fake.set_user(fake_oidc::default_user());
    fake.set_userinfo_only(&["email", "name", "picture", "preferred_username", "nickname"]);
    let userinfo_before = fake.hits("userinfo");
    let (session, _) = log_in(&stack, &fake, HOST, TARGET).await;
    assert_eq!(
        fake.hits("userinfo"),
        userinfo_before + 1,
        "userinfo is asked once when the ID token has no email"
    );
    let userinfo = fake.calls_to("/userinfo");
    assert!(userinfo.last().unwrap().bearer().is_some());
    assert_upstream_ok(&as_user(&stack, HOST, TARGET, &session).await);
    assert_identity(&upstream_identity(&stack), &fake.user());

    // Userinfo about another subject than the ID token (OpenID Connect Core
    // §5.3.2: its values must not be used).
    fake.set_userinfo_patch(json!({"sub": "someone-else", "email": "mallory@example.com"}));
    let (_, response) = attempt_login(&stack, &fake, HOST, TARGET).await;
    if let Some(session) = new_session(&response) {
        let cookie = format!("{SESSION_COOKIE}={}", session.value);
        assert_upstream_ok(&as_user(&stack, HOST, TARGET, &cookie).await);
        let claims = upstream_identity(&stack);
        assert_ne!(
            claims["email"], "mallory@example.com",
            "userinfo for another sub was used: {claims}"
        );
    } else {
        assert_failed_login(&response, 502, "userinfo for another sub", &stack);
    }
    fake.set_userinfo_patch(json!({}));

    fake.set_failure(Failure::UserinfoError);
    let (_, response) = attempt_login(&stack, &fake, HOST, TARGET).await;
    assert_failed_login(&response, 502, "userinfo answers 500", &stack);

    fake.set_failure(Failure::TokenError);
    let (_, response) = attempt_login(&stack, &fake, HOST, TARGET).await;
    assert_failed_login(&response, 502, "token endpoint answers 500", &stack);
    assert_eq!(
        login_failures(&stack).last().map(String::as_str),
        Some("exchange_failed")
    );
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
}

/// A key rotation at the provider (new kid, old key gone): once the JWKS may
/// be fetched again, the next login refreshes it once and works; API tokens
/// signed by the new key work too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_new_tokens_work_after_one_jwks_refresh() {
    let fake = FakeOidc::start().await;
    let stack = Stack::start(&config(&[
        fake_login_rule(HOST, &fake, &[]),
        oidc_rule(API_HOST, &api_fields(fake.issuer(), Some(API_AUDIENCE))),
    ]))
    .await;
    log_in(&stack, &fake, HOST, TARGET).await;
    let token = fake.mint(&fake.access_claims(API_AUDIENCE));
    assert_upstream_ok(
        &stack
            .get_auth(API_HOST, "/api", Some(&bearer(&token)))
            .await,
    );
    let fetches = fake.jwks_hits();
    assert!(fetches >= 1);

    let new_kid = fake.rotate_to(KeyKind::Rsa2);
    wait_out_jwks_window(&fake).await;
    let (session, _) = log_in(&stack, &fake, "app.example.com", "/after-rotation").await;
    assert_upstream_ok(&as_user(&stack, HOST, "/after-rotation", &session).await);
    assert_eq!(
        fake.jwks_hits(),
        fetches + 1,
        "one JWKS refresh for the new kid {new_kid}"
    );
    let token = fake.mint(&fake.access_claims(API_AUDIENCE));
    assert_upstream_ok(
        &stack
            .get_auth(API_HOST, "/api", Some(&bearer(&token)))
            .await,
    );
}

/// The provider rotated its key and its JWKS hangs when the login needs the
/// new key: the callback answers a 502 error page in time (the browser is not
/// left hanging), without a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_jwks_during_login_is_a_502_in_time() {
    let fake = FakeOidc::start().await;
    let stack = login_stack(&fake).await;
    log_in(&stack, &fake, HOST, TARGET).await;
    fake.rotate_to(KeyKind::Rsa2);
    fake.set_jwks(Availability::Hang);
    wait_out_jwks_window(&fake).await;
    let login = begin_login(&stack, &fake, HOST, TARGET).await;
    let back = at_fake(&fake, &login, HOST).await;
    let started = Instant::now();
    // The harness client gives up after 15 s; the service must answer first.
    let response = callback(&stack, HOST, &back, &login).await;
    assert_failed_login(&response, 502, "JWKS hangs", &stack);
    assert!(started.elapsed() < Duration::from_secs(15));
}

// ===========================================================================
// A provider that is down

/// The provider is not up when the service starts: the service starts
/// anyway, its oidc routes answer 503 (JSON or an HTML page, reason
/// `idp_unavailable`), and once the provider is up they work without a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_at_start_is_503_then_recovers() {
    let port = reserve_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let stack = Stack::start(&config(&[
        oidc_rule(HOST, &login_fields(&issuer, CLIENT_SECRET, &[])),
        oidc_rule(API_HOST, &api_fields(&issuer, Some(API_AUDIENCE))),
    ]))
    .await;

    let api = stack
        .get(HOST, "/api/items", &[("accept", "application/json")])
        .await;
    assert_eq!(api.status, 503, "{}\n{}", api.text(), stack.debug_logs());
    assert_eq!(
        api.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(api.json(), idp_unavailable_body());
    let page = stack.get(HOST, TARGET, NAVIGATE).await;
    assert_eq!(page.status, 503, "{}", page.text());
    assert!(
        page.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    assert!(page.header("location").is_none());
    let claims = json!({"iss": issuer, "sub": "s", "aud": API_AUDIENCE,
        "iat": fake_oidc::now(), "exp": fake_oidc::now() + 3600});
    let token = fake_oidc::sign(
        KeyKind::Rsa,
        Some(&KeyKind::Rsa.default_kid()),
        Algorithm::RS256,
        "at+jwt",
        &claims,
    );
    let api_mode = stack
        .get(
            API_HOST,
            "/api",
            &[
                ("authorization", &bearer(&token)),
                ("accept", "application/json"),
            ],
        )
        .await;
    assert_eq!(api_mode.status, 503, "{}", api_mode.text());
    assert!(
        denials(&stack.authz.logs(), "idp_unavailable") >= 3,
        "audit reason idp_unavailable:\n{}",
        stack.debug_logs()
    );
    assert!(stack.upstream_requests().is_empty());

    // The provider comes up on its address.
    let fake = FakeOidc::start_on(port).await;
    eventually(
        "the oidc route works again",
        Duration::from_secs(20),
        || async { stack.get(HOST, TARGET, NAVIGATE).await.status == 302 },
    )
    .await;
    let (session, _) = log_in(&stack, &fake, HOST, TARGET).await;
    assert_upstream_ok(&as_user(&stack, HOST, TARGET, &session).await);
    assert_eq!(fake.issuer(), issuer);
    let response = stack
        .get_auth(API_HOST, "/api", Some(&bearer(&token)))
        .await;
    assert_upstream_ok(&response);
}

/// Discovery that fails (500, or a document naming another issuer) is 503,
/// retried with backoff (not once per request), and the route recovers once
/// discovery works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_discovery_is_retried_with_backoff_then_recovers() {
    let fake = FakeOidc::start().await;
    fake.set_discovery(Availability::WrongIssuer);
    let stack = login_stack(&fake).await;
    let json_503 = |r: &Response| r.status == 503 && r.json() == idp_unavailable_body();

    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let r = stack
            .get(HOST, "/x", &[("accept", "application/json")])
            .await;
        assert!(json_503(&r), "wrong issuer: {} {}", r.status, r.text());
        requests += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fake.set_discovery(Availability::Error);
    while started.elapsed() < Duration::from_millis(3500) {
        let r = stack
            .get(HOST, "/x", &[("accept", "application/json")])
            .await;
        assert!(json_503(&r), "discovery 500: {} {}", r.status, r.text());
        requests += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attempts = fake.hits("discovery");
    assert!(
        (2..=5).contains(&attempts),
        "{attempts} discovery attempts for {requests} requests in 3.5 s: \
         expected retries with backoff (~1 s, then doubling)"
    );
    assert!(denials(&stack.authz.logs(), "idp_unavailable") >= requests);

    fake.set_discovery(Availability::Up);
    eventually("discovery is retried", Duration::from_secs(20), || async {
        stack.get(HOST, TARGET, NAVIGATE).await.status == 302
    })
    .await;
    let (session, _) = log_in(&stack, &fake, HOST, TARGET).await;
    assert_upstream_ok(&as_user(&stack, HOST, TARGET, &session).await);
}

/// A provider that hangs (accepts connections, never answers discovery) is
/// down too: its route answers ingress-authz's own 503 JSON at once, not a
/// bare 503 from Envoy when the check outlives Envoy's ext_authz timeout
/// (0.5 s in envoy/envoy.yaml) while the service waits for the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_is_a_503_json_in_time() {
    let fake = FakeOidc::start().await;
    fake.set_discovery(Availability::Hang);
    let stack = login_stack(&fake).await;
    let started = Instant::now();
    let mut answers = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        let sent = Instant::now();
        let r = stack
            .get(HOST, "/api/items", &[("accept", "application/json")])
            .await;
        let own = r.status == 503
            && r.header("content-type") == Some("application/json; charset=utf-8")
            && r.json() == idp_unavailable_body();
        answers.push(format!(
            "{:>5} ms: {} in {} ms{}",
            started.elapsed().as_millis(),
            r.status,
            sent.elapsed().as_millis(),
            if own {
                ""
            } else {
                " (not ingress-authz's 503 JSON)"
            }
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        answers.iter().all(|a| !a.contains("not ingress-authz")),
        "while discovery hangs:\n{}",
        answers.join("\n")
    );
}

// ===========================================================================
// API mode and `type: jwt` with `jwks_url`, against the fake

/// Tokens an API-mode route must refuse with `Bearer error="invalid_token"`.
fn refused_tokens(fake: &FakeOidc, audience: &str) -> Vec<(&'static str, String)> {
    let good = fake.access_claims(audience);
    let now = fake_oidc::now();
    let (key, kid) = fake.signing();
    vec![
        (
            "expired",
            fake.mint(&with(&good, json!({"iat": now - 7200, "exp": now - 3600}))),
        ),
        (
            "not yet valid",
            fake.mint(&with(&good, json!({"nbf": now + 3600}))),
        ),
        (
            "wrong audience",
            fake.mint(&with(&good, json!({"aud": "another-api"}))),
        ),
        (
            "wrong issuer",
            fake.mint(&with(&good, json!({"iss": "https://evil.example.com"}))),
        ),
        (
            "unknown kid",
            fake.mint_with(key, Some("never-published"), &good),
        ),
        ("alg none", fake_oidc::unsigned(Some(&kid), &good)),
        (
            "HS256 with the public key",
            fake_oidc::hs256_with_public_key(key, Some(&kid), &good),
        ),
        (
            "RS384 with an RS256 key",
            fake_oidc::sign(key, Some(&kid), Algorithm::RS384, "at+jwt", &good),
        ),
        (
            "another key under this kid",
            fake.mint_with(KeyKind::Rsa2, Some(&kid), &good),
        ),
        (
            "tampered signature",
            fake_oidc::tamper_signature(&fake.mint(&good)),
        ),
        ("not a JWT", "opaque-access-token-value".to_owned()),
        ("no exp", fake.mint(&with(&good, json!({"exp": null})))),
        ("no iss", fake.mint(&with(&good, json!({"iss": null})))),
        ("no aud", fake.mint(&with(&good, json!({"aud": null})))),
        (
            "HS256 by an oct key in the JWKS",
            fake_oidc::hs256(HMAC_TRAP_SECRET, Some(HMAC_TRAP_KID), &good),
        ),
        (
            "by a key published for encryption",
            fake.mint_with(KeyKind::Rsa2, Some(ENC_KEY_KID), &good),
        ),
    ]
}

const HMAC_TRAP_SECRET: &[u8] = b"a-symmetric-key-in-a-public-jwks";
const HMAC_TRAP_KID: &str = "hmac-trap";
const ENC_KEY_KID: &str = "enc-only";

/// Keys a JWKS may hold that must never verify a token: an `oct` key and a
/// key for encryption (`use: enc`).
fn publish_traps(fake: &FakeOidc) {
    fake.publish_raw(fake_oidc::oct_jwk(HMAC_TRAP_SECRET, HMAC_TRAP_KID));
    let mut enc = KeyKind::Rsa2.jwk(ENC_KEY_KID);
    enc["use"] = json!("enc");
    fake.publish_raw(enc);
}

#[track_caller]
fn assert_missing_token_challenge(response: &Response) {
    assert_eq!(
        response.status,
        401,
        "no token: {:?} {}",
        response.headers,
        response.text()
    );
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer") && !challenge.contains("error="),
        "no token: a plain Bearer challenge, got {challenge:?}"
    );
}

/// API mode (`issuer`, no `client_id`): bearer JWTs verified by the issuer's
/// JWKS — every key kind accepted, every defect refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_mode_verifies_bearer_jwts_by_the_issuers_jwks() {
    let fake = FakeOidc::start().await;
    publish_traps(&fake);
    // API mode always names its audience (a config without one is an
    // error): the nested form, for another API of the same issuer.
    let other_api = "other-api.example.com";
    let stack = Stack::start(&config(&[
        oidc_rule(API_HOST, &api_fields(fake.issuer(), Some(API_AUDIENCE))),
        nested_oidc_rule(other_api, &api_fields(fake.issuer(), Some("whatever"))),
    ]))
    .await;
    let get = async |host: &str, token: Option<&str>| {
        let auth = token.map(bearer);
        stack.get_auth(host, "/api/items", auth.as_deref()).await
    };

    assert_missing_token_challenge(&get(API_HOST, None).await);
    for key in [
        KeyKind::Rsa,
        KeyKind::Ec256,
        KeyKind::Ec384,
        KeyKind::Ed25519,
    ] {
        fake.sign_with(key);
        let token = fake.mint(&fake.access_claims(API_AUDIENCE));
        assert_upstream_ok(&get(API_HOST, Some(&token)).await);
    }
    fake.sign_with(KeyKind::Rsa);
    let good = fake.access_claims(API_AUDIENCE);
    let in_array = fake.mint(&with(&good, json!({"aud": ["other", API_AUDIENCE]})));
    assert_upstream_ok(&get(API_HOST, Some(&in_array)).await);
    let other = fake.mint(&with(&good, json!({"aud": "whatever"})));
    assert_upstream_ok(&get(other_api, Some(&other)).await);
    assert_eq!(
        get(API_HOST, Some(&other)).await.status,
        401,
        "a token minted for another API of the issuer does not pass"
    );

    let mut wrong = Vec::new();
    for (what, token) in refused_tokens(&fake, API_AUDIENCE) {
        let response = get(API_HOST, Some(&token)).await;
        if response.status != 401 || response.header("www-authenticate") != Some(INVALID_TOKEN) {
            wrong.push(format!(
                "{what}: {} {:?} {}",
                response.status,
                response.header("www-authenticate"),
                response.text()
            ));
        } else {
            assert_401(&response, INVALID_TOKEN);
        }
    }
    assert!(
        wrong.is_empty(),
        "API-mode tokens that must be refused with 401 invalid_token:\n  {}\n{}",
        wrong.join("\n  "),
        stack.debug_logs()
    );
    assert_eq!(
        stack.upstream_requests().len(),
        6,
        "only the valid tokens reached the upstream"
    );
}

/// `type: jwt` with `jwt.jwks_url`, `issuer` and `audience`: the same checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_with_jwks_url() {
    let fake = FakeOidc::start().await;
    publish_traps(&fake);
    let stack = Stack::start(&config(&[jwks_rule(
        JWT_HOST,
        &fake.jwks_url(),
        fake.issuer(),
        API_AUDIENCE,
    )]))
    .await;
    let get = async |token: Option<&str>| {
        let auth = token.map(bearer);
        stack
            .get_auth(JWT_HOST, "/api/items", auth.as_deref())
            .await
    };

    assert_missing_token_challenge(&get(None).await);
    for key in [KeyKind::Rsa, KeyKind::Ec256, KeyKind::Ed25519] {
        fake.sign_with(key);
        let token = fake.mint(&fake.access_claims(API_AUDIENCE));
        assert_upstream_ok(&get(Some(&token)).await);
    }
    fake.sign_with(KeyKind::Rsa);
    let mut wrong = Vec::new();
    for (what, token) in refused_tokens(&fake, API_AUDIENCE) {
        let response = get(Some(&token)).await;
        if response.status != 401 || response.header("www-authenticate") != Some(INVALID_TOKEN) {
            wrong.push(format!(
                "{what}: {} {:?}",
                response.status,
                response.header("www-authenticate")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "jwks_url tokens that must be refused:\n  {}\n{}",
        wrong.join("\n  "),
        stack.debug_logs()
    );
    assert_eq!(stack.upstream_requests().len(), 3);
    assert_eq!(fake.hits("discovery"), 0, "jwks_url needs no discovery");
}

/// `type: jwt` whose JWKS is down when the service starts: valid tokens are
/// refused while there are no keys, and accepted soon after the JWKS comes
/// up: a failed first fetch must not shut the JWKS out for a whole rate
/// window (discovery retries after ~1 s; so should a JWKS that never
/// loaded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_down_at_start_recovers_promptly() {
    let fake = FakeOidc::start().await;
    fake.set_jwks(Availability::Error);
    let stack = Stack::start(&config(&[jwks_rule(
        JWT_HOST,
        &fake.jwks_url(),
        fake.issuer(),
        API_AUDIENCE,
    )]))
    .await;
    let token = bearer(&fake.mint(&fake.access_claims(API_AUDIENCE)));
    let down = stack.get_auth(JWT_HOST, "/a", Some(&token)).await;
    assert!(
        [401, 503].contains(&down.status),
        "no keys: refused, got {} {}",
        down.status,
        down.text()
    );
    assert!(fake.jwks_hits() >= 1, "the JWKS was tried");

    fake.set_jwks(Availability::Up);
    let up = Instant::now();
    eventually(
        "a valid token is accepted once the JWKS is up",
        JWKS_RATE_WINDOW + Duration::from_secs(5),
        || async { stack.get_auth(JWT_HOST, "/b", Some(&token)).await.status == 200 },
    )
    .await;
    let took = up.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "valid tokens were refused for {took:?} after the JWKS came back \
         (a failed first fetch blocks refreshes for the whole rate window)"
    );
}

/// A JWKS with more than 100 keys: at most 100 are kept (SPEC), so at most
/// 100 of its kids verify; the service keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_100_jwks_keys_are_kept() {
    let fake = FakeOidc::start().await;
    fake.sign_with(KeyKind::Ed25519);
    let kids = fake.publish_copies(KeyKind::Ed25519, "bulk", 300);
    let authz = Authz::start(&api_config(&fake)).await;
    let mut client = authz.grpc_client().await;
    let claims = fake.access_claims(API_AUDIENCE);
    let mut accepted = 0;
    for kid in &kids {
        let token = fake.mint_with(KeyKind::Ed25519, Some(kid), &claims);
        match grpc_status(&mut client, API_HOST, &bearer(&token)).await {
            200 => accepted += 1,
            401 => {}
            other => panic!("kid {kid}: {other}"),
        }
    }
    assert!(
        (1..=100).contains(&accepted),
        "{accepted} of {} published kids verify: at most 100 keys may be kept",
        fake.published().len()
    );
    assert!(fake.jwks_hits() <= 2, "{} JWKS fetches", fake.jwks_hits());
}

/// `n` bearer tokens, each with a new kid that no JWKS has: one real
/// signature under `n` different headers (a flood carries no valid signature
/// either: an unknown kid is decided before the signature).
fn unknown_kid_tokens(fake: &FakeOidc, n: usize) -> Vec<String> {
    let (key, _) = fake.signing();
    let signed = fake.mint_with(key, Some("x"), &fake.access_claims(API_AUDIENCE));
    let (_, rest) = signed.split_once('.').expect("a compact JWS");
    let nonce = fake_oidc::random_token(4);
    (0..n)
        .map(|i| {
            let kid = format!("flood-{nonce}-{i}");
            let header = json!({"alg": key.algorithm(), "typ": "at+jwt", "kid": kid});
            bearer(&format!(
                "{}.{rest}",
                URL_SAFE_NO_PAD.encode(header.to_string())
            ))
        })
        .collect()
}

/// Sends every check at once, spread over `clients` (connections); counts
/// the outcomes (`"401"`, or the gRPC error).
async fn flood(
    clients: &[AuthorizationClient<Channel>],
    authorizations: Vec<String>,
) -> BTreeMap<String, usize> {
    let checks: Vec<_> = authorizations
        .into_iter()
        .enumerate()
        .map(|(i, authorization)| {
            let mut client = clients[i % clients.len()].clone();
            tokio::spawn(
                async move { try_grpc_status(&mut client, API_HOST, &authorization).await },
            )
        })
        .collect();
    let mut outcomes = BTreeMap::new();
    for check in checks {
        let outcome = match check.await.unwrap() {
            Ok(status) => status.to_string(),
            Err(e) => format!("gRPC error {:?}: {}", e.code(), e.message()),
        };
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    outcomes
}

/// A flood of 1,000 concurrent checks, each with a new unknown `kid` (over
/// ten gRPC connections, as several Envoy workers would send them): one JWKS
/// fetch for all of them (single-flight, rate-limited), all refused; more
/// unknown kids in the same window fetch nothing; a known kid keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_fetches_the_jwks_once_per_window() {
    let fake = FakeOidc::start().await;
    let authz = Authz::start(&api_config(&fake)).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(authz.grpc_client().await);
    }
    let mut client = clients[0].clone();
    let valid = bearer(&fake.mint(&fake.access_claims(API_AUDIENCE)));
    assert_eq!(grpc_status(&mut client, API_HOST, &valid).await, 200);
    assert!(fake.jwks_hits() >= 1);

    // A new window, and a slow JWKS so that the refresh is still in flight
    // while the flood arrives.
    wait_out_jwks_window(&fake).await;
    fake.set_jwks_delay(Duration::from_millis(500));
    let before = fake.jwks_hits();
    let tokens = unknown_kid_tokens(&fake, 1000);
    let started = Instant::now();
    let outcomes = flood(&clients, tokens).await;
    let elapsed = started.elapsed();
    let fetched = fake.jwks_hits() - before;
    assert_eq!(
        outcomes,
        BTreeMap::from([("401".to_owned(), 1000)]),
        "all refused\n{}",
        tail(&authz.logs(), 60)
    );
    let windows = (elapsed.as_secs_f64() / JWKS_RATE_WINDOW.as_secs_f64()).ceil() as u64;
    assert!(
        fetched >= 1 && fetched <= windows.max(1),
        "{fetched} JWKS fetches for 1,000 unknown kids in {elapsed:?}: \
         expected one per {JWKS_RATE_WINDOW:?} window"
    );

    // More unknown kids inside the window: no fetch; known kids still pass.
    let more = unknown_kid_tokens(&fake, 1).remove(0);
    assert_eq!(grpc_status(&mut client, API_HOST, &more).await, 401);
    assert_eq!(grpc_status(&mut client, API_HOST, &valid).await, 200);
    assert!(
        fake.jwks_hits() - before <= windows.max(1),
        "a fetch inside the rate window"
    );
}

/// While the JWKS endpoint fails or hangs, tokens with known kids keep
/// verifying from the cached keys (and are not held up by the refresh);
/// unknown kids are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_keep_verifying_while_the_jwks_is_down() {
    let fake = FakeOidc::start().await;
    let stack = Stack::start(&api_config(&fake)).await;
    let token = bearer(&fake.mint(&fake.access_claims(API_AUDIENCE)));
    let unknown = |n: &str| {
        let (key, _) = fake.signing();
        bearer(&fake.mint_with(key, Some(n), &fake.access_claims(API_AUDIENCE)))
    };
    assert_upstream_ok(&stack.get_auth(API_HOST, "/a", Some(&token)).await);

    fake.set_jwks(Availability::Error);
    wait_out_jwks_window(&fake).await;
    let mut client = stack.authz.grpc_client().await;
    assert_eq!(
        grpc_status(&mut client, API_HOST, &unknown("unknown-1")).await,
        401
    );
    assert_upstream_ok(&stack.get_auth(API_HOST, "/b", Some(&token)).await);

    fake.set_jwks(Availability::Hang);
    wait_out_jwks_window(&fake).await;
    let hits = fake.jwks_hits();
    let mut hanging_client = client.clone();
    let unknown_2 = unknown("unknown-2");
    let hanging = tokio::spawn(async move {
        let started = Instant::now();
        let status = grpc_status(&mut hanging_client, API_HOST, &unknown_2).await;
        (status, started.elapsed())
    });
    eventually(
        "the refresh is in flight",
        Duration::from_secs(5),
        || async { fake.jwks_hits() > hits },
    )
    .await;
    let started = Instant::now();
    assert_upstream_ok(&stack.get_auth(API_HOST, "/c", Some(&token)).await);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a known kid waited for the JWKS refresh: {:?}",
        started.elapsed()
    );
    let (status, took) = tokio::time::timeout(Duration::from_secs(30), hanging)
        .await
        .expect("a check with a hanging JWKS refresh is answered")
        .unwrap();
    assert_eq!(status, 401, "unknown kid while the JWKS hangs ({took:?})");
}

// ===========================================================================
// The real provider

/// The real provider and a stack whose app host logs in there.
struct Real(IdpStack);

impl Deref for Real {
    type Target = IdpStack;

    fn deref(&self) -> &IdpStack {
        &self.0
    }
}

impl Real {
    /// `env` for the provider; the app rule (login, `allowed_domains:
    /// [example.com]`) plus `rules(issuer)`.
    async fn start(env: &[(&str, &str)], rules: impl Fn(&str) -> Vec<String>) -> Self {
        Self::start_with(env, &["allowed_domains: [example.com]"], rules).await
    }

    /// As `start`, with `app` as the extra fields of the app rule.
    async fn start_with(
        env: &[(&str, &str)],
        app: &[&str],
        rules: impl Fn(&str) -> Vec<String>,
    ) -> Self {
        let real = Self(
            IdpStack::start(env, HOST, |issuer| {
                let mut all = vec![oidc_rule(
                    HOST,
                    &login_fields(issuer, IDP_CLIENT_SECRET, app),
                )];
                all.extend(rules(issuer));
                config(&all)
            })
            .await,
        );
        // Until configured, the provider answered 503, discovery included:
        // the route recovers by itself (backoff).
        eventually(
            "the app route discovers the provider",
            Duration::from_secs(20),
            || async { real.app_get(TARGET, NAVIGATE).await.status == 302 },
        )
        .await;
        real
    }

    /// A navigation without a session: the 302 to the provider's `/auth`.
    async fn start_login(&self, target: &str) -> Login {
        let login = self.browser().begin(target).await;
        assert_eq!(
            &login.authorize[..url::Position::AfterPath],
            format!("{}/auth", self.idp.url),
            "the discovered authorization_endpoint"
        );
        login_cookie(&login.redirect);
        assert_authorize_params(&login, &format!("http://{}{CALLBACK}", self.app()));
        login
    }

    async fn callback(&self, back: &Url, login: &Login) -> Response {
        assert_eq!(back.host_str(), Some(HOST), "{back}");
        assert_eq!(back.path(), CALLBACK, "{back}");
        self.browser().callback(back, &[&login.cookie]).await
    }

    /// The whole login of `account` at the provider's pages; returns the
    /// callback's answer.
    async fn attempt(&self, target: &str, account: &'static str) -> Response {
        let login = self.start_login(target).await;
        let back = self
            .at_provider(&login.authorize, AtProvider::SignIn(account))
            .await;
        self.callback(&back, &login).await
    }

    /// A successful login; returns the browser's cookie jar (the session).
    async fn log_in(&self, target: &str, account: &'static str) -> Jar {
        let response = self.attempt(target, account).await;
        self.logged_in(&response, target, account)
    }
}

/// Discovery and the whole login at oidc-provider through Envoy: the ID
/// token verified, the identity (ID token + userinfo) upstream in an
/// X-Connect-Token that `jose` verifies, an account outside allowed_domains
/// refused, a cancelled login, logout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_provider_login_identity_and_logout() {
    let real = Real::start(&[], |_| Vec::new()).await;

    // Before any login: API clients get 401 JSON, never a redirect.
    let api = real
        .app_get("/api/items", &[("accept", "application/json")])
        .await;
    assert_eq!(api.status, 401, "{}", api.text());
    assert!(api.header("location").is_none());

    let target = "/dashboard?tab=1&x=%2Fy";
    let jar = real.log_in(target, "alice").await;
    let stats = real.idp.stats().await;
    assert_eq!(stats.get("token"), Some(&1), "one code exchange: {stats:?}");
    assert_eq!(stats.get("jwks"), Some(&1), "the keys, once: {stats:?}");
    assert!(stats.get("discovery").is_some_and(|n| *n >= 1), "{stats:?}");

    let cookies = format!("theme=dark; {}", jar.header());
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let response = real
        .app_get(target, &[("cookie", &cookies), ("x-connect-token", forged)])
        .await;
    assert_upstream_ok(&response);
    let requests = real.stack.upstream_requests();
    let seen = requests.last().unwrap();
    assert_eq!(seen.target, target);
    let token = seen.header("x-connect-token").expect("X-Connect-Token");
    assert_ne!(token, forged);
    let claims = idp::verify_with_jose(token, CONNECT_SECRET);
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["id"], "alice", "{claims}");
    assert_eq!(claims["username"], "alice", "preferred_username");
    assert_eq!(claims["email"], "alice@example.com", "{claims}");
    assert_eq!(claims["nickname"], "Alice Liddell", "name -> nickname");
    assert_eq!(claims["avatar"], "https://avatars.example.com/alice.png");
    assert!(!idp::jose_accepts(
        token,
        "not-the-connect-secret-000000000"
    ));
    let cookie_upstream = seen.header("cookie").unwrap_or_default();
    assert!(
        !cookie_upstream.contains(SESSION_COOKIE) && cookie_upstream.contains("theme=dark"),
        "{cookie_upstream}"
    );

    // The session serves without the provider.
    let stats = real.idp.stats().await;
    let api = real
        .app_get(
            "/api/items",
            &[("accept", "application/json"), ("cookie", &jar.header())],
        )
        .await;
    assert_eq!(api.status, 200, "{}", api.text());
    assert_eq!(
        real.idp.stats().await,
        stats,
        "no provider call per request"
    );

    // bob@example.org signs in at the provider but is not let in.
    let response = real.attempt("/bob", "bob").await;
    assert_failed_login(
        &response,
        403,
        "bob is outside allowed_domains",
        &real.stack,
    );

    // Cancel at the provider: an error page, no session.
    let login = real.start_login("/cancelled").await;
    let back = idp::at_provider(&real.idp, &login.authorize, AtProvider::Cancel, "").await;
    assert!(
        back.query_pairs()
            .any(|(k, v)| k == "error" && v == "access_denied"),
        "{back}"
    );
    let response = real.callback(&back, &login).await;
    assert!(
        (400..600).contains(&response.status) && new_session(&response).is_none(),
        "cancelled: {} {:?}",
        response.status,
        response.headers
    );

    // Logout clears the session; the app sends the browser to log in again.
    let logout = real
        .app_get("/oauth2/logout", &[NAVIGATE[0], ("cookie", &jar.header())])
        .await;
    assert_eq!(logout.status, 302, "{}", logout.text());
    let location = logout.header("location").unwrap_or_default();
    assert!(
        location == "/" || location.starts_with(&format!("{}/session/end", real.idp.url)),
        "logout goes to / or to the provider's end_session_endpoint: {location}"
    );
    let mut after = jar.clone();
    after.update(&logout);
    assert!(after.names().is_empty(), "{:?}", set_cookies(&logout));
    let again = real.app_get(TARGET, NAVIGATE).await;
    assert_eq!(again.status, 302);
    assert!(
        again
            .header("location")
            .is_some_and(|l| l.starts_with(&format!("{}/auth?", real.idp.url)))
    );
}

/// The provider signing with ES256 and then rotating its key (the old key
/// leaves its JWKS): logins work before and, after the JWKS rate window,
/// after the rotation with one more JWKS fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_provider_es256_and_a_key_rotation() {
    let real = Real::start(&[("IDP_SIGNING_ALG", "ES256")], |_| Vec::new()).await;
    real.log_in("/first", "alice").await;
    let logged_in = Instant::now();
    assert_eq!(real.idp.stats().await.get("jwks"), Some(&1));

    let new_kid = real.idp.rotate_keys().await;
    // The JWKS was fetched during the first login, before `logged_in`.
    tokio::time::sleep_until((logged_in + JWKS_RATE_WINDOW + Duration::from_millis(600)).into())
        .await;
    let jar = real.log_in("/second", "alice").await;
    let stats = real.idp.stats().await;
    assert_eq!(
        stats.get("jwks"),
        Some(&2),
        "one refresh for the new kid {new_kid}: {stats:?}"
    );
    let response = real.app_get("/second", &[("cookie", &jar.header())]).await;
    assert_upstream_ok(&response);
}

/// The provider signing with Ed25519 (EdDSA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_provider_eddsa_login() {
    let real = Real::start(&[("IDP_SIGNING_ALG", "EdDSA")], |_| Vec::new()).await;
    let jar = real.log_in(TARGET, "alice").await;
    assert_upstream_ok(&real.app_get(TARGET, &[("cookie", &jar.header())]).await);
    let claims = idp::verify_with_jose(
        real.stack
            .upstream_requests()
            .last()
            .unwrap()
            .header("x-connect-token")
            .unwrap(),
        CONNECT_SECRET,
    );
    assert_eq!(claims["email"], "alice@example.com");
}

/// API mode and `type: jwt` with `jwks_url` accept the provider's own JWT
/// access tokens (client_credentials with a resource indicator) for their
/// audience, and refuse those for another resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_provider_jwt_access_tokens_in_api_mode() {
    let real = Real::start(&[("IDP_JWT_ACCESS_TOKENS", "true")], |issuer| {
        vec![
            oidc_rule(API_HOST, &api_fields(issuer, Some(API_RESOURCE))),
            jwks_rule(JWT_HOST, &format!("{issuer}/jwks"), issuer, API_RESOURCE),
        ]
    })
    .await;
    let token = real.idp.client_credentials(API_RESOURCE, "api:read").await;
    let header = idp::jwt_header(&token);
    assert_eq!(header["typ"], "at+jwt", "an RFC 9068 token: {header}");
    assert_eq!(idp::jwt_payload(&token)["aud"], API_RESOURCE);
    let other = real
        .idp
        .client_credentials("https://other.example.com", "api:read")
        .await;

    // The jwt rule fetched the JWKS at start, while the provider still
    // answered 503 (not configured yet): it may take one rate window to
    // fetch again (see jwks_url_down_at_start_recovers_promptly).
    let get = async |host: &str, token: &str| {
        real.stack
            .get_auth(host, "/api/items", Some(&bearer(token)))
            .await
    };
    eventually(
        "the jwt rule has the provider's keys",
        JWKS_RATE_WINDOW + Duration::from_secs(5),
        || async { get(JWT_HOST, &token).await.status == 200 },
    )
    .await;
    for host in [API_HOST, JWT_HOST] {
        let ok = get(host, &token).await;
        assert_eq!(ok.status, 200, "{host}: {}\n{}", ok.text(), real.logs());
        assert_upstream_ok(&ok);
        let refused = real
            .stack
            .get_auth(host, "/api/items", Some(&bearer(&other)))
            .await;
        assert_401(&refused, INVALID_TOKEN);
        let tampered = fake_oidc::tamper_signature(&token);
        assert_401(
            &real
                .stack
                .get_auth(host, "/api/items", Some(&bearer(&tampered)))
                .await,
            INVALID_TOKEN,
        );
        assert_missing_token_challenge(&real.stack.get_auth(host, "/api/items", None).await);
    }
}

/// The login in headless Chromium (tests/browser/login.mjs in its oidc mode):
/// the provider's pages, back on the original URL, reload, logout, two tabs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_provider_browser_login_in_headless_chromium() {
    let real = Real::start(&[], |_| Vec::new()).await;
    real.browser_login(
        "browser-oidc",
        &[
            ("LOGIN", "alice"),
            ("LOGIN_EMAIL", "alice@example.com"),
            ("LOGIN_MODE", "oidc"),
        ],
    )
    .await;
}

/// A session with a refresh token is refreshed at the provider once its
/// access token is due: many concurrent requests with the old cookie cause
/// one refresh (so rotating refresh tokens cannot log the user out), all of
/// them are allowed, the client gets the new session cookie, and the new
/// session needs no refresh until it is due again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_provider_refresh_is_single_flight() {
    let real = std::sync::Arc::new(
        Real::start_with(
            &[("IDP_ACCESS_TOKEN_TTL", "2")],
            &[
                "allowed_domains: [example.com]",
                "scopes: [openid, email, profile, offline_access]",
            ],
            |_| Vec::new(),
        )
        .await,
    );
    let login = real.start_login(TARGET).await;
    assert_eq!(
        login.param("prompt"),
        "consent",
        "offline_access asks for consent"
    );
    let back = idp::at_provider(&real.idp, &login.authorize, AtProvider::SignIn("alice"), "").await;
    let response = real.callback(&back, &login).await;
    assert_eq!(response.status, 302, "{}\n{}", response.text(), real.logs());
    let mut jar = Jar::default();
    jar.update(&response);
    let cookie = jar.header();

    // Not yet due: served from the cookie alone.
    let tokens = |stats: BTreeMap<String, u64>| stats.get("token").copied().unwrap_or(0);
    let before = tokens(real.idp.stats().await);
    let ok = real.app_get(TARGET, &[("cookie", &cookie)]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(tokens(real.idp.stats().await), before);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (real, cookie) = (real.clone(), cookie.clone());
        set.spawn(async move { real.app_get(TARGET, &[("cookie", &cookie)]).await });
    }
    let mut renewed = Vec::new();
    while let Some(response) = set.join_next().await {
        let response = response.unwrap();
        assert_eq!(response.status, 200, "{}\n{}", response.text(), real.logs());
        renewed.extend(new_session(&response));
    }
    assert_eq!(
        tokens(real.idp.stats().await),
        before + 1,
        "one refresh for all concurrent requests"
    );
    assert!(!renewed.is_empty(), "the client gets the refreshed session");
    let fresh = renewed[0].clone();
    assert!(
        renewed.iter().all(|c| c.value == fresh.value),
        "one new session for all"
    );
    assert_ne!(fresh.value, jar.0[SESSION_COOKIE]);

    let fresh_cookie = format!("{}={}", fresh.name, fresh.value);
    let again = real.app_get(TARGET, &[("cookie", &fresh_cookie)]).await;
    assert_eq!(again.status, 200);
    assert!(new_session(&again).is_none(), "not due again yet");
    assert_eq!(tokens(real.idp.stats().await), before + 1);
}

/// `logout_at_provider: true`: `/oauth2/logout` clears our session and sends
/// the browser to the provider's end_session_endpoint (RP-initiated logout)
/// with the client id and a return address on this host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_provider_rp_initiated_logout() {
    let real = Real::start_with(
        &[],
        &["allowed_domains: [example.com]", "logout_at_provider: true"],
        |_| Vec::new(),
    )
    .await;
    let jar = real.log_in(TARGET, "alice").await;
    let logout = real
        .app_get(
            "/oauth2/logout?rd=/bye",
            &[NAVIGATE[0], ("cookie", &jar.header())],
        )
        .await;
    assert_eq!(logout.status, 302, "{}", logout.text());
    let location = Url::parse(logout.header("location").expect("Location")).unwrap();
    assert_eq!(
        &location[..url::Position::AfterPath],
        format!("{}/session/end", real.idp.url),
        "the discovered end_session_endpoint"
    );
    let query: BTreeMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(
        query["post_logout_redirect_uri"],
        format!("http://{}/bye", real.app())
    );
    let mut after = jar.clone();
    after.update(&logout);
    assert!(after.names().is_empty(), "{:?}", set_cookies(&logout));

    // Without a session there is nothing to end at the provider.
    let plain = real.app_get("/oauth2/logout", &[NAVIGATE[0]]).await;
    assert_eq!(plain.header("location"), Some("/"));
}

/// API mode takes JWT access tokens (`typ: at+jwt`); ID tokens only with
/// `accept_id_tokens: true` and never one with a nonce; `connect` signs the
/// identity from the token's claims, for this host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_mode_token_kinds_and_connect_from_claims() {
    let fake = FakeOidc::start().await;
    let id_tokens = "id-tokens.example.com";
    let mut with_connect = api_fields(fake.issuer(), Some(API_AUDIENCE));
    with_connect.push(format!(
        "connect: {{ enabled: true, jwt: {{ secret: \"{CONNECT_SECRET}\" }} }}"
    ));
    let mut accepting = api_fields(fake.issuer(), Some(API_AUDIENCE));
    accepting.push("accept_id_tokens: true".into());
    let stack = Stack::start(&config(&[
        oidc_rule(API_HOST, &with_connect),
        oidc_rule(id_tokens, &accepting),
    ]))
    .await;
    let get = async |host: &str, token: &str| {
        stack
            .get_auth(host, "/api/items", Some(&bearer(token)))
            .await
    };
    let (key, kid) = fake.signing();
    let claims = fake.access_claims(API_AUDIENCE);
    let as_id_token = fake_oidc::sign(key, Some(&kid), key.algorithm(), "JWT", &claims);
    let with_nonce = fake_oidc::sign(
        key,
        Some(&kid),
        key.algorithm(),
        "JWT",
        &with(&claims, json!({"nonce": "n-1"})),
    );

    let access = get(API_HOST, &fake.mint(&claims)).await;
    assert_upstream_ok(&access);
    let identity = upstream_identity(&stack);
    assert_eq!(
        identity["sub"], claims["sub"],
        "connect from the token's claims"
    );
    assert_eq!(identity["aud"], API_HOST, "the token is for this host");

    assert_eq!(
        get(API_HOST, &as_id_token).await.status,
        401,
        "an ID token is not an access token"
    );
    assert_upstream_ok(&get(id_tokens, &as_id_token).await);
    assert_eq!(
        get(id_tokens, &with_nonce).await.status,
        401,
        "an ID token with a nonce belongs to a browser login"
    );
}
