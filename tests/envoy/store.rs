//! The shared store (SPEC §13.3): two ingress-authz replicas behind one real
//! Envoy (both endpoints of its ext_authz and sidecar clusters, round
//! robin), one real Redis (Debian's redis-server on a free loopback port),
//! and the real OpenID provider rotating refresh tokens and sending
//! back-channel logouts.
//!
//! * one refresh for 50 concurrent requests spread over both replicas, and
//!   a logout on one replica that the other enforces within a second;
//! * server-side sessions: a small ticket cookie whatever the identity
//!   weighs, forged and tampered tickets open nothing;
//! * back-channel logout sent by the provider ends the session on both
//!   replicas; replayed, unsigned, `nonce`-carrying and wrong-`aud` logout
//!   tokens are refused and revoke nothing;
//! * `RevokeUser` on one replica ends the user's sessions on both;
//! * Redis killed and restarted: cookie sessions go on, server-side ones
//!   answer 503 `store_unavailable`, both recover without a restart; a
//!   replica started while Redis is down is not ready, and enforces the
//!   revocations made before it started once Redis is back.

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::CheckResponse;
use ingress_authz::admin::proto::RevokeUserRequest;
use ingress_authz::admin::proto::admin_client::AdminClient;
use serde_json::json;

use crate::common::authz::{check_request, check_status};
use crate::common::client::{Request, Response};
use crate::common::configs::{self, indent};
use crate::common::envoy::Backends;
use crate::common::idp::{
    self, AtProvider, IDP_CLIENT_ID, IDP_CLIENT_SECRET, Idp, Jar, NAVIGATE, SESSION_COOKIE,
    new_session,
};
use crate::common::login::{CALLBACK, IdpStack};
use crate::common::redis::Redis;
use crate::common::{self, Authz, EchoUpstream, Envoy, Stack, eventually};

const HOST: &str = "app.example.com";
const TARGET: &str = "/dashboard";
const SESSION_SECRET: &str = "store-test-session-secret-0123456789abcdef";
const BACKCHANNEL_PATH: &str = "/oauth2/backchannel-logout";
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How the replicas keep sessions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sessions {
    Cookie,
    Server,
}

/// The replicas' config: an oidc login route for [`HOST`] at `issuer`
/// (refresh tokens through `offline_access`), sessions as `sessions`, the
/// store at `redis_url`; `app` extra fields of the route.
fn config(issuer: &str, redis_url: &str, sessions: Sessions, app: &[&str]) -> String {
    let mut fields = vec![
        format!("issuer: \"{issuer}\""),
        format!("client_id: {IDP_CLIENT_ID}"),
        format!("client_secret: {IDP_CLIENT_SECRET}"),
        "scopes: [openid, email, profile, offline_access]".to_owned(),
    ];
    fields.extend(app.iter().map(|f| (*f).to_owned()));
    let rule = configs::rule(HOST, &format!("type: oidc\n{}", indent(0, &fields)));
    let store = match sessions {
        Sessions::Cookie => "",
        Sessions::Server => "    store: redis\n",
    };
    format!(
        "authz:\n  session:\n    secret: \"{SESSION_SECRET}\"\n{store}  store:\n    redis:\n      url: \"{redis_url}\"\n      key_prefix: \"it:\"\nrules:\n{rule}"
    )
}

/// Redis, the provider, replica A (in `world.stack`, with Envoy and the
/// upstream) and replica B.
struct World {
    world: IdpStack,
    b: Authz,
    redis: Redis,
}

impl World {
    async fn start(env: &[(&str, &str)], sessions: Sessions, app: &[&str]) -> Self {
        let redis = Redis::start_persistent().await;
        let mut env = env.to_vec();
        env.push(("IDP_BACKCHANNEL_LOGOUT_URI", "stdin"));
        let mut idp = Idp::spawn(&env).await;
        let text = config(&idp.url, &redis.url(), sessions, app);
        let a = Authz::start(&text).await;
        let b = Authz::start(&text).await;
        for replica in [&a, &b] {
            wait_ready(replica).await;
        }
        let upstream = EchoUpstream::start().await;
        let backends = Backends {
            authz_grpc: a.grpc_addr(),
            authz_http: a.http_addr(),
            upstream: upstream.addr(),
        };
        let envoy = Envoy::start_replicas(backends, &[(b.grpc_addr(), b.http_addr())]).await;
        upstream.clear();
        let app = format!("{HOST}:{}", envoy.addr().port());
        idp.configure_with_backchannel(
            &[format!("http://{app}{CALLBACK}")],
            &format!("http://{app}{BACKCHANNEL_PATH}"),
        )
        .await;
        let stack = Stack {
            upstream,
            authz: a,
            envoy,
        };
        let world = IdpStack::of(idp, stack, HOST);
        let world = Self { world, b, redis };
        for replica in [world.a(), &world.b] {
            eventually(
                "each replica discovers the provider",
                Duration::from_secs(20),
                Duration::from_millis(100),
                || async { status_on(replica, "").await == 302 },
            )
            .await;
        }
        world
    }

