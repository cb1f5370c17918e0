//! Several auth methods on one route (`type: [oidc, bearer]`) end to end:
//! real Envoy, ingress-authz and the real OpenID provider (`oidc-provider`,
//! tests/idp/server.mjs).
//!
//! What is checked: a credential goes to its method by its syntax — the
//! session cookie to oidc's login, a bearer token to the bearer methods —
//! and a token that fails is a 401 with every challenge, never a login
//! redirect, even for a navigation; a navigation without any credential is
//! sent to the provider; the auth-level `allow` holds for every identity
//! and a method's own `allow` for its identities only; oidc in login mode
//! with `accept_bearer: true` takes the provider's access tokens for its
//! `audience` and refuses those for another; without a login method, a
//! navigation without a credential is a 401 naming both challenges; the
//! audit line names the method that decided.

use serde_json::Value;

use crate::common::Stack;
use crate::common::client::{Request, Response};
use crate::common::configs::{self, indent, rule_head};
use crate::common::creds;
use crate::common::idp::{AtProvider, IDP_CLIENT_ID, IDP_CLIENT_SECRET, Jar, NAVIGATE};
use crate::common::login::{CALLBACK, IdpStack};

const HOST: &str = "app.example.com";
const SESSION_SECRET: &str = "methods-test-session-secret-5c7e9a1b3d5f7a9c";
/// The resource (and so the `aud`) of the provider's JWT access tokens.
const API_RESOURCE: &str = "https://api.example.com";
const CI_TOKEN: &str = "ci-token-7d1f3a5c9e2b4d6f";
const DEPLOY_TOKEN: &str = "deploy-token-2b4d6f8a1c3e5a7c";
/// What a script in a logged-in page sends with `fetch()`.
const XHR: &[(&str, &str)] = &[("accept", "*/*"), ("sec-fetch-mode", "cors")];
const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// The oidc login client's fields (`extra` lines added).
fn oidc_login(issuer: &str, extra: &[&str]) -> String {
    let mut lines = vec![
        format!("issuer: \"{issuer}\""),
        format!("client_id: {IDP_CLIENT_ID}"),
        format!("client_secret: {IDP_CLIENT_SECRET}"),
        "scopes: [openid, profile, email]".to_owned(),
    ];
    lines.extend(extra.iter().map(|l| (*l).to_owned()));
    lines.join("\n")
}

/// `/` takes `[oidc, bearer]`: anyone named alice, bob or ci (auth-level),
/// and of the logins only admins (oidc's own `allow`). `/api/` takes oidc
/// alone, with `accept_bearer: true` for the provider's tokens for
/// [`API_RESOURCE`].
fn config(issuer: &str) -> String {
    let root = format!(
        "type: [oidc, bearer]\noidc:\n{}\nbearer:\n  tokens:\n    - {{name: ci, token: {CI_TOKEN}}}\n    - {{name: deploy, token: {DEPLOY_TOKEN}}}\nallow:\n  users: [alice, bob, ci]",
        indent(2, [oidc_login(issuer, &["allow:\n  groups: [admins]"])]).trim_end()
    );
    let api = format!(
        "type: oidc\noidc:\n{}",
        indent(
            2,
            [oidc_login(
                issuer,
                &[
                    "accept_bearer: true",
                    &format!("audience: [\"{API_RESOURCE}\"]")
                ]
            )]
        )
        .trim_end()
    );
    let rule = format!(
        "{}        auth:\n{}{}",
        rule_head(HOST),
        indent(10, [root]),
        configs::path("/api/", "app", &api)
    );
    configs::with_session(SESSION_SECRET, &[], &[rule])
}

fn upstream_answered(response: &Response) -> bool {
    response.status == 200
        && serde_json::from_slice::<Value>(&response.body).is_ok_and(|v| v["upstream"] == true)
}

/// A 401 that is no redirect, with `challenge` as its `WWW-Authenticate`.
#[track_caller]
fn assert_401(world: &IdpStack, response: &Response, challenge: &str, what: &str) {
    assert_eq!(
        (response.status, response.header("location")),
        (401, None),
        "{what}: want 401 without a redirect: {}\n{}",
        response.text(),
        world.logs()
    );
    assert_eq!(
        response.header("www-authenticate"),
        Some(challenge),
        "{what}: {:?}",
        response.headers
    );
}

