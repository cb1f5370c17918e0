//! The OAuth2 redirect login through real Envoy (SPEC §5 oauth2, §6, §7, §8):
//! for each of the ten providers the whole dance against a fake provider that
//! answers in that provider's real shapes (tests/common/providers.rs), the
//! identity mapping as the upstream sees it in `X-Connect-Token`, and the
//! ways a login must fail without ever making a session.

use std::time::{SystemTime, UNIX_EPOCH};

use cookie::{Cookie, SameSite};
use serde_json::{Value, json};
use url::Url;

use crate::common::configs::{self, rule_head};
use crate::common::expect::assert_upstream_ok;
use crate::common::login::{self, Browser, CALLBACK, Provider};
use crate::common::providers::{Failure, FakeProvider, Identity, Kind, REDIRECT_TRAP, pkce_s256};
use crate::common::{Normalize, Request, Response, Stack};

const HOST: &str = "app.example.com";
const TARGET: &str = "/dashboard?tab=1";
const SESSION_SECRET: &str = "oauth2-test-session-secret-0123456789abcdef";
const CONNECT_SECRET: &str = "connect-shared-secret";
const SESSION_COOKIE: &str = "ingress_authz";
const LOGIN_COOKIE_PREFIX: &str = "ingress_authz_login_";
/// What a browser sends on a top-level navigation.
const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
const NAVIGATE: &[(&str, &str)] = &[("accept", BROWSER_ACCEPT)];

// ---------------------------------------------------------------------------
// Configs

/// The `auth:` block of an oauth2 rule against `fake` (connect on), `extra`
/// lines going under `oauth2:`.
fn oauth2_auth(fake: &FakeProvider, extra: &[&str]) -> String {
    let mut lines = vec![
        format!("provider: {}", fake.kind().name()),
        format!("client_id: {}", fake.client_id()),
        format!("client_secret: {}", fake.client_secret()),
    ];
    lines.extend(fake.endpoint_yaml());
    lines.extend([
        "connect:".to_owned(),
        "  enabled: true".to_owned(),
        "  jwt:".to_owned(),
        format!("    secret: {CONNECT_SECRET}"),
    ]);
    lines.extend(extra.iter().map(|l| (*l).to_owned()));
    format!("type: oauth2\noauth2:\n{}", configs::indent(2, lines))
}

/// An oauth2 rule for `host` against `fake` (connect on), `extra` lines going
/// under `oauth2:`.
fn rule(host: &str, fake: &FakeProvider, extra: &[&str]) -> String {
    configs::rule(host, &oauth2_auth(fake, extra))
}

fn config(rules: &[String]) -> String {
    config_with_session(&[], rules)
}

/// `session` lines beyond the secret, e.g. `max_age: 2s`.
fn config_with_session(session: &[&str], rules: &[String]) -> String {
    configs::with_session(SESSION_SECRET, session, rules)
}

/// One fake of `kind` and a stack with one rule for [`HOST`] against it.
async fn setup(kind: Kind) -> (FakeProvider, Stack) {
    let fake = FakeProvider::start(kind).await;
    let stack = Stack::start(&config(&[rule(HOST, &fake, &[])])).await;
    (fake, stack)
}

// ---------------------------------------------------------------------------
// Driving the redirect dance

/// A browser on `host`.
fn browser<'a>(stack: &'a Stack, host: &str) -> Browser<'a> {
    Browser::new(stack, host, NAVIGATE)
}

/// A browser's top-level navigation.
fn navigation(host: &str, target: &str) -> Request {
    Request::get(host, target).header("accept", BROWSER_ACCEPT)
}

fn with_cookies(request: Request, cookies: &[&str]) -> Request {
    if cookies.is_empty() {
        request
    } else {
        request.header("cookie", &cookies.join("; "))
    }
}

fn set_cookies(response: &Response) -> Vec<Cookie<'static>> {
    response
        .headers
        .iter()
        .filter(|(name, _)| name == "set-cookie")
        .map(|(_, value)| {
            Cookie::parse(value.clone()).unwrap_or_else(|e| panic!("Set-Cookie {value:?}: {e}"))
        })
        .collect()
}

fn is_cleared(cookie: &Cookie<'_>) -> bool {
    cookie.max_age() == Some(cookie::time::Duration::ZERO)
        || cookie
            .expires_datetime()
            .is_some_and(|t| t < cookie::time::OffsetDateTime::now_utc())
}

/// The session cookie a response sets (not a clearing one), if any.
fn new_session(response: &Response) -> Option<Cookie<'static>> {
    set_cookies(response)
        .into_iter()
        .find(|c| c.name() == SESSION_COOKIE && !c.value().is_empty() && !is_cleared(c))
}

