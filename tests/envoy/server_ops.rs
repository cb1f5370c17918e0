//! Operating the server: health, readiness, metrics, admin API, reload,
//! signals and audit lines — against the real binary on ephemeral ports.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::authz::{self, check_request};
use crate::common::{self, Authz, configs, creds};
use envoy_types::ext_authz::v3::pb::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use ingress_authz::admin::proto::admin_client::AdminClient;
use ingress_authz::admin::proto::{ConfigSummaryRequest, ExplainRequest, ReloadRequest};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn config() -> String {
    configs::public_and_api("ops-secret-password-1", "ops-secret-token-2")
}

/// The HTTP status Envoy would apply: 200 for OK, else the denied status.
async fn check_status(authz: &Authz, host: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    let response = authz
        .grpc_client()
        .await
        .check(check_request(host, path, "http", headers))
        .await
        .expect("Check never fails at the gRPC level")
        .into_inner();
    authz::check_status(&response)
}

async fn admin(authz: &Authz) -> AdminClient<tonic::transport::Channel> {
    AdminClient::connect(format!("http://{}", authz.admin_addr()))
        .await
        .expect("connect admin")
}

/// Polls `f` until it returns true, for up to 10 s.
async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    common::eventually(what, Duration::from_secs(10), Duration::from_millis(50), f).await;
}

#[tokio::test]
async fn health_over_grpc_and_http() {
    let authz = Authz::start(&config()).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", authz.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "envoy.service.auth.v3.Authorization"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
    assert_eq!(authz.http_get("/healthz").await.0, 200);
    let (status, body) = authz.http_get("/readyz").await;
    assert_eq!((status, body.trim()), (200, "ready generation=1"));
}

#[tokio::test]
async fn metrics_count_decisions() {
    let authz = Authz::start(&config()).await;
    let admin_basic = creds::basic("admin", "ops-secret-password-1");
    let host = "app.example.com";
    assert_eq!(
        check_status(&authz, host, "/", &[("authorization", &admin_basic)]).await,
        200
    );
    assert_eq!(
        check_status(&authz, host, "/", &[("authorization", &admin_basic)]).await,
        200
    );
    assert_eq!(check_status(&authz, host, "/", &[]).await, 401);
    assert_eq!(check_status(&authz, host, "/public/x", &[]).await, 200);
    assert_eq!(
        check_status(&authz, "other.example.com", "/", &[]).await,
        403
    );
    assert_eq!(check_status(&authz, host, "/..", &[]).await, 400);

    let (status, text) = authz.http_get("/metrics").await;
    assert_eq!(status, 200);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    let counter = |rule: &str, auth: &str, decision: &str, reason: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "ingress_authz_checks_total")
            .filter(|s| {
                s.labels.get("rule") == Some(rule)
                    && s.labels.get("auth") == Some(auth)
                    && s.labels.get("decision") == Some(decision)
                    && s.labels.get("reason") == Some(reason)
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("not a counter: {other:?}"),
            })
            .sum()
    };
    assert_eq!(counter("rules[0]", "basic", "allow", "authenticated"), 2.0);
    assert_eq!(
        counter("rules[0]", "basic", "deny", "missing_credentials"),
        1.0
    );
    assert_eq!(counter("rules[0].paths[0]", "-", "allow", "open"), 1.0);
    assert_eq!(counter("-", "-", "deny", "no_route"), 1.0);
    assert_eq!(counter("-", "-", "deny", "bad_path"), 1.0);
    let histogram_count = scrape
        .samples
        .iter()
        .find(|s| s.metric == "ingress_authz_check_duration_seconds_count");
    let total = match histogram_count.map(|s| &s.value) {
        Some(prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v)) => *v,
        other => panic!("no histogram count: {other:?}\n{text}"),
    };
    assert_eq!(total, 6.0);
    assert!(
        text.contains("ingress_authz_build_info{version=\""),
        "{text}"
    );
    assert!(text.contains("ingress_authz_config_generation 1"), "{text}");
}

