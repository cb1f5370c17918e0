//! Shared throttle counters (SPEC §13.2, §13.3): two ingress-authz
//! replicas and one real Redis (Debian's redis-server on a free loopback
//! port), asked directly over gRPC as Envoy asks them, with the client
//! address in `source.address`.
//!
//! * failures split over both replicas add up to one limit: the next
//!   attempt is refused on the replica that counted the last failure at
//!   once, on the other as soon as the published block arrives, and on a
//!   replica started afterwards (it loads the durable block);
//! * without a store each replica counts alone (the control);
//! * Redis killed: failures still throttle locally and nothing answers an
//!   error; Redis back: the counts are shared again, without a restart.

use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer;

use crate::common::authz::{check_request, check_status};
use crate::common::redis::Redis;
use crate::common::{Authz, eventually};

const HOST: &str = "app.example.com";
const ALICE: &str = "alice:alice-pass-4b7e";
const WRONG: &str = "alice:not-her-password";
const PREFIX: &str = "tt:";

fn basic(credentials: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// A basic route for [`HOST`] with alice; 6 failures per client in 30 s;
/// the store at `redis_url`, if any.
fn config(redis_url: Option<&str>) -> String {
    let store = redis_url.map_or_else(String::new, |url| {
        format!("  store:\n    redis:\n      url: \"{url}\"\n      key_prefix: \"{PREFIX}\"\n")
    });
    let password = ALICE.split_once(':').unwrap().1;
    format!(
        "authz:\n  login_throttle: {{max_failures: 6, window: 30s}}\n{store}rules:\n  - host: {HOST}\n    backend:\n      service:\n        name: app\n        auth:\n          type: basic\n          basic:\n            users:\n              - username: alice\n                password: {password}\n"
    )
}

/// `credentials` from `client`, as Envoy would ask.
async fn check(authz: &Authz, client: &str, credentials: &str) -> CheckResponse {
    let authorization = basic(credentials);
    let mut request = check_request(
        HOST,
        "/",
        "http",
        &[
            ("authorization", &authorization),
            ("accept", "application/json"),
        ],
    );
    if let Some(attributes) = request.attributes.as_mut() {
        attributes.source = Some(Peer {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: client.into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        });
    }
    authz.check(request).await
}

async fn status(authz: &Authz, client: &str, credentials: &str) -> u16 {
    check_status(&check(authz, client, credentials).await)
}

/// Sends `n` wrong passwords from `client`; each must be a 401.
async fn fail(authz: &Authz, client: &str, n: usize, what: &str) {
    for i in 0..n {
        let s = status(authz, client, WRONG).await;
        assert_eq!(s, 401, "{what}: failure {i} is a 401\n{}", authz.logs());
    }
}

/// The Retry-After of a 429.
fn retry_after(response: &CheckResponse) -> u64 {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("not a denial: {response:?}");
    };
    denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key.eq_ignore_ascii_case("retry-after"))
        .and_then(|h| h.value.parse().ok())
        .unwrap_or_else(|| panic!("429 without Retry-After: {denied:?}"))
}

/// Until `/readyz` says the store is up (connected, revocations and
/// blocks loaded).
async fn wait_store_up(authz: &Authz) {
    eventually(
        "the replica's store is up",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            let (code, body) = authz.http_get("/readyz").await;
            code == 200 && body.contains("store up")
        },
    )
    .await;
}

/// Two replicas of [`config`] on `redis`, their stores up.
async fn replicas(redis: &Redis) -> (Authz, Authz) {
    let text = config(Some(&redis.url()));
    let (a, b) = (Authz::start(&text).await, Authz::start(&text).await);
    for replica in [&a, &b] {
        wait_store_up(replica).await;
    }
    (a, b)
}

