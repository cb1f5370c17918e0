//! Hostile traffic through real Envoy (SPEC §13.2): failed-login
//! throttling per route and client, the bounded password-hash pool under a
//! flood from a thousand addresses, strict hosts, path parameters,
//! revocation by emptying a credential file, a stale config on `/readyz`,
//! report-only routes and the locked admin API.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::authz::check_request;
use crate::common::client::{Request, Response};
use crate::common::expect::assert_upstream_ok;
use crate::common::{Authz, Stack, eventually};

const ALICE: &str = "alice:alice-pass-9f3c";
const BEARER: &str = "hostile-bearer-token-5d2a";

fn basic(credentials: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

fn loopback(n: u32) -> Ipv4Addr {
    // 127.0.1.0 upwards: clear of 127.0.0.1, where the servers listen.
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 1, 0)) + n)
}

/// `authz` settings, then two basic rules (a, b) with alice and bob, and a
/// bearer rule.
fn config(authz: &str, alice_password: &str) -> String {
    format!(
        "authz:\n{authz}rules:\n{}{}  - host: bearer.example.com\n    backend:\n      service:\n        name: app\n        auth:\n          type: bearer\n          bearer:\n            tokens: [{BEARER}]\n",
        basic_rule("a.example.com", alice_password),
        basic_rule("b.example.com", alice_password),
    )
}

fn basic_rule(host: &str, alice_password: &str) -> String {
    format!(
        "  - host: {host}\n    backend:\n      service:\n        name: app\n        auth:\n          type: basic\n          basic:\n            users:\n              - username: alice\n                password: '{alice_password}'\n              - username: bob\n                password: bob-pass-7e1d\n"
    )
}

/// [`config`] with `authz` settings and alice's password in plain text.
async fn plain_stack(authz: &str) -> Stack {
    Stack::start(&config(authz, "alice-pass-9f3c")).await
}

fn get(host: &str, authorization: &str) -> Request {
    Request::get(host, "/")
        .header("authorization", authorization)
        .header("accept", "application/json")
}

