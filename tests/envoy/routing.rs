//! `ingress-authz envoy`: the generated bootstrap through a real Envoy.
//! Every cluster is an echo server that names itself, and for each of
//! more than 10,000 hostile (host, path) pairs, with and without a
//! credential, the upstream that answered and whether credentials were
//! demanded must be what the authorizer's own engine decides in process
//! (what `explain` names). Plus: every ingress example's output passes
//! `envoy --mode validate`, bypassed routes need no authorizer and strip
//! what it would strip, and a forged route label never widens access.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use axum::response::{IntoResponse, Json, Response as AxumResponse};
use ingress_authz::decision::Verdict;
use ingress_authz::engine::Engine;
use ingress_authz::request::RequestView;
use serde_json::json;

use crate::common::client::{self, Request};
use crate::common::creds::basic;
use crate::common::envoy::envoy_bin;
use crate::common::fake_http::{self, Call, FakeHttp, Shared};
use crate::common::{Authz, Envoy};

const USER: (&str, &str) = ("ops", "routing-test-password");
const BASIC_AUTH: &str = "\n        auth:\n          type: basic\n          basic:\n            users: [{username: ops, password: routing-test-password}]";

/// An upstream that answers with its own name.
pub struct Named {
    _http: FakeHttp<String>,
    pub port: u16,
}

pub async fn named(name: &str) -> Named {
    let listener = fake_http::listen(0, name).await;
    let http = FakeHttp::serve(listener, name.to_string(), answer);
    let port = http.addr().port();
    Named { _http: http, port }
}

async fn answer(me: Shared<String>, call: Call) -> AxumResponse {
    let name = me.lock().unwrap().clone();
    Json(json!({"upstream": name, "target": call.target, "headers": call.headers})).into_response()
}

/// The labels that route to a service of their own, in the config below.
const SERVICES: &[&str] = &[
    "rules[0].paths[0]",
    "rules[0].paths[1]",
    "rules[0].paths[2]",
    "rules[0]",
    "rules[1]",
    "rules[2]",
    "rules[3].paths[0]",
    "rules[3]",
    "rules[4]",
    "rules[5]",
    "rules[6]",
    "rules[7]",
    "rules[8]",
    "rules[9]",
    "fallback",
];

/// A config of overlapping patterns in an order that matters: a wildcard
/// before an exact host it covers, open paths under protected rules and
/// the reverse, regex hosts and paths (an anchored regex host in front of
/// an open wildcard that covers it), a redirect, a static handler, an IPv6
/// literal and an open fallback.
fn config(ports: &HashMap<&str, u16>) -> String {
    let svc = |label: &str, auth: &str| {
        format!(
            "\n      service:\n        name: 127.0.0.1\n        port: {}{auth}",
            ports[label]
        )
    };
    let path_svc = |label: &str, auth: &str| svc(label, auth).replace("\n", "\n      ");
    format!(
        r#"rules:
  - host: admin.example.com
    backend:{r0}
    paths:
      - path: /public/              # inherits the rule's basic auth
        backend:{p00}
      - path: /static
        backend:{p01}
      - path: ^/v[0-9]+/private
        backend:{p02}
      - path: /moved
        backend:
          redirect: {{url: "https://www.example.org/landing", permanent: true}}
  - host: "*.shop.test"
    backend:{r1}
  - host: pay.shop.test
    backend:{r2}
  - host: "*.example.com"
    backend:{r3}
    paths:
      - path: /admin
        backend:{p30}
      - path: /hello$
        backend:
          handler: {{type: static_response, status_code: 200, body: "hello from the handler"}}
  - host: 'api-[0-9]+\.example\.org'
    backend:{r4}
  - host: "www.example.org"
    backend:{r5}
  - host: "*.internal"
    backend:{r6}
  - host: "[::1]"
    backend:{r7}
  - host: '^db-[a-z]+\.example\.net$'
    backend:{r8}
  - host: "*.example.net"
    backend:{r9}
fallback:
  service:
    name: 127.0.0.1
    port: {fb}
"#,
        r0 = svc("rules[0]", BASIC_AUTH),
        p00 = path_svc("rules[0].paths[0]", ""),
        p01 = path_svc("rules[0].paths[1]", "\n        auth: {enabled: false}"),
        p02 = path_svc("rules[0].paths[2]", ""),
        r1 = svc("rules[1]", ""),
        r2 = svc("rules[2]", BASIC_AUTH),
        r3 = svc("rules[3]", ""),
        p30 = path_svc("rules[3].paths[0]", BASIC_AUTH),
        r4 = svc("rules[4]", BASIC_AUTH),
        r5 = svc("rules[5]", ""),
        r6 = svc("rules[6]", BASIC_AUTH),
        r7 = svc("rules[7]", ""),
        r8 = svc("rules[8]", BASIC_AUTH),
        r9 = svc("rules[9]", ""),
        fb = ports["fallback"],
    )
}