#[tokio::test]
async fn admin_api_explains_summarises_and_reloads() {
    let authz = Authz::start(&config()).await;
    let mut admin = admin(&authz).await;
    let explain = |host: &str, path: &str, auth: Option<&str>| ExplainRequest {
        host: host.into(),
        path: path.into(),
        method: "GET".into(),
        headers: auth
            .map(|a| HashMap::from([("authorization".to_string(), a.to_string())]))
            .unwrap_or_default(),
    };
    let ex = admin
        .explain(explain("app.example.com", "/api/../public/x?q=1", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            ex.rule.as_str(),
            ex.path_rule.as_str(),
            ex.decision.as_str(),
            ex.reason.as_str(),
            ex.normalized_path.as_str()
        ),
        (
            "rules[0]",
            "rules[0].paths[0]",
            "allow",
            "open",
            "/public/x"
        )
    );
    let ex = admin
        .explain(explain("app.example.com", "/api/v1", Some("Bearer wrong")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (ex.auth_type.as_str(), ex.status, ex.reason.as_str()),
        ("bearer", 401, "invalid_credentials")
    );

    let summary = admin
        .config_summary(ConfigSummaryRequest {})
        .await
        .unwrap()
        .into_inner();
    let labels: Vec<_> = summary
        .routes
        .iter()
        .map(|r| (r.label.as_str(), r.auth.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("rules[0]", "basic"),
            ("rules[0].paths[0]", "none: auth disabled (enabled: false)"),
            ("rules[0].paths[1]", "bearer"),
        ]
    );
    let debug = format!("{summary:?}");
    assert!(!debug.contains("ops-secret"), "{debug}");

    // A broken config is refused with its location; the old one keeps serving.
    authz.write_config(
        "rules:\n  - host: app.example.com\n    backend: {service: {auth: {tpye: basic}}}\n",
    );
    let refused = admin.reload(ReloadRequest {}).await.unwrap().into_inner();
    assert!(!refused.ok);
    assert_eq!(refused.generation, 1);
    assert!(
        refused
            .errors
            .iter()
            .any(|e| e.contains("line 3:") && e.contains("auth.tpye")),
        "{:?}",
        refused.errors
    );
    assert_eq!(check_status(&authz, "app.example.com", "/", &[]).await, 401);

    authz.write_config("rules:\n  - host: app.example.com\n    backend: {service: {name: open}}\n");
    let ok = admin.reload(ReloadRequest {}).await.unwrap().into_inner();
    assert!(ok.ok, "{:?}", ok.errors);
    assert_eq!(ok.generation, 2);
    assert_eq!(check_status(&authz, "app.example.com", "/", &[]).await, 200);
}

#[tokio::test]
async fn file_changes_reload_and_broken_files_keep_the_old_config() {
    let authz = Authz::start(&config()).await;
    let host = "app.example.com";
    assert_eq!(check_status(&authz, host, "/", &[]).await, 401);

    authz.write_config(&config().replace("enabled: false", "type: bearer, bearer: {tokens: [t]}"));
    eventually("the edited /public rule applies", || async {
        check_status(&authz, host, "/public", &[]).await == 401
    })
    .await;

    // Broken: the previous config keeps serving, the failure is counted.
    authz.write_config("rules: [\n");
    eventually("the failed reload is counted", || async {
        authz
            .http_get("/metrics")
            .await
            .1
            .contains("ingress_authz_config_reloads_total{result=\"failed\"} 1")
    })
    .await;
    assert_eq!(check_status(&authz, host, "/public", &[]).await, 401);
    assert_eq!(
        check_status(
            &authz,
            host,
            "/api",
            &[("authorization", "Bearer ops-secret-token-2")]
        )
        .await,
        200
    );
    let logs = authz.logs();
    assert!(logs.contains("config reload refused"), "{logs}");
    assert!(logs.contains("the previous config keeps serving"), "{logs}");
}

#[tokio::test]
async fn kubernetes_style_symlink_swap_is_seen() {
    // /dir/config.yaml -> ..data/config.yaml, ..data -> v1; the update
    // renames a new ..data symlink over the old one, as the kubelet does.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (version, yaml) in [
        ("v1", config()),
        (
            "v2",
            config().replace("enabled: false", "type: bearer, bearer: {tokens: [t]}"),
        ),
    ] {
        std::fs::create_dir(root.join(version)).unwrap();
        std::fs::write(root.join(version).join("config.yaml"), yaml).unwrap();
    }
    std::os::unix::fs::symlink("v1", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/config.yaml", root.join("config.yaml")).unwrap();
    let authz = Authz::start_at(&root.join("config.yaml")).await;
    let host = "app.example.com";
    assert_eq!(check_status(&authz, host, "/public", &[]).await, 200);

    std::os::unix::fs::symlink("v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    eventually("the swapped ConfigMap applies", || async {
        check_status(&authz, host, "/public", &[]).await == 401
    })
    .await;
}