    fn a(&self) -> &Authz {
        &self.world.stack.authz
    }

    /// `account` logs in through Envoy; the browser's cookie header.
    async fn log_in(&self, account: &'static str) -> String {
        let login = self.world.browser().begin(TARGET).await;
        let back = idp::at_provider(
            &self.world.idp,
            &login.authorize,
            AtProvider::SignIn(account),
            "",
        )
        .await;
        let callback = self.world.browser().callback(&back, &[&login.cookie]).await;
        assert_eq!(
            callback.status,
            302,
            "{account}'s login: {}\n{}",
            callback.text(),
            self.logs()
        );
        let mut jar = Jar::default();
        jar.update(&callback);
        assert_eq!(jar.names(), [SESSION_COOKIE], "{:?}", callback.headers);
        jar.header()
    }

    async fn app_get(&self, cookie: &str) -> Response {
        self.world
            .app_get(TARGET, &[NAVIGATE[0], ("cookie", cookie)])
            .await
    }

    fn logs(&self) -> String {
        format!(
            "{}\n--- replica B:\n{}\n--- redis:\n{}",
            self.world.logs(),
            common::tail(&self.b.logs()),
            common::tail(&self.redis.logs())
        )
    }
}

/// `/readyz` answers 200 (the store's revocations are loaded).
async fn wait_ready(authz: &Authz) {
    eventually(
        "the replica reports ready",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async { authz.http_get("/readyz").await.0 == 200 },
    )
    .await;
}

/// One replica's answer to a navigation to the app with `cookie`.
async fn check_on(authz: &Authz, cookie: &str) -> CheckResponse {
    let request = check_request(HOST, TARGET, "http", &[NAVIGATE[0], ("cookie", cookie)]);
    authz.check(request).await
}

async fn status_on(authz: &Authz, cookie: &str) -> u16 {
    check_status(&check_on(authz, cookie).await)
}

/// The reason in a denial's JSON body ("" for an allow or an HTML body).
fn denial_message(response: &CheckResponse) -> String {
    use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
    match &response.http_response {
        Some(HttpResponse::DeniedResponse(d)) => d.body.clone(),
        _ => String::new(),
    }
}

/// Both replicas let `cookie` through.
async fn assert_allowed_on_both(world: &World, cookie: &str, context: &str) {
    for (name, replica) in [("A", world.a()), ("B", &world.b)] {
        let status = status_on(replica, cookie).await;
        assert_eq!(status, 200, "{context}: replica {name}\n{}", world.logs());
    }
}

