//! A soak through real Envoy: mixed checks of every auth type, allowed and
//! denied (basic, bearer, jwt HS256, jwt verified by a provider's JWKS, an
//! oauth2 session cookie with its connect token, an open route, no route),
//! from several keep-alive clients. Every answer must be the one its kind
//! expects (zero errors), and ingress-authz's memory and open files must
//! not grow: RSS under 5 % over what it held after the warm-up, file
//! descriptors back to where they were.
//!
//! `SOAK_CHECKS` sets the count: 20,000 by default (the test suite); the
//! figures in the README come from
//! `SOAK_CHECKS=1000000 cargo test --release --test envoy soak -- --nocapture`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ingress_authz::secret::Secret;
use ingress_authz::session::{Purpose, SessionKeys, new_session_id};
use jsonwebtoken::Header;
use serde_json::json;

use crate::common::configs::{basic_users, bearer_tokens, rule, rule_head};
use crate::common::creds;
use crate::common::fake_oidc::FakeOidc;
use crate::common::{self, Stack};

const SESSION_SECRET: &str = "soak-session-secret-0123456789abcdef";
const JWT_SECRET: &str = "soak-jwt-secret-0123456789abcdef-0123";
const CONNECT_SECRET: &str = "soak-connect-secret-0123456789abcdef";
const AUDIENCE: &str = "soak-api";

/// One kind of request and the status it must get.
struct Kind {
    name: &'static str,
    host: &'static str,
    headers: Vec<(&'static str, String)>,
    expect: u16,
}

fn config(jwks_url: &str, issuer: &str) -> String {
    let rules = [
        rule("basic.soak", &basic_users(&[("alice", "alice-soak-pass")])),
        rule("bearer.soak", &bearer_tokens(&["soak-token-0123456789"])),
        rule(
            "jwt.soak",
            &format!(
                "type: jwt\njwt:\n  secret: \"{JWT_SECRET}\"\n  issuer: soak\n  audience: {AUDIENCE}"
            ),
        ),
        rule(
            "jwks.soak",
            &format!(
                "type: jwt\njwt:\n  jwks_url: \"{jwks_url}\"\n  issuer: \"{issuer}\"\n  audience: {AUDIENCE}"
            ),
        ),
        rule(
            "session.soak",
            &format!(
                "type: oauth2\noauth2:\n  provider: github\n  client_id: soak-client\n  client_secret: soak-client-secret\n  connect:\n    enabled: true\n    jwt:\n      secret: {CONNECT_SECRET}"
            ),
        ),
        rule_head("open.soak"),
    ];
    format!(
        "authz:\n  session:\n    secret: \"{SESSION_SECRET}\"\nrules:\n{}",
        rules.concat()
    )
}

/// A session cookie of the github route, sealed as a login seals it.
fn session_cookie() -> String {
    let keys = SessionKeys::from_secrets(&[Secret::new(SESSION_SECRET.to_owned())]);
    let issued = creds::now();
    let session = json!({
        "s": new_session_id(),
        "u": { "id": "583231", "username": "octocat", "email": "", "nickname": "", "avatar": "" },
        "p": "github",
        "c": "soak-client",
        "i": issued,
        "e": issued + 3600,
    });
    format!(
        "ingress_authz={}",
        keys.seal_json(Purpose::Session, &session)
    )
}

fn kinds(fake: &FakeOidc) -> Vec<Kind> {
    let (key, kid) = fake.signing();
    let mut header = Header::new(key.algorithm());
    header.kid = Some(kid);
    let jwks_token = |aud: &str| {
        let claims = json!({
            "iss": fake.issuer(), "aud": aud, "sub": "soak-user",
            "iat": creds::now(), "exp": creds::now() + 3600,
        });
        jsonwebtoken::encode(&header, &claims, &key.encoding_key()).expect("sign")
    };
    let hs256 = |exp: u64| {
        let claims = json!({ "iss": "soak", "aud": AUDIENCE, "sub": "u1", "exp": exp });
        creds::hs256(JWT_SECRET, &claims)
    };
    let auth = |value: String| vec![("authorization", value)];
    let cookie = session_cookie();
    vec![
        Kind {
            name: "basic ok",
            host: "basic.soak",
            headers: auth(creds::basic("alice", "alice-soak-pass")),
            expect: 200,
        },
        Kind {
            name: "basic wrong",
            host: "basic.soak",
            headers: auth(creds::basic("alice", "wrong")),
            expect: 401,
        },
        Kind {
            name: "bearer ok",
            host: "bearer.soak",
            headers: auth(creds::bearer("soak-token-0123456789")),
            expect: 200,
        },
        Kind {
            name: "bearer wrong",
            host: "bearer.soak",
            headers: auth(creds::bearer("soak-token-0123456780")),
            expect: 401,
        },
        Kind {
            name: "jwt ok",
            host: "jwt.soak",
            headers: auth(creds::bearer(&hs256(creds::now() + 3600))),
            expect: 200,
        },
        Kind {
            name: "jwt expired",
            host: "jwt.soak",
            headers: auth(creds::bearer(&hs256(creds::now() - 3600))),
            expect: 401,
        },
        Kind {
            name: "jwks ok",
            host: "jwks.soak",
            headers: auth(creds::bearer(&jwks_token(AUDIENCE))),
            expect: 200,
        },
        Kind {
            name: "jwks wrong audience",
            host: "jwks.soak",
            headers: auth(creds::bearer(&jwks_token("someone-else"))),
            expect: 401,
        },
        Kind {
            name: "session ok",
            host: "session.soak",
            headers: vec![("cookie", cookie)],
            expect: 200,
        },
        Kind {
            name: "session missing (API)",
            host: "session.soak",
            headers: vec![("accept", "application/json".to_owned())],
            expect: 401,
        },
        Kind {
            name: "open",
            host: "open.soak",
            headers: Vec::new(),
            expect: 200,
        },
        Kind {
            name: "no route",
            host: "nowhere.soak",
            headers: Vec::new(),
            expect: 403,
        },
    ]
}

/// VmRSS in KiB and the number of open file descriptors of `pid`.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .count();
    (rss, fds)
}