/// The `auth` (deciding method) of the last denial of `path`.
fn last_denial_method(stack: &Stack, path: &str) -> String {
    stack
        .authz
        .audit_events()
        .iter()
        .rev()
        .find(|e| e["event"] == "denied" && e["path"] == path)
        .map(|e| e["auth"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// The whole login of `account` from a navigation to `/`: the callback's
/// answer.
async fn attempt(world: &IdpStack, account: &'static str) -> Response {
    let login = world.browser().begin("/").await;
    let login_cookie = login
        .redirect
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.split(';').next().unwrap_or_default().to_owned())
        .find(|c| c.starts_with("ingress_authz_login_"))
        .expect("a login-state cookie");
    let back = world
        .at_provider(&login.authorize, AtProvider::SignIn(account))
        .await;
    assert_eq!(back.path(), CALLBACK, "back to the callback: {back}");
    world.browser().callback(&back, &[&login_cookie]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_and_bearer_on_one_route_each_take_their_own_credential() {
    let world = IdpStack::start(&[("IDP_JWT_ACCESS_TOKENS", "true")], HOST, config).await;
    // Discovery first: until then the provider answers 503.
    let deadline = std::time::Instant::now() + SETTLE;
    let redirect = loop {
        let response = world.browser().navigate("/", &[]).await;
        if response.status != 503 || std::time::Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(
        redirect.status,
        302,
        "a navigation without credentials goes to the provider: {}\n{}",
        redirect.text(),
        world.logs()
    );
    assert!(
        redirect
            .header("location")
            .is_some_and(|l| l.starts_with(&format!("{}/auth?", world.idp.url))),
        "{:?}",
        redirect.headers
    );

    // Machines: the bearer method, under the auth-level allow.
    let ci = creds::bearer(CI_TOKEN);
    let ok = world.app_get("/x", &[("authorization", &ci)]).await;
    assert!(upstream_answered(&ok), "the ci token: {}", ok.text());
    let deploy = world
        .app_get("/x", &[("authorization", &creds::bearer(DEPLOY_TOKEN))])
        .await;
    assert_eq!(deploy.status, 403, "deploy is not in the auth-level allow");
    assert_eq!(last_denial_method(&world.stack, "/x"), "bearer");

    // A wrong token: 401 with every challenge, for an API call and for a
    // navigation alike; never a login redirect.
    let wrong = creds::bearer("not-a-token-of-anyone");
    let api_call = world.app_get("/x", &[("authorization", &wrong)]).await;
    assert_401(
        &world,
        &api_call,
        "Bearer error=\"invalid_token\"",
        "a wrong token",
    );
    let mut navigation = NAVIGATE.to_vec();
    navigation.push(("authorization", &wrong));
    let nav = world.app_get("/x", &navigation).await;
    assert_401(
        &world,
        &nav,
        "Bearer error=\"invalid_token\"",
        "a navigation with a wrong token",
    );
    // The provider's own access token is no credential of `/`: its oidc
    // takes sessions only there, and the bearer method does not know it.
    let access = world.idp.client_credentials(API_RESOURCE, "api:read").await;
    let foreign = world
        .app_get("/x", &[("authorization", &creds::bearer(&access))])
        .await;
    assert_401(
        &world,
        &foreign,
        "Bearer error=\"invalid_token\"",
        "an access token where oidc takes no bearer",
    );
    // No credential, not a navigation: 401 naming the bearer challenge.
    let anonymous = world.app_get("/x", XHR).await;
    assert_401(&world, &anonymous, "Bearer", "an XHR without credentials");

    // People: alice (admins) logs in; her browser's XHR passes on the session.
    let callback = attempt(&world, "alice").await;
    let jar: Jar = world.logged_in(&callback, "/", "alice");
    let cookie = jar.header();
    let mut xhr = XHR.to_vec();
    xhr.push(("cookie", &cookie));
    let session = world.app_get("/x", &xhr).await;
    assert!(
        upstream_answered(&session),
        "alice's XHR with her session: {} {}\n{}",
        session.status,
        session.text(),
        world.logs()
    );
    // bob is in the auth-level allow but not in oidc's own (admins only):
    // his login is refused at the callback, so no session is made.
    let refused = attempt(&world, "bob").await;
    assert_eq!(
        refused.status,
        403,
        "bob's login under oidc's allow groups [admins]: {}",
        refused.text()
    );
    assert!(
        !refused
            .headers
            .iter()
            .any(|(n, v)| n == "set-cookie" && v.starts_with("ingress_authz=")),
        "no session for bob: {:?}",
        refused.headers
    );

    // `/api/`: oidc in login mode with accept_bearer takes the provider's
    // access tokens for its audience, and refuses one for another API.
    let api = world
        .app_get("/api/items", &[("authorization", &creds::bearer(&access))])
        .await;
    assert!(
        upstream_answered(&api),
        "an access token for {API_RESOURCE}: {} {}\n{}",
        api.status,
        api.text(),
        world.logs()
    );
    let other = world
        .idp
        .client_credentials("https://other.example.com", "api:read")
        .await;
    let refused = world
        .app_get("/api/items", &[("authorization", &creds::bearer(&other))])
        .await;
    assert_401(
        &world,
        &refused,
        "Bearer error=\"invalid_token\"",
        "an access token for another audience",
    );
    assert_eq!(last_denial_method(&world.stack, "/api/items"), "oidc");
    let mut nav_other = NAVIGATE.to_vec();
    let other_bearer = creds::bearer(&other);
    nav_other.push(("authorization", &other_bearer));
    let nav = world.app_get("/api/items", &nav_other).await;
    assert_401(
        &world,
        &nav,
        "Bearer error=\"invalid_token\"",
        "a navigation with a token for another audience",
    );
    // Still a login route: a navigation without a token goes to the provider.
    let login = world.browser().navigate("/api/items", &[]).await;
    assert_eq!(login.status, 302, "{}", login.text());
}

/// `[jwt, basic]`: no login method, so a navigation without a credential
/// is a 401 naming both challenges; each credential goes to its method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_and_basic_without_a_login_method_name_both_challenges() {
    const SECRET: &str = "methods-jwt-secret-0123456789abcdef";
    let auth = format!(
        "type: [jwt, basic]\nsecret: {SECRET}\nbasic:\n  users:\n    - {{username: admin, password: \"admin-pass-123\"}}"
    );
    let stack = Stack::start(&configs::rules(&[configs::rule(HOST, &auth)])).await;
    let both = "Bearer, Basic realm=\"Restricted\", charset=\"UTF-8\"";
    let navigate = |extra: Option<String>| {
        let request = NAVIGATE
            .iter()
            .fold(Request::get(HOST, "/page"), |r, (n, v)| r.header(n, v));
        let request = match extra {
            Some(a) => request.header("authorization", &a),
            None => request,
        };
        stack.send(request)
    };
    let none = navigate(None).await;
    assert_eq!(
        (none.status, none.header("location")),
        (401, None),
        "{}",
        none.text()
    );
    assert_eq!(none.header("www-authenticate"), Some(both));

    let claims = serde_json::json!({"sub": "svc", "exp": creds::now() + 3600});
    let jwt = creds::hs256(SECRET, &claims);
    let ok = navigate(Some(creds::bearer(&jwt))).await;
    assert!(upstream_answered(&ok), "a valid JWT: {}", ok.text());
    let ok = navigate(Some(creds::basic("admin", "admin-pass-123"))).await;
    assert!(upstream_answered(&ok), "a valid password: {}", ok.text());

    let wrong = navigate(Some(creds::basic("admin", "wrong"))).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.header("www-authenticate"), Some(both));
    assert_eq!(last_denial_method(&stack, "/page"), "basic");
    let forged = creds::hs256("another-secret-0123456789abcdef", &claims);
    let forged = navigate(Some(creds::bearer(&forged))).await;
    assert_eq!(forged.status, 401);
    assert_eq!(
        forged.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\", Basic realm=\"Restricted\", charset=\"UTF-8\"")
    );
    assert_eq!(last_denial_method(&stack, "/page"), "jwt");
}
