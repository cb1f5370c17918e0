//! The `allow:` policy of `type: oidc` routes (SPEC §13.1) end to end: real
//! Envoy, ingress-authz and the real OpenID provider (`oidc-provider`,
//! tests/idp/server.mjs). The provider's accounts carry a `groups` claim
//! (released with the `profile` scope): alice [admins, staff], bob [staff],
//! carol [staff] with an unverified carol@example.com; a test changes them at
//! runtime with `Idp::set_groups`.
//!
//! What is checked: a session made on one route of a client is held to
//! another route's `allow` (403, not a login loop); an unverified email
//! counts for no `domains`; groups removed at the provider are denied once
//! `groups_ttl` has passed (re-read by refresh token + userinfo); a reload
//! that tightens `allow` applies to existing sessions; the X-Connect-Token
//! carries `groups` and `aud` (the host); API mode's `allow.claims` on the
//! provider's JWT access tokens, and API mode needing `audience`.

use std::future::Future;
use std::ops::Deref;
use std::time::{Duration, Instant};

use ingress_authz::admin::proto::ReloadRequest;
use ingress_authz::admin::proto::admin_client::AdminClient;
use serde_json::Value;
use url::Url;

use crate::common::Stack;
use crate::common::client::Response;
use crate::common::configs::{self, rule_head};
use crate::common::idp::{
    self, AtProvider, IDP_CLIENT_ID, IDP_CLIENT_SECRET, Idp, Jar, LOGIN_COOKIE_PREFIX, SetCookie,
    new_session, set_cookies,
};
use crate::common::login::{CALLBACK, IdpStack};

const HOST: &str = "app.example.com";
const API_HOST: &str = "api.example.com";
const SESSION_SECRET: &str = "policy-test-session-secret-9e2b4d6f8a1c3e5b";
/// 32+ bytes, as SPEC wants of an HS256 connect secret.
const CONNECT_SECRET: &str = "policy-connect-shared-secret-1f3b5d7e9a2c";
/// The resource (and so the `aud`) of the provider's JWT access tokens.
const API_RESOURCE: &str = "https://api.example.com";
const ACCEPT_JSON: (&str, &str) = ("accept", "application/json");
/// How long a test waits for something that should happen by itself
/// (discovery, a TTL running out); the loops poll, they do not sleep it out.
const SETTLE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------
// Configs

fn config(rules: &str) -> String {
    configs::with_session(SESSION_SECRET, &[], &[rules.to_owned()])
}

/// An `auth:` block of `type: oidc` at `indent` spaces; each field may span
/// lines (indented relative to itself).
fn auth_block(indent: usize, fields: &[String]) -> String {
    configs::indent(indent, ["auth:", "  type: oidc"]) + &configs::indent(indent + 2, fields)
}

/// Login mode at `issuer` with the provider's client and `scopes: [openid,
/// profile, email]` (an `extra` `scopes:` line replaces that), plus `extra`.
fn login_auth(indent: usize, issuer: &str, extra: &[&str]) -> String {
    let mut fields = vec![
        format!("issuer: \"{issuer}\""),
        format!("client_id: {IDP_CLIENT_ID}"),
        format!("client_secret: {IDP_CLIENT_SECRET}"),
        "scopes: [openid, profile, email]".to_owned(),
    ];
    if extra.iter().any(|l| l.starts_with("scopes:")) {
        fields.retain(|f| !f.starts_with("scopes:"));
    }
    fields.extend(extra.iter().map(|l| (*l).to_owned()));
    auth_block(indent, &fields)
}

/// One rule for `host`: `auth` (an `auth:` block at 8 spaces), then `paths`
/// (from [`path`], or empty).
fn rule(host: &str, auth: &str, paths: &str) -> String {
    format!("{}{auth}{paths}", rule_head(host))
}

/// `paths:` with one path whose own auth is `auth` (an `auth:` block at 12
/// spaces).
fn path(path: &str, auth: &str) -> String {
    configs::paths(&[configs::path_entry(path, "app")]) + auth
}

// ---------------------------------------------------------------------------
// The provider, the stack, and a browser

struct World(IdpStack);

impl Deref for World {
    type Target = IdpStack;

    fn deref(&self) -> &IdpStack {
        &self.0
    }
}