/// Within `limit`, neither replica lets `cookie` through any more (a
/// navigation without a session is sent to the provider: 302).
async fn assert_ended_on_both(world: &World, cookie: &str, limit: Duration, context: &str) {
    let started = Instant::now();
    for (name, replica) in [("A", world.a()), ("B", &world.b)] {
        loop {
            let status = status_on(replica, cookie).await;
            if status == 302 {
                break;
            }
            assert!(
                started.elapsed() < limit,
                "{context}: replica {name} still answers {status} after {limit:?}\n{}",
                world.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// 50 concurrent requests of one session, due for a refresh, spread over
/// both replicas by Envoy: exactly one redeem at a provider that rotates
/// refresh tokens, every request 200, and the user stays logged in. Then a
/// logout on replica A: the cookie (old and refreshed) is refused on
/// replica B within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresh_across_replicas_and_a_logout_both_enforce() {
    one_refresh_and_logout(Sessions::Cookie).await;
}

/// As above with server-side sessions: the winner rewrites the record
/// under the same ticket, and the other replica reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresh_of_a_server_side_session_across_replicas() {
    one_refresh_and_logout(Sessions::Server).await;
}

async fn one_refresh_and_logout(sessions: Sessions) {
    let _heavy = common::heavy().await;
    let world = std::sync::Arc::new(
        World::start(
            &[
                ("IDP_ACCESS_TOKEN_TTL", "2"),
                ("IDP_ROTATE_REFRESH_TOKENS", "true"),
            ],
            sessions,
            &[],
        )
        .await,
    );
    let cookie = world.log_in("alice").await;
    assert_allowed_on_both(&world, &cookie, "a new session").await;
    let grants = |stats: std::collections::BTreeMap<String, u64>| {
        (
            stats.get("grant:refresh_token").copied().unwrap_or(0),
            stats.get("grant:refresh_token:ok").copied().unwrap_or(0),
        )
    };
    assert_eq!(grants(world.world.idp.stats().await), (0, 0));

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (world, cookie) = (world.clone(), cookie.clone());
        set.spawn(async move {
            let sent = Instant::now();
            let response = world.app_get(&cookie).await;
            (response, sent.elapsed())
        });
    }
    let mut renewed = Vec::new();
    let mut latencies = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (response, took) = joined.unwrap();
        assert_eq!(
            response.status,
            200,
            "{}\n{}",
            response.text(),
            world.logs()
        );
        latencies.push(took);
        renewed.extend(new_session(&response));
    }
    latencies.sort();
    eprintln!(
        "50 contended requests in {:?}: p50 {:?}, p99 {:?}",
        started.elapsed(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100]
    );
    assert_eq!(
        grants(world.world.idp.stats().await),
        (1, 1),
        "exactly one redeem of the refresh token, across both replicas\n{}",
        world.logs()
    );
    assert!(!renewed.is_empty(), "the client gets the refreshed session");
    assert!(
        renewed.iter().all(|c| c.value == renewed[0].value),
        "one new session for every request, whichever replica answered"
    );
    // The outcome every replica reused is in Redis, sealed: the store
    // never holds a usable session cookie.
    let outcomes = world.redis.command(&["KEYS", "it:refreshed:*"]).await;
    let outcomes = outcomes.as_array().expect("KEYS answers an array");
    assert_eq!(outcomes.len(), 1, "one shared outcome: {outcomes:?}");
    let stored = world
        .redis
        .command(&["GET", outcomes[0].as_str().expect("a key")])
        .await;
    let stored = stored.as_str().expect("the outcome").to_owned();
    assert!(
        sessions == Sessions::Server || !stored.contains(&renewed[0].value[..40]),
        "the new cookie is not in Redis in clear"
    );
    let fresh = format!("{SESSION_COOKIE}={}", renewed[0].value);
    assert_allowed_on_both(&world, &fresh, "the refreshed session").await;

    // Logout on replica A's sidecar.
    let logout = common::client::send(
        world.a().http_addr(),
        &Request::get(HOST, "/oauth2/logout").header("cookie", &fresh),
    )
    .await
    .expect("logout on replica A");
    assert_eq!(logout.status, 302, "{}", logout.text());
    assert_ended_on_both(&world, &fresh, Duration::from_secs(1), "after the logout").await;
    assert_ended_on_both(&world, &cookie, Duration::from_secs(1), "the old cookie").await;
    assert!(
        world.b.logs().contains("store: connected"),
        "replica B was connected to the store"
    );
}

