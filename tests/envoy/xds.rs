//! `serve`'s ADS server and `envoy --xds`: a real Envoy takes listener,
//! routes and clusters from ingress-authz, follows reloads without a
//! restart, never serves a new route under old rules, keeps its version
//! on a NACK, and fails closed until ingress-authz is up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::client::{self, Request};
use crate::common::creds::basic;
use crate::common::{Authz, Envoy, eventually};
use crate::routing::{envoy_command, labelled_check, named};

const AUTH: &str = "\n        auth:\n          type: basic\n          basic:\n            users: [{username: ops, password: xds-test-password}]";

fn config(listen: &str, rules: &[(&str, u16, bool)]) -> String {
    let mut out = format!("authz:\n  envoy:\n    listen: {listen}\nrules:\n");
    for (host, port, protected) in rules {
        out.push_str(&format!(
            "  - host: {host}\n    backend:\n      service:\n        name: 127.0.0.1\n        port: {port}{}\n",
            if *protected { AUTH } else { "" }
        ));
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn upstream_of(envoy: SocketAddr, host: &str, auth: Option<&str>) -> (u16, String) {
    let mut request = Request::get(host, "/");
    if let Some(a) = auth {
        request = request.header("authorization", a);
    }
    match client::send(envoy, &request).await {
        Ok(r) if r.status == 200 => (
            200,
            r.json()["upstream"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        Ok(r) => (r.status, String::new()),
        Err(e) => (0, e.to_string()),
    }
}

/// An ADS client that subscribes to routes and answers nothing after.
struct LaggingAdsClient {
    _requests: tokio::sync::mpsc::Sender<DiscoveryRequest>,
    _responses: tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
}

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

impl LaggingAdsClient {
    async fn subscribe(grpc: SocketAddr) -> Self {
        use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{grpc}"))
            .await
            .expect("connect ADS");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(DiscoveryRequest {
            type_url: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration".into(),
            resource_names: vec!["ingress".into()],
            ..Default::default()
        })
        .await
        .expect("queue");
        let mut responses = client
            .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("ADS stream")
            .into_inner();
        let first = responses
            .message()
            .await
            .expect("ADS answer")
            .expect("routes");
        assert_eq!(first.resources.len(), 1, "one route configuration");
        Self {
            _requests: tx,
            _responses: responses,
        }
    }
}

/// The version a static bootstrap names in its first line.
fn version(bootstrap: &str) -> String {
    let at = bootstrap
        .find("(version ")
        .expect("a version in the header")
        + "(version ".len();
    bootstrap[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

/// A CheckRequest as Envoy sends it for `rules[0]` of resources `config`.
async fn check(authz: &Authz, host: &str, config: &str) -> u16 {
    labelled_check(
        authz,
        host,
        None,
        &[("route", "rules[0]"), ("config", config)],
    )
    .await
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_follows_reloads_over_ads_and_never_mixes_generations() {
    let (a, b) = (named("a").await, named("b").await);
    let v1 = config(
        "127.0.0.1:0",
        &[("app.test", a.port, false), ("secure.test", b.port, true)],
    );
    let authz = Authz::start(&v1).await;
    let bootstrap = envoy_command(
        authz.config_path(),
        &authz.grpc_addr().to_string(),
        &authz.http_addr().to_string(),
        &["--xds"],
    );
    assert!(
        bootstrap.contains("ads_config") && !bootstrap.contains("app.test"),
        "{bootstrap}"
    );
    let envoy = Envoy::start_config(&bootstrap).await;
    let addr = envoy.addr();
    assert_eq!(upstream_of(addr, "app.test", None).await, (200, "a".into()));
    assert_eq!(upstream_of(addr, "secure.test", None).await.0, 401);
    let credential = basic("ops", "xds-test-password");
    assert_eq!(
        upstream_of(addr, "secure.test", Some(&credential)).await,
        (200, "b".into())
    );

    // v2 moves app.test to b and protects it. Requests keep flowing
    // through the switch: none may reach b unauthenticated (the new route
    // under the old rules) and each is one generation's answer.
    let v1_version = version(&envoy_command(
        authz.config_path(),
        &authz.grpc_addr().to_string(),
        &authz.http_addr().to_string(),
        &[],
    ));
    // A second ADS client that takes routes and never applies a push: it
    // keeps the previous generation's rules alive for requests routed by
    // that generation.
    let laggard = LaggingAdsClient::subscribe(authz.grpc_addr()).await;
    let v2 = config(
        "127.0.0.1:0",
        &[("app.test", b.port, true), ("new.test", a.port, false)],
    );
    let written = Instant::now();
    authz.write_config(&v2);
    let mut seen = Vec::new();
    let switched = loop {
        let answer = upstream_of(addr, "app.test", None).await;
        assert_ne!(
            answer,
            (200, "b".to_string()),
            "b served without credentials during the switch"
        );
        assert!(
            answer == (200, "a".to_string()) || answer.0 == 401,
            "neither generation's answer: {answer:?}"
        );
        seen.push(answer.0);
        if answer.0 == 401 {
            break written.elapsed();
        }
        assert!(
            written.elapsed() < Duration::from_secs(20),
            "Envoy never switched: {seen:?}\n{}",
            envoy.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!(
        "config write to Envoy routing by it: {switched:?} ({} requests during the switch)",
        seen.len()
    );
    // The new route and cluster are Envoy's, without a restart.
    eventually(
        "new.test routed to a",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async { upstream_of(addr, "new.test", None).await == (200, "a".into()) },
    )
    .await;
    assert_eq!(
        upstream_of(addr, "app.test", Some(&credential)).await,
        (200, "b".into())
    );
    // A request still routed by v1's routes (the laggard has not applied
    // v2) is decided by v1's rules; any other version by the current ones.
    assert_eq!(check(&authz, "app.test", &v1_version).await, 200);
    assert_eq!(check(&authz, "app.test", "0000000000000000").await, 401);
    // Once no stream routes by v1, v1's rules are gone.
    drop(laggard);
    eventually(
        "v1's rules retired",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async { check(&authz, "app.test", &v1_version).await == 401 },
    )
    .await;
    let (_, metrics) = authz.http_get("/metrics").await;
    assert!(
        metric(
            &metrics,
            "ingress_authz_xds_answers_total{type=\"route\",result=\"ack\"}"
        ) >= 2,
        "{metrics}"
    );

    // A config Envoy rejects (RE2 allows no repetition over 1000): NACKed,
    // logged and counted; Envoy keeps routing by v2.
    let rejected = format!(
        "{v2}    paths:\n      - path: '^/x{{1001}}'\n        backend:\n          service: {{name: 127.0.0.1, port: {}}}\n",
        a.port
    );
    authz.write_config(&rejected);
    eventually(
        "a NACK counted",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let (_, m) = authz.http_get("/metrics").await;
            metric(
                &m,
                "ingress_authz_xds_answers_total{type=\"route\",result=\"nack\"}",
            ) >= 1
        },
    )
    .await;
    assert!(
        authz.logs().contains("Envoy rejected a push"),
        "NACK logged"
    );
    assert_eq!(
        upstream_of(addr, "app.test", Some(&credential)).await,
        (200, "b".into()),
        "the previous version keeps serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envoy_started_before_ingress_authz_fails_closed_then_converges() {
    let a = named("a").await;
    let (grpc_port, listen_port) = (free_port(), free_port());
    let grpc: SocketAddr = ([127, 0, 0, 1], grpc_port).into();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yaml");
    let text = config(
        &format!("127.0.0.1:{listen_port}"),
        &[("app.test", a.port, false)],
    );
    std::fs::write(&file, crate::common::authz::untrottled(&text)).expect("write");
    // The sidecar address does not matter here.
    let bootstrap = envoy_command(&file, &grpc.to_string(), "127.0.0.1:1", &["--xds"]);
    let mut envoy = Envoy::spawn_config(&bootstrap).await;
    let listener: SocketAddr = ([127, 0, 0, 1], listen_port).into();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let refused = client::send(listener, &Request::get("app.test", "/")).await;
    assert!(
        refused.is_err(),
        "no listener before ingress-authz answers: {refused:?}"
    );

    let _authz = Authz::start_at_grpc(&file, grpc).await;
    envoy.wait_serving().await;
    eventually(
        "app.test served once ingress-authz is up",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async { upstream_of(listener, "app.test", None).await == (200, "a".into()) },
    )
    .await;
}