fn retry_after(response: &Response) -> u64 {
    response
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {response:?}"))
        .parse()
        .expect("Retry-After in seconds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_route_and_client() {
    let stack =
        plain_stack("  login_throttle: {max_failures: 3, window: 2s, per_user: false}\n").await;
    let me = loopback(1);
    let wrong = basic("alice:wrong");
    for i in 0..3 {
        let r = stack.send_from(me, get("a.example.com", &wrong)).await;
        assert_eq!(r.status, 401, "failure {i} is still a 401: {}", r.text());
    }
    // Blocked, the right password too: else guessing would go on.
    let blocked = stack
        .send_from(me, get("a.example.com", &basic(ALICE)))
        .await;
    assert_eq!(blocked.status, 429, "{}", blocked.text());
    let wait = retry_after(&blocked);
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(blocked.json()["status"], 429);
    // Another route from the same address, and another address: untouched.
    assert_upstream_ok(
        &stack
            .send_from(me, get("b.example.com", &basic(ALICE)))
            .await,
    );
    assert_upstream_ok(
        &stack
            .send_from(loopback(2), get("a.example.com", &basic(ALICE)))
            .await,
    );
    // Successes are never counted.
    for _ in 0..5 {
        assert_upstream_ok(
            &stack
                .send_from(loopback(3), get("a.example.com", &basic(ALICE)))
                .await,
        );
    }
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_upstream_ok(
        &stack
            .send_from(me, get("a.example.com", &basic(ALICE)))
            .await,
    );
    let logs = stack.authz.logs();
    assert!(
        logs.contains("\"reason\":\"throttled\""),
        "an audit line says throttled:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_guessed_from_many_addresses_is_throttled_by_username() {
    let stack = plain_stack(
        "  login_throttle: {max_failures: 100, max_failures_per_user: 3, window: 60s}\n",
    )
    .await;
    for i in 0..3 {
        let r = stack
            .send_from(
                loopback(10 + i),
                get("a.example.com", &basic("alice:guess")),
            )
            .await;
        assert_eq!(r.status, 401);
    }
    let r = stack
        .send_from(loopback(20), get("a.example.com", &basic(ALICE)))
        .await;
    assert_eq!(r.status, 429, "alice is locked on this route: {}", r.text());
    assert_upstream_ok(
        &stack
            .send_from(
                loopback(20),
                get("a.example.com", &basic("bob:bob-pass-7e1d")),
            )
            .await,
    );
    assert_upstream_ok(
        &stack
            .send_from(loopback(20), get("b.example.com", &basic(ALICE)))
            .await,
    );
}

/// Wrong passwords against a bcrypt route, from `flooders` tasks cycling
/// through `addresses` loopback addresses for `period`, while the bearer
/// route is checked one request after another. Returns (bearer statuses,
/// flood statuses).
async fn flood(
    stack: &Arc<Stack>,
    addresses: u32,
    flooders: usize,
    period: Duration,
) -> (Vec<u16>, Vec<u16>) {
    let stop = Instant::now() + period;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..flooders {
        let (stack, next) = (stack.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while Instant::now() < stop {
                let n = next.fetch_add(1, Ordering::Relaxed) as u32;
                let wrong = basic(&format!("alice:wrong-{n}"));
                let r = stack
                    .send_from(loopback(n % addresses), get("a.example.com", &wrong))
                    .await;
                statuses.push(r.status);
            }
            statuses
        }));
    }
    let mut bearer = Vec::new();
    while Instant::now() < stop {
        let r = stack
            .send_from(
                loopback(5000),
                get("bearer.example.com", &format!("Bearer {BEARER}")),
            )
            .await;
        bearer.push(r.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut flood = Vec::new();
    for t in tasks {
        flood.extend(t.await.expect("flooder"));
    }
    (bearer, flood)
}

fn assert_flood(bearer: &[u16], flood: &[u16], what: &str) {
    assert!(bearer.len() > 20, "{what}: the bearer route was checked");
    assert!(
        bearer.iter().all(|s| *s == 200),
        "{what}: the bearer route kept answering 200: {bearer:?}"
    );
    assert!(
        flood.iter().all(|s| matches!(s, 401 | 429)),
        "{what}: the flood only ever got 401/429, never 5xx: {:?}",
        flood
            .iter()
            .filter(|s| !matches!(s, 401 | 429))
            .collect::<Vec<_>>()
    );
    assert!(
        flood.contains(&429),
        "{what}: the flood was pushed back (429 busy or throttled)"
    );
}

/// [`config`] with alice's password as a bcrypt hash, one hash at a time
/// and the `login_throttle` settings `throttle`.
async fn bcrypt_stack(throttle: &str) -> Arc<Stack> {
    let hash = bcrypt::hash("alice-pass-9f3c", 10).expect("bcrypt");
    let authz = format!("  hash_concurrency: 1\n  login_throttle: {throttle}\n");
    Arc::new(Stack::start(&config(&authz, &hash)).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bcrypt_flood_never_hurts_another_route() {
    let _heavy = crate::common::heavy().await;
    // Throttle off, a thousand addresses: the bounded hash pool itself is
    // what protects the bearer route.
    let stack = bcrypt_stack("{enabled: false}").await;
    let (bearer, flood_statuses) = flood(&stack, 1000, 32, Duration::from_secs(4)).await;
    assert_flood(&bearer, &flood_statuses, "throttle off, 1000 addresses");
    let busy = stack.authz.logs().matches("\"reason\":\"busy\"").count();
    assert!(busy > 0, "the pool answered busy");
    // The right password still works once the flood is over.
    let mut ok = false;
    for _ in 0..20 {
        let r = stack
            .send_from(loopback(4000), get("a.example.com", &basic(ALICE)))
            .await;
        if r.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "alice gets in after the flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bcrypt_flood_from_one_address_is_throttled() {
    let _heavy = crate::common::heavy().await;
    let stack = bcrypt_stack("{max_failures: 10, window: 2s, per_user: false}").await;
    let (bearer, flood_statuses) = flood(&stack, 1, 8, Duration::from_secs(3)).await;
    assert_flood(&bearer, &flood_statuses, "throttle on, one address");
    let failures = flood_statuses.iter().filter(|s| **s == 401).count();
    // Per 2 s window (two in a 3 s flood) max_failures, plus the
    // verifications already past the gate when the tenth failure lands:
    // the one the pool runs and the one it queues (hash_concurrency: 1, a
    // queue as long again; the rest are turned away busy).
    assert!(
        failures <= 2 * (10 + 2),
        "at most max_failures (and what was in flight) per window got a hash: {failures} 401s"
    );
    let blocked = stack
        .send_from(loopback(0), get("a.example.com", &basic(ALICE)))
        .await;
    let wait = if blocked.status == 429 {
        retry_after(&blocked)
    } else {
        0
    };
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_upstream_ok(
        &stack
            .send_from(loopback(0), get("a.example.com", &basic(ALICE)))
            .await,
    );
}

/// The histogram's total seconds, from `/metrics`.
async fn check_seconds(stack: &Stack) -> (f64, u64) {
    let (_, text) = stack.authz.http_get("/metrics").await;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("ingress_authz_check_duration_seconds_sum"),
        value("ingress_authz_check_duration_seconds_count") as u64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_are_no_host_names_are_refused() {
    let stack = plain_stack("  trust_forwarded_proto: true\n").await;
    for host in [
        "a.example.com:80:80",
        "a.example.com:x",
        "alice@a.example.com",
        "a..example.com",
        "a.example.com:123456",
    ] {
        let r = stack.send(get(host, &basic(ALICE))).await;
        assert_eq!(r.status, 400, "{host}: {}", r.text());
        assert!(
            stack.upstream_requests().is_empty(),
            "{host} reached the upstream"
        );
    }
    // A 30 KB host is refused as no host name, before any rule lookup or
    // credential check (its cost is the benchmark's business, not a test's).
    let bad_hosts = || {
        stack
            .authz
            .logs()
            .matches("\"reason\":\"bad_host\"")
            .count()
    };
    let (_, n) = check_seconds(&stack).await;
    let refused = bad_hosts();
    let long = format!("{}.a.example.com", "x".repeat(30 * 1024));
    let r = stack.send(get(&long, &basic(ALICE))).await;
    assert_eq!(r.status, 400, "a 30 KB host: {}", r.text());
    let (_, m) = check_seconds(&stack).await;
    // Envoy may refuse such a host itself (then no check is made at all).
    if m == n + 1 {
        eventually(
            "the audit line of the 30 KB host",
            Duration::from_secs(2),
            Duration::from_millis(20),
            || async { bad_hosts() == refused + 1 },
        )
        .await;
    } else {
        assert_eq!(m, n, "no check, or exactly one");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_never_reach_a_protected_path() {
    let stack = Stack::start(
        "rules:\n  - host: app.example.com\n    backend:\n      service:\n        name: app\n        auth:\n          type: bearer\n          bearer: {tokens: [path-token-1]}\n    paths:\n      - path: /public/\n        backend: {service: {auth: {enabled: false}}}\n",
    )
    .await;
    assert_upstream_ok(&stack.get("app.example.com", "/public/x", &[]).await);
    for target in [
        "/public/..;/admin",
        "/admin;x",
        "/%2e%2e;/admin",
        "/public/%2e%2e;x=1/admin",
        "/public;/../admin",
    ] {
        let r = stack.get("app.example.com", target, &[]).await;
        assert_ne!(r.status, 200, "{target} got through: {}", r.text());
        assert!(
            stack
                .upstream_requests()
                .iter()
                .all(|u| !u.target.contains("admin")),
            "{target} reached the upstream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptying_a_tokens_file_revokes_and_a_broken_config_shows_stale() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ci revocable-token-31\n").unwrap();
    let config_text = format!(
        "rules:\n  - host: app.example.com\n    backend:\n      service:\n        name: app\n        auth:\n          type: bearer\n          bearer: {{tokens_file: '{}'}}\n",
        tokens.display()
    );
    let stack = Stack::start(&config_text).await;
    let with_token = || stack.get_auth("app.example.com", "/", Some("Bearer revocable-token-31"));
    assert_upstream_ok(&with_token().await);
    std::fs::write(&tokens, "").unwrap();
    let started = Instant::now();
    while with_token().await.status == 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the emptied file still lets the token in"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(with_token().await.status, 401);

    stack.authz.write_config("rules: [this is not: valid");
    let started = Instant::now();
    loop {
        let (_, body) = stack.authz.http_get("/readyz").await;
        if body.contains("stale since ") {
            assert!(body.starts_with("ready generation="), "{body}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "/readyz: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, metrics) = stack.authz.http_get("/metrics").await;
    assert!(
        metrics.contains("ingress_authz_config_stale 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_only_allows_and_records_what_it_would_deny() {
    let stack = Stack::start(
        "rules:\n  - host: app.example.com\n    backend:\n      service:\n        name: app\n        auth:\n          type: bearer\n          report_only: true\n          bearer: {tokens: [report-token-1]}\n",
    )
    .await;
    let r = stack
        .get("app.example.com", "/", &[("accept", "text/html")])
        .await;
    assert_upstream_ok(&r);
    let r = stack
        .get_auth("app.example.com", "/", Some("Bearer wrong"))
        .await;
    assert_upstream_ok(&r);
    let logs = stack.authz.logs();
    assert!(
        logs.contains("\"event\":\"would_deny\"")
            && logs.contains("\"reason\":\"missing_credentials\""),
        "{logs}"
    );
    let (_, metrics) = stack.authz.http_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ingress_authz_checks_total")
                && l.contains("decision=\"would_deny\"")
                && l.contains("reason=\"invalid_credentials\"")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_off_loopback_needs_a_token() {
    use ingress_authz::admin::proto::ConfigSummaryRequest;
    use ingress_authz::admin::proto::admin_client::AdminClient;
    let open = "authz:\n  admin_addr: 0.0.0.0:0\nrules:\n  - host: a.example.com\n    backend: {service: {name: app}}\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, open).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ingress-authz"))
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .output()
        .expect("run serve");
    assert!(!out.status.success(), "served an open admin API");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("authz.admin_token"), "{stderr}");

    let token = "admin-token-0123456789abcdef0123456789";
    let authz = Authz::start(&format!(
        "authz:\n  admin_token: {token}\nrules:\n  - host: a.example.com\n    backend: {{service: {{name: app}}}}\n"
    ))
    .await;
    let mut client = AdminClient::connect(format!("http://{}", authz.admin_addr()))
        .await
        .expect("connect admin");
    let refused = client
        .config_summary(ConfigSummaryRequest {})
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut with = tonic::Request::new(ConfigSummaryRequest {});
    with.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let summary = client.config_summary(with).await.expect("with the token");
    assert_eq!(summary.into_inner().routes.len(), 1);
    let mut wrong = tonic::Request::new(ConfigSummaryRequest {});
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer admin-token-wrong".parse().unwrap());
    assert_eq!(
        client.config_summary(wrong).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
}

/// One Check straight to the authorizer (Envoy sets `x-forwarded-proto`
/// itself, so https is a CheckRequest matter): (status, headers of the
/// answer, `Set-Cookie`s for the client).
async fn check(authz: &Authz, scheme: &str, headers: &[(&str, &str)]) -> (u16, Vec<String>) {
    use envoy_types::ext_authz::v3::pb::HttpResponse;
    let mut client = authz.grpc_client().await;
    let request = check_request("app.example.com", "/dashboard", scheme, headers);
    let response = client.check(request).await.expect("check").into_inner();
    let cookies = |hs: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption]| {
        hs.iter()
            .filter_map(|h| h.header.as_ref())
            .filter(|h| h.key.eq_ignore_ascii_case("set-cookie"))
            .map(|h| h.value.clone())
            .collect::<Vec<_>>()
    };
    match response.http_response {
        Some(HttpResponse::OkResponse(ok)) => (200, cookies(&ok.response_headers_to_add)),
        Some(HttpResponse::DeniedResponse(d)) => {
            (d.status.map_or(0, |s| s.code as u16), cookies(&d.headers))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_https_our_cookies_carry_the_host_prefix() {
    use ingress_authz::secret::Secret;
    use ingress_authz::session::{Purpose, SessionKeys};
    let secret = "hostile-session-secret-0123456789abcdef";
    let authz = Authz::start(&format!(
        "authz:\n  session: {{secret: {secret}}}\nrules:\n  - host: app.example.com\n    backend:\n      service:\n        name: app\n        auth:\n          type: oauth2\n          oauth2: {{provider: github, client_id: cid, client_secret: cs}}\n"
    ))
    .await;
    let navigate = [("accept", "text/html"), ("sec-fetch-mode", "navigate")];
    let (status, cookies) = check(&authz, "https", &navigate).await;
    assert_eq!(status, 302);
    let login = &cookies[0];
    assert!(
        login.starts_with("__Host-ingress_authz_login_")
            && login.contains("; Path=/;")
            && login.ends_with("; Secure"),
        "{login}"
    );
    let (_, cookies) = check(&authz, "http", &navigate).await;
    assert!(
        cookies[0].starts_with("ingress_authz_login_") && cookies[0].contains("Path=/oauth2/"),
        "plain http keeps the plain name: {}",
        cookies[0]
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let session = serde_json::json!({
        "u": {"id": "1", "username": "octocat", "email": "", "nickname": "", "avatar": ""},
        "p": "github", "c": "cid", "i": now, "e": now + 3600,
        "a": {"v": 1, "t": now}
    });
    let sealed = SessionKeys::from_secrets(&[Secret::new(secret.into())])
        .seal_json(Purpose::Session, &session);
    // A cookie from the release before the prefix: read once, replaced.
    let (status, cookies) = check(
        &authz,
        "https",
        &[("cookie", &format!("ingress_authz={sealed}"))],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-ingress_authz=") && c.ends_with("; Secure")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("ingress_authz=;") && c.contains("Max-Age=0")),
        "{cookies:?}"
    );
    let (status, cookies) = check(
        &authz,
        "https",
        &[("cookie", &format!("__Host-ingress_authz={sealed}"))],
    )
    .await;
    assert_eq!((status, cookies.len()), (200, 0), "{cookies:?}");
    // On http a prefixed cookie is no cookie of ours (a browser never sends one there).
    let (status, _) = check(
        &authz,
        "http",
        &[("cookie", &format!("__Host-ingress_authz={sealed}"))],
    )
    .await;
    assert_eq!(status, 401);
}
