//! The authorization policy (`allow:` on every auth block) through real
//! Envoy: who may pass once authenticated. Each kind of the block (`users`,
//! `logins`, `emails`, `domains`, `groups`, `claims`) allows and denies;
//! kinds are ANDed, entries of one list ORed. Failing the policy is 403 (the
//! identity is known, it is just not allowed); missing or bad credentials
//! stay 401. GitHub's groups (orgs and `org/team` slugs) come from the fake
//! provider's `/user/orgs` and `/user/teams` (tests/common/providers.rs).

use serde_json::{Value, json};
use url::Url;

use crate::common::configs::{self, rule};
use crate::common::creds::{basic, bearer, claims, hs256};
use crate::common::expect::{BASIC_CHALLENGE, INVALID_TOKEN, assert_401, assert_upstream_ok};
use crate::common::idp::{NAVIGATE, new_session};
use crate::common::login::{self, Browser, CALLBACK, Login, Provider};
use crate::common::providers::{FakeProvider, GITHUB_ACME_ID, Kind, github_org, github_team};
use crate::common::{Request, Response, Stack};

const SESSION_SECRET: &str = "policy-test-session-secret-0123456789abcdef";
const TARGET: &str = "/dashboard?tab=1";
const JSON: &[(&str, &str)] = &[("accept", "application/json")];

/// A 403 from ingress-authz for a client asking for JSON: the identity was
/// accepted, the policy was not met.
#[track_caller]
fn assert_403_json(response: &Response, what: &str) {
    assert_eq!(response.status, 403, "{what}: {}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/json; charset=utf-8"),
        "{what}: {:?}",
        response.headers
    );
    let body = response.json();
    assert_eq!(body["status"], 403, "{what}: {body}");
    assert_eq!(body["error"], "Forbidden", "{what}: {body}");
    assert!(body["message"].is_string(), "{what}: {body}");
    assert_ne!(body["upstream"], true, "{what}: {body}");
}

fn config(rules: &[String]) -> String {
    configs::with_session(SESSION_SECRET, &[], rules)
}

// ---------------------------------------------------------------------------
// basic

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_allow_users_admits_listed_users_only() {
    let stack = Stack::start(&config(&[rule(
        "basic.example.com",
        "type: basic\nbasic:\n  users:\n    - username: alice\n      password: alice-pass-123\n    - username: bob\n      password: bob-pass-456\nallow:\n  users: [alice]",
    )]))
    .await;
    let get = async |target: &str, authorization: Option<String>| {
        let mut request =
            Request::get("basic.example.com", target).header("accept", "application/json");
        if let Some(value) = authorization {
            request = request.header("authorization", &value);
        }
        stack.send(request).await
    };

    assert_upstream_ok(&get("/alice", Some(basic("alice", "alice-pass-123"))).await);
    // bob authenticates, but is not allowed.
    assert_403_json(
        &get("/bob", Some(basic("bob", "bob-pass-456"))).await,
        "bob, right password",
    );
    // Credentials first: a wrong password or none is still 401.
    assert_401(
        &get("/bob-wrong", Some(basic("bob", "alice-pass-123"))).await,
        BASIC_CHALLENGE,
    );
    assert_401(
        &get("/alice-wrong", Some(basic("alice", "bob-pass-456"))).await,
        BASIC_CHALLENGE,
    );
    assert_401(&get("/none", None).await, BASIC_CHALLENGE);

    assert_eq!(stack.upstream_targets(), ["/alice"]);
}

