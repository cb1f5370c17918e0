//! The OAuth2 login flow (SPEC §6, §8) end to end: real Envoy, ingress-authz,
//! a real OpenID provider (`oidc-provider`, tests/idp/server.mjs) and, for the
//! browser test, a real headless Chromium (tests/browser/login.mjs).
//!
//! ingress-authz reaches the provider through the `auth0` provider with its
//! endpoints pointed at the local one (`auth_url`, `token_url`,
//! `userinfo_url`); auth0's identity mapping (sub, nickname, email, name,
//! picture) is standard OpenID userinfo. The provider requires PKCE S256; its
//! client is registered for `client_secret_post`, the way ingress-authz sends
//! the secret.
//!
//! The X-Connect-Token the upstream receives is verified with `jose`, a
//! JavaScript JWT library (tests/idp/verify-jwt.mjs), not with our Rust code.
//!
//! Node packages and Chromium come from scripts/install-deps.

use std::collections::BTreeMap;

use crate::common::client::Response;
use crate::common::idp::{
    AtProvider, IDP_CLIENT_ID as CLIENT_ID, IDP_CLIENT_SECRET as CLIENT_SECRET, Jar,
    LOGIN_COOKIE_PREFIX, NAVIGATE, SESSION_COOKIE, SetCookie, jose_accepts, set_cookies,
    verify_with_jose,
};
use crate::common::login::IdpStack as World;
use url::Url;

const APP_HOST: &str = "app.example.com";
const CONNECT_SECRET: &str = "connect-shared-secret-8d2e6b4a0c9f1e3d";
const SESSION_SECRET: &str = "session-secret-7c1e9a3f5b2d8e4a6c0f1b3d5e7a9c2e";

/// The ingress config: everything on `app.example.com` needs a login at the
/// provider; only example.com addresses are let in (bob@example.org is not).
fn config(idp: &str) -> String {
    format!(
        r#"
authz:
  session:
    secret: {SESSION_SECRET}
rules:
  - host: {APP_HOST}
    backend:
      service:
        name: app
        port: 8080
        auth:
          type: oauth2
          oauth2:
            provider: auth0
            client_id: {CLIENT_ID}
            client_secret: {CLIENT_SECRET}
            base_url: {idp}
            auth_url: {idp}/auth
            token_url: {idp}/token
            userinfo_url: {idp}/me
            allowed_domains: [example.com]
            connect:
              enabled: true
              jwt:
                secret: {CONNECT_SECRET}
"#
    )
}

/// Provider + Stack, wired: the provider's client accepts
/// `http://app.example.com:<envoy port>/oauth2/callback`.
async fn start() -> World {
    World::start(&[], APP_HOST, config).await
}

// ------------------------------------------------------------------ the flow

