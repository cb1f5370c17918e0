//! Path spellings that try to reach `/admin` with `/api` or rule-level
//! credentials (SPEC §4 "no spelling reaches a route it should not"), with
//! Envoy's path normalisation on (the shipped config) and off (the authorizer
//! on its own), and paths that cannot be normalised (400).

use crate::common::configs::PATH_LEVEL;
use crate::common::creds::{basic, bearer};
use crate::common::expect::assert_upstream_ok;
use crate::common::{Normalize, Stack};

const HOST: &str = "example.com";

/// Spellings of `/admin` (or `/admin` under a `/api` or other prefix).
const ADMIN_SPELLINGS: &[&str] = &[
    "/api/../admin",
    "/api/./../admin",
    "/api/..//admin",
    "/other/../admin",
    "//admin",
    "///admin//x",
    "/./admin",
    "/%61dmin",
    "/%61%64%6D%69%6E/x",
    "/api/%2e%2e/admin",
    "/api/%2E%2E/admin",
    "/api/.%2e/admin",
    "/api/%2e./admin",
    "/api/..%2fadmin",
    "/api%2f..%2fadmin",
    "/api/..%2Fadmin",
];

/// What a typical upstream would make of a request-target: percent-decoded,
/// slashes merged, dot-segments resolved.
fn effective_path(target: &str) -> String {
    let path = target.split('?').next().unwrap_or_default();
    let decoded = percent_decode(path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    format!("/{}", segments.join("/"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn spellings_never_reach_admin(normalize: Normalize) {
    let stack = Stack::start_with(PATH_LEVEL, normalize).await;
    let credentials = [bearer("api-token-1"), basic("default", "default123")];

    for target in ADMIN_SPELLINGS {
        assert!(effective_path(target).starts_with("/admin"), "{target}");
        for authorization in &credentials {
            let response = stack.get_auth(HOST, target, Some(authorization)).await;
            // 401 (wrong credentials for /admin), 400 (an encoded slash,
            // normalisation off) or 307 (Envoy unescaping, normalisation on).
            assert!(
                matches!(response.status, 400 | 401 | 307),
                "{normalize:?} {target} with {authorization}: {} {}",
                response.status,
                response.text()
            );
        }
    }
    let reached_admin: Vec<_> = stack
        .upstream_requests()
        .into_iter()
        .filter(|r| effective_path(&r.target).starts_with("/admin"))
        .collect();
    assert!(
        reached_admin.is_empty(),
        "{normalize:?}: reached the upstream as /admin: {reached_admin:?}"
    );

    // Controls: the same credentials work where they apply, and the decision
    // is made on the normalised path (admin credentials open the tricks).
    let token = bearer("api-token-1");
    assert_upstream_ok(&stack.get_auth(HOST, "/api/x/../items", Some(&token)).await);
    let default = basic("default", "default123");
    assert_upstream_ok(&stack.get_auth(HOST, "/api/../home", Some(&default)).await);
    let admin = basic("admin", "admin123");
    assert_upstream_ok(&stack.get_auth(HOST, "/api/../admin", Some(&admin)).await);
    assert_upstream_ok(&stack.get_auth(HOST, "/%61dmin", Some(&admin)).await);
    let paths: Vec<String> = stack
        .upstream_requests()
        .iter()
        .map(|r| effective_path(&r.target))
        .collect();
    assert_eq!(paths, ["/api/items", "/home", "/admin", "/admin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_spellings_are_denied_with_envoy_normalisation() {
    spellings_never_reach_admin(Normalize::On).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_spellings_are_denied_without_envoy_normalisation() {
    spellings_never_reach_admin(Normalize::Off).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnormalisable_paths_are_rejected_by_the_authorizer() {
    let stack = Stack::start_with(PATH_LEVEL, Normalize::Off).await;
    let admin = basic("admin", "admin123");

    for target in [
        "/../admin",
        "/api/../../admin",
        "/admin%2fx",
        "/admin%2Fx",
        "/admin/%00",
        "/admin%00.html",
    ] {
        let response = stack.get_auth(HOST, target, Some(&admin)).await;
        assert_eq!(response.status, 400, "{target}: {}", response.text());
    }
    assert!(stack.upstream_requests().is_empty());
    // Control: the credentials are good.
    assert_upstream_ok(&stack.get_auth(HOST, "/admin/x", Some(&admin)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_normalisation_redirects_or_rejects_escaped_slashes() {
    let stack = Stack::start(PATH_LEVEL).await;
    let token = bearer("api-token-1");

    // UNESCAPE_AND_REDIRECT: the client is sent to the unescaped path, which
    // is then checked like any other.
    let response = stack.get_auth(HOST, "/api%2Fitems", Some(&token)).await;
    assert_eq!(response.status, 307, "{}", response.text());
    assert_eq!(response.header("location"), Some("/api/items"));
    for target in ["/admin/%00", "/api%2f..%2fadmin"] {
        let response = stack.get_auth(HOST, target, Some(&token)).await;
        assert_ne!(response.status, 200, "{target}");
    }
    assert!(stack.upstream_requests().is_empty());
}

#[test]
fn effective_path_resolves_like_an_upstream() {
    assert_eq!(effective_path("/api/%2e%2e//admin?x=1"), "/admin");
    assert_eq!(effective_path("/%61dmin/./x"), "/admin/x");
    assert_eq!(effective_path("/a/b/../../.."), "/");
}