/// A metric's value from `/metrics` (the first sample whose line starts
/// with `prefix`), 0 when there is none.
async fn metric(authz: &Authz, prefix: &str) -> f64 {
    let (_, text) = authz.http_get("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_two_replicas_add_up_to_one_limit() {
    let redis = Redis::start().await;
    let (a, b) = replicas(&redis).await;
    let me = "10.1.0.1";
    fail(&a, me, 3, "replica A").await;
    fail(&b, me, 3, "replica B").await;
    // B counted the sixth: blocked there at once, the right password too.
    let blocked = check(&b, me, ALICE).await;
    assert_eq!(check_status(&blocked), 429, "{}", b.logs());
    let wait = retry_after(&blocked);
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
    // A learns it from the store's pub/sub.
    eventually(
        "replica A refuses the client B blocked",
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async { status(&a, me, ALICE).await == 429 },
    )
    .await;
    let on_a = check(&a, me, ALICE).await;
    assert!((1..=30).contains(&retry_after(&on_a)), "{on_a:?}");
    // Another address is untouched on both.
    for replica in [&a, &b] {
        assert_eq!(status(replica, "10.1.0.2", ALICE).await, 200);
    }
    // Counted under digests (no address in clear), for the window only.
    let keys = redis
        .command(&["KEYS", &format!("{PREFIX}throttle*")])
        .await;
    let keys: Vec<&str> = keys
        .as_array()
        .expect("KEYS answers an array")
        .iter()
        .filter_map(|k| k.as_str())
        .collect();
    assert!(
        keys.iter().all(|k| !k.contains(me) && !k.contains("alice")),
        "{keys:?}"
    );
    // The client's and alice's counters, and the client's block.
    let blocks: Vec<&&str> = keys
        .iter()
        .filter(|k| k.starts_with(&format!("{PREFIX}throttle_block:")))
        .collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(blocks.len(), 1, "{keys:?}");
    for key in &keys {
        let left = redis.command(&["PTTL", key]).await.as_int().unwrap();
        assert!((1..=30_000).contains(&left), "{key}: {left} ms left");
    }
    // A replica started now loads the block from the store.
    let c = Authz::start(&config(Some(&redis.url()))).await;
    wait_store_up(&c).await;
    assert_eq!(status(&c, me, ALICE).await, 429, "{}", c.logs());
    assert_eq!(status(&c, "10.1.0.2", ALICE).await, 200);
    assert!(metric(&a, "ingress_authz_store_throttle_blocks ").await >= 1.0);
    assert!(
        metric(
            &b,
            "ingress_authz_store_call_duration_seconds_count{op=\"throttle_count\",result=\"ok\"}"
        )
        .await
            >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_each_replica_counts_alone() {
    let text = config(None);
    let (a, b) = (Authz::start(&text).await, Authz::start(&text).await);
    let me = "10.2.0.1";
    fail(&a, me, 3, "replica A").await;
    fail(&b, me, 3, "replica B").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for replica in [&a, &b] {
        assert_eq!(status(replica, me, ALICE).await, 200, "3 + 3 is not 6");
    }
    // Its own six do.
    fail(&a, me, 3, "replica A again").await;
    assert_eq!(status(&a, me, ALICE).await, 429);
    assert_eq!(status(&b, me, ALICE).await, 200, "B never heard of it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_failures_throttle_locally_and_sharing_comes_back() {
    let mut redis = Redis::start().await;
    let (a, b) = replicas(&redis).await;
    redis.kill();
    let me = "10.3.0.1";
    // Every failure is still a 401 (never an error), the limit still holds
    // on the replica that saw them, and nothing reaches the other.
    fail(&a, me, 6, "replica A, Redis down").await;
    assert_eq!(status(&a, me, ALICE).await, 429, "{}", a.logs());
    assert_eq!(status(&b, me, ALICE).await, 200, "{}", b.logs());
    fail(&b, me, 3, "replica B, Redis down").await;
    assert!(metric(&a, "ingress_authz_store_throttle_local_only_total ").await >= 1.0);
    let logs = a.logs();
    assert_eq!(
        logs.matches("counted by this replica only").count(),
        1,
        "one warning per outage:\n{logs}"
    );

    // Back (empty): shared again, no restart of the replicas.
    redis.restart().await;
    for replica in [&a, &b] {
        wait_store_up(replica).await;
    }
    let you = "10.3.0.2";
    fail(&a, you, 3, "replica A, Redis back").await;
    fail(&b, you, 3, "replica B, Redis back").await;
    assert_eq!(status(&b, you, ALICE).await, 429, "{}", b.logs());
    eventually(
        "replica A refuses the client B blocked",
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async { status(&a, you, ALICE).await == 429 },
    )
    .await;
    assert!(
        a.logs()
            .contains("failed logins are counted across replicas again"),
        "{}",
        a.logs()
    );
}