impl World {
    /// The provider (with `env`) and a stack with `rules(issuer)`; the
    /// provider's client accepts `http://app.example.com:<envoy>/oauth2/callback`.
    /// Returns once `/` on the app host is sent to the provider's login
    /// (until configured the provider answered 503, discovery included).
    async fn start(env: &[(&str, &str)], rules: impl Fn(&str) -> String) -> Self {
        let world = Self(IdpStack::start(env, HOST, |issuer| config(&rules(issuer))).await);
        world.await_discovery("/").await;
        world
    }

    async fn await_discovery(&self, target: &str) {
        self.eventually(
            &format!("a navigation to {target} is sent to the provider (discovery)"),
            || async { self.navigate(target, None).await.status == 302 },
        )
        .await;
    }

    /// Polls `check` until it holds; fails after [`SETTLE`].
    async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + SETTLE;
        while !check().await {
            assert!(
                Instant::now() < deadline,
                "timed out ({SETTLE:?}) waiting until {what}\n{}",
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// `request()` again while it answers 503 (a route still discovering its
    /// provider), for up to [`SETTLE`]; the first other answer.
    async fn settle<F, Fut>(&self, what: &str, mut request: F) -> Response
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Response>,
    {
        let deadline = Instant::now() + SETTLE;
        loop {
            let response = request().await;
            if response.status != 503 {
                return response;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still 503 after {SETTLE:?}: {}\n{}",
                response.text(),
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// A top-level navigation, with the jar's cookies if any.
    async fn navigate(&self, target: &str, jar: Option<&Jar>) -> Response {
        let cookies = jar.map(Jar::header).unwrap_or_default();
        self.browser().navigate(target, &[&cookies]).await
    }

    /// An API call (`accept: application/json`) with the jar's cookies.
    async fn get_json(&self, target: &str, jar: &Jar) -> Response {
        let cookies = jar.header();
        self.app_get(target, &[ACCEPT_JSON, ("cookie", &cookies)])
            .await
    }

    /// A navigation to `target` without a session: the 302 to the
    /// provider's `/auth` and the login-state cookie.
    async fn start_login(&self, target: &str) -> (Url, SetCookie) {
        let login = self.browser().begin(target).await;
        let (response, authorize) = (login.redirect, login.authorize);
        assert_eq!(
            &authorize[..url::Position::AfterPath],
            format!("{}/auth", self.idp.url),
            "the provider's authorization_endpoint"
        );
        let login: Vec<SetCookie> = set_cookies(&response)
            .into_iter()
            .filter(|c| c.name.starts_with(LOGIN_COOKIE_PREFIX) && !c.deletes())
            .collect();
        let [cookie] = <[SetCookie; 1]>::try_from(login)
            .unwrap_or_else(|c| panic!("one login-state cookie expected: {c:?}"));
        (authorize, cookie)
    }

    /// The whole login of `account` from a navigation to `target`; the
    /// callback's answer, whatever it is.
    async fn attempt(&self, target: &str, account: &'static str) -> Response {
        let (authorize, login_cookie) = self.start_login(target).await;
        let back = self
            .at_provider(&authorize, AtProvider::SignIn(account))
            .await;
        assert_eq!(back.host_str(), Some(HOST), "back to the app: {back}");
        assert_eq!(back.path(), CALLBACK, "back to the callback: {back}");
        let cookie = format!("{}={}", login_cookie.name, login_cookie.value);
        self.browser().callback(&back, &[&cookie]).await
    }

    /// A successful login of `account` from `target`; the browser's jar (the
    /// session cookie).
    async fn log_in(&self, target: &str, account: &'static str) -> Jar {
        let response = self.attempt(target, account).await;
        self.logged_in(&response, target, account)
    }

    /// The audit events (JSON lines of the `audit` target) so far.
    fn audit(&self) -> Vec<Value> {
        self.stack.authz.audit_events()
    }

    /// The reasons of the `denied` audit events for `path`, in order.
    fn denial_reasons(&self, path: &str) -> Vec<String> {
        self.audit()
            .iter()
            .filter(|e| e["event"] == "denied" && e["path"] == path)
            .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The last denial of `path` was the policy's (`not_allowed`).
    #[track_caller]
    fn assert_not_allowed(&self, path: &str, what: &str) {
        let reasons = self.denial_reasons(path);
        assert_eq!(
            reasons.last().map(String::as_str),
            Some("not_allowed"),
            "{what}: the audit reason of the last denial of {path} (all: {reasons:?})\n{}",
            self.logs()
        );
    }

    /// Requests served per endpoint by the provider (0 when never).
    async fn provider_count(&self, endpoint: &str) -> u64 {
        self.idp.stats().await.get(endpoint).copied().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------
// Assertions

fn upstream_answered(response: &Response) -> bool {
    response.status == 200
        && serde_json::from_slice::<Value>(&response.body).is_ok_and(|v| v["upstream"] == true)
}

#[track_caller]
fn assert_upstream_ok(world: &World, response: &Response, what: &str) {
    assert!(
        upstream_answered(response),
        "{what}: want 200 from the upstream, got {} {:?}: {}\n{}",
        response.status,
        response.headers,
        response.text(),
        world.logs()
    );
}

/// A 403 JSON denial (an API call): `{"status":403,...}`, no redirect.
#[track_caller]
fn assert_forbidden_json(world: &World, response: &Response, what: &str) {
    assert_eq!(
        response.status,
        403,
        "{what}: want 403, got {} (Location {:?}): {}\n{}",
        response.status,
        response.header("location"),
        response.text(),
        world.logs()
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{what}: a JSON denial: {:?}",
        response.headers
    );
    let body: Value = serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "{what}: the 403 body is not JSON ({e}): {}",
            response.text()
        )
    });
    assert_eq!(body["status"], 403, "{what}: {body}");
    assert!(response.header("location").is_none(), "{what}: no redirect");
}

/// A 403 HTML page for a navigation, offering `/oauth2/logout` (to sign in
/// as someone else) — not a 302 to the provider, which would loop: the
/// provider still knows the user and sends them straight back.
#[track_caller]
fn assert_forbidden_page(world: &World, response: &Response, what: &str) {
    assert!(
        response.status != 302,
        "{what}: a redirect to {:?} where a 403 page belongs (a login loop: the provider signs the same user in again)\n{}",
        response.header("location"),
        world.logs()
    );
    assert_eq!(
        response.status,
        403,
        "{what}: want a 403 page, got {}: {}\n{}",
        response.status,
        response.text(),
        world.logs()
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html")),
        "{what}: an HTML page for a navigation: {:?}",
        response.headers
    );
    assert!(
        response.text().contains("/oauth2/logout"),
        "{what}: the 403 page links to /oauth2/logout: {}",
        response.text()
    );
    assert!(response.header("location").is_none(), "{what}: no redirect");
}

fn strings(value: &Value) -> Vec<String> {
    let mut out: Vec<String> = value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// Tests

/// One host: `/` needs any login, `/admin` the same client with `allow:
/// {groups: [admins]}`. bob's session from `/` is a valid login for
/// `/admin` too, so `/admin` refuses him with 403 (JSON for an API call, a
/// page with a logout link for a navigation) instead of sending him to log
/// in again; alice gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_another_route_is_held_to_this_routes_allow() {
    let world = World::start(&[], |issuer| {
        rule(
            HOST,
            &login_auth(8, issuer, &[]),
            &path(
                "/admin",
                &login_auth(12, issuer, &["allow: { groups: [admins] }"]),
            ),
        )
    })
    .await;
    world.await_discovery("/admin").await;

    let bob = world.log_in("/", "bob").await;
    assert_upstream_ok(
        &world,
        &world.get_json("/", &bob).await,
        "bob on / (no allow)",
    );

    let denied = world.get_json("/admin", &bob).await;
    assert_forbidden_json(
        &world,
        &denied,
        "bob (groups [staff]) calling /admin (allow groups [admins]) with his session from /",
    );
    world.assert_not_allowed("/admin", "bob's API call to /admin");

    let page = world.navigate("/admin", Some(&bob)).await;
    assert_forbidden_page(
        &world,
        &page,
        "bob (groups [staff]) navigating to /admin (allow groups [admins]) with his session from /",
    );
    world.assert_not_allowed("/admin", "bob's navigation to /admin");
    assert!(
        world
            .stack
            .upstream_requests()
            .iter()
            .all(|r| r.path() != "/admin"),
        "bob's request to /admin reached the upstream: {:?}",
        world.stack.upstream_requests()
    );

    let alice = world.log_in("/admin", "alice").await;
    assert_upstream_ok(
        &world,
        &world.get_json("/admin", &alice).await,
        "alice (groups [admins, staff]) calling /admin",
    );
    assert_upstream_ok(
        &world,
        &world.navigate("/admin", Some(&alice)).await,
        "alice navigating to /admin",
    );
    assert_upstream_ok(
        &world,
        &world.get_json("/", &alice).await,
        "alice's session from /admin on /",
    );
}

/// `allow: {domains: [example.com]}` counts only verified addresses: carol
/// (carol@example.com, email_verified false) completes the login at the
/// provider but never reaches the upstream; alice does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_email_counts_for_no_domain() {
    let world = World::start(&[], |issuer| {
        rule(
            HOST,
            &login_auth(8, issuer, &["allow: { domains: [example.com] }"]),
            "",
        )
    })
    .await;
    let exchanges = world.provider_count("token").await;
    let upstream_before = world.stack.upstream_requests().len();

    let response = world.attempt("/carol", "carol").await;
    assert_eq!(
        world.provider_count("token").await,
        exchanges + 1,
        "carol's code is exchanged (the login completed at the provider, so a denial is the policy's)\n{}",
        world.logs()
    );
    match response.status {
        // Refused at the callback: an error page, no session.
        403 => {
            assert!(
                response
                    .header("content-type")
                    .is_some_and(|ct| ct.starts_with("text/html")),
                "carol's refused callback is an error page: {:?}",
                response.headers
            );
            assert!(
                new_session(&response).is_none(),
                "a refused callback sets no session: {:?}",
                response.headers
            );
        }
        // A session, refused on use.
        302 => {
            let mut jar = Jar::default();
            jar.update(&response);
            let back = response.header("location").unwrap_or("/carol").to_owned();
            let api = world.get_json(&back, &jar).await;
            assert_forbidden_json(
                &world,
                &api,
                "carol (unverified carol@example.com) under allow domains [example.com]",
            );
            let page = world.navigate(&back, Some(&jar)).await;
            assert_forbidden_page(
                &world,
                &page,
                "carol (unverified carol@example.com) navigating under allow domains [example.com]",
            );
        }
        other => panic!(
            "carol's callback: want 403 (or a session that is then refused), got {other}: {}\n{}",
            response.text(),
            world.logs()
        ),
    }
    let reached: Vec<_> = world.stack.upstream_requests()[upstream_before..].to_vec();
    assert!(
        reached.is_empty(),
        "carol (email_verified: false) reached the upstream: {reached:?}\n{}",
        world.logs()
    );

    let alice = world.log_in("/alice", "alice").await;
    assert_upstream_ok(
        &world,
        &world.get_json("/alice", &alice).await,
        "alice (verified alice@example.com) under allow domains [example.com]",
    );
}

/// `groups_ttl: 2s`: alice's groups are taken from the session within the
/// TTL, re-read from the provider (refresh token + userinfo) after it, and
/// once `admins` is removed at the provider her next re-read is a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_removed_at_the_provider_are_denied_after_groups_ttl() {
    let world = World::start(&[], |issuer| {
        rule(
            HOST,
            &login_auth(
                8,
                issuer,
                &[
                    "scopes: [openid, profile, email, offline_access]",
                    "groups_ttl: 2s",
                    "allow: { groups: [admins] }",
                ],
            ),
            "",
        )
    })
    .await;

    // An upper bound on the age of the groups read during the login.
    let started = Instant::now();
    let mut jar = world.log_in("/", "alice").await;
    let userinfo_at_login = world.provider_count("userinfo").await;
    let tokens_at_login = world.provider_count("token").await;
    let first = world.get_json("/", &jar).await;
    let within_ttl = started.elapsed() < Duration::from_millis(1500);
    assert_upstream_ok(&world, &first, "alice (admins) right after her login");
    if within_ttl {
        assert_eq!(
            (
                world.provider_count("token").await,
                world.provider_count("userinfo").await
            ),
            (tokens_at_login, userinfo_at_login),
            "within groups_ttl the groups come from the session, not the provider"
        );
    }
    jar.update(&first);

    // Past the TTL the groups are read again, and still hold.
    let deadline = Instant::now() + SETTLE;
    loop {
        let response = world.get_json("/", &jar).await;
        assert_upstream_ok(
            &world,
            &response,
            "alice (still admins at the provider) while her groups age past groups_ttl",
        );
        jar.update(&response);
        if world.provider_count("userinfo").await > userinfo_at_login {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's groups were not re-read from the provider (userinfo) within {SETTLE:?} with groups_ttl 2s: {:?}\n{}",
            world.idp.stats().await,
            world.logs()
        );
        tokio::time::sleep(POLL).await;
    }
    assert!(
        world.provider_count("token").await > tokens_at_login,
        "the re-read uses the refresh token (a token request): {:?}",
        world.idp.stats().await
    );

    world.idp.set_groups("alice", &["staff"]).await;
    let userinfo_before = world.provider_count("userinfo").await;
    let deadline = Instant::now() + SETTLE;
    let denied = loop {
        let response = world.get_json("/", &jar).await;
        match response.status {
            200 => {
                assert_upstream_ok(&world, &response, "alice, until her groups are re-read");
                jar.update(&response);
            }
            403 => break response,
            other => panic!(
                "alice after admins was removed at the provider: want 200 (until the TTL) then 403, got {other}: {}\n{}",
                response.text(),
                world.logs()
            ),
        }
        assert!(
            Instant::now() < deadline,
            "alice still gets 200 {SETTLE:?} after `admins` was removed at the provider (groups_ttl 2s)\n{}",
            world.logs()
        );
        tokio::time::sleep(POLL).await;
    };
    assert_forbidden_json(
        &world,
        &denied,
        "alice after `admins` was removed at the provider and groups_ttl passed",
    );
    assert!(
        world.provider_count("userinfo").await > userinfo_before,
        "the 403 came without reading alice's new groups from the provider: {:?}",
        world.idp.stats().await
    );
    world.assert_not_allowed("/", "alice without admins (not a failed re-read)");
}

/// A reload from `allow: {groups: [staff]}` to `{groups: [admins]}` applies
/// to bob's existing session at once: 403, not a new login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_tightens_allow_applies_to_existing_sessions() {
    let rules = |issuer: &str, group: &str| {
        let allow = format!("allow: {{ groups: [{group}] }}");
        rule(HOST, &login_auth(8, issuer, &[&allow]), "")
    };
    let world = World::start(&[], |issuer| rules(issuer, "staff")).await;
    let bob = world.log_in("/", "bob").await;
    assert_upstream_ok(
        &world,
        &world.get_json("/", &bob).await,
        "bob (staff) under allow groups [staff]",
    );

    world
        .stack
        .authz
        .write_config(&config(&rules(&world.idp.url, "admins")));
    let mut admin = AdminClient::connect(format!("http://{}", world.stack.authz.admin_addr()))
        .await
        .expect("connect to the admin API");
    let reply = admin
        .reload(ReloadRequest {})
        .await
        .expect("admin Reload")
        .into_inner();
    assert!(
        reply.ok,
        "the reload to allow groups [admins] failed: {:?}\n{}",
        reply.errors,
        world.logs()
    );

    let denied = world
        .settle("bob's session after the reload", || {
            world.get_json("/", &bob)
        })
        .await;
    assert_forbidden_json(
        &world,
        &denied,
        "bob (staff) with his old session after the reload to allow groups [admins]",
    );
    world.assert_not_allowed("/", "bob after the reload");
    let page = world
        .settle("bob's navigation after the reload", || {
            world.navigate("/", Some(&bob))
        })
        .await;
    assert_forbidden_page(
        &world,
        &page,
        "bob navigating with his old session after the reload to allow groups [admins]",
    );

    world.await_discovery("/").await;
    let alice = world.log_in("/", "alice").await;
    assert_upstream_ok(
        &world,
        &world.get_json("/", &alice).await,
        "alice (admins) after the reload",
    );
}

/// The X-Connect-Token the upstream receives carries the user's groups (as
/// the provider said) and `aud` = the request's host without the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_token_carries_groups_and_the_host_as_audience() {
    let connect = format!("connect: {{ enabled: true, jwt: {{ secret: {CONNECT_SECRET} }} }}");
    let world = World::start(&[], |issuer| {
        rule(HOST, &login_auth(8, issuer, &[&connect]), "")
    })
    .await;
    let cases: [(&'static str, &[&str]); 2] =
        [("alice", &["admins", "staff"]), ("bob", &["staff"])];
    for (account, groups) in cases {
        let target = format!("/whoami/{account}");
        let jar = world.log_in(&target, account).await;
        let response = world.get_json(&target, &jar).await;
        assert_upstream_ok(&world, &response, &format!("{account} on {target}"));
        let requests = world.stack.upstream_requests();
        let seen = requests.last().expect("a request reached the upstream");
        assert_eq!(seen.target, target);
        let token = seen
            .header("x-connect-token")
            .unwrap_or_else(|| panic!("{account}: no X-Connect-Token upstream: {seen:?}"));
        let payload = idp::jwt_payload(token);
        let verified = idp::verify_with_jose(token, CONNECT_SECRET);
        assert_eq!(verified, payload, "jose verifies the same payload");
        assert_eq!(payload["sub"], account, "{payload}");
        assert_eq!(
            strings(&payload["groups"]),
            groups.iter().map(|g| (*g).to_owned()).collect::<Vec<_>>(),
            "{account}: X-Connect-Token `groups` (an array of the provider's groups): {payload}"
        );
        assert_eq!(
            payload["aud"],
            HOST,
            "{account}: X-Connect-Token `aud` is the request host without Envoy's port (Host was {}): {payload}",
            world.app()
        );
    }
}

/// API mode (issuer, no client_id) with `audience` and `allow: {claims:
/// {scope: api:read}}`: the provider's JWT access tokens (client_credentials
/// with a resource indicator) pass when `api:read` is one of the words of
/// their space-separated `scope`, and are 403 otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_mode_allow_claims_holds_for_a_word_of_scope() {
    let mut idp = Idp::spawn(&[("IDP_JWT_ACCESS_TOKENS", "true")]).await;
    // No login here: the redirect URI is never used.
    idp.configure(&["http://unused.example.com/oauth2/callback".to_owned()])
        .await;
    let fields = [
        format!("issuer: \"{}\"", idp.url),
        format!("audience: [\"{API_RESOURCE}\"]"),
        "allow:\n  claims:\n    scope: api:read".to_owned(),
    ];
    let stack = Stack::start(&config(&rule(API_HOST, &auth_block(8, &fields), ""))).await;
    let world = World(IdpStack::of(idp, stack, HOST));

    let read = world.idp.client_credentials(API_RESOURCE, "api:read").await;
    let write = world
        .idp
        .client_credentials(API_RESOURCE, "api:write")
        .await;
    let both = world
        .idp
        .client_credentials(API_RESOURCE, "api:write api:read")
        .await;
    for (token, scope) in [(&read, "api:read"), (&write, "api:write")] {
        let payload = idp::jwt_payload(token);
        assert_eq!(payload["scope"], scope, "the provider's token: {payload}");
        assert_eq!(payload["aud"], API_RESOURCE, "{payload}");
    }
    let scope = idp::jwt_payload(&both)["scope"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut words: Vec<&str> = scope.split(' ').collect();
    words.sort_unstable();
    assert_eq!(words, ["api:read", "api:write"], "a token with two scopes");

    let world = &world;
    let call = move |token: String| async move {
        world
            .stack
            .get_auth(API_HOST, "/api/items", Some(&format!("Bearer {token}")))
            .await
    };
    let ok = world
        .settle("API mode with a scope api:read token", || {
            call(read.clone())
        })
        .await;
    assert_upstream_ok(world, &ok, "a token with scope `api:read`");
    assert_upstream_ok(
        world,
        &call(both.clone()).await,
        "a token with scope `api:write api:read` (api:read is one of the words)",
    );
    let refused = call(write.clone()).await;
    assert_forbidden_json(
        world,
        &refused,
        "a token with scope `api:write` only, under allow claims scope api:read",
    );
    world.assert_not_allowed("/api/items", "the api:write token");
}

/// API mode without `audience` would take any token the issuer signs, for
/// any API: `ingress-authz validate` refuses it (exit 1, naming `audience`),
/// with or without `allow`; the same config with `audience` is valid.
#[test]
fn api_mode_without_audience_fails_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let validate = |name: &str, fields: &[String]| {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, config(&rule(API_HOST, &auth_block(8, fields), "")))
            .expect("write config");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ingress-authz"))
            .arg("validate")
            .arg("--config")
            .arg(&file)
            .output()
            .expect("run ingress-authz validate");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.code(), format!("{stdout}{stderr}"), stderr)
    };
    let issuer = "issuer: \"https://idp.example.com\"".to_owned();
    let allow = "allow:\n  claims:\n    scope: api:read".to_owned();
    let audience = format!("audience: [\"{API_RESOURCE}\"]");

    for (name, fields) in [
        ("no-audience", vec![issuer.clone()]),
        (
            "no-audience-with-allow",
            vec![issuer.clone(), allow.clone()],
        ),
    ] {
        let (code, output, stderr) = validate(name, &fields);
        assert_eq!(
            code,
            Some(1),
            "{name}: API mode without `audience` must fail validate with exit 1:\n{output}"
        );
        assert!(
            stderr.contains("audience"),
            "{name}: the error names `audience`:\n{output}"
        );
    }
    let (code, output, _) = validate("with-audience", &[issuer, audience, allow]);
    assert_eq!(
        code,
        Some(0),
        "the same API-mode config with `audience` is valid:\n{output}"
    );
}