/// What a request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// This upstream answered.
    Served(String),
    /// Credentials were demanded (401).
    Challenged,
    /// Envoy answered a redirect or the static handler itself.
    Local(String),
    /// Refused (any other status, from Envoy or the authorizer).
    Refused(u16),
}

/// The in-process decision for a GET, as `explain` makes it.
pub fn decide_get<'e>(
    engine: &'e Engine,
    host: &str,
    path: &str,
    authorization: Option<&str>,
) -> ingress_authz::decision::Decision<'e> {
    let headers: HashMap<String, String> = authorization
        .map(|a| ("authorization".to_string(), a.to_string()))
        .into_iter()
        .collect();
    engine.decide_inline(&RequestView {
        host,
        path,
        method: "GET",
        scheme: "http",
        headers: &headers,
        client: None,
    })
}

/// What the in-process engine decides, as an outcome.
fn expected(engine: &Engine, host: &str, path: &str, credential: bool) -> Outcome {
    let credential = credential.then(|| basic(USER.0, USER.1));
    let decision = decide_get(engine, host, path, credential.as_deref());
    match &decision.verdict {
        Verdict::Allow { .. } => {
            let label = decision.label.expect("an allow has a route");
            match label {
                "rules[0].paths[3]" => Outcome::Local("redirect".into()),
                "rules[3].paths[1]" => Outcome::Local("handler".into()),
                other => Outcome::Served(other.to_string()),
            }
        }
        Verdict::Deny(d) if d.status.code() == 401 => Outcome::Challenged,
        Verdict::Deny(d) => Outcome::Refused(d.status.code()),
        Verdict::Pending { .. } => panic!("pending after an inline decision: {host} {path}"),
    }
}

fn observed(response: &client::Response, by_name: &HashMap<String, String>) -> Outcome {
    match response.status {
        200 if response.text().contains("hello from the handler") => {
            Outcome::Local("handler".into())
        }
        200 => {
            let name = response.json()["upstream"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Outcome::Served(by_name.get(&name).cloned().unwrap_or(name))
        }
        301 if response
            .header("location")
            .is_some_and(|l| l == "https://www.example.org/landing") =>
        {
            Outcome::Local("redirect".into())
        }
        401 => Outcome::Challenged,
        other => Outcome::Refused(other),
    }
}

/// What Envoy makes of a request before routing and before the check:
/// surrounding spaces off the host, backslashes as slashes. (Its other
/// normalisations, dot segments and merged slashes, the authorizer
/// repeats.) Served requests need no such guess: the echo shows them.
fn envoy_view(host: &str, path: &str) -> (String, String) {
    let (path, query) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    let path = path.replace('\\', "/");
    let path = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    (host.trim().to_string(), path)
}

/// A path spelling Envoy and the authorizer may read differently (Envoy
/// keeps `;` parameters and encodings the authorizer normalises), or a
/// host only one of them accepts: where a refusal is the safe answer.
fn spelled_differently(host: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    path.contains([';', '%', '\\'])
        // Envoy resolves `..` before it merges slashes, the authorizer
        // after: `/a//../b` is `/a/b` to one and `/b` to the other.
        || (path.contains("//") && path.contains("/.."))
        || host.starts_with('[')
        || host.bytes().any(|b| !(b.is_ascii_alphanumeric() || b".-_:".contains(&b)))
}

/// A small deterministic generator (no dependency, same pairs every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() % items.len()]
    }
}

const HOSTS: &[&str] = &[
    "admin.example.com",
    "pay.shop.test",
    "a.shop.test",
    "shop.test",
    "x.y.shop.test",
    "www.example.com",
    "example.com",
    "admin.example.com.evil.test",
    "api-1.example.org",
    "api-123.example.org",
    "api-.example.org",
    "api-1.example.org.x",
    "www.example.org",
    "db.internal",
    "db-a.example.net",
    "db-1.example.net",
    "www.example.net",
    "internal",
    "unknown.test",
    "[::1]",
    "[0:0::1]",
    "127.0.0.1",
    "a_b.internal",
];

