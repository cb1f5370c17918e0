//! ingress's own example configs with several backends, through the
//! bootstrap `ingress-authz envoy` generates for them: each service an echo
//! server named after it (`--upstream name:port=http://127.0.0.1:P`), and
//! for a table of requests over each example's hosts and paths, the
//! upstream that answered (or whether credentials were demanded) is what
//! the engine decides in process.

use std::collections::BTreeSet;
use std::path::Path;

use ingress_authz::decision::Verdict;
use ingress_authz::engine::Engine;
use ingress_authz::envoy::routing::{Routing, Target};
use ingress_authz::matching::host::HostPattern;

use crate::common::client::{self, Request};
use crate::common::{Authz, Envoy};
use crate::routing::{Named, decide_get, envoy_command, named};

/// The examples with two or more backend services.
const EXAMPLES: &[&str] = &[
    "advanced/service-mode-external-mixed.yaml",
    "security/profiles.yaml",
    "path-routing/complex-paths.yaml",
    "path-routing/basic-paths.yaml",
    "path-routing/strip-prefix.yaml",
    "path-routing/docker-registry.yaml",
    "advanced/full-stack.yaml",
    "advanced/complex-path-rewrite.yaml",
    "scenarios/design-option-a-overlay.yaml",
    "redirect/capture-and-mixed.yaml",
    "basic/multi-host.yaml",
    "authentication/path-level-mixed.yaml",
];

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Served(String),
    Challenged,
    /// Envoy answered itself: a redirect (3xx) or a handler / 501.
    Local(u16),
    Refused(u16),
}

fn expected(engine: &Engine, routing: &Routing, host: &str, path: &str) -> Outcome {
    let decision = decide_get(engine, host, path, None);
    match &decision.verdict {
        Verdict::Allow { .. } => match routing.targets.get(decision.label.expect("a route")) {
            Some(Target::Service(s)) => match &s.key {
                Some(k) => Outcome::Served(format!("{}:{}", k.name, k.port)),
                None => Outcome::Local(501),
            },
            Some(Target::Redirect { permanent, .. }) => {
                Outcome::Local(if *permanent { 301 } else { 302 })
            }
            Some(Target::Static { status, .. }) => Outcome::Local(*status),
            Some(Target::Unsupported(_)) | None => Outcome::Local(501),
        },
        // A login route sends a request without a session to its provider
        // or answers 401: credentials demanded either way.
        Verdict::Deny(d) if d.status.code() == 401 || d.redirect.is_some() => Outcome::Challenged,
        Verdict::Deny(d) => Outcome::Refused(d.status.code()),
        Verdict::Pending { then, .. } if then.status.code() == 401 => Outcome::Challenged,
        Verdict::Pending { then, .. } => Outcome::Refused(then.status.code()),
    }
}

fn observed(response: &client::Response, expected_local: bool) -> Outcome {
    match response.status {
        // An echo's answer is an upstream's, whatever was expected.
        200 if response.text().contains("\"upstream\"") => Outcome::Served(
            response.json()["upstream"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        401 => Outcome::Challenged,
        302 if response.header("location").is_some_and(|l| {
            l.contains("/oauth") || l.contains("authorize") || l.contains("/login")
        }) =>
        {
            Outcome::Challenged
        }
        s if expected_local => Outcome::Local(s),
        s => Outcome::Refused(s),
    }
}

/// Hosts to try for a rule: exact hosts as written and with a port and
/// capitals; wildcards with `x` for each star; a regex host by a sample.
fn hosts(pattern: &HostPattern, written: &str) -> Vec<String> {
    let base = match pattern {
        HostPattern::Exact(h) => h.clone(),
        HostPattern::Wildcard(_) => written.replace('*', "x"),
        HostPattern::Regex(_) => return Vec::new(),
    };
    vec![
        base.clone(),
        format!("{}:8080", base.to_ascii_uppercase()),
        format!("{base}."),
    ]
}

fn paths(patterns: &[String]) -> Vec<String> {
    let mut out: BTreeSet<String> = ["/", "/zzz", "/static/../x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for p in patterns {
        if p.contains(['^', '$', '(', '[', '\\', '+', '*', '?']) {
            continue;
        }
        for candidate in [
            p.clone(),
            format!("{p}/sub"),
            format!("{p}x"),
            format!("/{p}"),
            format!("{p};x"),
        ] {
            out.insert(candidate);
        }
    }
    out.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_examples_route_as_their_rules_decide() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/ingress-examples");
    let mut compared = 0;
    let mut served = 0;
    let mut disagreements = Vec::new();
    for example in EXAMPLES {
        let file = root.join(example);
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        let engine = Engine::from_text(&text, example, &|_| None).expect("example loads");
        let routing = Routing::read(&ingress_authz::config::yaml::parse(&text).expect("yaml"));
        let mut services = BTreeSet::new();
        for t in routing.targets.values() {
            if let Target::Service(s) = t
                && let Some(k) = &s.key
            {
                services.insert(format!("{}:{}", k.name, k.port));
            }
        }
        let mut upstreams: Vec<Named> = Vec::new();
        let mut args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        for service in &services {
            let u = named(service).await;
            args.push("--upstream".into());
            args.push(format!("{service}=http://127.0.0.1:{}", u.port));
            upstreams.push(u);
        }
        let authz = Authz::start_at(&file).await;
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let bootstrap = envoy_command(
            &file,
            &authz.grpc_addr().to_string(),
            &authz.http_addr().to_string(),
            &arg_refs,
        );
        let envoy = Envoy::start_config(&bootstrap).await;
        let mut requests = vec![("nomatch.invalid".to_string(), "/".to_string())];
        for rule in engine.router().rules() {
            let patterns: Vec<String> = rule.paths.iter().map(|p| p.pattern.clone()).collect();
            for host in hosts(&rule.host_pattern, &rule.host) {
                for path in paths(&patterns) {
                    requests.push((host.clone(), path));
                }
            }
        }
        for (host, path) in &requests {
            let want = expected(&engine, &routing, host, path);
            let response = client::send(envoy.addr(), &Request::get(host, path))
                .await
                .unwrap_or_else(|e| panic!("{example} {host} {path}: {e}"));
            let got = observed(&response, matches!(want, Outcome::Local(_)));
            compared += 1;
            served += usize::from(matches!(got, Outcome::Served(_)));
            let fail_closed =
                path.contains(';') && matches!(got, Outcome::Refused(_) | Outcome::Challenged);
            if got != want && !fail_closed {
                disagreements.push(format!(
                    "{example}: {host} {path}: expected {want:?}, Envoy gave {got:?}"
                ));
            }
        }
        drop(envoy);
        drop(authz);
        drop(upstreams);
    }
    eprintln!(
        "ingress examples: {compared} requests over {} examples, {served} served by an upstream",
        EXAMPLES.len()
    );
    assert!(compared > 300, "{compared}");
    // Most go to an upstream: the comparison of names is not vacuous.
    assert!(served > compared / 2, "{served} of {compared}");
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