/// Server-side sessions: with a 10 KB set of groups in the session, the
/// cookie stays a ticket under 200 bytes and the record in Redis is sealed;
/// a tampered or forged ticket opens no session; logout deletes the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_sessions_keep_the_cookie_small_and_refuse_forged_tickets() {
    let world = World::start(&[], Sessions::Server, &["allow: {groups: [admins]}"]).await;
    let groups: Vec<String> = (0..500)
        .map(|i| format!("group-{i:04}-abcdefghij"))
        .collect();
    let mut all: Vec<&str> = groups.iter().map(String::as_str).collect();
    all.push("admins");
    world.world.idp.set_groups("alice", &all).await;
    let cookie = world.log_in("alice").await;
    assert!(
        cookie.len() < 200,
        "a ticket, not the session: {} bytes",
        cookie.len()
    );
    assert_allowed_on_both(&world, &cookie, "a server-side session").await;

    let keys = world.redis.command(&["KEYS", "it:session:*"]).await;
    let keys = keys.as_array().expect("KEYS answers an array");
    assert_eq!(keys.len(), 1, "one record: {keys:?}");
    let key = keys[0].as_str().expect("a key").to_owned();
    let record = world.redis.command(&["GET", &key]).await;
    let record = record.as_str().expect("the record").to_owned();
    assert!(
        record.len() > 10_000,
        "the groups live in the record: {} bytes",
        record.len()
    );
    assert!(
        !record.contains("group-0001") && !record.contains("alice"),
        "the record is sealed"
    );
    let ttl = world.redis.command(&["TTL", &key]).await.as_int().unwrap();
    assert!(
        (1..=24 * 3600).contains(&ttl),
        "the record expires with the session: {ttl}"
    );

    // Tampered: one character of the key changed; forged: another key for
    // the same id; junk in the ticket form.
    let value = cookie
        .strip_prefix(&format!("{SESSION_COOKIE}="))
        .expect("the session cookie");
    let (id_part, key_part) = value.rsplit_once('.').expect("t1.ID.KEY");
    let flipped = {
        let mut chars: Vec<char> = key_part.chars().collect();
        chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    for forged in [
        format!("{id_part}.{flipped}"),
        format!("{id_part}.{}", "A".repeat(43)),
        format!("t1.{}.{key_part}", "A".repeat(22)),
        "t1.junk".to_owned(),
    ] {
        let forged = format!("{SESSION_COOKIE}={forged}");
        for replica in [world.a(), &world.b] {
            let status = status_on(replica, &forged).await;
            assert_eq!(
                status,
                302,
                "{forged}: no session, a login\n{}",
                world.logs()
            );
        }
    }
    assert_allowed_on_both(&world, &cookie, "the real ticket still opens").await;

    let logout = world
        .world
        .app_get("/oauth2/logout", &[NAVIGATE[0], ("cookie", &cookie)])
        .await;
    assert_eq!(logout.status, 302, "{}", logout.text());
    let left = world.redis.command(&["EXISTS", &key]).await.as_int();
    assert_eq!(left, Some(0), "logout deletes the record");
    assert_ended_on_both(&world, &cookie, Duration::from_secs(1), "after the logout").await;
}

/// The provider's back-channel logout (oidc-provider's own, to our
/// endpoint through Envoy) ends the session on both replicas. Logout
/// tokens that are replayed, unsigned, carry a `nonce` or name another
/// audience answer 400 and revoke nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_ends_the_session_everywhere_and_bad_tokens_do_nothing() {
    let world = World::start(&[("IDP_SIGNING_ALG", "RS256")], Sessions::Cookie, &[]).await;
    let alice = world.log_in("alice").await;
    let bob = world.log_in("bob").await;
    assert_allowed_on_both(&world, &alice, "alice").await;

    // Hand-made logout tokens signed by the provider's key: each defect is
    // refused and revokes nothing.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let issuer = world.world.idp.url.clone();
    let claims = |jti: &str| {
        json!({
            "iss": issuer, "aud": IDP_CLIENT_ID, "iat": now, "exp": now + 120,
            "jti": jti, "sub": "bob", "events": { BACKCHANNEL_EVENT: {} },
        })
    };
    let header = json!({ "typ": "logout+jwt" });
    let mut with_nonce = claims("jti-nonce");
    with_nonce["nonce"] = json!("n-0S6_WzA2Mj");
    let mut other_aud = claims("jti-aud");
    other_aud["aud"] = json!("someone-else");
    let idp = &world.world.idp;
    let bad = [
        (
            "unsigned",
            idp.sign(&claims("jti-none"), Some("none"), &json!({}))
                .await,
        ),
        ("nonce", idp.sign(&with_nonce, None, &header).await),
        ("wrong aud", idp.sign(&other_aud, None, &header).await),
    ];
    for (what, token) in &bad {
        let response = post_logout_token(&world, token).await;
        assert_eq!(response.status, 400, "{what}: {}", response.text());
        assert_eq!(response.json()["error"], "invalid_request", "{what}");
    }
    assert_allowed_on_both(&world, &bob, "bad logout tokens revoke nothing").await;
    // A good one ends bob's sessions (by sub); replayed, it is refused.
    let good = idp.sign(&claims("jti-good"), None, &header).await;
    let first = post_logout_token(&world, &good).await;
    assert_eq!(first.status, 200, "{}\n{}", first.text(), world.logs());
    assert_ended_on_both(&world, &bob, Duration::from_secs(1), "bob, by sub").await;
    let replay = post_logout_token(&world, &good).await;
    assert_eq!(replay.status, 400, "a replayed jti: {}", replay.text());
    assert_allowed_on_both(&world, &alice, "alice is not bob").await;

    // The provider's own back-channel logout of alice's session (by sid).
    let sent = idp.backchannel_logout("alice").await;
    assert_eq!(sent["sent"], 1, "{sent}\n{}", world.logs());
    assert_eq!(sent["statuses"], json!([200]), "{sent}\n{}", world.logs());
    assert_ended_on_both(&world, &alice, Duration::from_secs(1), "alice, by sid").await;
}