const HOST_MUTATIONS: &[&str] = &[
    "",
    "",
    "upper",
    "dot",
    "port",
    "dotport",
    "doubledot",
    "userinfo",
    "badport",
    "space",
    "longlabel",
    "prefixdot",
];

fn mutate_host(base: &str, m: &str) -> String {
    match m {
        "upper" => base.to_ascii_uppercase(),
        "dot" if !base.starts_with('[') => format!("{base}."),
        "port" => format!("{base}:8000"),
        "dotport" if !base.starts_with('[') => format!("{base}.:443"),
        "doubledot" => format!("{base}.."),
        "userinfo" => format!("user@{base}"),
        "badport" => format!("{base}:99999x"),
        "space" => format!("{base} "),
        "longlabel" => format!("{}.{base}", "a".repeat(64)),
        "prefixdot" => format!(".{base}"),
        _ => base.to_string(),
    }
}

const PATHS: &[&str] = &[
    "/",
    "/public/",
    "/public/x",
    "/public",
    "/publicity",
    "/static",
    "/static/app.js",
    "/staticx",
    "/v1/private",
    "/v22/private/x",
    "/vx/private",
    "/moved",
    "/moved/x",
    "/admin",
    "/admin/users",
    "/ADMIN",
    "/hello",
    "/hello/x",
    "/x",
    "/oauth2x",
];

const PATH_MUTATIONS: &[&str] = &[
    "",
    "",
    "",
    "semi",
    "semidot",
    "dotdot",
    "encdot",
    "encslash",
    "double",
    "dotseg",
    "backslash",
    "query",
    "encletter",
    "trailing",
    "encsemi",
];

fn mutate_path(base: &str, m: &str, other: &str) -> String {
    match m {
        "semi" => format!("{base};jsessionid=1"),
        "semidot" => format!("{base}/..;{other}"),
        "dotdot" => format!("{base}/..{other}"),
        "encdot" => format!("{base}/%2e%2e{other}"),
        "encslash" => format!("{base}%2f..%2f{}", other.trim_start_matches('/')),
        "double" => format!("/{base}"),
        "dotseg" => format!("/.{base}"),
        "backslash" => format!("{base}\\..\\{}", other.trim_start_matches('/')),
        "query" => format!("{base}?next=/admin&x=%2F;"),
        "encletter" => base.replacen('a', "%61", 1),
        "trailing" => format!("{base}/"),
        "encsemi" => format!("{base}%3Bx"),
        _ => base.to_string(),
    }
}

struct Routed {
    _upstreams: Vec<Named>,
    by_name: HashMap<String, String>,
    config_text: String,
    authz: Authz,
    envoy: Envoy,
    _dir: tempfile::TempDir,
}

/// The echo servers, ingress-authz and Envoy on the generated bootstrap.
async fn start() -> Routed {
    let mut upstreams = Vec::new();
    let mut ports = HashMap::new();
    let mut by_name = HashMap::new();
    for label in SERVICES {
        let u = named(label).await;
        ports.insert(*label, u.port);
        by_name.insert(label.to_string(), label.to_string());
        upstreams.push(u);
    }
    let text = crate::common::authz::untrottled(&config(&ports));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ingress.yaml");
    std::fs::write(&file, &text).expect("write config");
    let authz = Authz::start_at(&file).await;
    let bootstrap = generate(&file, &authz);
    let envoy = Envoy::start_config(&bootstrap).await;
    Routed {
        _upstreams: upstreams,
        by_name,
        config_text: text,
        authz,
        envoy,
        _dir: dir,
    }
}

/// `ingress-authz envoy` for a running authorizer; panics on failure.
fn generate(config: &Path, authz: &Authz) -> String {
    let sidecar = authz.http_addr().to_string();
    envoy_command(
        config,
        &authz.grpc_addr().to_string(),
        &sidecar,
        &["--listen", "127.0.0.1:0"],
    )
}

/// `ingress-authz envoy` with ingress-authz at `grpc` and `sidecar`, admin
/// on an ephemeral port, and `extra` arguments; panics on failure.
pub fn envoy_command(config: &Path, grpc: &str, sidecar: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ingress-authz"))
        .arg("envoy")
        .arg("--config")
        .arg(config)
        .args(["--authz-addr", grpc, "--sidecar-addr", sidecar])
        .args(["--admin-addr", "127.0.0.1:0"])
        .args(extra)
        .output()
        .expect("run ingress-authz envoy");
    assert!(
        out.status.success(),
        "ingress-authz envoy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 bootstrap")
}