#[tokio::test]
async fn users_file_changes_reload_too() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    std::fs::write(
        &users,
        format!("alice:{}\n", bcrypt::hash("alice-pw", 4).unwrap()),
    )
    .unwrap();
    let config = format!(
        "rules:\n  - host: a.com\n    backend:\n      service:\n        auth: {{type: basic, basic: {{users_file: {}}}}}\n",
        users.display()
    );
    let authz = Authz::start(&config).await;
    let bob = creds::basic("bob", "bob-pw");
    assert_eq!(
        check_status(&authz, "a.com", "/", &[("authorization", &bob)]).await,
        401
    );
    let tmp = dir.path().join("htpasswd.tmp");
    std::fs::write(
        &tmp,
        format!("bob:{}\n", bcrypt::hash("bob-pw", 4).unwrap()),
    )
    .unwrap();
    std::fs::rename(&tmp, &users).unwrap();
    eventually("bob from the new users_file", || async {
        check_status(&authz, "a.com", "/", &[("authorization", &bob)]).await == 200
    })
    .await;
}

#[tokio::test]
async fn sighup_reloads() {
    let authz = Authz::start(&config()).await;
    authz.signal("HUP");
    eventually("generation 2 after SIGHUP", || async {
        authz.http_get("/readyz").await.1.trim() == "ready generation=2"
    })
    .await;
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_check() {
    let _heavy = common::heavy().await;
    // bcrypt cost 10 (about 70 ms on one core) is long enough that SIGTERM
    // arrives mid-check, and short enough to finish well within the hash
    // pool's 300 ms wait even on a busy machine. The connection is open
    // before the check is sent, so the request is surely in flight when
    // the signal comes.
    let hash = bcrypt::hash("slow-pw", 10).unwrap();
    let config = format!(
        "rules:\n  - host: a.com\n    backend:\n      service:\n        auth: {{type: basic, basic: {{users: [{{username: u, password: '{hash}'}}]}}}}\n"
    );
    let mut authz = Authz::start(&config).await;
    let request = check_request(
        "a.com",
        "/",
        "http",
        &[("authorization", &creds::basic("u", "slow-pw"))],
    );
    let addr = authz.grpc_addr();
    let mut client = AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let in_flight = tokio::spawn(async move { client.check(request).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    authz.signal("TERM");
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight check completes")
        .into_inner();
    // The check was answered in full, not cut off: allowed, or — on a
    // machine so busy that the low-priority hash thread missed the pool's
    // 300 ms wait — the pool's own 429 `busy` (never a transport error).
    let busy = matches!(&response.http_response, Some(HttpResponse::DeniedResponse(d))
        if d.status.as_ref().is_some_and(|s| s.code == 429));
    assert!(
        matches!(response.http_response, Some(HttpResponse::OkResponse(_))) || busy,
        "{response:?}"
    );
    let status = authz
        .wait_exit(Duration::from_secs(10))
        .expect("exits after draining");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn audit_lines_are_json_without_secrets() {
    let authz = Authz::start(&config()).await;
    let wrong = creds::basic("admin", "not-the-password");
    assert_eq!(
        check_status(
            &authz,
            "app.example.com",
            "/x?token=abc",
            &[("authorization", &wrong)]
        )
        .await,
        401
    );
    let logs = authz.logs();
    let audit: Vec<serde_json::Value> = authz::audit_events(&logs)
        .into_iter()
        .filter(|v| v["event"] == "denied")
        .collect();
    assert_eq!(audit.len(), 1, "{logs}");
    let event = &audit[0];
    assert_eq!(event["reason"], "invalid_credentials");
    assert_eq!(event["rule"], "rules[0]");
    assert_eq!(event["auth"], "basic");
    assert_eq!(event["status"], 401);
    assert_eq!(event["path"], "/x");
    assert!(event["timestamp"].is_string());
    assert!(
        !logs.contains("not-the-password") && !logs.contains("token=abc"),
        "{logs}"
    );
}