async fn post_logout_token(world: &World, token: &str) -> Response {
    world
        .world
        .stack
        .send(
            Request::new("POST", &world.world.app(), BACKCHANNEL_PATH)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(idp::form_body(&[("logout_token", token)])),
        )
        .await
}

/// `RevokeUser` on replica A's admin API ends every session of the user on
/// both replicas; a login after it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_user_reaches_every_replica() {
    let world = World::start(&[], Sessions::Cookie, &[]).await;
    let first = world.log_in("alice").await;
    let second = world.log_in("alice").await;
    let bob = world.log_in("bob").await;
    let mut admin = AdminClient::connect(format!("http://{}", world.a().admin_addr()))
        .await
        .expect("admin API");
    let answer = admin
        .revoke_user(RevokeUserRequest {
            user: "alice".into(),
            provider: String::new(),
        })
        .await
        .expect("RevokeUser")
        .into_inner();
    assert_eq!(answer.reach, "every_replica");
    for cookie in [&first, &second] {
        assert_ended_on_both(&world, cookie, Duration::from_secs(1), "alice revoked").await;
    }
    assert_allowed_on_both(&world, &bob, "bob is not alice").await;
    let empty = admin
        .revoke_user(RevokeUserRequest::default())
        .await
        .expect_err("no user");
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    // A second later, alice logs in again and is let in.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = world.log_in("alice").await;
    assert_allowed_on_both(&world, &again, "a login after the revocation").await;
}

/// Redis killed under load and started again (its data kept, as a real
/// deployment's is): cookie sessions keep working on the revocations
/// known, server-side sessions answer 503 `store_unavailable` (never a
/// login), no check fails and nothing panics; both recover without a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_closed_for_server_side_sessions_only_and_recovers() {
    let mut world = World::start(&[], Sessions::Server, &[]).await;
    let ticket = world.log_in("alice").await;
    // A cookie-session replica on the same store and provider.
    let cookie_config = config(
        &world.world.idp.url,
        &world.redis.url(),
        Sessions::Cookie,
        &[],
    );
    let cookie_replica = Authz::start(&cookie_config).await;
    wait_ready(&cookie_replica).await;
    let sealed = {
        // A cookie session made by this replica's keys: log in through it.
        let login = world.world.browser().begin(TARGET).await;
        let back = idp::at_provider(
            &world.world.idp,
            &login.authorize,
            AtProvider::SignIn("bob"),
            "",
        )
        .await;
        // The callback on the cookie replica's sidecar directly.
        let callback = common::client::send(
            cookie_replica.http_addr(),
            &Request::get(&world.world.app(), &back[url::Position::BeforePath..])
                .header("cookie", &login.cookie),
        )
        .await
        .expect("callback on the cookie replica");
        assert_eq!(
            callback.status,
            302,
            "{}\n{}",
            callback.text(),
            cookie_replica.logs()
        );
        let mut jar = Jar::default();
        jar.update(&callback);
        jar.header()
    };
    assert_eq!(status_on(&cookie_replica, &sealed).await, 200);
    assert_eq!(status_on(world.a(), &ticket).await, 200);

    // Load through Envoy (the ticket, on both replicas) and on the cookie
    // replica for the whole outage: every answer is 200 or, for the
    // ticket, 503 — never a login, a 401 or a failed check.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(outage_load(
        world.world.stack.envoy.addr(),
        world.world.app(),
        ticket.clone(),
        cookie_replica.grpc_addr(),
        sealed.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    world.redis.kill();
    eventually(
        "server-side sessions answer 503 while Redis is down",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async { status_on(world.a(), &ticket).await == 503 },
    )
    .await;
    for _ in 0..20 {
        let response = check_on(world.a(), &ticket).await;
        assert_eq!(check_status(&response), 503);
        assert!(
            denial_message(&response).contains("unavailable"),
            "{response:?}"
        );
        assert_eq!(
            status_on(&cookie_replica, &sealed).await,
            200,
            "cookie sessions go on"
        );
        assert_eq!(status_on(&world.b, &ticket).await, 503, "replica B too");
    }
    let (ready, body) = world.a().http_get("/readyz").await;
    assert_eq!(ready, 200, "an outage keeps the replica in service: {body}");
    assert!(body.contains("server-side sessions answer 503"), "{body}");
    let (ready, body) = cookie_replica.http_get("/readyz").await;
    assert_eq!(ready, 200, "cookie sessions stay ready: {body}");
    assert!(body.contains("store down"), "{body}");
    // A logout now cannot reach the store: it says so, and the session
    // stays as it was.
    let logout = common::client::send(
        world.a().http_addr(),
        &Request::get(HOST, "/oauth2/logout")
            .header(NAVIGATE[0].0, NAVIGATE[0].1)
            .header("cookie", &ticket),
    )
    .await
    .expect("logout while Redis is down");
    assert_eq!(logout.status, 503, "{}", logout.text());
    assert!(
        logout.text().contains("Sign-out failed"),
        "{}",
        logout.text()
    );

    world.redis.restart().await;
    eventually(
        "server-side sessions recover without a restart",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { status_on(world.a(), &ticket).await == 200 },
    )
    .await;
    eventually(
        "replica B recovers too",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { status_on(&world.b, &ticket).await == 200 },
    )
    .await;
    wait_ready(world.a()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = load.await.expect("the load task");
    eprintln!("under load through the outage: {seen:?}");
    let through_envoy: u64 = seen.ticket.values().sum();
    assert!(
        seen.ticket.keys().all(|s| *s == 200 || *s == 503),
        "server-side sessions: 200 or 503 only: {seen:?}\n{}",
        world.logs()
    );
    assert!(
        seen.ticket.get(&503).is_some_and(|n| *n > 0)
            && seen.ticket.get(&200).is_some_and(|n| *n > 0),
        "the load saw the outage and the recovery: {seen:?}"
    );
    assert!(through_envoy > 50, "{seen:?}");
    assert_eq!(
        seen.cookie.keys().copied().collect::<Vec<_>>(),
        [200],
        "cookie sessions answered 200 throughout: {seen:?}"
    );
    for logs in [world.a().logs(), world.b.logs(), cookie_replica.logs()] {
        assert!(!logs.contains("panicked"), "{logs}");
    }
    assert!(world.a().logs().contains("store: connected"));
    drop(cookie_replica);
}