fn pairs(count: usize) -> Vec<(String, String)> {
    let mut rng = Lcg(0x1e55_4a07);
    let mut out = Vec::with_capacity(count);
    // Every base pair once, then random mutations of both.
    for h in HOSTS {
        for p in PATHS {
            out.push(((*h).to_string(), (*p).to_string()));
        }
    }
    while out.len() < count {
        let host = mutate_host(rng.pick(HOSTS), rng.pick(HOST_MUTATIONS));
        let (base, other) = (rng.pick(PATHS), rng.pick(PATHS));
        let mut path = mutate_path(base, rng.pick(PATH_MUTATIONS), other);
        if rng.next().is_multiple_of(4) {
            path = mutate_path(&path, rng.pick(PATH_MUTATIONS), other);
        }
        out.push((host, path));
    }
    out
}

#[derive(Default, Debug)]
struct Tally {
    agree: usize,
    refused: usize,
    disagree: Vec<String>,
    /// By (expected -> observed): how many, and a few of them.
    examples: BTreeMap<String, (usize, Vec<String>)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn envoy_routes_as_the_rules_decide_for_10000_hostile_requests() {
    let _heavy = crate::common::heavy().await;
    let stack = start().await;
    let engine = Engine::from_text(&stack.config_text, "ingress.yaml", &|_| None).expect("config");
    let cases = pairs(10_000);
    let addr = stack.envoy.addr();
    let mut tasks = tokio::task::JoinSet::new();
    let cases = Arc::new(cases);
    const WORKERS: usize = 8;
    for w in 0..WORKERS {
        let cases = cases.clone();
        tasks.spawn(async move {
            let mut results = Vec::new();
            for (i, (host, path)) in cases.iter().enumerate().skip(w).step_by(WORKERS) {
                for credential in [false, true] {
                    let mut request = Request::get(host, path);
                    if credential {
                        request = request.header("authorization", &basic(USER.0, USER.1));
                    }
                    let response = client::send(addr, &request)
                        .await
                        .unwrap_or_else(|e| panic!("{host} {path}: {e}"));
                    results.push((i, credential, response));
                }
            }
            results
        });
    }
    let mut tally = Tally::default();
    while let Some(results) = tasks.join_next().await {
        for (i, credential, response) in results.expect("worker") {
            let (host, path) = &cases[i];
            let got = observed(&response, &stack.by_name);
            // A served request is judged on what the authorizer was asked
            // about: the host and path as Envoy forwarded them (after its
            // normalisation), which the echo shows.
            let want = match &got {
                Outcome::Served(_) => {
                    let body = response.json();
                    let seen_host = body["headers"]
                        .as_array()
                        .and_then(|h| h.iter().find(|p| p[0] == "host"))
                        .and_then(|p| p[1].as_str())
                        .unwrap_or_default()
                        .to_string();
                    let seen_path = body["target"].as_str().unwrap_or_default().to_string();
                    expected(&engine, &seen_host, &seen_path, credential)
                }
                _ => {
                    let (host, path) = envoy_view(host, path);
                    expected(&engine, &host, &path, credential)
                }
            };
            if got == want {
                tally.agree += 1;
            } else if matches!(got, Outcome::Challenged | Outcome::Refused(_))
                && (spelled_differently(host, path) || want == Outcome::Refused(400))
            {
                // Failed closed where the two read the request differently
                // (Envoy normalises what the authorizer would refuse, or
                // the reverse).
                tally.refused += 1;
                let example = tally
                    .examples
                    .entry(format!("{want:?} -> {got:?}"))
                    .or_default();
                example.0 += 1;
                if example.1.len() < 3 {
                    example.1.push(format!("{host:?} {path:?}"));
                }
            } else {
                tally.disagree.push(format!(
                    "{host:?} {path:?} credential={credential}: expected {want:?}, Envoy gave {got:?} ({})",
                    response.text().chars().take(120).collect::<String>()
                ));
            }
        }
    }
    let total = tally.agree + tally.refused + tally.disagree.len();
    eprintln!(
        "routing agreement over {total} requests: {} agree, {} refused where spellings differ {:?}, {} disagree",
        tally.agree,
        tally.refused,
        tally.examples,
        tally.disagree.len()
    );
    assert!(total >= 20_000, "{total}");
    assert!(
        tally.disagree.is_empty(),
        "{} disagreements, first ones:\n{}\nauthz log tail:\n{}",
        tally.disagree.len(),
        tally
            .disagree
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        tail(&stack.authz.logs(), 2000)
    );
    // Most requests are plain: the comparison is not vacuous.
    assert!(tally.agree > total / 2, "{tally:?}");
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

#[tokio::test]
async fn bypassed_routes_need_no_authorizer_and_strip_what_it_strips() {
    let stack = start().await;
    let forged = Request::get("admin.example.com", "/static/page")
        .header("x-connect-token", "forged")
        .header("x-connect-timestamp", "1");
    let response = client::send(stack.envoy.addr(), &forged)
        .await
        .expect("send");
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["upstream"], "rules[0].paths[1]");
    let headers = body["headers"].to_string();
    assert!(!headers.contains("x-connect-token"), "{headers}");
    assert!(!headers.contains("x-connect-timestamp"), "{headers}");

    // With our cookie the request goes through the authorizer, which takes
    // the cookie out and keeps the others.
    let cookie = Request::get("admin.example.com", "/static/page")
        .header("cookie", "ingress_authz=sealed; theme=dark");
    let response = client::send(stack.envoy.addr(), &cookie)
        .await
        .expect("send");
    assert_eq!(response.status, 200, "{}", response.text());
    let headers = response.json()["headers"].to_string();
    assert!(
        headers.contains("theme=dark") && !headers.contains("sealed"),
        "{headers}"
    );

    // Without the authorizer: the bypassed route still serves, checked ones
    // fail closed.
    let Routed { authz, envoy, .. } = stack;
    drop(authz);
    let open = client::send(
        envoy.addr(),
        &Request::get("admin.example.com", "/static/x"),
    )
    .await
    .expect("send");
    assert_eq!(
        open.status,
        200,
        "bypass without authorizer: {}",
        open.text()
    );
    let semicolon = client::send(
        envoy.addr(),
        &Request::get("admin.example.com", "/static/x;a=b"),
    )
    .await
    .expect("send");
    assert_eq!(
        semicolon.status,
        503,
        "a `;` path never bypasses: {}",
        semicolon.text()
    );
    let protected = client::send(
        envoy.addr(),
        &Request::get("admin.example.com", "/").header("authorization", &basic(USER.0, USER.1)),
    )
    .await
    .expect("send");
    assert_eq!(protected.status, 503, "{}", protected.text());
}

#[tokio::test]
async fn a_forged_or_stale_route_label_never_widens_access() {
    let stack = start().await;
    let credential = basic(USER.0, USER.1);
    let authz = &stack.authz;
    let check = |host, label, auth| async move {
        labelled_check(authz, host, auth, &[("route", label)]).await
    };
    // A protected request labelled as an open route: still 401.
    assert_eq!(
        check("admin.example.com", "rules[0].paths[0]", None).await,
        401
    );
    // Allowed by the rules, but Envoy routes it elsewhere: 403.
    assert_eq!(
        check("admin.example.com", "rules[5]", Some(&credential)).await,
        403
    );
    // An open route under another label: 403, not served.
    assert_eq!(check("www.example.org", "rules[99]", None).await, 403);
    // The right label: allowed.
    assert_eq!(check("www.example.org", "rules[5]", None).await, 200);
    assert!(
        stack.authz.logs().contains("route_mismatch"),
        "audited as route_mismatch"
    );
}

/// The status of a CheckRequest for `GET host/` as a generated Envoy route
/// sends it: with `context` as its `context_extensions`.
pub async fn labelled_check(
    authz: &Authz,
    host: &str,
    authorization: Option<&str>,
    context: &[(&str, &str)],
) -> u16 {
    use crate::common::authz::{check_request, check_status};
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    let mut request = check_request(host, "/", "http", &headers);
    if let Some(attrs) = request.attributes.as_mut() {
        for (k, v) in context {
            attrs.context_extensions.insert((*k).into(), (*v).into());
        }
    }
    let response = authz
        .grpc_client()
        .await
        .check(request)
        .await
        .expect("check")
        .into_inner();
    check_status(&response)
}

fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/ingress-examples");
    let mut found = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                found.push(path);
            }
        }
    }
    found.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/local-stack.yaml"));
    found.sort();
    assert!(
        found.len() > 60,
        "the ingress examples are beside the project: {root:?}"
    );
    found
}