// ---------------------------------------------------------------------------
// bearer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_allow_users_matches_token_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens_file = dir.path().join("tokens");
    // `name token`; a line with one field is an unnamed token.
    std::fs::write(&tokens_file, "ci2 tok-2\ntok-3\n").expect("write tokens_file");
    let stack = Stack::start(&config(&[
        rule(
            "bearer.example.com",
            "type: bearer\nbearer:\n  tokens:\n    - plain-token\n    - {name: ci, token: \"ci-token-xyz\"}\nallow:\n  users: [ci]",
        ),
        rule(
            "file.example.com",
            &format!(
                "type: bearer\nbearer:\n  tokens_file: \"{}\"\nallow:\n  users: [ci2]",
                tokens_file.display()
            ),
        ),
    ]))
    .await;
    let get = async |host: &str, target: &str, token: &str| {
        let authorization = bearer(token);
        stack
            .get(host, target, &[("authorization", &authorization), JSON[0]])
            .await
    };

    assert_upstream_ok(&get("bearer.example.com", "/ci", "ci-token-xyz").await);
    assert_403_json(
        &get("bearer.example.com", "/plain", "plain-token").await,
        "unnamed token",
    );
    assert_401(
        &get("bearer.example.com", "/unknown", "not-a-token").await,
        INVALID_TOKEN,
    );
    // The token's name is not a token.
    assert_401(
        &get("bearer.example.com", "/name", "ci").await,
        INVALID_TOKEN,
    );
    let none = stack.get("bearer.example.com", "/none", JSON).await;
    assert_401(&none, "Bearer");

    assert_upstream_ok(&get("file.example.com", "/tok-2", "tok-2").await);
    assert_403_json(
        &get("file.example.com", "/tok-3", "tok-3").await,
        "tokens_file: unnamed token",
    );
    assert_401(&get("file.example.com", "/ci2", "ci2").await, INVALID_TOKEN);
    // Tokens of another route are not this route's tokens.
    assert_401(
        &get("file.example.com", "/other-route", "ci-token-xyz").await,
        INVALID_TOKEN,
    );

    assert_eq!(stack.upstream_targets(), ["/ci", "/tok-2"]);
}

// ---------------------------------------------------------------------------
// jwt

const JWT_SECRET: &str = "policy-jwt-secret-0123456789";
const ISSUER: &str = "ingress-demo";
const AUDIENCE: &str = "api.example.com";

/// A `type: jwt` rule (HS256, issuer and audience checked) with `jwt_extra`
/// lines under `jwt:` and `allow` lines under `allow:`.
fn jwt_rule(host: &str, jwt_extra: &[&str], allow: &[&str]) -> String {
    let mut auth = format!(
        "type: jwt\nsecret: {JWT_SECRET}\njwt:\n  issuer: {ISSUER}\n  audience: {AUDIENCE}\n"
    );
    for line in jwt_extra {
        auth.push_str(&format!("  {line}\n"));
    }
    auth.push_str("allow:\n");
    for line in allow {
        auth.push_str(&format!("  {line}\n"));
    }
    rule(host, &auth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_allow_users_claims_and_groups() {
    let stack = Stack::start(&config(&[
        jwt_rule("users.example.com", &[], &["users: [alice]"]),
        jwt_rule("tenant.example.com", &[], &["claims: {tenant: acme}"]),
        jwt_rule("scope.example.com", &[], &["claims: {scope: read}"]),
        jwt_rule("groups.example.com", &[], &["groups: [admins]"]),
        jwt_rule(
            "realm.example.com",
            &["groups_claim: realm_access.roles"],
            &["groups: [admins]"],
        ),
    ]))
    .await;
    // Valid claims for the configured issuer and audience, with `patch`.
    let token = |patch: Value| {
        let mut c = claims(ISSUER, AUDIENCE);
        let object = c.as_object_mut().unwrap();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                object.remove(k);
            } else {
                object.insert(k.clone(), v.clone());
            }
        }
        hs256(JWT_SECRET, &c)
    };
    let send = async |host: &str, target: &str, jwt: String| {
        let authorization = bearer(&jwt);
        stack
            .get(host, target, &[("authorization", &authorization), JSON[0]])
            .await
    };
    let allowed = async |host: &str, target: &str, patch: Value| {
        let response = send(host, target, token(patch.clone())).await;
        assert_eq!(
            response.status,
            200,
            "{host}{target} with {patch}: {}",
            response.text()
        );
        assert_upstream_ok(&response);
    };
    let denied = async |host: &str, target: &str, patch: Value| {
        let response = send(host, target, token(patch.clone())).await;
        assert_403_json(&response, &format!("{host}{target} with {patch}"));
    };

    // users: the `sub`.
    allowed("users.example.com", "/alice", json!({"sub": "alice"})).await;
    denied("users.example.com", "/bob", json!({"sub": "bob"})).await;
    // A bad token is still 401, whatever its claims.
    let forged = send(
        "users.example.com",
        "/forged",
        hs256("not-the-secret", &{
            let mut c = claims(ISSUER, AUDIENCE);
            c["sub"] = json!("alice");
            c
        }),
    )
    .await;
    assert_401(&forged, INVALID_TOKEN);
    let none = stack.get("users.example.com", "/none", JSON).await;
    assert_eq!(none.status, 401, "{}", none.text());

    // claims: equal, or an array holding the value.
    allowed("tenant.example.com", "/equal", json!({"tenant": "acme"})).await;
    allowed(
        "tenant.example.com",
        "/array",
        json!({"tenant": ["other", "acme"]}),
    )
    .await;
    denied("tenant.example.com", "/other", json!({"tenant": "other"})).await;
    denied("tenant.example.com", "/missing", json!({})).await;
    denied(
        "tenant.example.com",
        "/array-without",
        json!({"tenant": ["other", "acme-corp"]}),
    )
    .await;

    // `scope`: also a space-separated string.
    allowed(
        "scope.example.com",
        "/read-write",
        json!({"scope": "read write"}),
    )
    .await;
    denied("scope.example.com", "/write", json!({"scope": "write"})).await;
    denied(
        "scope.example.com",
        "/readonly",
        json!({"scope": "readonly"}),
    )
    .await;

    // groups: the `groups` claim...
    allowed(
        "groups.example.com",
        "/admins",
        json!({"groups": ["admins"]}),
    )
    .await;
    denied("groups.example.com", "/staff", json!({"groups": ["staff"]})).await;
    denied("groups.example.com", "/none", json!({})).await;
    // ...or the configured (dotted) claim.
    allowed(
        "realm.example.com",
        "/realm-admins",
        json!({"realm_access": {"roles": ["offline_access", "admins"]}}),
    )
    .await;
    denied(
        "realm.example.com",
        "/realm-staff",
        json!({"realm_access": {"roles": ["staff"]}}),
    )
    .await;
    // With `groups_claim` set, `groups` is not where groups are read.
    denied(
        "realm.example.com",
        "/top-level",
        json!({"groups": ["admins"]}),
    )
    .await;

    assert_eq!(
        stack.upstream_targets(),
        [
            "/alice",
            "/equal",
            "/array",
            "/read-write",
            "/admins",
            "/realm-admins"
        ]
    );
}

