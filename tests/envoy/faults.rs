//! Fault injection through real Envoy (issue 16, item 3), all on loopback
//! and bounded in time:
//!
//! * an OpenID provider that is slow (5 s), down (connection refused) or
//!   answers garbage (an HTML page, 500s, a JSON document cut short, a
//!   connection dropped mid-body): navigations get ingress-authz's own 503
//!   error page, API clients its 503 JSON, a `jwks_url` route its own
//!   refusal, each in well under a second (never Envoy's bare 503 after its
//!   0.5 s ext_authz timeout); a basic route on the same replica is
//!   untouched; `/metrics` counts every refused check; all recover once the
//!   provider does, without a restart;
//! * ingress-authz killed with SIGKILL under load: Envoy denies every
//!   request while it is gone (fail closed), the upstream never sees a
//!   request without a valid credential, and checks resume when it is
//!   started again on the same gRPC port;
//! * 100 config reloads under load, alternating between two configs that
//!   allow different users: every answer is one of the two configs' whole
//!   answers, none a mix, none a 5xx;
//! * a secret file that vanishes, or is replaced by a directory or a
//!   dangling symlink, at reload: the old config keeps serving and
//!   `/readyz` says `stale`;
//! * logs to a pipe nobody reads, to `/dev/full` or to a pipe whose reader
//!   is gone: 5,000 checks through Envoy are all answered.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ingress_authz::admin::proto::ReloadRequest;
use ingress_authz::admin::proto::admin_client::AdminClient;
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::common::client::{self, Request, Response};
use crate::common::configs;
use crate::common::creds;
use crate::common::fake_oidc::{
    self, Availability, CLIENT_ID, CLIENT_SECRET, FakeOidc, KeyKind, reserve_port,
};
use crate::common::idp::NAVIGATE;
use crate::common::{self, Authz, Backends, EchoUpstream, Envoy, Normalize, Stack, eventually};

/// What a client may wait for any answer through Envoy: Envoy's own
/// ext_authz timeout is 0.5 s (envoy/envoy.yaml), a check that waits for a
/// provider gives up after 0.25 s; the rest is a loaded machine's margin.
const PROMPT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Helpers

/// Sends `request` to Envoy at `addr`: the answer and how long it took.
async fn timed(addr: SocketAddr, request: &Request) -> (Response, Duration) {
    let sent = Instant::now();
    let response = client::send(addr, request)
        .await
        .unwrap_or_else(|e| panic!("{request:?} through envoy: {e}"));
    (response, sent.elapsed())
}

fn header_of<'a>(response: &'a Response, name: &str) -> &'a str {
    response.header(name).unwrap_or_default()
}

fn is_html(response: &Response) -> bool {
    header_of(response, "content-type").starts_with("text/html")
}

fn is_json(response: &Response) -> bool {
    header_of(response, "content-type").starts_with("application/json")
}

/// The sum of `ingress_authz_checks_total` samples whose labels include
/// every pair of `labels`.
fn checks_counted(metrics: &str, labels: &[(&str, &str)]) -> f64 {
    let lines = metrics.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "ingress_authz_checks_total")
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("not a counter: {other:?}"),
        })
        .sum()
}