#[track_caller]
fn assert_no_session(response: &Response, what: &str) {
    assert!(
        new_session(response).is_none(),
        "{what}: a session cookie was set: {:?}",
        response.headers
    );
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A login in flight: the redirect to the provider and its state cookie.
struct Login {
    authorize: Url,
    state: String,
    /// `name=value`, as the browser sends it back.
    cookie: String,
    cookie_name: String,
}

/// Navigates to `target` without a session: expects the 302 to `fake`'s
/// authorize endpoint and the login-state cookie.
async fn begin_login(stack: &Stack, fake: &FakeProvider, host: &str, target: &str) -> Login {
    let begun = browser(stack, host).begin(target).await;
    let (response, authorize) = (begun.redirect, begun.authorize);
    let location = response.header("location").expect("Location");
    assert_eq!(
        (authorize.host_str(), authorize.port()),
        (Some("127.0.0.1"), Some(fake.addr().port())),
        "{location}"
    );
    assert_eq!(authorize.path(), fake.kind().endpoints().authorize);
    let state = query(&authorize, "state").expect("state in the authorize URL");

    let cookies = set_cookies(&response);
    let login = cookies
        .iter()
        .find(|c| c.name().starts_with(LOGIN_COOKIE_PREFIX))
        .unwrap_or_else(|| panic!("no {LOGIN_COOKIE_PREFIX}* cookie: {:?}", response.headers));
    assert!(!login.value().is_empty());
    assert_eq!(login.path(), Some("/oauth2/"), "{login}");
    assert_eq!(login.http_only(), Some(true), "{login}");
    assert_eq!(login.same_site(), Some(SameSite::Lax), "{login}");
    assert_eq!(
        login.max_age(),
        Some(cookie::time::Duration::seconds(600)),
        "{login}"
    );
    assert_eq!(login.secure(), None, "plain http: no Secure ({login})");
    assert_eq!(login.domain(), None, "host-only ({login})");
    // The login cookie is encrypted: the state is not readable in it.
    assert!(!login.value().contains(&state), "{login}");
    assert_no_session(&response, "redirect to the provider");
    Login {
        cookie: format!("{}={}", login.name(), login.value()),
        cookie_name: login.name().to_owned(),
        authorize,
        state,
    }
}

/// The provider's consent screen, approved: what its authorize endpoint
/// redirects the browser to (`/oauth2/callback?code=..&state=..`).
async fn consent(fake: &FakeProvider, login: &Login, host: &str) -> String {
    let back = fake.sign_in(&login.authorize).await;
    assert_eq!(back.host_str(), Some(host), "{back}");
    assert_eq!(back.path(), CALLBACK, "{back}");
    format!("{CALLBACK}?{}", back.query().unwrap_or_default())
}

/// The browser returning from the provider.
async fn callback(stack: &Stack, host: &str, target: &str, cookies: &[&str]) -> Response {
    browser(stack, host).navigate(target, cookies).await
}

/// A GET with `cookie` from a client that asks for JSON.
async fn json_get(stack: &Stack, host: &str, target: &str, cookie: &str) -> Response {
    stack
        .send(
            Request::get(host, target)
                .header("accept", "application/json")
                .header("cookie", cookie),
        )
        .await
}

/// A finished login.
struct Session {
    /// `ingress_authz=...`, as the browser sends it back.
    cookie: String,
    set_cookie: Cookie<'static>,
    login: Login,
    callback: Response,
}

/// The whole dance for `target` on `host`; asserts it succeeds.
async fn log_in(stack: &Stack, fake: &FakeProvider, host: &str, target: &str) -> Session {
    let login = begin_login(stack, fake, host, target).await;
    let back = consent(fake, &login, host).await;
    let response = callback(stack, host, &back, &[&login.cookie]).await;
    finish(stack, fake, login, response, target)
}

#[track_caller]
fn finish(
    stack: &Stack,
    fake: &FakeProvider,
    login: Login,
    response: Response,
    target: &str,
) -> Session {
    login::assert_session(stack, &response, target, &fake.rejections());
    let session = new_session(&response).expect("the session cookie");
    Session {
        cookie: format!("{}={}", session.name(), session.value()),
        set_cookie: session,
        login,
        callback: response,
    }
}

/// A request with the session (and another cookie of the application's).
async fn as_user(stack: &Stack, host: &str, target: &str, session: &Session) -> Response {
    let cookie = format!("{}; other=1", session.cookie);
    stack
        .send(Request::get(host, target).header("cookie", &cookie))
        .await
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Verifies an `X-Connect-Token` as an upstream would, with the shared
/// secret and a standard library.
fn decode_connect_token(token: &str) -> Value {
    login::decode_connect_token(token, CONNECT_SECRET)
}

#[track_caller]
fn assert_identity(claims: &Value, expected: &Identity) {
    for (field, value) in [
        ("id", &expected.id),
        ("username", &expected.username),
        ("email", &expected.email),
        ("nickname", &expected.nickname),
        ("avatar", &expected.avatar),
    ] {
        assert_eq!(
            claims[field],
            json!(value),
            "claim `{field}` of the connect token {claims}"
        );
    }
    assert_eq!(claims["sub"], json!(expected.id), "sub = id: {claims}");
}

/// The upstream's view of the last request: connect headers verified and
/// our cookie gone. Returns the token's claims.
#[track_caller]
fn assert_upstream_identity(stack: &Stack, expected: &Identity) -> Value {
    let requests = stack.upstream_requests();
    let request = requests.last().expect("the upstream got the request");
    let tokens: Vec<_> = request
        .headers
        .iter()
        .filter(|(n, _)| n == "x-connect-token")
        .collect();
    assert_eq!(
        tokens.len(),
        1,
        "one X-Connect-Token: {:?}",
        request.headers
    );
    let claims = decode_connect_token(&tokens[0].1);
    assert_identity(&claims, expected);
    assert_eq!(claims["iss"], "ingress-authz");
    let iat = claims["iat"].as_u64().expect("numeric iat");
    let exp = claims["exp"].as_u64().expect("numeric exp");
    assert_eq!(exp - iat, 300, "default expires_in is 5m: {claims}");
    let now = now_ms() / 1000;
    assert!(iat <= now + 1 && iat + 120 >= now, "iat {iat}, now {now}");

    let timestamps: Vec<_> = request
        .headers
        .iter()
        .filter(|(n, _)| n == "x-connect-timestamp")
        .collect();
    assert_eq!(timestamps.len(), 1, "{:?}", request.headers);
    let ms: u64 = timestamps[0]
        .1
        .parse()
        .unwrap_or_else(|_| panic!("X-Connect-Timestamp {:?}", timestamps[0].1));
    assert!(
        ms / 1000 >= iat.saturating_sub(1) && ms / 1000 <= iat + 1,
        "X-Connect-Timestamp {ms} (ms) is when the token was issued (iat {iat})"
    );

    let cookie = request.header("cookie").unwrap_or_default();
    assert!(
        !cookie.contains(SESSION_COOKIE),
        "the session cookie reached the upstream: {cookie:?}"
    );
    assert!(cookie.contains("other=1"), "other cookies stay: {cookie:?}");
    claims
}

/// Provider-side checks: what the service sent to `fake` during one login.
fn assert_provider_calls(fake: &FakeProvider, login: &Login, host: &str) {
    let kind = fake.kind();
    let endpoints = kind.endpoints();
    let redirect_uri = format!("http://{host}{CALLBACK}");
    assert!(
        fake.rejections().is_empty(),
        "the fake provider refused: {:?}",
        fake.rejections()
    );
    assert_eq!(fake.calls_to(endpoints.authorize).len(), 1);

    let tokens = fake.calls_to(endpoints.token);
    assert_eq!(tokens.len(), 1, "one token request: {tokens:?}");
    let token_call = &tokens[0];
    assert_eq!(token_call.method, "POST");
    if kind == Kind::Feishu {
        let app = fake.calls_to(endpoints.feishu_app_token.unwrap());
        assert!(!app.is_empty(), "feishu: app_access_token was requested");
        assert_eq!(
            app[0].json(),
            json!({"app_id": fake.client_id(), "app_secret": fake.client_secret()})
        );
        let body = token_call.json();
        assert_eq!(body["grant_type"], "authorization_code", "{body}");
        assert!(body["code"].as_str().is_some_and(|c| !c.is_empty()));
        let app_token = token_call.bearer().expect("feishu: app token as Bearer");
        assert!(fake.issued_tokens().iter().any(|t| t == app_token));
    } else {
        assert_eq!(
            token_call.form_param("grant_type").as_deref(),
            Some("authorization_code")
        );
        assert!(token_call.form_param("code").is_some());
        if let Some(sent) = token_call.form_param("redirect_uri") {
            assert_eq!(sent, redirect_uri);
        }
        if kind.uses_pkce() {
            let challenge = query(&login.authorize, "code_challenge").unwrap();
            let verifier = token_call
                .form_param("code_verifier")
                .expect("PKCE: code_verifier in the token request");
            assert!(
                (43..=128).contains(&verifier.len()),
                "RFC 7636 verifier length: {verifier:?}"
            );
            assert_eq!(
                pkce_s256(&verifier),
                challenge,
                "S256(verifier) == challenge"
            );
        }
    }
    if kind == Kind::Github {
        assert!(
            token_call
                .header("accept")
                .is_some_and(|a| a.contains("application/json")),
            "github token request: Accept: application/json ({:?})",
            token_call.headers
        );
    }

    let users = fake.calls_to(endpoints.user);
    assert_eq!(users.len(), 1, "one user request");
    let bearer = users[0].bearer().expect("user endpoint: Bearer token");
    assert!(fake.issued_tokens().iter().any(|t| t == bearer));
    if kind == Kind::Github {
        assert!(users[0].header("user-agent").is_some());
    }
}

/// The authorize URL the service built (SPEC §6.1, §7).
fn assert_authorize_url(kind: Kind, login: &Login, host: &str) {
    let url = &login.authorize;
    assert_eq!(
        query(url, kind.client_id_param()).as_deref(),
        Some(crate::common::providers::CLIENT_ID),
        "{url}"
    );
    assert_eq!(
        query(url, "redirect_uri"),
        Some(format!("http://{host}{CALLBACK}")),
        "{url}"
    );
    if kind == Kind::Feishu {
        assert!(matches!(
            query(url, "response_type").as_deref(),
            None | Some("code")
        ));
    } else {
        assert_eq!(
            query(url, "response_type").as_deref(),
            Some("code"),
            "{url}"
        );
    }
    // >= 128 random bits, URL-safe.
    assert!(login.state.len() >= 22, "state {:?}", login.state);
    assert!(
        login
            .state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)),
        "state {:?}",
        login.state
    );
    if let (Some(param), Some(expected)) = (kind.scope_param(), kind.default_scopes()) {
        let scopes = query(url, param).unwrap_or_else(|| panic!("no `{param}` in {url}"));
        let mut got: Vec<&str> = scopes.split([' ', ',']).filter(|s| !s.is_empty()).collect();
        got.sort_unstable();
        let mut expected = expected.to_vec();
        expected.sort_unstable();
        assert_eq!(got, expected, "`{param}` in {url}");
    }
    if kind == Kind::Slack {
        assert!(
            query(url, "scope").is_none_or(|s| s.is_empty()),
            "slack: user scopes go in user_scope, not scope: {url}"
        );
    }
    if kind.uses_pkce() {
        let challenge = query(url, "code_challenge").expect("PKCE code_challenge");
        assert_eq!(challenge.len(), 43, "S256 challenge: {challenge:?}");
        assert_eq!(
            query(url, "code_challenge_method").as_deref(),
            Some("S256"),
            "{url}"
        );
    }
}