/// A navigation to `target` without a session: the 302 to the provider, its
/// authorize URL, and the login-state cookie, all checked.
async fn start_login(world: &World, target: &str) -> (Url, SetCookie) {
    let login = world.browser().begin(target).await;
    let (response, authorize) = (login.redirect, login.authorize);
    assert_eq!(
        &authorize[..url::Position::AfterPath],
        format!("{}/auth", world.idp.url)
    );
    let query = login.params;
    assert_eq!(query.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(query.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(
        query.get("redirect_uri"),
        Some(&format!("http://{}/oauth2/callback", world.app()))
    );
    let state = query.get("state").expect("state");
    assert!(state.len() >= 22, "state under 128 bits: {state}");
    assert_eq!(
        query.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert_eq!(query.get("code_challenge").map(String::len), Some(43));
    let scopes: Vec<&str> = query["scope"].split(' ').collect();
    for scope in ["openid", "profile", "email"] {
        assert!(scopes.contains(&scope), "scope {scope} in {scopes:?}");
    }
    let cookies = set_cookies(&response);
    let [login_cookie] = cookies
        .iter()
        .filter(|c| c.name.starts_with(LOGIN_COOKIE_PREFIX))
        .cloned()
        .collect::<Vec<_>>()
        .try_into()
        .unwrap_or_else(|c| panic!("one login-state cookie expected: {c:?}"));
    login_cookie.assert_protected("/oauth2/");
    assert!(!login_cookie.deletes(), "{login_cookie:?}");
    assert!(
        !cookies.iter().any(|c| c.name == SESSION_COOKIE),
        "{cookies:?}"
    );
    (authorize, login_cookie)
}

/// Sends the provider's redirect back through Envoy, as the browser would.
async fn callback(world: &World, back: &Url, jar: &Jar) -> Response {
    assert_eq!(
        back.host_str(),
        Some(APP_HOST),
        "the provider redirects to the app"
    );
    assert_eq!(back.path(), "/oauth2/callback");
    world.browser().callback(back, &[&jar.header()]).await
}

/// [`start_login`], with the browser's jar holding the login-state cookie.
async fn start_login_with_jar(world: &World, target: &str) -> (Url, Jar) {
    let (authorize, login_cookie) = start_login(world, target).await;
    let mut jar = Jar::default();
    jar.0.insert(login_cookie.name, login_cookie.value);
    (authorize, jar)
}

/// Runs the whole login for `account` from a navigation to `target`; returns
/// the browser's app cookie jar afterwards (the session).
async fn log_in(world: &World, target: &str, account: &'static str) -> Jar {
    let (authorize, login_cookie) = start_login(world, target).await;
    let mut jar = Jar::default();
    jar.0.insert(login_cookie.name.clone(), login_cookie.value);
    let back = world
        .at_provider(&authorize, AtProvider::SignIn(account))
        .await;
    let query: BTreeMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(
        query.get("state"),
        authorize
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .as_ref()
    );
    assert!(query.contains_key("code"), "{back}");

    let response = callback(world, &back, &jar).await;
    assert_eq!(
        response.status,
        302,
        "callback: {}\n{}",
        response.text(),
        world.logs()
    );
    let location = response.header("location").expect("Location");
    let resolved = Url::parse(&format!("http://{}/", world.app()))
        .unwrap()
        .join(location)
        .unwrap();
    assert_eq!(
        &resolved[url::Position::BeforePath..],
        target,
        "back to the original URL ({location})"
    );
    assert_eq!(resolved.host_str(), Some(APP_HOST), "same host: {location}");
    let cookies = set_cookies(&response);
    let session = cookies
        .iter()
        .find(|c| c.name == SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
    session.assert_protected("/");
    assert!(
        !session.attrs.contains_key("secure"),
        "plain http: {session:?}"
    );
    assert!(session.value.len() < 4000, "{} bytes", session.value.len());
    let cleared = cookies.iter().find(|c| c.name == login_cookie.name);
    assert!(
        cleared.is_some_and(SetCookie::deletes),
        "the login-state cookie is cleared: {cookies:?}"
    );
    jar.update(&response);
    assert_eq!(jar.names(), [SESSION_COOKIE]);
    jar
}

fn cookie_header(jar: &Jar, extra: &str) -> String {
    format!("{extra}; {}", jar.header())
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programmatic_login_at_a_real_openid_provider() {
    let world = start().await;

    // Before any login: API clients get 401 JSON, never a redirect.
    let api = world
        .app_get("/api/items", &[("accept", "application/json")])
        .await;
    assert_eq!(api.status, 401, "{}", api.text());
    assert!(api.header("location").is_none());
    assert_eq!(
        api.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(api.json()["status"], 401);
    let curl = world.app_get("/dashboard", &[("accept", "*/*")]).await;
    assert_eq!(curl.status, 401, "curl's */* is not a navigation");
    assert!(world.stack.upstream_requests().is_empty());

    let jar = log_in(&world, "/dashboard?tab=1&x=%2Fy", "alice").await;
    let stats = world.idp.stats().await;
    assert_eq!(stats.get("token"), Some(&1), "one code exchange: {stats:?}");
    assert_eq!(stats.get("userinfo"), Some(&1), "one profile: {stats:?}");

    // The session works; the upstream gets the identity, and our cookies are
    // not in the Cookie header it receives (the app's own cookie is). A
    // client-supplied X-Connect-Token is replaced.
    let cookies = cookie_header(&jar, "theme=dark");
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let response = world
        .app_get(
            "/dashboard?tab=1&x=%2Fy",
            &[
                NAVIGATE[0],
                NAVIGATE[1],
                ("cookie", &cookies),
                ("x-connect-token", forged),
            ],
        )
        .await;
    assert_eq!(
        response.status,
        200,
        "{}\n{}",
        response.text(),
        world.logs()
    );
    assert_eq!(response.json()["upstream"], true);
    let requests = world.stack.upstream_requests();
    let [seen] = requests.as_slice() else {
        panic!("one upstream request expected: {requests:?}")
    };
    assert_eq!(seen.target, "/dashboard?tab=1&x=%2Fy");
    let upstream_cookie = seen.header("cookie").unwrap_or_default();
    assert!(
        !upstream_cookie.contains(SESSION_COOKIE),
        "our cookies reach the upstream: {upstream_cookie}"
    );
    assert!(upstream_cookie.contains("theme=dark"), "{upstream_cookie}");
    let token = seen.header("x-connect-token").expect("X-Connect-Token");
    assert_ne!(token, forged);
    let timestamp: u64 = seen
        .header("x-connect-timestamp")
        .expect("X-Connect-Timestamp")
        .parse()
        .expect("a number");

    let claims = verify_with_jose(token, CONNECT_SECRET);
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["id"], "alice", "{claims}");
    assert_eq!(claims["username"], "alice", "auth0: nickname -> username");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(
        claims["nickname"], "Alice Liddell",
        "auth0: name -> nickname"
    );
    assert_eq!(claims["avatar"], "https://avatars.example.com/alice.png");
    assert_eq!(claims["iss"], "ingress-authz");
    let iat = claims["iat"].as_u64().expect("iat");
    assert_eq!(claims["exp"].as_u64(), Some(iat + 300), "default 5m");
    assert!(
        timestamp / 1000 >= iat.saturating_sub(1) && timestamp / 1000 <= iat + 1,
        "X-Connect-Timestamp {timestamp} ms vs iat {iat} s"
    );
    // The wrong secret does not verify (the check above means something).
    assert!(!jose_accepts(token, "not-the-connect-secret-0000000000"));

    // API calls with the session pass too; the provider is not asked again.
    let api = world
        .app_get(
            "/api/items",
            &[("accept", "application/json"), ("cookie", &jar.header())],
        )
        .await;
    assert_eq!(api.status, 200, "{}", api.text());
    assert_eq!(
        world.idp.stats().await,
        stats,
        "no provider call per request"
    );

    // Logout clears the session cookie and goes to /; without it, a
    // navigation is sent to the provider again.
    let logout = world
        .app_get("/oauth2/logout", &[NAVIGATE[0], ("cookie", &jar.header())])
        .await;
    assert_eq!(logout.status, 302, "{}", logout.text());
    assert_eq!(logout.header("location"), Some("/"));
    let mut after = Jar::default();
    after.0.clone_from(&jar.0);
    after.update(&logout);
    assert!(after.names().is_empty(), "{:?}", set_cookies(&logout));
    let again = world.app_get("/dashboard?tab=1", NAVIGATE).await;
    assert_eq!(again.status, 302);
    assert!(
        again
            .header("location")
            .is_some_and(|l| l.starts_with(&format!("{}/auth?", world.idp.url)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_at_a_real_provider_never_make_a_session() {
    let world = start().await;
    let no_session = |response: &Response| {
        let cookies = set_cookies(response);
        assert!(
            !cookies
                .iter()
                .any(|c| c.name == SESSION_COOKIE && !c.deletes()),
            "a session was set: {cookies:?}"
        );
    };

    // 1. The user presses "Cancel" at the provider: ?error=access_denied.
    let (authorize, jar) = start_login_with_jar(&world, "/cancelled").await;
    let back = world.at_provider(&authorize, AtProvider::Cancel).await;
    assert!(
        back.query_pairs()
            .any(|(k, v)| k == "error" && v == "access_denied"),
        "{back}"
    );
    let response = callback(&world, &back, &jar).await;
    assert_eq!(response.status, 401, "{}", response.text());
    assert!(response.text().contains("Try again"), "{}", response.text());
    no_session(&response);

    // 2. A good code with a state that is not this browser's.
    let (authorize, jar) = start_login_with_jar(&world, "/forged-state").await;
    let back = world
        .at_provider(&authorize, AtProvider::SignIn("alice"))
        .await;
    let mut forged = back.clone();
    let pairs: Vec<(String, String)> = back
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "A".repeat(v.len())
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(&pairs);
    let response = callback(&world, &forged, &jar).await;
    assert_eq!(response.status, 400, "{}", response.text());
    no_session(&response);
    // The same callback without the login-state cookie (another browser).
    let response = callback(&world, &back, &Jar::default()).await;
    assert_eq!(response.status, 400, "{}", response.text());
    no_session(&response);
    let tokens_before = world.idp.stats().await.get("token").copied();
    assert_eq!(tokens_before, None, "no exchange without a valid state");

    // 3. The real callback works once; replaying it (the code is spent at
    // the provider) gives an error, not a second session.
    let response = callback(&world, &back, &jar).await;
    assert_eq!(
        response.status,
        302,
        "{}\n{}",
        response.text(),
        world.logs()
    );
    assert!(
        set_cookies(&response)
            .iter()
            .any(|c| c.name == SESSION_COOKIE)
    );
    let replay = callback(&world, &back, &jar).await;
    assert_eq!(replay.status, 502, "{}", replay.text());
    no_session(&replay);

    // 4. A provider account outside allowed_domains (bob@example.org): the
    // login completes at the provider, but ingress-authz answers 403.
    let (authorize, jar) = start_login_with_jar(&world, "/bob").await;
    let back = world
        .at_provider(&authorize, AtProvider::SignIn("bob"))
        .await;
    let response = callback(&world, &back, &jar).await;
    assert_eq!(response.status, 403, "{}", response.text());
    no_session(&response);

    assert!(
        world
            .stack
            .upstream_requests()
            .iter()
            .all(|r| !r.path().starts_with("/oauth2/")),
        "the callback never reaches the upstream"
    );
}

/// Several logins in flight in one browser (tabs; a favicon request on the
/// way): each login-state cookie is its own, and the callbacks complete in
/// any order, each back to its own page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_in_flight_at_once_complete_in_any_order() {
    let world = start().await;
    let targets = ["/reports?id=1", "/settings?section=profile&x=2"];
    let mut browser = Jar::default();
    let mut logins = Vec::new();
    for target in targets {
        let (authorize, login_cookie) = start_login(&world, target).await;
        browser
            .0
            .insert(login_cookie.name.clone(), login_cookie.value.clone());
        logins.push((target, authorize, login_cookie));
    }
    assert_eq!(browser.names().len(), 2, "{:?}", browser.names());

    // The favicon the browser fetches meanwhile is not a navigation: 401,
    // and it starts no login of its own.
    let favicon = world
        .app_get(
            "/favicon.ico",
            &[
                ("accept", "image/avif,image/webp,image/*,*/*;q=0.8"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
                ("cookie", &browser.header()),
            ],
        )
        .await;
    assert_eq!(favicon.status, 401);
    assert!(set_cookies(&favicon).is_empty(), "{:?}", favicon.headers);

    // Each tab signs in at the provider (each with its own provider cookies,
    // as oidc-provider rotates its session at every step); the app sees the
    // callbacks in the reverse order, with both login cookies in the jar.
    let mut backs = Vec::new();
    for (_, authorize, _) in &logins {
        backs.push(
            world
                .at_provider(authorize, AtProvider::SignIn("alice"))
                .await,
        );
    }
    for ((target, _, login_cookie), back) in logins.iter().zip(&backs).rev() {
        let response = callback(&world, back, &browser).await;
        assert_eq!(
            response.status,
            302,
            "{}\n{}",
            response.text(),
            world.logs()
        );
        assert_eq!(response.header("location"), Some(*target));
        let cookies = set_cookies(&response);
        assert!(
            cookies
                .iter()
                .any(|c| c.name == login_cookie.name && c.deletes()),
            "clears its own login-state cookie: {cookies:?}"
        );
        assert!(
            !cookies
                .iter()
                .any(|c| c.name.starts_with(LOGIN_COOKIE_PREFIX) && c.name != login_cookie.name),
            "touches no other login: {cookies:?}"
        );
        browser.update(&response);
    }
    assert_eq!(browser.names(), [SESSION_COOKIE]);
    for target in targets {
        let response = world
            .app_get(target, &[NAVIGATE[0], ("cookie", &browser.header())])
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json()["target"], target);
    }
}

/// The same flow in headless Chromium (tests/browser/login.mjs): login at the
/// provider's pages, back on the original URL, reload without the provider,
/// logout, two tabs logging in at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_in_headless_chromium() {
    let world = start().await;
    world
        .browser_login(
            "browser-screenshots",
            &[("LOGIN", "alice"), ("LOGIN_EMAIL", "alice@example.com")],
        )
        .await;
}