/// A sample's value in a scrape (the first line starting with `name`).
fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The upstream's echo of the headers it received (the body of a 200 that
/// the upstream produced), names lower-cased.
fn echoed_headers(response: &Response) -> Vec<(String, String)> {
    let body = response.json();
    assert_eq!(body["upstream"], true, "not the upstream's answer: {body}");
    body["headers"]
        .as_array()
        .expect("echoed headers")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or_default().to_ascii_lowercase(),
                pair[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

// ===========================================================================
// 1. The identity provider misbehaves

const SESSION_SECRET: &str = "faults-session-secret-0123456789abcdef";
/// An oidc login route at the provider.
const OIDC_HOST: &str = "app.example.com";
/// A `type: jwt` route whose keys come from the provider's `jwks_url`.
const JWT_HOST: &str = "jwt.example.com";
/// A basic route on the same replica, which needs no provider.
const BASIC_HOST: &str = "other.example.com";
const AUDIENCE: &str = "faults-api";
const ALICE_PASSWORD: &str = "alice-faults-pw-3c9e";
const BOB_PASSWORD: &str = "bob-faults-pw-81d2";

/// rules[0] oidc at `issuer`, rules[1] jwt with the issuer's `/jwks`,
/// rules[2] basic (alice).
fn provider_config(issuer: &str) -> String {
    let oidc = format!(
        "type: oidc\nissuer: \"{issuer}\"\nclient_id: {CLIENT_ID}\nclient_secret: {CLIENT_SECRET}\nscopes: [openid, email]"
    );
    let jwt = format!(
        "type: jwt\njwt:\n  jwks_url: \"{issuer}/jwks\"\n  issuer: \"{issuer}\"\n  audience: \"{AUDIENCE}\""
    );
    configs::with_session(
        SESSION_SECRET,
        &[],
        &[
            configs::rule(OIDC_HOST, &oidc),
            configs::rule(JWT_HOST, &jwt),
            configs::rule(
                BASIC_HOST,
                &configs::basic_users(&[("alice", ALICE_PASSWORD)]),
            ),
        ],
    )
}

/// How the provider fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Nothing listens on its port: connection refused.
    Down,
    /// Discovery and the JWKS answer this way.
    Answers(Availability),
}

/// The answers one round of requests got, and the slowest.
#[derive(Default, Debug)]
struct Tally {
    /// Navigations and API calls to the oidc route refused with our 503.
    oidc_503: usize,
    /// Requests with a valid JWT to the jwt route refused (by us).
    jwt_refused: usize,
    /// Alice let through on the basic route.
    basic_ok: usize,
    /// Anonymous requests to the basic route challenged.
    basic_401: usize,
    slowest: Duration,
    slowest_what: String,
}

impl Tally {
    fn took(&mut self, what: &str, took: Duration) {
        assert!(
            took < PROMPT,
            "{what} took {took:?}: a check hung (Envoy's ext_authz timeout is 0.5 s)"
        );
        if took > self.slowest {
            self.slowest = took;
            self.slowest_what = what.to_owned();
        }
    }
}

/// A valid access token for the jwt route, signed by the fixture key the
/// fake provider publishes (whether or not a provider is up).
fn valid_jwt(issuer: &str) -> String {
    let now = fake_oidc::now();
    let claims =
        json!({"iss": issuer, "sub": "api-client", "aud": AUDIENCE, "iat": now, "exp": now + 3600});
    fake_oidc::sign(
        KeyKind::Rsa,
        Some(&KeyKind::Rsa.default_kid()),
        Algorithm::RS256,
        "at+jwt",
        &claims,
    )
}

/// One round while the provider misbehaves: every answer is ingress-authz's
/// own, in time, and the basic route works as ever.
async fn round_while_down(stack: &Stack, token: &str, tally: &mut Tally) {
    let addr = stack.envoy.addr();
    let debug = || stack.debug_logs();

    let nav = NAVIGATE
        .iter()
        .fold(Request::get(OIDC_HOST, "/dashboard"), |r, (n, v)| {
            r.header(n, v)
        });
    let (r, took) = timed(addr, &nav).await;
    tally.took("a navigation to the oidc route", took);
    assert!(
        r.status == 503 && is_html(&r) && r.text().contains("<html"),
        "a navigation gets ingress-authz's 503 error page, got {} {:?} {}\n{}",
        r.status,
        r.headers,
        r.text(),
        debug()
    );
    assert!(r.header("location").is_none(), "{:?}", r.headers);
    tally.oidc_503 += 1;

    let api = Request::get(OIDC_HOST, "/api/items").header("accept", "application/json");
    let (r, took) = timed(addr, &api).await;
    tally.took("an API call to the oidc route", took);
    assert!(
        r.status == 503
            && is_json(&r)
            && r.json()
                == json!({"status": 503, "error": "Service Unavailable",
                    "message": "The identity provider is unavailable."}),
        "an API client gets ingress-authz's 503 JSON, got {} {:?} {}\n{}",
        r.status,
        r.headers,
        r.text(),
        debug()
    );
    tally.oidc_503 += 1;

    let jwt = Request::get(JWT_HOST, "/api/items")
        .header("authorization", &creds::bearer(token))
        .header("accept", "application/json");
    let (r, took) = timed(addr, &jwt).await;
    tally.took(
        "a check with a valid JWT while the JWKS is unavailable",
        took,
    );
    // No keys: refused by ingress-authz (a challenge or its JSON), never
    // let through, never Envoy's own empty 503.
    let ours = (r.status == 401 && r.header("www-authenticate").is_some())
        || (r.status == 503 && is_json(&r) && r.json()["status"] == 503);
    assert!(
        ours,
        "the jwt route refuses without keys, by ingress-authz: {} {:?} {}\n{}",
        r.status,
        r.headers,
        r.text(),
        debug()
    );
    tally.jwt_refused += 1;

    let alice = Request::get(BASIC_HOST, "/x")
        .header("authorization", &creds::basic("alice", ALICE_PASSWORD));
    let (r, took) = timed(addr, &alice).await;
    tally.took("alice on the basic route", took);
    assert!(
        r.status == 200 && r.json()["upstream"] == true,
        "the basic route is unaffected: {} {}\n{}",
        r.status,
        r.text(),
        debug()
    );
    tally.basic_ok += 1;

    let (r, took) = timed(addr, &Request::get(BASIC_HOST, "/x")).await;
    tally.took("an anonymous request to the basic route", took);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        header_of(&r, "www-authenticate").starts_with("Basic realm="),
        "{:?}",
        r.headers
    );
    tally.basic_401 += 1;
}