// ---------------------------------------------------------------------------
// Error pages

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        502 => "Bad Gateway",
        _ => panic!("no phrase for {status}"),
    }
}

/// An error page for a browser: HTML, with a link to try again.
#[track_caller]
fn assert_html_error(response: &Response, status: u16, retry: Option<&str>, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.text());
    assert!(
        response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html")),
        "{what}: {:?}",
        response.headers
    );
    let body = response.text();
    assert!(body.contains("href="), "{what}: a try-again link: {body}");
    if let Some(url) = retry {
        assert!(body.contains(url), "{what}: the link retries {url}: {body}");
    }
    assert_no_session(response, what);
}

#[track_caller]
fn assert_json_error(response: &Response, status: u16, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/json; charset=utf-8"),
        "{what}"
    );
    let body = response.json();
    assert_eq!(body["status"], status, "{what}: {body}");
    assert_eq!(body["error"], reason_phrase(status), "{what}: {body}");
    assert!(body["message"].is_string(), "{what}: {body}");
    assert_no_session(response, what);
}

/// A Location that keeps the browser on this host: a relative path that no
/// browser reads as scheme-relative (`//`, `/\`, with tabs/newlines removed
/// as browsers do).
#[track_caller]
fn assert_same_host_relative(location: &str) {
    let browser_view: String = location
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let mut chars = browser_view.chars();
    assert_eq!(chars.next(), Some('/'), "Location {location:?}");
    assert!(
        !matches!(chars.next(), Some('/' | '\\')),
        "Location {location:?} leaves the host"
    );
    assert!(!location.chars().any(char::is_control), "{location:?}");
}

// ---------------------------------------------------------------------------
// The whole flow, for each provider

async fn login_flow(kind: Kind) {
    let (fake, stack) = setup(kind).await;

    let login = begin_login(&stack, &fake, HOST, TARGET).await;
    assert_authorize_url(kind, &login, HOST);
    assert!(
        stack.upstream_requests().is_empty(),
        "nothing reaches the upstream before login"
    );

    let back = consent(&fake, &login, HOST).await;
    let response = callback(&stack, HOST, &back, &[&login.cookie]).await;
    let session = finish(&stack, &fake, login, response, TARGET);
    assert_provider_calls(&fake, &session.login, HOST);

    // The session cookie (SPEC §6.3).
    let c = &session.set_cookie;
    assert_eq!(c.path(), Some("/"), "{c}");
    assert_eq!(c.http_only(), Some(true), "{c}");
    assert_eq!(c.same_site(), Some(SameSite::Lax), "{c}");
    assert_eq!(c.secure(), None, "plain http: no Secure ({c})");
    assert_eq!(c.domain(), None, "host-only ({c})");
    assert!(c.max_age().is_some_and(|a| a.whole_seconds() > 600), "{c}");
    assert!(
        session.cookie.len() < 4096,
        "{} bytes",
        session.cookie.len()
    );
    // Short values (a numeric id such as "42") turn up by chance in a few
    // hundred random base64 characters: only values of 6 or more count.
    let expected = fake.expected_identity();
    for plain in [&expected.email, &expected.username, &expected.id] {
        assert!(
            plain.len() < 6 || !c.value().contains(plain.as_str()),
            "the session cookie is encrypted, yet shows {plain:?}"
        );
    }
    assert!(
        [&expected.email, &expected.username]
            .iter()
            .any(|p| p.len() >= 6),
        "some identity value is long enough to be checked"
    );
    // ...and the login cookie is cleared where it was set.
    let cleared = set_cookies(&session.callback)
        .into_iter()
        .find(|x| x.name() == session.login.cookie_name)
        .unwrap_or_else(|| {
            panic!(
                "the callback does not clear {}: {:?}",
                session.login.cookie_name, session.callback.headers
            )
        });
    assert!(is_cleared(&cleared), "{cleared}");
    assert_eq!(cleared.path(), Some("/oauth2/"), "{cleared}");

    // Authenticated: the upstream gets the request with the identity.
    let response = as_user(&stack, HOST, TARGET, &session).await;
    assert_upstream_ok(&response);
    let requests = stack.upstream_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].target, TARGET);
    assert_upstream_identity(&stack, &expected);

    // A second request: still in, no new login.
    let response = as_user(&stack, HOST, "/other", &session).await;
    assert_upstream_ok(&response);
    assert_upstream_identity(&stack, &expected);
    assert_eq!(fake.calls_to(kind.endpoints().token).len(), 1);

    // No token the provider handed out, and no cookie value, is ever logged.
    let logs = stack.authz.logs();
    let cookie_values =
        [&session.cookie, &session.login.cookie].map(|c| c.split_once('=').unwrap().1.to_owned());
    for secret in fake.issued_tokens().iter().chain(&cookie_values) {
        assert!(
            !logs.contains(secret.as_str()),
            "a token or cookie value appears in the log {}",
            stack.authz.stderr_path().display()
        );
    }
}

/// Every way the token/user exchange can fail for `kind`: a 502 page, never
/// a session; then, on the same stack, a good login still works.
async fn failed_exchanges(kind: Kind) {
    let (fake, stack) = setup(kind).await;
    let mut failures = vec![
        Failure::BadCode,
        Failure::TokenServerError,
        Failure::EmptyToken,
        Failure::NoToken,
        Failure::MissingUserId,
        Failure::UserServerError,
        Failure::UserNotJson,
        Failure::TokenRedirect,
    ];
    if kind == Kind::Feishu {
        failures.push(Failure::AppTokenError);
    }
    for failure in failures {
        fake.set_failure(failure);
        let what = format!("{kind:?} {failure:?}");
        let login = begin_login(&stack, &fake, HOST, TARGET).await;
        let back = consent(&fake, &login, HOST).await;
        let response = callback(&stack, HOST, &back, &[&login.cookie]).await;
        assert_html_error(&response, 502, Some(TARGET), &what);
        // Whatever the browser has now, it is not logged in.
        let retry = stack
            .send(with_cookies(
                Request::get(HOST, TARGET).header("accept", "application/json"),
                &[&login.cookie],
            ))
            .await;
        assert_eq!(retry.status, 401, "{what}: {}", retry.text());
    }
    assert!(stack.upstream_requests().is_empty());
    assert!(
        fake.calls_to(REDIRECT_TRAP).is_empty(),
        "a provider redirect was followed"
    );

    // The JSON form of the same page, for a client that asks for JSON.
    fake.set_failure(Failure::BadCode);
    let login = begin_login(&stack, &fake, HOST, TARGET).await;
    let back = consent(&fake, &login, HOST).await;
    let response = json_get(&stack, HOST, &back, &login.cookie).await;
    assert_json_error(&response, 502, &format!("{kind:?} BadCode, JSON"));

    // Control: the same stack logs in once the provider behaves.
    fake.set_failure(Failure::None);
    let session = log_in(&stack, &fake, HOST, TARGET).await;
    assert_upstream_ok(&as_user(&stack, HOST, TARGET, &session).await);
    assert_upstream_identity(&stack, &fake.expected_identity());
}