/// Statuses seen by [`outage_load`], by kind of session.
#[derive(Debug, Default)]
struct OutageLoad {
    ticket: std::collections::BTreeMap<u16, u64>,
    cookie: std::collections::BTreeMap<u16, u64>,
}

/// Until `stop`: the server-side session through Envoy (either replica),
/// and the cookie session on the cookie replica's gRPC port, one after the
/// other.
async fn outage_load(
    envoy: std::net::SocketAddr,
    app: String,
    ticket: String,
    cookie_replica: std::net::SocketAddr,
    sealed: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> OutageLoad {
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    let mut seen = OutageLoad::default();
    let mut grpc = AuthorizationClient::connect(format!("http://{cookie_replica}"))
        .await
        .expect("the cookie replica");
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let request = Request::get(&app, TARGET)
            .header(NAVIGATE[0].0, NAVIGATE[0].1)
            .header("cookie", &ticket);
        let status = common::client::send(envoy, &request)
            .await
            .map_or(0, |r| r.status);
        *seen.ticket.entry(status).or_default() += 1;
        let check = check_request(HOST, TARGET, "http", &[NAVIGATE[0], ("cookie", &sealed)]);
        let status = grpc
            .check(check)
            .await
            .map_or(0, |r| check_status(&r.into_inner()));
        *seen.cookie.entry(status).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

/// A replica started while Redis is down is not ready (it cannot know who
/// logged out); once Redis is back it enforces a revocation made before
/// it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_redis_is_down_waits_and_enforces_earlier_revocations() {
    let mut world = World::start(&[], Sessions::Cookie, &[]).await;
    let kept = world.log_in("alice").await;
    let ended = world.log_in("bob").await;
    let logout = world
        .world
        .app_get("/oauth2/logout", &[NAVIGATE[0], ("cookie", &ended)])
        .await;
    assert_eq!(logout.status, 302);
    world.redis.kill();

    let text = config(
        &world.world.idp.url,
        &world.redis.url(),
        Sessions::Cookie,
        &[],
    );
    let late = Authz::start(&text).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = late.http_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not loaded"), "{body}");
    let unsure = check_on(&late, &kept).await;
    assert_eq!(
        check_status(&unsure),
        503,
        "no session is judged without the revocations"
    );

    world.redis.restart().await;
    wait_ready(&late).await;
    assert_eq!(
        status_on(&late, &ended).await,
        302,
        "the earlier logout holds"
    );
    assert_eq!(status_on(&late, &kept).await, 200);
}