/// The stack in front of a provider failing as `fault`, a few seconds of
/// requests, the metrics, then recovery once the provider is well.
async fn provider_fault(fault: Fault, log_says: &[&str]) {
    // A port for the provider; nothing listens there while it is down.
    let port = reserve_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let slow = fault == Fault::Answers(Availability::Slow);
    let fake = match fault {
        Fault::Down => None,
        Fault::Answers(availability) => {
            let fake = FakeOidc::start_on(port).await;
            // Slow: the attempts while the stack starts fail at once, so
            // that every 5 s answer comes after the window of requests.
            let availability = if slow {
                Availability::Error
            } else {
                availability
            };
            fake.set_discovery(availability);
            fake.set_jwks(availability);
            Some(fake)
        }
    };
    let stack = Stack::start(&provider_config(&issuer)).await;
    // Slow: every attempt from here on answers 5 s later, so 3.5 s of
    // requests all fall before the first answer.
    if let (Some(fake), true) = (&fake, slow) {
        fake.set_discovery(Availability::Slow);
        fake.set_jwks(Availability::Slow);
    }
    let calls_before = fake.as_ref().map_or(0, |f| f.calls().len());
    let token = valid_jwt(&issuer);

    let mut tally = Tally::default();
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        round_while_down(&stack, &token, &mut tally).await;
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{fault:?}: {rounds} rounds in {:?}, slowest answer {:?} ({})",
        started.elapsed(),
        tally.slowest,
        tally.slowest_what
    );
    assert!(rounds >= 5, "{rounds} rounds");
    if let Some(fake) = &fake {
        assert!(
            fake.calls().len() > calls_before,
            "the misbehaving provider was asked (the checks did not just wait out a backoff)"
        );
    }

    let (_, metrics) = stack.authz.http_get("/metrics").await;
    let refused_oidc = checks_counted(
        &metrics,
        &[
            ("rule", "rules[0]"),
            ("decision", "deny"),
            ("reason", "idp_unavailable"),
        ],
    );
    assert_eq!(
        refused_oidc, tally.oidc_503 as f64,
        "every 503 of the oidc route is counted as idp_unavailable:\n{metrics}"
    );
    let refused_jwt = checks_counted(&metrics, &[("rule", "rules[1]"), ("decision", "deny")]);
    assert_eq!(
        refused_jwt, tally.jwt_refused as f64,
        "every refusal of the jwt route is counted:\n{metrics}"
    );
    assert_eq!(
        (
            checks_counted(&metrics, &[("rule", "rules[2]"), ("decision", "allow")]),
            checks_counted(&metrics, &[("rule", "rules[2]"), ("decision", "deny")]),
        ),
        (tally.basic_ok as f64, tally.basic_401 as f64),
        "the basic route's allows and challenges:\n{metrics}"
    );
    assert_eq!(
        checks_counted(&metrics, &[("rule", "rules[1]"), ("decision", "allow")])
            + checks_counted(&metrics, &[("rule", "rules[0]"), ("decision", "allow")]),
        0.0,
        "nothing was let through on the provider's routes:\n{metrics}"
    );
    let logs = stack.authz.logs();
    for cause in log_says {
        assert!(
            logs.contains(cause),
            "{fault:?}: the log names the cause `{cause}`:\n{}",
            stack.debug_logs()
        );
    }
    assert!(
        stack
            .upstream_requests()
            .iter()
            .all(|r| r.header("host") == Some(BASIC_HOST)),
        "only the basic route reached the upstream"
    );

    // The provider recovers (a slow one needs not: its answers come in the
    // end): so do the routes, without a restart.
    let fake = match fake {
        Some(fake) if slow => fake,
        Some(fake) => {
            fake.set_discovery(Availability::Up);
            fake.set_jwks(Availability::Up);
            fake
        }
        None => FakeOidc::start_on(port).await,
    };
    let recovering = Instant::now();
    let addr = stack.envoy.addr();
    eventually(
        "the oidc route redirects to the provider again",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let nav = NAVIGATE
                .iter()
                .fold(Request::get(OIDC_HOST, "/dashboard"), |r, (n, v)| {
                    r.header(n, v)
                });
            let (r, _) = timed(addr, &nav).await;
            r.status == 302 && header_of(&r, "location").starts_with(&fake.authorize_url())
        },
    )
    .await;
    eventually(
        "the jwt route verifies with the provider's keys again",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let jwt = Request::get(JWT_HOST, "/api/items")
                .header("authorization", &creds::bearer(&token));
            timed(addr, &jwt).await.0.status == 200
        },
    )
    .await;
    eprintln!(
        "{fault:?}: recovered {:?} after the provider did",
        recovering.elapsed()
    );
}