macro_rules! per_provider {
    ($($module:ident => $kind:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn login_flow() {
                super::login_flow($kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failed_exchanges_never_make_a_session() {
                super::failed_exchanges($kind).await;
            }
        }
    )*};
}

per_provider! {
    github => Kind::Github,
    gitlab => Kind::Gitlab,
    google => Kind::Google,
    microsoft => Kind::Microsoft,
    feishu => Kind::Feishu,
    slack => Kind::Slack,
    kakao => Kind::Kakao,
    auth0 => Kind::Auth0,
    okta => Kind::Okta,
    doreamon => Kind::Doreamon,
}

// ---------------------------------------------------------------------------
// Identity mapping corners

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_without_public_email_uses_the_primary_verified_address() {
    let (fake, stack) = setup(Kind::Github).await;
    fake.edit_profile(|p| p["email"] = Value::Null);
    fake.set_github_emails(json!([
        {"email": "old@github.example", "primary": false, "verified": true, "visibility": null},
        {"email": "unverified@github.example", "primary": false, "verified": false, "visibility": null},
        {"email": "octo-main@github.example", "primary": true, "verified": true, "visibility": "private"}
    ]));
    let session = log_in(&stack, &fake, HOST, TARGET).await;
    let emails = fake.calls_to("/api/v3/user/emails");
    assert_eq!(emails.len(), 1, "GET /user/emails when email is null");
    assert!(emails[0].bearer().is_some());
    assert!(emails[0].header("user-agent").is_some());

    assert_upstream_ok(&as_user(&stack, HOST, TARGET, &session).await);
    let claims = assert_upstream_identity(&stack, &fake.expected_identity());
    assert_eq!(claims["email"], "octo-main@github.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feishu_falls_back_to_name_and_personal_email() {
    let (fake, stack) = setup(Kind::Feishu).await;
    fake.edit_profile(|p| {
        p["data"]["en_name"] = json!("");
        p["data"]["enterprise_email"] = json!("");
    });
    let session = log_in(&stack, &fake, HOST, TARGET).await;
    assert_upstream_ok(&as_user(&stack, HOST, TARGET, &session).await);
    let claims = assert_upstream_identity(&stack, &fake.expected_identity());
    assert_eq!(claims["username"], "张三");
    assert_eq!(claims["email"], "zhangsan@personal.example");
}

// ---------------------------------------------------------------------------
// Navigation vs. API clients

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_browser_navigations_are_redirected_others_get_401_json() {
    let (fake, stack) = setup(Kind::Github).await;
    let not_navigations = [
        Request::get(HOST, TARGET),
        Request::get(HOST, TARGET).header("accept", "*/*"),
        Request::get(HOST, TARGET).header("accept", "application/json"),
        // fetch() asking for HTML is still not a navigation.
        Request::get(HOST, TARGET)
            .header("accept", "text/html")
            .header("sec-fetch-mode", "cors")
            .header("sec-fetch-dest", "empty"),
        Request::new("POST", HOST, "/api/save")
            .header("accept", "text/html")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("a=1"),
        Request::new("DELETE", HOST, "/api/item/1").header("accept", BROWSER_ACCEPT),
        // The favicon a browser fetches by itself.
        Request::get(HOST, "/favicon.ico")
            .header(
                "accept",
                "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
            )
            .header("sec-fetch-mode", "no-cors")
            .header("sec-fetch-dest", "image"),
    ];
    for request in not_navigations {
        let what = format!("{request:?}");
        let wants_html = request
            .headers
            .iter()
            .any(|(n, v)| n == "accept" && v.contains("text/html"));
        let response = stack.send(request).await;
        assert_eq!(response.status, 401, "{what}: {}", response.text());
        assert_eq!(response.header("location"), None, "{what}");
        assert!(set_cookies(&response).is_empty(), "{what}");
        // The body follows Accept (SPEC §5): JSON unless HTML was asked for.
        if !wants_html {
            assert_eq!(
                response.header("content-type"),
                Some("application/json; charset=utf-8"),
                "{what}"
            );
            let body = response.json();
            assert_eq!(body["status"], 401, "{what}: {body}");
            assert_eq!(body["error"], "Unauthorized", "{what}: {body}");
        }
    }
    assert!(fake.calls().is_empty());

    // Navigations: by Sec-Fetch-Mode, or (without Sec-Fetch-*) an explicit
    // text/html on GET and HEAD.
    let navigations = [
        Request::get(HOST, TARGET)
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .header("accept", "*/*"),
        Request::get(HOST, TARGET).header("accept", "text/html"),
        Request::new("HEAD", HOST, TARGET).header("accept", BROWSER_ACCEPT),
    ];
    for request in navigations {
        let what = format!("{request:?}");
        let response = stack.send(request).await;
        assert_eq!(response.status, 302, "{what}: {}", response.text());
        assert!(
            response
                .header("location")
                .is_some_and(|l| l.starts_with(&fake.base_url())),
            "{what}: {:?}",
            response.headers
        );
    }
    assert!(stack.upstream_requests().is_empty());
}

// ---------------------------------------------------------------------------
// Callback errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_error_on_the_callback_is_a_401_page_without_session() {
    let (fake, stack) = setup(Kind::Gitlab).await;

    let login = begin_login(&stack, &fake, HOST, TARGET).await;
    let denied = format!(
        "{CALLBACK}?error=access_denied&error_description=The+resource+owner+denied+the+request&state={}",
        login.state
    );
    let response = callback(&stack, HOST, &denied, &[&login.cookie]).await;
    assert_html_error(&response, 401, Some(TARGET), "?error=access_denied");

    let login = begin_login(&stack, &fake, HOST, TARGET).await;
    let denied = format!("{CALLBACK}?error=access_denied&state={}", login.state);
    let response = json_get(&stack, HOST, &denied, &login.cookie).await;
    assert_json_error(&response, 401, "?error=access_denied, JSON");

    // The provider's text is not HTML.
    let login = begin_login(&stack, &fake, HOST, TARGET).await;
    let denied = format!(
        "{CALLBACK}?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state={}",
        login.state
    );
    let response = callback(&stack, HOST, &denied, &[&login.cookie]).await;
    assert_html_error(&response, 401, Some(TARGET), "error_description");
    assert!(!response.text().contains("<script>"), "{}", response.text());

    // An error with a code alongside is still an error.
    let login = begin_login(&stack, &fake, HOST, TARGET).await;
    let denied = format!(
        "{CALLBACK}?error=server_error&code=anything&state={}",
        login.state
    );
    let response = callback(&stack, HOST, &denied, &[&login.cookie]).await;
    assert!([401, 502].contains(&response.status), "{}", response.text());
    assert_no_session(&response, "?error=server_error&code=..");

    assert!(fake.calls_to("/oauth/token").is_empty(), "no exchange");
    assert!(stack.upstream_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_must_match_the_login_cookie() {
    let (fake, stack) = setup(Kind::Github).await;
    let a = begin_login(&stack, &fake, HOST, "/a").await;
    let b = begin_login(&stack, &fake, HOST, "/b").await;
    let back_a = consent(&fake, &a, HOST).await;
    let back_b = consent(&fake, &b, HOST).await;
    let code_a = Url::parse(&format!("http://{HOST}{back_a}")).unwrap();
    let code_a = query(&code_a, "code").unwrap();

    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (back_a.clone(), vec![], "no login cookie"),
        (
            format!("{CALLBACK}?code={code_a}&state={}x", a.state),
            vec![a.cookie.clone()],
            "state altered",
        ),
        (
            format!("{CALLBACK}?code={code_a}"),
            vec![a.cookie.clone()],
            "no state",
        ),
        (
            format!("{CALLBACK}?code={code_a}&state="),
            vec![a.cookie.clone()],
            "empty state",
        ),
        (
            back_a.clone(),
            vec![b.cookie.clone()],
            "another login's cookie",
        ),
        (
            back_a.clone(),
            vec![format!("{}=garbage", a.cookie_name)],
            "login cookie not ours",
        ),
        (
            back_a.clone(),
            vec![tamper(&a.cookie)],
            "login cookie tampered",
        ),
    ];
    for (target, cookies, what) in &cases {
        let cookies: Vec<&str> = cookies.iter().map(String::as_str).collect();
        let response = callback(&stack, HOST, target, &cookies).await;
        assert_html_error(&response, 400, None, what);
        let response = stack
            .send(with_cookies(
                Request::get(HOST, target).header("accept", "application/json"),
                &cookies,
            ))
            .await;
        assert_json_error(&response, 400, what);
    }
    assert!(
        fake.calls_to("/login/oauth/access_token").is_empty(),
        "no code is exchanged without a matching state"
    );

    // Control: the genuine callbacks still work.
    let response = callback(&stack, HOST, &back_b, &[&a.cookie, &b.cookie]).await;
    finish(&stack, &fake, b, response, "/b");
    let response = callback(&stack, HOST, &back_a, &[&a.cookie]).await;
    finish(&stack, &fake, a, response, "/a");
}

/// Flips one character in the middle of a cookie's value.
fn tamper(cookie: &str) -> String {
    let (name, value) = cookie.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    format!("{name}={}", String::from_utf8(bytes).unwrap())
}

// ---------------------------------------------------------------------------
// allowed_emails / allowed_domains

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_emails_and_domains_are_enforced_with_403() {
    // The github user is octocat@github.example.
    let fake = FakeProvider::start(Kind::Github).await;
    let rules = [
        rule(
            "emails-in.example.com",
            &fake,
            &["allowed_emails: [someone@else.example, octocat@github.example]"],
        ),
        rule(
            "emails-out.example.com",
            &fake,
            &["allowed_emails: [someone@else.example]"],
        ),
        rule(
            "domains-in.example.com",
            &fake,
            &["allowed_domains: [corp.example, github.example]"],
        ),
        rule(
            "domains-out.example.com",
            &fake,
            &["allowed_domains: [corp.example]"],
        ),
    ];
    let stack = Stack::start(&config(&rules)).await;

    for host in ["emails-in.example.com", "domains-in.example.com"] {
        let session = log_in(&stack, &fake, host, TARGET).await;
        assert_upstream_ok(&as_user(&stack, host, TARGET, &session).await);
    }
    for host in ["emails-out.example.com", "domains-out.example.com"] {
        let login = begin_login(&stack, &fake, host, TARGET).await;
        let back = consent(&fake, &login, host).await;
        let response = callback(&stack, host, &back, &[&login.cookie]).await;
        assert_html_error(&response, 403, None, host);

        let login = begin_login(&stack, &fake, host, TARGET).await;
        let back = consent(&fake, &login, host).await;
        let response = json_get(&stack, host, &back, &login.cookie).await;
        assert_json_error(&response, 403, host);
    }

    // A domain matches the whole domain after `@`, not a suffix of it
    // (GitHub's verified primary address is the one that counts).
    for email in [
        "octocat@notgithub.example",
        "octocat@github.example.evil",
        "github.example@evil.example",
    ] {
        fake.set_github_emails(json!([
            {"email": email, "primary": true, "verified": true, "visibility": "public"}
        ]));
        let host = "domains-in.example.com";
        let login = begin_login(&stack, &fake, host, TARGET).await;
        let back = consent(&fake, &login, host).await;
        let response = callback(&stack, host, &back, &[&login.cookie]).await;
        assert_html_error(&response, 403, None, email);
    }
    assert_eq!(stack.upstream_requests().len(), 2);
}

// ---------------------------------------------------------------------------
// Logout and redirects

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_clears_the_session_and_redirects_on_this_host_only() {
    let (fake, stack) = setup(Kind::Okta).await;
    let session = log_in(&stack, &fake, HOST, TARGET).await;

    let logout = async |target: &str| {
        stack
            .send(navigation(HOST, target).header("cookie", &session.cookie))
            .await
    };
    let check = |response: &Response, location: &str, what: &str| {
        assert_eq!(response.status, 302, "{what}: {}", response.text());
        assert_eq!(response.header("location"), Some(location), "{what}");
        let cleared = set_cookies(response)
            .into_iter()
            .find(|c| c.name() == SESSION_COOKIE)
            .unwrap_or_else(|| panic!("{what}: no Set-Cookie for {SESSION_COOKIE}"));
        assert!(is_cleared(&cleared), "{what}: {cleared}");
        assert_eq!(cleared.path(), Some("/"), "{what}: {cleared}");
    };

    check(&logout("/oauth2/logout").await, "/", "plain");
    check(
        &logout("/oauth2/logout?rd=%2Fafter%3Fx%3D1").await,
        "/after?x=1",
        "rd relative",
    );
    check(&logout("/oauth2/logout?rd=/bye").await, "/bye", "rd raw");
    for evil in [
        "//evil.com",
        "%2F%2Fevil.com",
        "https://evil.com",
        "https%3A%2F%2Fevil.com%2F",
        "%2F%5Cevil.com",
        "/%5Cevil.com",
        "%5C%5Cevil.com",
        "javascript:alert(1)",
        "evil.com",
    ] {
        let target = format!("/oauth2/logout?rd={evil}");
        check(&logout(&target).await, "/", &target);
    }
    for sneaky in [
        "%2F%09%2Fevil.com",
        "%2F%0D%0A%2Fevil.com",
        "/%2F%2Fevil.com",
    ] {
        let target = format!("/oauth2/logout?rd={sneaky}");
        let response = logout(&target).await;
        assert_eq!(response.status, 302, "{target}");
        assert_same_host_relative(response.header("location").unwrap());
    }

    // Without a session it is the same redirect.
    let response = stack.send(navigation(HOST, "/oauth2/logout")).await;
    check(&response, "/", "no session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_url_cannot_send_the_browser_elsewhere() {
    let fake = FakeProvider::start(Kind::Github).await;
    // Envoy's own normalisation would already fold `//` and `\`: without it
    // the service sees the raw targets and must defend itself.
    for normalize in [Normalize::Off, Normalize::On] {
        let stack = Stack::start_with(&config(&[rule(HOST, &fake, &[])]), normalize).await;
        for target in [
            "//evil.com/",
            "//evil.com",
            "/\\evil.com",
            "/%5Cevil.com",
            "///evil.com",
        ] {
            let what = format!("{normalize:?} {target}");
            let response = stack.send(navigation(HOST, target)).await;
            if [307, 308].contains(&response.status) {
                // Envoy's UNESCAPE_AND_REDIRECT (`%5C`): its redirect must
                // stay on this host too.
                let location = response.header("location").unwrap_or_default();
                assert_same_host_relative(location);
                continue;
            }
            if response.status != 302 {
                // Refused outright (Envoy's codec or the path check): fine,
                // as long as it goes nowhere.
                assert!(
                    [400, 403, 404].contains(&response.status),
                    "{what}: {}",
                    response.status
                );
                assert_eq!(response.header("location"), None, "{what}");
                continue;
            }
            let login = Login {
                authorize: Url::parse(response.header("location").unwrap()).unwrap(),
                state: String::new(),
                cookie: set_cookies(&response)
                    .iter()
                    .find(|c| c.name().starts_with(LOGIN_COOKIE_PREFIX))
                    .map(|c| format!("{}={}", c.name(), c.value()))
                    .unwrap_or_else(|| panic!("{what}: no login cookie")),
                cookie_name: String::new(),
            };
            let back = consent(&fake, &login, HOST).await;
            let response = callback(&stack, HOST, &back, &[&login.cookie]).await;
            assert_eq!(response.status, 302, "{what}: {}", response.text());
            let location = response.header("location").unwrap();
            assert_same_host_relative(location);
            assert!(new_session(&response).is_some(), "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_url_survives_the_round_trip_exactly() {
    let (fake, stack) = setup(Kind::Microsoft).await;
    for target in [
        "/search?q=a%20b&lang=ko&x=%2F%3F%26",
        "/reports/2024/q1.html?sort=-date&page=2#not-sent",
        "/%C3%A9t%C3%A9?utf8=%E2%9C%93",
        "/",
    ] {
        // A fragment never reaches the server.
        let sent = target.split('#').next().unwrap();
        let session = log_in(&stack, &fake, HOST, sent).await;
        assert_upstream_ok(&as_user(&stack, HOST, sent, &session).await);
        assert_eq!(stack.upstream_requests().last().unwrap().target, sent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_url_is_escaped_in_error_pages() {
    let (_fake, stack) = setup(Kind::Github).await;
    let target = "/x?q=\"><img/src=x/onerror=alert(1)>&b='";
    let response = stack.send(navigation(HOST, target)).await;
    if response.status == 400 {
        // Envoy refused the raw characters: nothing to escape.
        return;
    }
    assert_eq!(response.status, 302, "{}", response.text());
    let cookie = set_cookies(&response)
        .into_iter()
        .find(|c| c.name().starts_with(LOGIN_COOKIE_PREFIX))
        .unwrap();
    let state = query(
        &Url::parse(response.header("location").unwrap()).unwrap(),
        "state",
    )
    .unwrap();
    let denied = format!("{CALLBACK}?error=access_denied&state={state}");
    let cookie = format!("{}={}", cookie.name(), cookie.value());
    let response = callback(&stack, HOST, &denied, &[&cookie]).await;
    assert_html_error(&response, 401, None, "hostile original URL");
    let body = response.text();
    assert!(!body.contains("<img"), "unescaped original URL: {body}");
    assert!(
        !body.contains("onerror=alert(1)>") && !body.contains("b='\""),
        "attribute broken out of: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_level_oauth2_rule_logs_in_for_that_path() {
    let fake = FakeProvider::start(Kind::Github).await;
    // The oauth2 block under `paths: - path: /admin`; the host is open.
    let yaml = rule_head(HOST) + &configs::path("/admin", "admin", &oauth2_auth(&fake, &[]));
    let stack = Stack::start(&config(&[yaml])).await;

    assert_upstream_ok(&stack.send(navigation(HOST, "/public")).await);
    let session = log_in(&stack, &fake, HOST, "/admin/users?id=7").await;
    assert_upstream_ok(&as_user(&stack, HOST, "/admin/users?id=7", &session).await);
    assert_upstream_identity(&stack, &fake.expected_identity());
    let response = stack
        .send(Request::get(HOST, "/admin/x").header("accept", "application/json"))
        .await;
    assert_eq!(response.status, 401);
}

// ---------------------------------------------------------------------------
// Sessions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_logins_in_flight_both_complete() {
    let (fake, stack) = setup(Kind::Auth0).await;
    let first = begin_login(&stack, &fake, HOST, "/first?x=1").await;
    let second = begin_login(&stack, &fake, HOST, "/favicon.ico").await;
    assert_ne!(first.cookie_name, second.cookie_name);
    assert_ne!(first.state, second.state);
    let back_first = consent(&fake, &first, HOST).await;
    let back_second = consent(&fake, &second, HOST).await;

    // The second returns first; the browser sends both login cookies.
    let response = callback(&stack, HOST, &back_second, &[&first.cookie, &second.cookie]).await;
    let s2 = finish(&stack, &fake, second, response, "/favicon.ico");
    // The first one's cookie is untouched by the second callback.
    assert!(
        !set_cookies(&s2.callback)
            .iter()
            .any(|c| c.name() == first.cookie_name),
        "{:?}",
        s2.callback.headers
    );
    let response = callback(&stack, HOST, &back_first, &[&first.cookie]).await;
    let s1 = finish(&stack, &fake, first, response, "/first?x=1");

    let identity = fake.expected_identity();
    for session in [&s1, &s2] {
        assert_upstream_ok(&as_user(&stack, HOST, "/", session).await);
        assert_upstream_identity(&stack, &identity);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_only_good_for_its_provider_and_client() {
    let github = FakeProvider::start(Kind::Github).await;
    let gitlab = FakeProvider::start(Kind::Gitlab).await;
    let other_client =
        FakeProvider::start_for(Kind::Github, "cid-other", "other-client-secret-42").await;
    let stack = Stack::start(&config(&[
        rule("a.example.com", &github, &[]),
        rule("b.example.com", &gitlab, &[]),
        rule("c.example.com", &other_client, &[]),
    ]))
    .await;

    let session = log_in(&stack, &github, "a.example.com", TARGET).await;
    assert_upstream_ok(&as_user(&stack, "a.example.com", TARGET, &session).await);
    stack.upstream.clear();

    for (host, fake) in [("b.example.com", &gitlab), ("c.example.com", &other_client)] {
        let response = stack
            .send(navigation(host, TARGET).header("cookie", &session.cookie))
            .await;
        assert_eq!(response.status, 302, "{host}: {}", response.text());
        assert!(
            response
                .header("location")
                .is_some_and(|l| l.starts_with(&fake.base_url())),
            "{host}: a login at its own provider: {:?}",
            response.headers
        );
        let response = as_user(&stack, host, TARGET, &session).await;
        assert_eq!(response.status, 401, "{host}: {}", response.text());
    }
    assert!(stack.upstream_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_foreign_session_cookies_are_no_session() {
    let (fake, stack) = setup(Kind::Doreamon).await;
    let session = log_in(&stack, &fake, HOST, TARGET).await;
    let forged = [
        tamper(&session.cookie),
        format!("{SESSION_COOKIE}="),
        format!("{SESSION_COOKIE}=not-a-session"),
        // The login cookie's value under the session's name.
        format!(
            "{SESSION_COOKIE}={}",
            session.login.cookie.split_once('=').unwrap().1
        ),
    ];
    for cookie in &forged {
        let response = json_get(&stack, HOST, TARGET, cookie).await;
        assert_eq!(response.status, 401, "{cookie}: {}", response.text());
    }
    // A session made with another session secret is foreign too.
    let other = Stack::start(
        &config(&[rule(HOST, &fake, &[])])
            .replace(SESSION_SECRET, "another-session-secret-0123456789abcdefgh"),
    )
    .await;
    let response = as_user(&other, HOST, TARGET, &session).await;
    assert_eq!(response.status, 401, "{}", response.text());
    assert!(stack.upstream_requests().is_empty());
    assert!(other.upstream_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connect_headers_are_replaced_not_forwarded() {
    let (fake, stack) = setup(Kind::Kakao).await;
    let session = log_in(&stack, &fake, HOST, TARGET).await;
    let forged_token = crate::common::creds::hs256(
        CONNECT_SECRET,
        &json!({"id": "admin", "sub": "admin", "username": "admin", "iss": "ingress-authz",
                "iat": now_ms() / 1000, "exp": now_ms() / 1000 + 300}),
    );
    let response = stack
        .send(
            Request::get(HOST, TARGET)
                .header("cookie", &format!("{}; other=1", session.cookie))
                .header("X-Connect-Token", &forged_token)
                .header("x-connect-timestamp", "1"),
        )
        .await;
    assert_upstream_ok(&response);
    let claims = assert_upstream_identity(&stack, &fake.expected_identity());
    assert_ne!(claims["id"], "admin");
    let request = stack.upstream_requests().pop().unwrap();
    assert!(
        !request
            .headers
            .iter()
            .any(|(_, v)| v.contains(&forged_token)),
        "{:?}",
        request.headers
    );
}

// ---------------------------------------------------------------------------
// Robustness

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_is_a_502_not_a_hung_browser() {
    let (fake, stack) = setup(Kind::Gitlab).await;
    fake.set_failure(Failure::Hang);
    let login = begin_login(&stack, &fake, HOST, TARGET).await;
    let back = consent(&fake, &login, HOST).await;
    let started = std::time::Instant::now();
    // The harness client gives up after 15 s; the service must answer first.
    let response = callback(&stack, HOST, &back, &[&login.cookie]).await;
    assert_html_error(&response, 502, Some(TARGET), "provider hangs");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_cannot_be_replayed_into_a_second_session() {
    let (fake, stack) = setup(Kind::Google).await;
    let login = begin_login(&stack, &fake, HOST, TARGET).await;
    let back = consent(&fake, &login, HOST).await;
    let first = callback(&stack, HOST, &back, &[&login.cookie]).await;
    assert_eq!(first.status, 302, "{}", first.text());
    assert!(new_session(&first).is_some());
    // The same URL and login cookie again (history, a captured link): the
    // code is spent, so no second session.
    let again = callback(&stack, HOST, &back, &[&login.cookie]).await;
    assert!(
        [400, 502].contains(&again.status),
        "replayed callback: {} {}",
        again.status,
        again.text()
    );
    assert_no_session(&again, "replayed callback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_after_max_age() {
    let fake = FakeProvider::start(Kind::Slack).await;
    let stack = Stack::start(&config_with_session(
        &["max_age: 2s"],
        &[rule(HOST, &fake, &[])],
    ))
    .await;
    let session = log_in(&stack, &fake, HOST, TARGET).await;
    assert_eq!(
        session.set_cookie.max_age(),
        Some(cookie::time::Duration::seconds(2))
    );
    assert_upstream_ok(&as_user(&stack, HOST, TARGET, &session).await);
    // The browser would drop the cookie; a client that keeps sending it is
    // refused by the service itself.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let response = as_user(&stack, HOST, TARGET, &session).await;
    assert_eq!(response.status, 401, "expired session: {}", response.text());
    assert_eq!(stack.upstream_requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_avatar_is_dropped_rather_than_the_cookie() {
    let (fake, stack) = setup(Kind::Github).await;
    let huge = format!("https://avatars.example/{}.png", "a".repeat(6000));
    fake.edit_profile(|p| p["avatar_url"] = json!(huge));
    let session = log_in(&stack, &fake, HOST, TARGET).await;
    let line = session
        .callback
        .headers
        .iter()
        .find(|(n, v)| n == "set-cookie" && v.starts_with("ingress_authz="))
        .map(|(_, v)| v.len())
        .unwrap();
    assert!(line < 4096, "Set-Cookie of {line} bytes would be dropped");
    assert_upstream_ok(&as_user(&stack, HOST, TARGET, &session).await);
    let mut expected = fake.expected_identity();
    expected.avatar = String::new();
    assert_upstream_identity(&stack, &expected);
}

/// Trimming must cut on character boundaries: names are not ASCII.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_multibyte_identity_is_trimmed_not_a_crash() {
    let (fake, stack) = setup(Kind::Kakao).await;
    let nickname = "홍".repeat(700);
    fake.edit_profile(|p| {
        p["properties"]["nickname"] = json!(nickname);
        p["properties"]["profile_image"] = json!(format!("http://k.example/{}", "b".repeat(3000)));
    });
    let session = log_in(&stack, &fake, HOST, TARGET).await;
    assert!(
        session.cookie.len() < 4000,
        "{} bytes",
        session.cookie.len()
    );
    assert_upstream_ok(&as_user(&stack, HOST, TARGET, &session).await);
    let claims = decode_connect_token(
        stack
            .upstream_requests()
            .last()
            .unwrap()
            .header("x-connect-token")
            .unwrap(),
    );
    let expected = fake.expected_identity();
    assert_eq!(claims["id"], json!(expected.id));
    assert_eq!(claims["email"], json!(expected.email));
    for field in ["username", "nickname"] {
        let value = claims[field].as_str().unwrap();
        assert!(
            !value.is_empty() && nickname.starts_with(value),
            "{field} is a prefix of the nickname: {value:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Configuration variants

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_connect_no_identity_headers_and_forgeries_are_still_removed() {
    let fake = FakeProvider::start(Kind::Auth0).await;
    let with_connect = rule(HOST, &fake, &[]);
    let (head, _) = with_connect.split_once("            connect:").unwrap();
    let stack = Stack::start(&config(&[head.to_owned()])).await;
    let session = log_in(&stack, &fake, HOST, TARGET).await;
    let response = stack
        .send(
            Request::get(HOST, TARGET)
                .header("cookie", &format!("{}; other=1", session.cookie))
                .header("x-connect-token", "forged")
                .header("x-connect-timestamp", "1"),
        )
        .await;
    assert_upstream_ok(&response);
    let request = stack.upstream_requests().pop().unwrap();
    let leaked: Vec<_> = request
        .headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-connect-"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    let cookie = request.header("cookie").unwrap_or_default();
    assert!(!cookie.contains(SESSION_COOKIE), "{cookie:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_redirect_url_and_scopes_are_used() {
    let fake = FakeProvider::start(Kind::Gitlab).await;
    let stack = Stack::start(&config(&[rule(
        HOST,
        &fake,
        &[
            "redirect_url: http://app.example.com:8443/oauth2/callback",
            "scopes: [read_user, openid]",
        ],
    )]))
    .await;
    let login = begin_login(&stack, &fake, HOST, TARGET).await;
    assert_eq!(
        query(&login.authorize, "redirect_uri").as_deref(),
        Some("http://app.example.com:8443/oauth2/callback")
    );
    let scope = query(&login.authorize, "scope").unwrap();
    let mut scopes: Vec<&str> = scope.split(' ').collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["openid", "read_user"]);
    // The provider sends the browser to the configured callback (the public
    // port of the same host); the token request repeats it.
    let back = consent(&fake, &login, HOST).await;
    let response = callback(&stack, "app.example.com:8443", &back, &[&login.cookie]).await;
    assert_eq!(response.status, 302, "{}", response.text());
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
    let token = &fake.calls_to("/oauth/token")[0];
    assert_eq!(
        token.form_param("redirect_uri").as_deref(),
        Some("http://app.example.com:8443/oauth2/callback")
    );
}

// ---------------------------------------------------------------------------
// The fakes themselves (no service involved)

/// Drives each fake as a correct client would, and checks the strictness the
/// flow tests rely on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_providers_behave_like_the_real_ones() {
    for kind in Kind::ALL {
        let fake = FakeProvider::start(kind).await;
        let e = kind.endpoints();
        let host = fake.addr().to_string();
        let verifier = "dBjftJeZ4CZP-mJAz7GzGFg-sO4lgE8IlnBSNJXhW5g";
        let redirect_uri = "http://app.example.com/oauth2/callback";

        let authorize = |pkce: bool| {
            let mut url = Url::parse(&format!("http://{host}{}", e.authorize)).unwrap();
            url.query_pairs_mut()
                .append_pair(kind.client_id_param(), &fake.client_id())
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("response_type", "code")
                .append_pair("state", "st4te");
            if pkce {
                url.query_pairs_mut()
                    .append_pair("code_challenge", &pkce_s256(verifier))
                    .append_pair("code_challenge_method", "S256");
            }
            format!("{}?{}", url.path(), url.query().unwrap())
        };
        let get_code = async |pkce: bool| {
            let r = fake.send(Request::get(&host, &authorize(pkce))).await;
            assert_eq!(r.status, 302, "{kind:?}: {}", r.text());
            let back = Url::parse(r.header("location").unwrap()).unwrap();
            assert_eq!(query(&back, "state").as_deref(), Some("st4te"));
            assert!(back.as_str().starts_with(redirect_uri));
            query(&back, "code").unwrap()
        };
        let exchange = async |code: &str, verifier: Option<&str>| -> Response {
            if kind == Kind::Feishu {
                let body = json!({"app_id": fake.client_id(), "app_secret": fake.client_secret()});
                let r = fake
                    .send(
                        Request::new("POST", &host, e.feishu_app_token.unwrap())
                            .header("content-type", "application/json; charset=utf-8")
                            .body(body.to_string()),
                    )
                    .await;
                let app_token = r.json()["app_access_token"].as_str().unwrap().to_owned();
                let body = json!({"grant_type": "authorization_code", "code": code});
                return fake
                    .send(
                        Request::new("POST", &host, e.token)
                            .header("authorization", &format!("Bearer {app_token}"))
                            .header("content-type", "application/json; charset=utf-8")
                            .body(body.to_string()),
                    )
                    .await;
            }
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("client_id", &fake.client_id())
                .append_pair("client_secret", &fake.client_secret());
            if let Some(v) = verifier {
                form.append_pair("code_verifier", v);
            }
            fake.send(
                Request::new("POST", &host, e.token)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("accept", "application/json")
                    .body(form.finish()),
            )
            .await
        };
        let access_token = |r: &Response| -> String {
            assert_eq!(r.status, 200, "{kind:?}: {}", r.text());
            let body = r.json();
            let token = match kind {
                Kind::Slack => &body["authed_user"]["access_token"],
                Kind::Feishu => &body["data"]["access_token"],
                _ => &body["access_token"],
            };
            token.as_str().unwrap().to_owned()
        };

        let get_user = async |authorization: &str| {
            let request = Request::get(&host, e.user)
                .header("authorization", authorization)
                .header("user-agent", "test");
            fake.send(request).await
        };
        let bearer = |token: &str| format!("Bearer {token}");

        // The happy path, with PKCE (Feishu has none).
        let pkce = kind != Kind::Feishu;
        let code = get_code(pkce).await;
        let token = access_token(&exchange(&code, Some(verifier)).await);
        let user = get_user(&bearer(&token)).await;
        assert_eq!(user.status, 200, "{kind:?}: {}", user.text());
        assert_eq!(
            Identity::from_profile(kind, &user.json(), None),
            kind.default_identity()
        );
        assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());

        // A code is good once; the answer is the provider's error shape.
        let replay = exchange(&code, Some(verifier)).await;
        let body = replay.json();
        match kind {
            Kind::Github => {
                assert_eq!(replay.status, 200);
                assert_eq!(body["error"], "bad_verification_code");
            }
            Kind::Slack => assert_eq!((replay.status, &body["ok"]), (200, &json!(false))),
            Kind::Feishu => {
                assert_eq!(replay.status, 200);
                assert_ne!(body["code"], 0);
            }
            _ => {
                assert!(replay.status >= 400, "{kind:?}");
                assert_eq!(body["error"], "invalid_grant");
            }
        }
        // PKCE is checked where it was asked for.
        if kind != Kind::Feishu {
            let code = get_code(pkce).await;
            let wrong = exchange(&code, Some("wrong-verifier-wrong-verifier-wrong-verifier")).await;
            assert!(
                wrong.status != 200 || wrong.json()["access_token"].is_null(),
                "{kind:?}"
            );
            let code = get_code(pkce).await;
            let missing = exchange(&code, None).await;
            assert!(
                missing.status != 200 || missing.json()["access_token"].is_null(),
                "{kind:?}"
            );
        }
        // The user endpoint wants a token it issued.
        let bad = get_user("Bearer nope").await;
        let refused = match kind {
            Kind::Slack => bad.status == 200 && bad.json()["ok"] == false,
            Kind::Feishu => bad.status == 200 && bad.json()["code"] != 0,
            _ => bad.status == 401,
        };
        assert!(refused, "{kind:?}: {} {}", bad.status, bad.text());

        // Failure modes have the documented shapes.
        fake.set_failure(Failure::EmptyToken);
        let code = get_code(pkce).await;
        assert_eq!(access_token(&exchange(&code, Some(verifier)).await), "");
        fake.set_failure(Failure::TokenServerError);
        let code = get_code(pkce).await;
        assert_eq!(exchange(&code, Some(verifier)).await.status, 500);
        fake.set_failure(Failure::MissingUserId);
        let code = get_code(pkce).await;
        let token = access_token(&exchange(&code, Some(verifier)).await);
        let user = get_user(&bearer(&token)).await;
        assert_eq!(Identity::from_profile(kind, &user.json(), None).id, "");
    }

    // GitHub specifics: form-encoded answer without Accept: json, and the
    // API's User-Agent rule.
    let fake = FakeProvider::start(Kind::Github).await;
    let host = fake.addr().to_string();
    let code = fake
        .code_for("/login/oauth/authorize?client_id=cid&redirect_uri=http%3A%2F%2Fa%2Foauth2%2Fcallback&response_type=code&state=s")
        .await;
    let form = format!(
        "code={code}&client_id=cid&client_secret={}",
        fake.client_secret()
    );
    let r = fake.post_form("/login/oauth/access_token", form, &[]).await;
    assert!(
        r.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded")),
        "{:?}",
        r.headers
    );
    let token = url::form_urlencoded::parse(&r.body)
        .find(|(k, _)| k == "access_token")
        .unwrap()
        .1
        .into_owned();
    let no_agent = fake
        .send(
            Request::get(&host, "/api/v3/user").header("authorization", &format!("Bearer {token}")),
        )
        .await;
    assert_eq!(no_agent.status, 403);
}