// ---------------------------------------------------------------------------
// GitHub oauth2: driving the login

/// An oauth2 rule for `host` against the GitHub `fake`, `allow` lines under
/// `allow:` (none: no allow block).
fn github_auth(fake: &FakeProvider, allow: &[&str]) -> String {
    let mut auth = format!(
        "type: oauth2\noauth2:\n  provider: github\n  client_id: {}\n  client_secret: {}\n",
        fake.client_id(),
        fake.client_secret()
    );
    for line in fake.endpoint_yaml() {
        auth.push_str(&format!("  {line}\n"));
    }
    if !allow.is_empty() {
        auth.push_str("allow:\n");
        for line in allow {
            auth.push_str(&format!("  {line}\n"));
        }
    }
    auth
}

fn github_rule(host: &str, fake: &FakeProvider, allow: &[&str]) -> String {
    rule(host, &github_auth(fake, allow))
}

fn navigation(host: &str, target: &str) -> Request {
    NAVIGATE
        .iter()
        .fold(Request::get(host, target), |r, (n, v)| r.header(n, v))
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The scopes of an authorize URL (GitHub: space or comma separated).
fn scopes(url: &Url) -> Vec<String> {
    query(url, "scope")
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A navigation without a session: the 302 to the fake's authorize page.
async fn begin_login(stack: &Stack, fake: &FakeProvider, host: &str, target: &str) -> Login {
    let login = Browser::new(stack, host, NAVIGATE).begin(target).await;
    let location = login.redirect.header("location").expect("Location");
    assert_eq!(
        login.authorize.port(),
        Some(fake.addr().port()),
        "{location}"
    );
    assert_eq!(login.authorize.path(), fake.kind().endpoints().authorize);
    login
}

/// The consent screen, approved; then the browser back at the callback.
async fn return_from_provider(
    stack: &Stack,
    fake: &FakeProvider,
    login: &Login,
    host: &str,
) -> Response {
    let back = fake.sign_in(&login.authorize).await;
    assert_eq!(back.path(), CALLBACK, "{back}");
    Browser::new(stack, host, NAVIGATE)
        .callback(&back, &[&login.cookie])
        .await
}

/// `ingress_authz=...` from a successful callback.
#[track_caller]
fn session_of(stack: &Stack, fake: &FakeProvider, callback: &Response, target: &str) -> String {
    let session = login::assert_session(stack, callback, target, &fake.rejections());
    format!("{}={}", session.name, session.value)
}

/// A whole login on `host`, which must succeed; the session cookie.
async fn log_in(stack: &Stack, fake: &FakeProvider, host: &str) -> String {
    let login = begin_login(stack, fake, host, TARGET).await;
    let callback = return_from_provider(stack, fake, &login, host).await;
    session_of(stack, fake, &callback, TARGET)
}

async fn as_user(stack: &Stack, host: &str, target: &str, session: &str, accept: &str) -> Response {
    stack
        .send(
            Request::get(host, target)
                .header("accept", accept)
                .header("cookie", session),
        )
        .await
}

/// Logs in on `host` and expects the upstream to be reached.
async fn assert_allowed(stack: &Stack, fake: &FakeProvider, host: &str) {
    let session = log_in(stack, fake, host).await;
    let response = as_user(stack, host, TARGET, &session, "application/json").await;
    assert_eq!(response.status, 200, "{host}: {}", response.text());
    assert_upstream_ok(&response);
}

/// Logs in on `host` and expects a 403 — from the callback, or for the
/// request with the session it made — and the upstream never reached.
async fn assert_denied(stack: &Stack, fake: &FakeProvider, host: &str, what: &str) {
    let before = stack.upstream_requests().len();
    let login = begin_login(stack, fake, host, TARGET).await;
    let callback = return_from_provider(stack, fake, &login, host).await;
    match callback.status {
        302 => {
            let session = session_of(stack, fake, &callback, TARGET);
            let response = as_user(stack, host, TARGET, &session, "application/json").await;
            assert_403_json(&response, &format!("{what}: with the session"));
        }
        403 => {
            // Whatever cookie it left behind does not get the user in.
            if let Some(session) = new_session(&callback) {
                let session = format!("{}={}", session.name, session.value);
                let response = as_user(stack, host, TARGET, &session, "application/json").await;
                assert_403_json(&response, &format!("{what}: with the callback's cookie"));
            }
        }
        other => panic!(
            "{what}: callback {other}, expected 302 or 403: {}\n{}",
            callback.text(),
            stack.debug_logs()
        ),
    }
    assert!(
        fake.rejections().is_empty(),
        "{what}: the fake refused: {:?}",
        fake.rejections()
    );
    assert_eq!(
        stack.upstream_requests().len(),
        before,
        "{what}: the upstream was reached"
    );
}

// ---------------------------------------------------------------------------
// GitHub oauth2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_allow_groups_uses_orgs_and_team_slugs_and_asks_for_read_org() {
    let fake = FakeProvider::start(Kind::Github).await;
    let stack = Stack::start(&config(&[
        github_rule("team.example.com", &fake, &["groups: [acme/platform]"]),
        github_rule("org.example.com", &fake, &["groups: [acme]"]),
        github_rule("plain.example.com", &fake, &[]),
    ]))
    .await;

    // `read:org` is asked for by every GitHub login of a config whose
    // policies read groups: a session made on a route without groups can
    // then still show its private memberships on a route with them.
    for host in ["team.example.com", "org.example.com", "plain.example.com"] {
        let login = begin_login(&stack, &fake, host, TARGET).await;
        let scopes = scopes(&login.authorize);
        assert!(
            scopes.iter().any(|s| s == "read:org"),
            "{host}: scope {scopes:?} in {}",
            login.authorize
        );
        assert!(
            scopes.iter().any(|s| s == "user:email"),
            "{host}: the default scope stays: {scopes:?}"
        );
    }
    // A config without groups in any policy never asks for it.
    let without = Stack::start(&config(&[github_rule("plain.example.com", &fake, &[])])).await;
    let login = begin_login(&without, &fake, "plain.example.com", TARGET).await;
    let plain = scopes(&login.authorize);
    assert!(
        !plain.iter().any(|s| s == "read:org"),
        "no allow.groups anywhere, no read:org: {plain:?}"
    );

    // The default user is in org `acme`, team `acme/platform`.
    assert_allowed(&stack, &fake, "team.example.com").await;
    let teams = fake.calls_to("/api/v3/user/teams");
    assert!(!teams.is_empty(), "GET /user/teams for allow.groups");
    assert!(
        teams
            .iter()
            .all(|c| c.bearer().is_some() && c.header("user-agent").is_some())
    );
    assert_allowed(&stack, &fake, "org.example.com").await;
    assert_allowed(&stack, &fake, "plain.example.com").await;

    // Another team of acme, and a `platform` team of another org: not
    // acme/platform. The org is still acme.
    fake.set_github_teams(json!([
        github_team("acme", GITHUB_ACME_ID, "security", "Platform", 42),
        github_team("evilcorp", 666, "platform", "Platform", 43),
    ]));
    assert_denied(
        &stack,
        &fake,
        "team.example.com",
        "teams without acme/platform",
    )
    .await;
    assert_allowed(&stack, &fake, "org.example.com").await;

    // Neither org nor team of acme: `acme` is not met either.
    fake.set_github_orgs(json!([github_org("evilcorp", 666)]));
    fake.set_github_teams(json!([github_team(
        "evilcorp", 666, "platform", "Platform", 43
    )]));
    assert_denied(&stack, &fake, "org.example.com", "no acme org").await;
    assert_denied(&stack, &fake, "team.example.com", "no acme team").await;
    // Without allow, anyone the provider knows gets in.
    assert_allowed(&stack, &fake, "plain.example.com").await;

    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_allow_logins_users_and_verified_emails() {
    let fake = FakeProvider::start(Kind::Github).await;
    let stack = Stack::start(&config(&[
        github_rule("login-in.example.com", &fake, &["logins: [octocat]"]),
        github_rule("login-out.example.com", &fake, &["logins: [someone]"]),
        // users: GitHub's stable numeric id, as a string.
        github_rule("id-in.example.com", &fake, &["users: [\"583231\"]"]),
        github_rule("id-out.example.com", &fake, &["users: [\"583232\"]"]),
        // The login is not the id.
        github_rule("id-login.example.com", &fake, &["users: [octocat]"]),
        github_rule(
            "email.example.com",
            &fake,
            &["emails: [Octocat@GitHub.example]"],
        ),
        // Kinds AND: the right login, the wrong email.
        github_rule(
            "and.example.com",
            &fake,
            &["logins: [octocat]", "emails: [someone@else.example]"],
        ),
    ]))
    .await;

    assert_allowed(&stack, &fake, "login-in.example.com").await;
    assert_denied(&stack, &fake, "login-out.example.com", "logins: [someone]").await;
    assert_allowed(&stack, &fake, "id-in.example.com").await;
    assert_denied(&stack, &fake, "id-out.example.com", "users: another id").await;
    assert_denied(&stack, &fake, "id-login.example.com", "users: the login").await;
    assert_denied(&stack, &fake, "and.example.com", "login ok, email not").await;

    // The address is verified in /user/emails (case does not matter).
    assert_allowed(&stack, &fake, "email.example.com").await;
    assert!(
        !fake.calls_to("/api/v3/user/emails").is_empty(),
        "allow.emails reads the verified addresses"
    );
    // The profile still shows it publicly, but GitHub says it is not
    // verified: not good enough.
    fake.set_github_emails(json!([
        {"email": "octocat@github.example", "primary": true, "verified": false, "visibility": "public"},
        {"email": "octo-other@github.example", "primary": false, "verified": true, "visibility": null}
    ]));
    assert_denied(&stack, &fake, "email.example.com", "unverified email").await;
    // Verified again: in again.
    fake.set_github_emails(json!([
        {"email": "octocat@github.example", "primary": true, "verified": true, "visibility": "public"}
    ]));
    assert_allowed(&stack, &fake, "email.example.com").await;

    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
}

// ---------------------------------------------------------------------------
// Cross-route: one session, routes with different policies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_an_open_route_is_403_on_a_stricter_route() {
    let fake = FakeProvider::start(Kind::Github).await;
    let host = "app.example.com";
    let open = github_auth(&fake, &[]);
    let strict = github_auth(&fake, &["logins: [someone-else]"]);
    let yaml = rule(host, &open) + &configs::path("/admin", "admin", &strict);
    let stack = Stack::start(&config(&[yaml])).await;

    let session = log_in(&stack, &fake, host).await;
    let response = as_user(&stack, host, "/", &session, "application/json").await;
    assert_upstream_ok(&response);

    // Same provider and client: the session is valid here too, the user is
    // just not allowed. Not a 401, and no new login.
    let authorize_calls = fake.calls_to("/login/oauth/authorize").len();
    let response = as_user(&stack, host, "/admin", &session, "application/json").await;
    assert_403_json(&response, "/admin, JSON");

    // A browser gets a page, not a redirect into a login loop, with a way
    // to sign in as someone else.
    let response = stack
        .send(navigation(host, "/admin").header("cookie", &session))
        .await;
    assert_eq!(
        response.status,
        403,
        "/admin, navigation: {}",
        response.text()
    );
    assert_eq!(response.header("location"), None, "{:?}", response.headers);
    assert!(
        response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html")),
        "{:?}",
        response.headers
    );
    let body = response.text();
    assert!(
        body.contains("href=") && body.contains("/oauth2/logout"),
        "a link to /oauth2/logout: {body}"
    );
    assert_eq!(
        fake.calls_to("/login/oauth/authorize").len(),
        authorize_calls,
        "no new login was started"
    );

    assert_eq!(stack.upstream_targets(), ["/"]);
}

// ---------------------------------------------------------------------------
// The fake's new endpoints themselves (no service involved)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_fake_serves_orgs_and_teams_to_its_token_holders() {
    let fake = FakeProvider::start(Kind::Github).await;
    let host = fake.addr().to_string();
    let authorize = "/login/oauth/authorize?client_id=cid&redirect_uri=http%3A%2F%2Fa%2Foauth2%2Fcallback&response_type=code&state=s&scope=user%3Aemail+read%3Aorg";
    let code = fake.code_for(authorize).await;
    let form = format!(
        "code={code}&client_id=cid&client_secret={}",
        fake.client_secret()
    );
    let accept = [("accept", "application/json")];
    let r = fake
        .post_form("/login/oauth/access_token", form, &accept)
        .await;
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let get = async |path: &str, authorization: Option<&str>, agent: bool| {
        let mut request = Request::get(&host, path);
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        if agent {
            request = request.header("user-agent", "test");
        }
        fake.send(request).await
    };
    let good = bearer(&token);

    let orgs = get("/api/v3/user/orgs", Some(&good), true).await;
    assert_eq!(orgs.status, 200, "{}", orgs.text());
    let orgs = orgs.json();
    assert_eq!(orgs.as_array().map(Vec::len), Some(1), "{orgs}");
    for key in [
        "login",
        "id",
        "node_id",
        "url",
        "repos_url",
        "events_url",
        "hooks_url",
        "issues_url",
        "members_url",
        "public_members_url",
        "avatar_url",
        "description",
    ] {
        assert!(orgs[0].get(key).is_some(), "org `{key}`: {orgs}");
    }
    assert_eq!(orgs[0]["login"], "acme");

    // GitHub paginates; the fake ignores the query.
    let teams = get("/api/v3/user/teams?per_page=100", Some(&good), true).await;
    assert_eq!(teams.status, 200, "{}", teams.text());
    let teams = teams.json();
    assert_eq!(teams.as_array().map(Vec::len), Some(1), "{teams}");
    for key in [
        "id",
        "node_id",
        "url",
        "html_url",
        "name",
        "slug",
        "description",
        "privacy",
        "permission",
        "members_url",
        "repositories_url",
        "parent",
        "members_count",
        "repos_count",
        "created_at",
        "updated_at",
        "organization",
    ] {
        assert!(teams[0].get(key).is_some(), "team `{key}`: {teams}");
    }
    assert_eq!(
        (&teams[0]["slug"], &teams[0]["name"]),
        (&json!("platform"), &json!("Platform"))
    );
    for key in ["login", "id", "node_id", "url"] {
        assert!(teams[0]["organization"].get(key).is_some(), "{teams}");
    }
    assert_eq!(teams[0]["organization"]["login"], "acme");

    // Setters replace the answers.
    fake.set_github_orgs(json!([]));
    fake.set_github_teams(json!([github_team("x", 1, "y", "Y", 2)]));
    assert_eq!(
        get("/api/v3/user/orgs", Some(&good), true).await.json(),
        json!([])
    );
    let teams = get("/api/v3/user/teams", Some(&good), true).await.json();
    assert_eq!(teams[0]["organization"]["login"], "x");

    // Bearer-checked and User-Agent-checked like /user.
    for path in ["/api/v3/user/orgs", "/api/v3/user/teams"] {
        let r = get(path, None, true).await;
        assert_eq!(r.status, 401, "{path} without a token");
        assert_eq!(r.json()["message"], "Bad credentials");
        let r = get(path, Some("Bearer gho_not-issued"), true).await;
        assert_eq!(r.status, 401, "{path} with a foreign token");
        let r = get(path, Some(&good), false).await;
        assert_eq!(r.status, 403, "{path} without User-Agent");
    }
}