#[test]
fn every_example_generates_a_bootstrap_envoy_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for example in examples() {
        let out = Command::new(env!("CARGO_BIN_EXE_ingress-authz"))
            .arg("envoy")
            .arg("--config")
            .arg(&example)
            .output()
            .expect("run ingress-authz envoy");
        if !out.status.success() {
            failures.push(format!(
                "{example:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let file = dir.path().join("bootstrap.yaml");
        std::fs::write(&file, &out.stdout).expect("write");
        let check = Command::new(envoy_bin())
            .args([
                "--mode",
                "validate",
                "--disable-hot-restart",
                "-l",
                "error",
                "-c",
            ])
            .arg(&file)
            .output()
            .expect("run envoy --mode validate");
        if !check.status.success() {
            failures.push(format!(
                "{example:?}: {}",
                String::from_utf8_lossy(&check.stdout) + String::from_utf8_lossy(&check.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// docker-compose.yml runs Envoy on the committed xDS bootstrap: it must
/// be what `ingress-authz envoy --xds` prints for the local stack, and
/// Envoy must accept it.
#[test]
fn the_committed_xds_bootstrap_is_the_generated_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_ingress-authz"))
        .current_dir(root)
        .args(["envoy", "--xds", "--config", "examples/local-stack.yaml"])
        .args([
            "--authz-addr",
            "127.0.0.1:9001",
            "--sidecar-addr",
            "127.0.0.1:9002",
        ])
        .output()
        .expect("run ingress-authz envoy --xds");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(root.join("envoy/envoy-xds.yaml")).expect("read");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        committed,
        "regenerate envoy/envoy-xds.yaml with: ingress-authz envoy --xds --config examples/local-stack.yaml --authz-addr 127.0.0.1:9001 --sidecar-addr 127.0.0.1:9002"
    );
    let check = Command::new(envoy_bin())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "error",
            "-c",
        ])
        .arg(root.join("envoy/envoy-xds.yaml"))
        .output()
        .expect("run envoy --mode validate");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// `strip_prefix`, rewrites, added headers, static handlers and redirects
/// as a real Envoy applies them from the generated bootstrap.
#[tokio::test]
async fn ingress_routing_features_apply_through_envoy() {
    let (web, api) = (named("web").await, named("api").await);
    let yaml = format!(
        r#"rules:
  - host: feat.test
    backend:
      service:
        name: 127.0.0.1
        port: {web}
        request:
          headers: {{X-Added: yes-added}}
        response:
          headers: {{X-Resp: resp-added}}
    paths:
      - path: /strip/me
        backend:
          service: {{name: 127.0.0.1, port: {api}, strip_prefix: true}}
      - path: /old
        backend:
          service:
            name: 127.0.0.1
            port: {api}
            request:
              path:
                rewrites: ["^/old/(.*):/new/$1"]
      - path: /hello
        backend:
          handler: {{type: static_response, status_code: 202, headers: {{X-H: h}}, body: "hi"}}
      - path: /go
        backend:
          redirect: {{url: "https://example.org/x?y=1"}}
"#,
        web = web.port,
        api = api.port
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ingress.yaml");
    std::fs::write(&file, &yaml).expect("write");
    let authz = Authz::start_at(&file).await;
    let envoy = Envoy::start_config(&generate(&file, &authz)).await;
    let get = |path: &'static str| {
        let addr = envoy.addr();
        async move {
            client::send(addr, &Request::get("feat.test", path))
                .await
                .expect("send")
        }
    };
    let target = |r: &client::Response| {
        let body = r.json();
        (
            body["upstream"].as_str().unwrap_or_default().to_string(),
            body["target"].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(
        target(&get("/strip/me/a/b").await),
        ("api".into(), "/a/b".into())
    );
    assert_eq!(target(&get("/strip/me").await), ("api".into(), "/".into()));
    assert_eq!(
        target(&get("/old/z?q=1").await),
        ("api".into(), "/new/z?q=1".into())
    );
    let root = get("/").await;
    assert_eq!(target(&root).0, "web");
    assert!(
        root.json()["headers"].to_string().contains("yes-added"),
        "{}",
        root.text()
    );
    assert_eq!(root.header("x-resp"), Some("resp-added"));
    let hello = get("/hello").await;
    assert_eq!((hello.status, hello.text().as_str()), (202, "hi"));
    assert_eq!(hello.header("x-h"), Some("h"));
    let go = get("/go").await;
    assert_eq!(go.status, 302);
    assert_eq!(go.header("location"), Some("https://example.org/x?y=1"));
}
