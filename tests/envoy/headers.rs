//! What reaches the upstream besides the decision: identity headers a client
//! tries to forge, request bodies of denied requests, error bodies by
//! `Accept`, the `/oauth2/` bypass route, and failing closed (SPEC §5, §8, §9).

use crate::common::configs::{basic_users, rule, rules};
use crate::common::creds::basic;
use crate::common::expect::{BASIC_CHALLENGE, assert_401, assert_upstream_ok};
use crate::common::{Request, Stack, client};

fn config() -> String {
    rules(&[
        rule("basic.example.com", &basic_users(&[("admin", "admin123")])),
        rule("open.example.com", "enabled: false"),
    ])
}

fn admin() -> String {
    basic("admin", "admin123")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_forge_identity_or_scheme_headers() {
    let stack = Stack::start(&config()).await;
    let forged = |host: &str, authorization: Option<&str>| {
        let request = Request::get(host, "/whoami")
            .header("X-Connect-Token", "forged.jwt.token")
            .header("x-connect-token", "second-copy")
            .header("X-CONNECT-TIMESTAMP", "1700000000000")
            // Underscore spelling that CGI/WSGI upstreams fold into the same name.
            .header("X_Connect_Token", "underscore")
            // The authorizer trusts Envoy's x-forwarded-proto (redirect
            // URLs, Secure cookies): Envoy, the edge, must overwrite it.
            .header("x-forwarded-proto", "https")
            .header("x-custom", "kept");
        match authorization {
            Some(value) => request.header("authorization", value),
            None => request,
        }
    };

    let authorization = admin();
    assert_upstream_ok(
        &stack
            .send(forged("basic.example.com", Some(&authorization)))
            .await,
    );
    // On every allowed request, whatever the auth type, public included.
    assert_upstream_ok(&stack.send(forged("open.example.com", None)).await);

    let requests = stack.upstream_requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        // Control: ordinary client headers do get through.
        assert_eq!(request.header("x-custom"), Some("kept"), "{request:?}");
        assert_eq!(request.header("x-forwarded-proto"), Some("http"));
        let leaked: Vec<_> = request
            .headers
            .iter()
            .filter(|(name, _)| name.replace('_', "-").starts_with("x-connect-"))
            .collect();
        assert!(
            leaked.is_empty(),
            "forged identity reached the upstream: {leaked:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_request_body_never_reaches_the_upstream() {
    let stack = Stack::start(&config()).await;
    let post = |authorization: String, body: Vec<u8>| {
        Request::new("POST", "basic.example.com", "/upload")
            .header("authorization", &authorization)
            .header("content-type", "application/octet-stream")
            .body(body)
    };

    let small = post(basic("admin", "wrong"), b"secret payload".to_vec());
    assert_401(&stack.send(small).await, BASIC_CHALLENGE);
    let large = post(basic("admin", "wrong"), vec![b'x'; 256 * 1024]);
    assert_401(&stack.send(large).await, BASIC_CHALLENGE);
    let unauthenticated = Request::new("PUT", "basic.example.com", "/upload").body("data");
    assert_eq!(stack.send(unauthenticated).await.status, 401);
    assert!(stack.upstream_requests().is_empty());

    // Control: an allowed POST arrives whole.
    let body = vec![b'y'; 100 * 1024];
    assert_upstream_ok(&stack.send(post(admin(), body.clone())).await);
    let requests = stack.upstream_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].body, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_body_follows_accept() {
    let stack = Stack::start(&config()).await;
    let deny = async |accept: Option<&str>| {
        let request = Request::get("basic.example.com", "/");
        let request = match accept {
            Some(value) => request.header("accept", value),
            None => request,
        };
        stack.send(request).await
    };

    for accept in [
        None,
        Some("application/json"),
        Some("*/*"),
        Some("text/html;q=0.5, application/json"),
    ] {
        let response = deny(accept).await;
        assert_401(&response, BASIC_CHALLENGE);
    }
    for accept in [
        "text/html",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "application/json;q=0.1, text/html",
    ] {
        let response = deny(Some(accept)).await;
        assert_eq!(response.status, 401, "{accept}");
        assert_eq!(response.header("www-authenticate"), Some(BASIC_CHALLENGE));
        let content_type = response.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("text/html"),
            "{accept}: {content_type}"
        );
        assert!(
            response.text().contains('<'),
            "{accept}: {}",
            response.text()
        );
    }
    assert!(stack.upstream_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_paths_go_to_the_sidecar_without_a_check() {
    let stack = Stack::start(&config()).await;

    // No credentials, yet no challenge: Envoy skipped ext_authz and proxied to
    // the sidecar (a local reply would carry no upstream service time).
    let callback = stack
        .send(Request::get(
            "basic.example.com",
            "/oauth2/callback?code=c&state=s",
        ))
        .await;
    assert!(
        callback.header("x-envoy-upstream-service-time").is_some(),
        "{} {:?} {}",
        callback.status,
        callback.headers,
        callback.text()
    );
    assert_eq!(callback.header("www-authenticate"), None);
    // Control: only the `/oauth2/` prefix bypasses the check.
    let lookalike = stack
        .send(Request::get("basic.example.com", "/oauth2x/callback"))
        .await;
    assert_401(&lookalike, BASIC_CHALLENGE);
    assert!(stack.upstream_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_fails_closed_when_the_authorizer_is_down() {
    let Stack {
        upstream,
        authz,
        envoy,
    } = Stack::start(&config()).await;
    let authorization = admin();
    let request = Request::get("basic.example.com", "/").header("authorization", &authorization);

    let before = client::send(envoy.addr(), &request).await.expect("send");
    assert_upstream_ok(&before);
    drop(authz);
    upstream.clear();

    let after = client::send(envoy.addr(), &request).await.expect("send");
    assert_eq!(after.status, 503, "{}", after.text());
    let public = Request::get("open.example.com", "/");
    let public = client::send(envoy.addr(), &public).await.expect("send");
    assert_eq!(public.status, 503, "{}", public.text());
    assert!(upstream.requests().is_empty());
}