/// Sends `count` requests, cycling through `kinds`, from `clients` tasks;
/// returns the mismatches (kind, status) seen.
async fn run(
    stack: &Arc<Stack>,
    kinds: &Arc<Vec<Kind>>,
    count: u64,
    clients: usize,
) -> Vec<(String, u16)> {
    let next = Arc::new(AtomicU64::new(0));
    // reqwest is built without a bundled TLS provider (see ProviderHttp).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let url = format!("http://{}/soak", stack.envoy.addr());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (next, kinds, client, url) = (next.clone(), kinds.clone(), client.clone(), url.clone());
        set.spawn(async move {
            let mut wrong = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return wrong;
                }
                let kind = &kinds[(n % kinds.len() as u64) as usize];
                let mut request = client.get(&url).header("host", kind.host);
                for (name, value) in &kind.headers {
                    request = request.header(*name, value);
                }
                let status = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                if status != kind.expect && wrong.len() < 20 {
                    wrong.push((kind.name.to_owned(), status));
                }
            }
        });
    }
    let mut wrong = Vec::new();
    while let Some(done) = set.join_next().await {
        wrong.extend(done.expect("a client task"));
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_of_mixed_checks_has_no_errors_and_no_growth() {
    let _heavy = common::heavy().await;
    let count: u64 = std::env::var("SOAK_CHECKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let fake = FakeOidc::start().await;
    let stack = Arc::new(Stack::start(&config(&fake.jwks_url(), fake.issuer())).await);
    let kinds = Arc::new(kinds(&fake));
    let clients = 8;

    // Warm-up: every kind answered as expected, caches and pools filled.
    let warmup = (count / 10).max(kinds.len() as u64 * 50);
    let wrong = run(&stack, &kinds, warmup, clients).await;
    assert!(
        wrong.is_empty(),
        "warm-up: {wrong:?}\n{}",
        stack.debug_logs()
    );
    let pid = stack.authz.pid();
    let (rss_before, fds_before) = footprint(pid);

    let started = Instant::now();
    let wrong = run(&stack, &kinds, count, clients).await;
    let took = started.elapsed();
    let (rss_after, fds_after) = footprint(pid);
    eprintln!(
        "soak: {count} checks in {took:.1?} ({:.0}/s) through Envoy; ingress-authz RSS {rss_before} -> {rss_after} KiB, fds {fds_before} -> {fds_after}",
        count as f64 / took.as_secs_f64()
    );
    assert!(wrong.is_empty(), "answers other than expected: {wrong:?}");
    assert!(
        rss_after * 100 <= rss_before * 105,
        "RSS grew over 5 %: {rss_before} -> {rss_after} KiB"
    );
    // Envoy's connections to the authorizer may be re-established in
    // between; a leak grows with the count, this allows a couple.
    assert!(
        fds_after <= fds_before + 2,
        "file descriptors grew: {fds_before} -> {fds_after}"
    );
    assert!(
        fake.jwks_hits() <= 2,
        "the JWKS was fetched once (and kept): {} fetches",
        fake.jwks_hits()
    );
}
