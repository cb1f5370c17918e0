//! Operations through a real Envoy: reloads under traffic, and the admin
//! API's `Explain` agreeing with what Envoy actually does.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::common::{Stack, configs, creds};
use ingress_authz::admin::proto::admin_client::AdminClient;
use ingress_authz::admin::proto::{ExplainRequest, ReloadRequest};

/// Basic auth, an open `/public` and a bearer `/api` on app.example.com, and
/// a bearer wildcard host.
fn config() -> String {
    configs::public_and_api("envoy-ops-pw", "envoy-ops-token")
        + "  - host: \"*.wild.example.com\"\n    backend:\n      service:\n        auth: {type: bearer, bearer: {tokens: [wild-token]}}\n"
}

/// Every request of the traffic mix and the status it must get under
/// [`config`].
fn traffic() -> Vec<(&'static str, &'static str, Option<String>, u16)> {
    vec![
        (
            "app.example.com",
            "/",
            Some(creds::basic("admin", "envoy-ops-pw")),
            200,
        ),
        ("app.example.com", "/", None, 401),
        ("app.example.com", "/public/x", None, 200),
        (
            "app.example.com",
            "/api/v1",
            Some(creds::bearer("envoy-ops-token")),
            200,
        ),
        (
            "app.example.com",
            "/api/v1",
            Some(creds::basic("admin", "envoy-ops-pw")),
            401,
        ),
        (
            "a.wild.example.com",
            "/",
            Some(creds::bearer("wild-token")),
            200,
        ),
        ("nowhere.example.com", "/", None, 403),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_traffic_decide_every_request_correctly() {
    let stack = Arc::new(Stack::start(&config()).await);
    let mut admin = AdminClient::connect(format!("http://{}", stack.authz.admin_addr()))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for worker in 0..4 {
        let (stack, stop, sent) = (stack.clone(), stop.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            let mix = traffic();
            let mut wrong = Vec::new();
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let (host, path, auth, want) = &mix[i % mix.len()];
                let response = stack.get_auth(host, path, auth.as_deref()).await;
                if response.status != *want {
                    wrong.push(format!("{host}{path}: got {} want {want}", response.status));
                }
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            wrong
        }));
    }
    // Each reload swaps in a new text with the same meaning (a comment
    // differs): the file watcher sees the write, the admin API forces it.
    for n in 1..=100 {
        let text = format!("# revision {n}\n{}", config());
        stack.authz.write_config(&text);
        let reply = admin.reload(ReloadRequest {}).await.unwrap().into_inner();
        assert!(reply.ok, "{:?}", reply.errors);
        // Let traffic run against every generation.
        while sent.load(Ordering::Relaxed) < n * 5 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut wrong = Vec::new();
    for c in clients {
        wrong.extend(c.await.unwrap());
    }
    let total = sent.load(Ordering::Relaxed);
    assert!(
        total >= 500,
        "too little traffic to prove anything: {total}"
    );
    assert!(
        wrong.is_empty(),
        "{} of {total} requests decided wrongly: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    let generation = admin
        .reload(ReloadRequest {})
        .await
        .unwrap()
        .into_inner()
        .generation;
    assert!(generation >= 101, "generation {generation}");
}

#[tokio::test]
async fn admin_explain_matches_what_envoy_does() {
    let stack = Stack::start(&config()).await;
    let mut admin = AdminClient::connect(format!("http://{}", stack.authz.admin_addr()))
        .await
        .unwrap();
    let mut table = traffic();
    table.extend([
        (
            "app.example.com",
            "/api/../public",
            Some(creds::bearer("envoy-ops-token")),
            200,
        ),
        ("app.example.com", "/public/../api", None, 401),
        ("APP.example.com:8080", "/public", None, 200),
        ("x.y.wild.example.com", "/", None, 401),
    ]);
    for (host, path, auth, _) in table {
        let response = stack.get_auth(host, path, auth.as_deref()).await;
        let headers: HashMap<String, String> = auth
            .iter()
            .map(|a| ("authorization".to_string(), a.clone()))
            .collect();
        let explained = admin
            .explain(ExplainRequest {
                host: host.into(),
                path: path.into(),
                method: "GET".into(),
                headers,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            u32::from(response.status),
            explained.status,
            "{host}{path}: Envoy answered {}, Explain said:\n{}",
            response.status,
            explained.text
        );
    }
}