/// The provider takes 5 s per answer: each check waits 0.25 s at most and
/// answers 503; the slow answers are used once they come (the provider's
/// 10 s timeout is not reached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_slow_5s_answers_503_in_time_then_recovers() {
    provider_fault(
        Fault::Answers(Availability::Slow),
        &["OpenID discovery failed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_answers_503_in_time_then_recovers() {
    provider_fault(Fault::Down, &["Connection refused"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_answering_html_answers_503_in_time_then_recovers() {
    provider_fault(
        Fault::Answers(Availability::Html),
        &["response is not JSON (content-type text/html"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_answering_500_answers_503_in_time_then_recovers() {
    provider_fault(Fault::Answers(Availability::Error), &["HTTP 500"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_truncated_json_answers_503_in_time_then_recovers() {
    provider_fault(
        Fault::Answers(Availability::Truncated),
        &["response is not JSON (content-type application/json)"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_dropping_the_connection_mid_body_answers_503_in_time_then_recovers() {
    provider_fault(Fault::Answers(Availability::CutOff), &["request failed: "]).await;
}

// ===========================================================================
// 2. ingress-authz killed under load

const BEARER_TOKEN: &str = "faults-bearer-token-7a41c2";

/// Basic (alice) and bearer routes, plain credentials: cheap checks.
fn kill_config() -> String {
    configs::rules(&[
        configs::rule(
            BASIC_HOST,
            &configs::basic_users(&[("alice", ALICE_PASSWORD)]),
        ),
        configs::rule("api.example.com", &configs::bearer_tokens(&[BEARER_TOKEN])),
    ])
}

/// One request of the load: `(valid, request)`; each carries
/// `x-fault-id: {valid|invalid}-{n}` so the upstream's record tells them
/// apart.
fn load_request(n: usize, valid: bool) -> Request {
    let (host, authorization) = match (valid, n % 4) {
        (true, 0 | 2) => (BASIC_HOST, Some(creds::basic("alice", ALICE_PASSWORD))),
        (true, _) => ("api.example.com", Some(creds::bearer(BEARER_TOKEN))),
        (false, 0) => (BASIC_HOST, None),
        (false, 1) => (BASIC_HOST, Some(creds::basic("alice", "not-her-password"))),
        (false, 2) => ("api.example.com", Some(creds::bearer("not-the-token"))),
        (false, _) => ("api.example.com", None),
    };
    let kind = if valid { "valid" } else { "invalid" };
    let request = Request::get(host, &format!("/load/{n}"))
        .header("x-fault-id", &format!("{kind}-{n}"))
        .header("accept", "application/json");
    match authorization {
        Some(value) => request.header("authorization", &value),
        None => request,
    }
}

/// One answer of the load.
#[derive(Clone, Debug)]
struct Outcome {
    valid: bool,
    sent: Instant,
    answered: Instant,
    /// 0: no HTTP answer at all.
    status: u16,
}

/// `clients` tasks sending [`load_request`]s (half of them valid) to
/// `addr` until `stop`, each a few hundred a second at most (while Envoy
/// answers at once, during an outage, unpaced clients would take all the
/// CPU from the tests running beside this one).
fn start_load(
    addr: SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
    let next = Arc::new(AtomicUsize::new(0));
    (0..clients)
        .map(|client| {
            let (stop, next) = (stop.clone(), next.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let valid = client % 2 == 0;
                    let sent = Instant::now();
                    let status = client::send(addr, &load_request(n, valid))
                        .await
                        .map_or(0, |r| r.status);
                    outcomes.push(Outcome {
                        valid,
                        sent,
                        answered: Instant::now(),
                        status,
                    });
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                outcomes
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_fails_closed_and_resumes_on_restart() {
    let _heavy = common::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, common::authz::untrottled(&kill_config())).expect("write config");
    let upstream = EchoUpstream::start().await;
    let authz = Authz::start_at(&config).await;
    let grpc = authz.grpc_addr();
    let envoy = Envoy::start(
        Backends {
            authz_grpc: grpc,
            authz_http: authz.http_addr(),
            upstream: upstream.addr(),
        },
        Normalize::On,
    )
    .await;
    upstream.clear();
    let addr = envoy.addr();

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(addr, 6, stop.clone());
    // Load through a working authorizer first.
    let ok_before =
        eventually_count(&upstream, 100, "100 valid requests served before the kill").await;

    let mut authz = authz;
    authz.signal("KILL");
    let status = authz
        .wait_exit(Duration::from_secs(5))
        .expect("SIGKILL ends it");
    assert!(!status.success(), "{status:?}");
    let dead = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarting = Instant::now();
    let restarted = Authz::start_at_grpc(&config, grpc).await;
    let up = Instant::now();
    let served_at_restart = upstream.requests().len();
    // Checks resume: valid requests reach the upstream again.
    eventually_count(
        &upstream,
        served_at_restart + 100,
        "100 more valid requests served after the restart",
    )
    .await;
    let resumed_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for task in load {
        outcomes.extend(task.await.expect("load client"));
    }

    // Fail closed: no invalid request was ever let through.
    let leaked: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !o.valid && (200..300).contains(&o.status))
        .collect();
    assert!(
        leaked.is_empty(),
        "invalid requests let through: {leaked:?}"
    );
    // Every answer is an answer: the client always got one from Envoy.
    let unanswered = outcomes.iter().filter(|o| o.status == 0).count();
    assert_eq!(unanswered, 0, "requests without an HTTP answer");
    // While nothing listened, every request was denied by Envoy (5xx).
    let outage: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.sent >= dead && o.answered <= restarting)
        .collect();
    let outage_allowed: Vec<&&Outcome> = outage.iter().filter(|o| o.status < 500).collect();
    assert!(
        outage_allowed.is_empty(),
        "answers other than 5xx while ingress-authz was down: {outage_allowed:?}"
    );
    assert!(
        outage.len() >= 20,
        "only {} requests fell in the outage",
        outage.len()
    );
    // Valid requests got a 200 or, around the outage, a 503; invalid ones
    // their 401 or a 503.
    let odd: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| match o.valid {
            true => !matches!(o.status, 200 | 503),
            false => !matches!(o.status, 401 | 503),
        })
        .collect();
    assert!(odd.is_empty(), "unexpected statuses: {odd:?}");
    // The upstream only ever saw valid credentials.
    let valid_credentials = [
        creds::basic("alice", ALICE_PASSWORD),
        creds::bearer(BEARER_TOKEN),
    ];
    let recorded = upstream.requests();
    let unauthenticated: Vec<_> = recorded
        .iter()
        .filter(|r| {
            !r.header("x-fault-id")
                .is_some_and(|id| id.starts_with("valid-"))
                || !r
                    .header("authorization")
                    .is_some_and(|a| valid_credentials.iter().any(|v| v == a))
        })
        .collect();
    assert!(
        unauthenticated.is_empty(),
        "{} of {} upstream requests lack a valid credential: {:?}",
        unauthenticated.len(),
        recorded.len(),
        unauthenticated.iter().take(3).collect::<Vec<_>>()
    );
    // After the restart, checks are answered again: invalid requests get
    // ingress-authz's 401, not Envoy's 503.
    let after = |valid: bool, status: u16| {
        outcomes
            .iter()
            .filter(|o| o.valid == valid && o.status == status && o.sent >= up)
            .count()
    };
    assert!(after(false, 401) > 0, "no 401 after the restart");
    assert!(after(true, 200) > 0, "no 200 after the restart");
    eprintln!(
        "SIGKILL: {} requests ({} valid); {ok_before} served before the kill; \
         {} in the outage ({:?} from exit to restart), all {:?}; \
         restart took {:?}, 100 served within {:?} of it ({} 200s and {} 401s after it, \
         {} 503s); {} reached the upstream, all with valid credentials",
        outcomes.len(),
        outcomes.iter().filter(|o| o.valid).count(),
        outage.len(),
        restarting - dead,
        outage
            .iter()
            .map(|o| o.status)
            .collect::<std::collections::BTreeSet<_>>(),
        up - restarting,
        resumed_at - up,
        after(true, 200),
        after(false, 401),
        after(true, 503) + after(false, 503),
        recorded.len(),
    );
    drop(restarted);
}

/// Waits (up to 20 s) until the upstream has recorded `n` requests.
async fn eventually_count(upstream: &EchoUpstream, n: usize, what: &str) -> usize {
    eventually(
        what,
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async { upstream.requests().len() >= n },
    )
    .await;
    upstream.requests().len()
}

// ===========================================================================
// 3. 100 reloads under load

/// One of the two configs the reloads alternate between: config `a` lets
/// alice in, `b` bob; each has its own realm and identity header, so an
/// answer tells which config gave it, and a mix of the two shows.
fn reload_config(config: char) -> String {
    let (user, password) = match config {
        'a' => ("alice", ALICE_PASSWORD),
        _ => ("bob", BOB_PASSWORD),
    };
    let auth = format!(
        "type: basic\nbasic:\n  realm: cfg-{config}\n  users:\n    - username: {user}\n      password: \"{password}\"\nidentity_headers:\n  user: X-User-{config}"
    );
    configs::rules(&[configs::rule(BASIC_HOST, &auth)])
}

/// Who a request of the reload load comes as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Who {
    Alice,
    Bob,
    Nobody,
    /// Alice with bob's password.
    Wrong,
}

impl Who {
    const ALL: [Self; 4] = [Self::Alice, Self::Bob, Self::Nobody, Self::Wrong];

    fn request(self) -> Request {
        let request = Request::get(BASIC_HOST, "/r").header("accept", "application/json");
        let authorization = match self {
            Self::Alice => creds::basic("alice", ALICE_PASSWORD),
            Self::Bob => creds::basic("bob", BOB_PASSWORD),
            Self::Wrong => creds::basic("alice", BOB_PASSWORD),
            Self::Nobody => return request,
        };
        request.header("authorization", &authorization)
    }

    /// Whether config `config` lets this one in.
    fn allowed_by(self, config: char) -> bool {
        matches!((self, config), (Self::Alice, 'a') | (Self::Bob, 'b'))
    }
}

/// Which config gave `response` to `who`, if the whole answer is one
/// config's: an allow carries that config's identity header (and not the
/// other's), a challenge that config's realm, and the config must give that
/// answer to `who`.
fn answered_by(who: Who, response: &Response) -> Option<char> {
    match response.status {
        200 => {
            let headers = echoed_headers(response);
            let has = |name: &str| headers.iter().any(|(n, _)| n == name);
            let user = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            let config = match (has("x-user-a"), has("x-user-b")) {
                (true, false) if user("x-user-a") == Some("alice") => 'a',
                (false, true) if user("x-user-b") == Some("bob") => 'b',
                _ => return None,
            };
            who.allowed_by(config).then_some(config)
        }
        401 => {
            let config = match response.header("www-authenticate")? {
                r#"Basic realm="cfg-a", charset="UTF-8""# => 'a',
                r#"Basic realm="cfg-b", charset="UTF-8""# => 'b',
                _ => return None,
            };
            (!who.allowed_by(config) && response.json()["status"] == 401).then_some(config)
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_load_never_mix_configs_nor_fail_a_check() {
    let _heavy = common::heavy().await;
    let stack = Arc::new(Stack::start(&reload_config('a')).await);
    let mut admin = AdminClient::connect(format!("http://{}", stack.authz.admin_addr()))
        .await
        .expect("connect admin");
    let addr = stack.envoy.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut n = client;
                while !stop.load(Ordering::Relaxed) {
                    let who = Who::ALL[n % Who::ALL.len()];
                    n += 1;
                    let response = client::send(addr, &who.request()).await;
                    answers.push((who, response));
                }
                answers
            })
        })
        .collect();

    let started = Instant::now();
    let mut generation = 1;
    for i in 1..=100 {
        let config = if i % 2 == 1 { 'b' } else { 'a' };
        stack.authz.write_config(&reload_config(config));
        let reloaded = admin
            .reload(ReloadRequest {})
            .await
            .expect("Reload answers")
            .into_inner();
        assert!(reloaded.ok, "reload {i}: {:?}", reloaded.errors);
        assert!(reloaded.generation > generation, "reload {i}: {reloaded:?}");
        generation = reloaded.generation;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let reloading = started.elapsed();
    // The last config (a) serves on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.expect("load client"));
    }

    let mut by: std::collections::BTreeMap<(Who, char), usize> = Default::default();
    let mut wrong = Vec::new();
    for (who, response) in &answers {
        match response {
            Ok(response) => match answered_by(*who, response) {
                Some(config) => *by.entry((*who, config)).or_default() += 1,
                None => wrong.push(format!(
                    "{who:?}: {} {:?} {}",
                    response.status,
                    response.headers,
                    response.text()
                )),
            },
            Err(e) => wrong.push(format!("{who:?}: no answer: {e}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} answers are no config's whole answer (or failed), e.g. {:?}\n{}",
        wrong.len(),
        answers.len(),
        &wrong[..wrong.len().min(5)],
        stack.debug_logs()
    );
    // Both configs answered every kind of request while they alternated.
    for who in Who::ALL {
        for config in ['a', 'b'] {
            assert!(
                by.get(&(who, config)).copied().unwrap_or(0) > 0,
                "{who:?} never answered by config {config}: {by:?}"
            );
        }
    }
    let (status, ready) = stack.authz.http_get("/readyz").await;
    let reported: u64 = ready
        .trim()
        .strip_prefix("ready generation=")
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("/readyz: {status} {ready}"));
    assert!(reported >= 101, "/readyz: {ready}");
    let (_, metrics) = stack.authz.http_get("/metrics").await;
    let ok = metric(
        &metrics,
        "ingress_authz_config_reloads_total{result=\"ok\"}",
    );
    assert!(ok.is_some_and(|n| n >= 100.0), "{metrics}");
    assert_eq!(
        metric(
            &metrics,
            "ingress_authz_config_reloads_total{result=\"failed\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
    // Every check was one of the two answers, as counted by the service.
    let allowed: usize = by
        .iter()
        .filter(|((who, config), _)| who.allowed_by(*config))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        checks_counted(&metrics, &[("rule", "rules[0]"), ("decision", "allow")]),
        allowed as f64,
        "{metrics}"
    );
    assert_eq!(
        checks_counted(&metrics, &[("rule", "rules[0]"), ("decision", "deny")]),
        (answers.len() - allowed) as f64,
        "{metrics}"
    );
    eprintln!(
        "reloads: 100 in {reloading:?} (generation {reported}, {ok:?} ok); {} checks, \
         each one config's whole answer: {by:?}",
        answers.len()
    );
}

// ===========================================================================
// 4. Secret files that cannot be read at reload

/// A secret file made unreadable one way or another.
#[derive(Clone, Copy, Debug)]
enum Unreadable {
    /// Removed.
    Vanished,
    /// A directory where the file was.
    Directory,
    /// A symlink to a path that does not exist.
    DanglingSymlink,
    /// Mode 000: no obstacle to root, who may read it all the same.
    Mode000,
}

impl Unreadable {
    fn apply(self, path: &Path) {
        use std::os::unix::fs::PermissionsExt as _;
        match self {
            Self::Vanished => std::fs::remove_file(path).expect("remove"),
            Self::Directory => {
                std::fs::remove_file(path).expect("remove");
                std::fs::create_dir(path).expect("mkdir in its place");
            }
            Self::DanglingSymlink => {
                std::fs::remove_file(path).expect("remove");
                std::os::unix::fs::symlink(path.with_extension("gone"), path).expect("symlink");
            }
            Self::Mode000 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000))
                    .expect("chmod 000");
            }
        }
    }

    /// The file back as it was, replaced atomically.
    fn restore(self, path: &Path, content: &str) {
        match self {
            Self::Directory => std::fs::remove_dir(path).expect("rmdir"),
            Self::DanglingSymlink | Self::Mode000 => std::fs::remove_file(path).expect("remove"),
            Self::Vanished => {}
        }
        let staged = path.with_extension("staged");
        std::fs::write(&staged, content).expect("write");
        std::fs::rename(&staged, path).expect("rename");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_secret_files_keep_the_old_config_serving_and_show_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir");
    let tokens = secrets.join("tokens");
    let users = secrets.join("htpasswd");
    let session_secret = secrets.join("session-secret");
    let tokens_text = format!("{BEARER_TOKEN}\n");
    let users_text = format!(
        "alice:{}\n",
        bcrypt::hash(ALICE_PASSWORD, 4).expect("bcrypt")
    );
    let session_text = "faults-session-secret-from-a-file-0123456789\n";
    for (path, text) in [
        (&tokens, tokens_text.as_str()),
        (&users, users_text.as_str()),
        (&session_secret, session_text),
    ] {
        std::fs::write(path, text).expect("write secret");
    }
    let config = format!(
        "authz:\n  session:\n    secret_file: \"{}\"\nrules:\n{}{}",
        session_secret.display(),
        configs::rule(
            BASIC_HOST,
            &format!("type: basic\nbasic:\n  users_file: \"{}\"", users.display())
        ),
        configs::rule(
            "api.example.com",
            &format!(
                "type: bearer\nbearer:\n  tokens_file: \"{}\"",
                tokens.display()
            )
        ),
    );
    let stack = Stack::start(&config).await;
    let mut admin = AdminClient::connect(format!("http://{}", stack.authz.admin_addr()))
        .await
        .expect("connect admin");
    let serves_the_old_config = || async {
        let alice = stack
            .get_auth(
                BASIC_HOST,
                "/",
                Some(&creds::basic("alice", ALICE_PASSWORD)),
            )
            .await;
        let token = stack
            .get_auth("api.example.com", "/", Some(&creds::bearer(BEARER_TOKEN)))
            .await;
        let wrong = stack
            .get_auth("api.example.com", "/", Some(&creds::bearer("nope")))
            .await;
        assert_eq!(
            (alice.status, token.status, wrong.status),
            (200, 200, 401),
            "alice, the token, a wrong token\n{}",
            stack.debug_logs()
        );
    };
    serves_the_old_config().await;
    let mut generation = 1;

    for (fault, path, content, name) in [
        (
            Unreadable::Vanished,
            &tokens,
            tokens_text.as_str(),
            "tokens_file",
        ),
        (
            Unreadable::Directory,
            &users,
            users_text.as_str(),
            "users_file",
        ),
        (
            Unreadable::DanglingSymlink,
            &session_secret,
            session_text,
            "session-secret",
        ),
        (
            Unreadable::Mode000,
            &tokens,
            tokens_text.as_str(),
            "tokens_file",
        ),
    ] {
        fault.apply(path);
        // Root reads a mode-000 file all the same: then nothing fails.
        let fails = std::fs::read_to_string(path).is_err();
        let reloaded = admin
            .reload(ReloadRequest {})
            .await
            .expect("Reload answers")
            .into_inner();
        let (_, ready) = stack.authz.http_get("/readyz").await;
        let (_, metrics) = stack.authz.http_get("/metrics").await;
        let stale = metric(&metrics, "ingress_authz_config_stale");
        eprintln!(
            "{fault:?} {name}: readable by this user: {}; reload ok {}, errors {:?}; /readyz {:?}",
            !fails, reloaded.ok, reloaded.errors, ready
        );
        if fails {
            assert!(!reloaded.ok, "{fault:?}: the reload is refused");
            assert_eq!(reloaded.generation, generation, "{fault:?}");
            assert!(
                reloaded
                    .errors
                    .iter()
                    .any(|e| e.contains("cannot read") && e.contains(name)),
                "{fault:?}: the error names the file: {:?}",
                reloaded.errors
            );
            let mut lines = ready.lines();
            assert_eq!(
                lines.next(),
                Some(format!("ready generation={generation}").as_str()),
                "{ready}"
            );
            let line = lines.next().unwrap_or_default();
            assert!(
                line.starts_with("stale since ")
                    && line.contains("cannot read")
                    && line.contains(name),
                "{fault:?}: /readyz says stale: {ready}"
            );
            assert_eq!(stale, Some(1.0), "{metrics}");
        } else {
            assert!(reloaded.ok, "{fault:?}: {:?}", reloaded.errors);
            generation = reloaded.generation;
            assert!(!ready.contains("stale"), "{ready}");
            assert_eq!(stale, Some(0.0), "{metrics}");
        }
        serves_the_old_config().await;

        fault.restore(path, content);
        let reloaded = admin
            .reload(ReloadRequest {})
            .await
            .expect("Reload answers")
            .into_inner();
        assert!(reloaded.ok, "{fault:?} restored: {:?}", reloaded.errors);
        assert!(reloaded.generation > generation);
        generation = reloaded.generation;
        let (_, ready) = stack.authz.http_get("/readyz").await;
        assert!(
            ready.starts_with("ready generation=") && !ready.contains("stale"),
            "{fault:?} restored: {ready}"
        );
        serves_the_old_config().await;
    }
    let (_, metrics) = stack.authz.http_get("/metrics").await;
    assert_eq!(
        metric(&metrics, "ingress_authz_config_stale"),
        Some(0.0),
        "{metrics}"
    );
}

// ===========================================================================
// 5. Logs nobody reads, logs that cannot be written

/// Where ingress-authz's stderr goes.
#[derive(Clone, Copy, Debug)]
enum LogSink {
    /// A pipe whose read end the test holds and never reads: it fills up.
    UnreadPipe,
    /// `/dev/full`: every write fails with ENOSPC (a full disk).
    DevFull,
    /// A pipe whose read end is closed: every write fails with EPIPE.
    ClosedPipe,
}

/// 5,000 checks through Envoy (alice allowed, anonymous and wrong
/// passwords refused), 8 at a time, with ingress-authz logging at debug
/// (several lines per check) to `sink`: every one is answered by
/// ingress-authz, promptly.
async fn checks_with_logs_to(sink: LogSink) {
    const CHECKS: usize = 5000;
    let _heavy = common::heavy().await;
    let stderr = match sink {
        LogSink::UnreadPipe | LogSink::ClosedPipe => Stdio::piped(),
        LogSink::DevFull => std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full")
            .into(),
    };
    let config = configs::rules(&[configs::rule(
        BASIC_HOST,
        &configs::basic_users(&[("alice", ALICE_PASSWORD)]),
    )]);
    let mut authz = Authz::start_with_stderr(&config, stderr, "debug").await;
    let mut pipe = authz.take_stderr();
    if let LogSink::ClosedPipe = sink {
        drop(pipe.take());
    }
    let upstream = EchoUpstream::start().await;
    let envoy = Envoy::start(
        Backends {
            authz_grpc: authz.grpc_addr(),
            authz_http: authz.http_addr(),
            upstream: upstream.addr(),
        },
        Normalize::On,
    )
    .await;
    let addr = envoy.addr();

    let next = Arc::new(AtomicUsize::new(0));
    // A stalled authorizer costs Envoy's 0.5 s per check: give up after a
    // few rather than wait out all 5,000.
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (next, failures) = (next.clone(), failures.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= CHECKS || failures.load(Ordering::Relaxed) >= 20 {
                        return answers;
                    }
                    let request = match n % 3 {
                        0 => Request::get(BASIC_HOST, "/")
                            .header("authorization", &creds::basic("alice", ALICE_PASSWORD)),
                        1 => Request::get(BASIC_HOST, "/"),
                        _ => Request::get(BASIC_HOST, "/")
                            .header("authorization", &creds::basic("alice", "wrong")),
                    };
                    let sent = Instant::now();
                    let status = client::send(addr, &request).await.map_or(0, |r| r.status);
                    if status != if n % 3 == 0 { 200 } else { 401 } {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    answers.push((n, status, sent.elapsed()));
                }
            })
        })
        .collect();
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.expect("load client"));
    }
    let took = started.elapsed();
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(n, status, _)| *status != if n % 3 == 0 { 200 } else { 401 })
        .collect();
    let slowest = answers.iter().map(|a| a.2).max().unwrap_or_default();
    let (_, metrics) = authz.http_get("/metrics").await;
    let dropped = metric(&metrics, "ingress_authz_log_lines_dropped_total");
    // What the pipe holds: the test never read it, so it is full.
    let buffered = pipe.as_mut().map(|p| {
        authz.signal("KILL");
        let _ = authz.wait_exit(Duration::from_secs(5));
        let mut held = Vec::new();
        let _ = p.read_to_end(&mut held);
        held.len()
    });
    eprintln!(
        "logs to {sink:?}: {} checks in {took:?}, slowest {slowest:?}, {} wrong; \
         {dropped:?} log lines dropped; the unread pipe held {buffered:?} bytes",
        answers.len(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {CHECKS} checks not answered as they should be (0: no answer, \
         503: Envoy gave up on ingress-authz), e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert_eq!(answers.len(), CHECKS);
    assert!(slowest < PROMPT, "the slowest answer took {slowest:?}");
    // The destination did refuse lines: else this proves nothing.
    if let Some(buffered) = buffered {
        assert!(
            buffered >= 48 * 1024,
            "the pipe was never full ({buffered} bytes)"
        );
    }
    if let LogSink::DevFull | LogSink::ClosedPipe = sink {
        assert!(
            dropped.is_some_and(|n| n >= CHECKS as f64),
            "every write failed, each line counted as dropped: {dropped:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_pipe_nobody_reads_do_not_stop_decisions() {
    checks_with_logs_to(LogSink::UnreadPipe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_full_disk_do_not_stop_decisions() {
    checks_with_logs_to(LogSink::DevFull).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_closed_pipe_do_not_stop_decisions() {
    checks_with_logs_to(LogSink::ClosedPipe).await;
}