/// GitHub groups are read again with the session's access token once
/// `groups_ttl` has passed: a user removed from the team is refused, the
/// re-read is one pair of calls however many requests share the cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_groups_are_read_again_after_groups_ttl() {
    let fake = FakeProvider::start(Kind::Github).await;
    let host = "team-ttl.example.com";
    let auth = github_auth(&fake, &["groups: [acme/platform]"]).replacen(
        "oauth2:\n",
        "oauth2:\n  groups_ttl: 1s\n",
        1,
    );
    let stack = Stack::start(&config(&[rule(host, &auth)])).await;
    let session = log_in(&stack, &fake, host).await;
    let response = as_user(&stack, host, TARGET, &session, "application/json").await;
    assert_eq!(response.status, 200, "in the team: {}", response.text());
    let teams_before = fake.calls_to("/api/v3/user/teams").len();

    fake.set_github_teams(json!([github_team(
        "acme",
        GITHUB_ACME_ID,
        "security",
        "Security",
        44
    )]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last;
    loop {
        last = as_user(&stack, host, TARGET, &session, "application/json").await;
        if last.status != 200 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        last.status,
        403,
        "removed from the team, still let in after groups_ttl: {}",
        last.text()
    );
    assert!(
        fake.calls_to("/api/v3/user/teams").len() > teams_before,
        "the teams were read again"
    );
    let reread = fake.calls_to("/api/v3/user/teams").len();
    for _ in 0..5 {
        let again = as_user(&stack, host, TARGET, &session, "application/json").await;
        assert_eq!(again.status, 403);
    }
    assert_eq!(
        fake.calls_to("/api/v3/user/teams").len(),
        reread,
        "requests with the same old cookie share the one re-read"
    );
}

/// An oauth2 block for the fake of any provider kind.
fn provider_auth(fake: &FakeProvider, provider: &str, allow: &[&str]) -> String {
    github_auth(fake, allow).replacen("provider: github", &format!("provider: {provider}"), 1)
}

/// Google vouches for an email with `email_verified`, and for a domain only
/// as the Workspace (`hd`) the account belongs to; GitLab for a confirmed
/// account's email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_and_gitlab_email_trust() {
    let google = FakeProvider::start(Kind::Google).await;
    let gitlab = FakeProvider::start(Kind::Gitlab).await;
    let stack = Stack::start(&config(&[
        rule(
            "g-domain.example.com",
            &provider_auth(&google, "google", &["domains: [google.example]"]),
        ),
        rule(
            "g-email.example.com",
            &provider_auth(&google, "google", &["emails: [grace@google.example]"]),
        ),
        rule(
            "gl-email.example.com",
            &provider_auth(&gitlab, "gitlab", &["emails: [john@gitlab.example]"]),
        ),
    ]))
    .await;

    // A consumer account (no `hd`) on a domain it does not own.
    assert_denied(&stack, &google, "g-domain.example.com", "google without hd").await;
    assert_allowed(&stack, &google, "g-email.example.com").await;
    google.edit_profile(|p| p["hd"] = json!("google.example"));
    assert_allowed(&stack, &google, "g-domain.example.com").await;
    google.edit_profile(|p| p["email_verified"] = json!(false));
    assert_denied(
        &stack,
        &google,
        "g-email.example.com",
        "google, email not verified",
    )
    .await;
    assert_denied(
        &stack,
        &google,
        "g-domain.example.com",
        "google, email not verified",
    )
    .await;

    assert_allowed(&stack, &gitlab, "gl-email.example.com").await;
    gitlab.edit_profile(|p| p["confirmed_at"] = json!(null));
    assert_denied(
        &stack,
        &gitlab,
        "gl-email.example.com",
        "gitlab, unconfirmed",
    )
    .await;
}
