//! Authentication through real Envoy: every auth type allows and denies, the
//! guide's path-level example, `enabled: false`, and host matching (SPEC §4,
//! §5). Each test runs its own upstream + ingress-authz + Envoy.

use crate::common::Stack;
use crate::common::configs::{
    PATH_LEVEL, basic_users, bearer_tokens, indent, path_auth, path_entry, paths, rule, rules,
};
use crate::common::creds::{self, alg_none, basic, bearer, claims, hs256};
use crate::common::expect::{BASIC_CHALLENGE, INVALID_TOKEN, assert_401, assert_upstream_ok};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_allows_good_credentials_and_challenges_the_rest() {
    let stack = Stack::start(&crate::common::configs::basic()).await;
    let get = async |target: &str, authorization: Option<String>| {
        stack
            .get_auth("basic.example.com", target, authorization.as_deref())
            .await
    };

    assert_upstream_ok(&get("/ok", Some(basic("admin", "admin123"))).await);
    // The password may contain ':' (split at the first one only).
    assert_upstream_ok(&get("/colon", Some(basic("colon", "a:b:c"))).await);
    // The scheme word is case-insensitive (RFC 7235).
    let lower = basic("admin", "admin123").replacen("Basic", "basic", 1);
    assert_upstream_ok(&get("/lower", Some(lower)).await);

    assert_401(
        &get("/wrong", Some(basic("admin", "nope"))).await,
        BASIC_CHALLENGE,
    );
    assert_401(
        &get("/unknown", Some(basic("nobody", "admin123"))).await,
        BASIC_CHALLENGE,
    );
    assert_401(&get("/missing", None).await, BASIC_CHALLENGE);
    assert_401(
        &get("/bearer", Some(bearer("admin123"))).await,
        BASIC_CHALLENGE,
    );
    assert_401(
        &get("/garbage", Some("Basic !!!notbase64".into())).await,
        BASIC_CHALLENGE,
    );

    assert_eq!(stack.upstream_targets(), ["/ok", "/colon", "/lower"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_allows_listed_tokens_only() {
    let stack = Stack::start(&rules(&[rule(
        "bearer.example.com",
        &bearer_tokens(&["token1-abc123xyz", "token2-def456uvw"]),
    )]))
    .await;
    let get = async |target: &str, authorization: Option<String>| {
        stack
            .get_auth("bearer.example.com", target, authorization.as_deref())
            .await
    };

    assert_upstream_ok(&get("/one", Some(bearer("token1-abc123xyz"))).await);
    assert_upstream_ok(&get("/two", Some(bearer("token2-def456uvw"))).await);

    // A token was presented: RFC 6750 says which error.
    assert_401(
        &get("/wrong", Some(bearer("token1-abc123xy"))).await,
        INVALID_TOKEN,
    );
    assert_401(
        &get("/prefix", Some(bearer("token1-abc123xyzz"))).await,
        INVALID_TOKEN,
    );
    // No token at all: a bare challenge.
    assert_401(&get("/missing", None).await, "Bearer");
    assert_eq!(
        get("/basic", Some(basic("token1-abc123xyz", "")))
            .await
            .status,
        401
    );

    assert_eq!(stack.upstream_targets(), ["/one", "/two"]);
}

const JWT_SECRET: &str = "change-me-in-production";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_checks_signature_algorithm_expiry_issuer_and_audience() {
    let stack = Stack::start(&rules(&[rule(
        "jwt.example.com",
        &format!(
            "type: jwt\nsecret: {JWT_SECRET}\njwt:\n  issuer: ingress-demo\n  audience: api.example.com"
        ),
    )]))
    .await;
    let good = claims("ingress-demo", "api.example.com");
    let with = |patch: serde_json::Value| {
        let mut c = good.clone();
        c.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        c
    };
    let send = async |target: &str, token: String| {
        let authorization = bearer(&token);
        stack
            .get(
                "jwt.example.com",
                target,
                &[("authorization", &authorization)],
            )
            .await
    };

    assert_upstream_ok(&send("/valid", hs256(JWT_SECRET, &good)).await);
    // `aud` may be an array containing the audience.
    let aud_array = with(json!({"aud": ["other", "api.example.com"]}));
    assert_upstream_ok(&send("/aud-array", hs256(JWT_SECRET, &aud_array)).await);

    let now = creds::now();
    let denied = [
        (
            "/expired",
            hs256(
                JWT_SECRET,
                &with(json!({"iat": now - 7200, "exp": now - 3600})),
            ),
        ),
        ("/wrong-secret", hs256("not-the-secret", &good)),
        ("/alg-none", alg_none(&good)),
        (
            "/wrong-issuer",
            hs256(JWT_SECRET, &with(json!({"iss": "evil"}))),
        ),
        (
            "/wrong-audience",
            hs256(JWT_SECRET, &with(json!({"aud": "other"}))),
        ),
        (
            "/not-yet-valid",
            hs256(JWT_SECRET, &with(json!({"nbf": now + 3600}))),
        ),
        ("/no-exp", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("exp");
            hs256(JWT_SECRET, &c)
        }),
        ("/garbage", "not.a.jwt".to_owned()),
    ];
    for (target, token) in denied {
        let response = send(target, token).await;
        assert_eq!(response.status, 401, "{target}: {}", response.text());
        assert_401(&response, INVALID_TOKEN);
    }
    let missing = stack.get("jwt.example.com", "/missing", &[]).await;
    assert_eq!(missing.status, 401);
    assert!(
        missing
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer")),
        "{:?}",
        missing.headers
    );

    assert_eq!(stack.upstream_targets(), ["/valid", "/aud-array"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_level_auth_follows_the_guide() {
    let stack = Stack::start(PATH_LEVEL).await;
    let admin = basic("admin", "admin123");
    let superadmin = basic("superadmin", "super123");
    let default = basic("default", "default123");
    let token = bearer("api-token-2");
    let get = async |target: &str, authorization: Option<&str>| {
        stack.get_auth("example.com", target, authorization).await
    };

    // "Requests to /admin require admin credentials"
    assert_upstream_ok(&get("/admin", Some(&admin)).await);
    assert_upstream_ok(&get("/admin/users?page=2", Some(&superadmin)).await);
    assert_401(&get("/admin", Some(&default)).await, BASIC_CHALLENGE);
    assert_401(&get("/admin/users", Some(&token)).await, BASIC_CHALLENGE);
    assert_401(&get("/admin", None).await, BASIC_CHALLENGE);

    // "Requests to /api require a bearer token"
    assert_upstream_ok(&get("/api/items", Some(&token)).await);
    assert_upstream_ok(&get("/api", Some(&bearer("api-token-1"))).await);
    assert_401(
        &get("/api/items", Some(&bearer("api-token-4"))).await,
        INVALID_TOKEN,
    );
    assert_eq!(get("/api/items", Some(&default)).await.status, 401);
    assert_eq!(get("/api/items", Some(&admin)).await.status, 401);
    assert_401(&get("/api/items", None).await, "Bearer");

    // "All other requests use the default basic authentication"
    assert_upstream_ok(&get("/", Some(&default)).await);
    assert_upstream_ok(&get("/other/page", Some(&default)).await);
    assert_401(&get("/other/page", Some(&admin)).await, BASIC_CHALLENGE);
    assert_401(&get("/other/page", Some(&token)).await, BASIC_CHALLENGE);
    assert_401(&get("/other/page", None).await, BASIC_CHALLENGE);

    assert_eq!(
        stack.upstream_targets(),
        [
            "/admin",
            "/admin/users?page=2",
            "/api/items",
            "/api",
            "/",
            "/other/page"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_false_is_public_and_paths_without_auth_inherit() {
    let admin_only = basic_users(&[("admin", "admin123")]);
    let protected = rule("app.example.com", &admin_only)
        // /inherit has no auth block: it inherits the rule's basic auth
        // (fail closed).
        + &paths(&[
            path_entry("/inherit", "app"),
            path_auth("/public", "app", "enabled: false"),
        ]);
    let open = rule("open.example.com", &format!("enabled: false\n{admin_only}"));
    let stack = Stack::start(&rules(&[protected, open])).await;
    let admin = basic("admin", "admin123");

    assert_upstream_ok(&stack.get("app.example.com", "/public/x", &[]).await);
    assert_upstream_ok(&stack.get("open.example.com", "/anything", &[]).await);
    assert_401(
        &stack.get("app.example.com", "/inherit", &[]).await,
        BASIC_CHALLENGE,
    );
    assert_401(
        &stack.get("app.example.com", "/elsewhere", &[]).await,
        BASIC_CHALLENGE,
    );
    let inherit = stack
        .get("app.example.com", "/inherit", &[("authorization", &admin)])
        .await;
    assert_upstream_ok(&inherit);

    assert_eq!(
        stack.upstream_targets(),
        ["/public/x", "/anything", "/inherit"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_match_by_wildcard_anchored_regex_and_exact_name() {
    let stack = Stack::start(&rules(&[
        rule("\"*.example.com\"", &bearer_tokens(&["wildcard-token"])),
        rule(r"^t-(\w+)\.example\.work", &bearer_tokens(&["regex-token"])),
        rule("Exact.Example.org", &bearer_tokens(&["exact-token"])),
    ]))
    .await;
    let check = async |host: &str, token: &str| {
        let authorization = bearer(token);
        stack
            .get(
                host,
                &format!("/{host}"),
                &[("authorization", &authorization)],
            )
            .await
            .status
    };

    // Wildcard: one or more labels, not the bare domain.
    assert_eq!(check("a.example.com", "wildcard-token").await, 200);
    assert_eq!(check("a.b.example.com", "wildcard-token").await, 200);
    assert_eq!(check("a.example.com", "regex-token").await, 401);
    assert_eq!(check("example.com", "wildcard-token").await, 403);
    assert_eq!(check("a.example.com.evil.net", "wildcard-token").await, 403);
    // Port stripped, case-insensitive.
    assert_eq!(check("A.EXAMPLE.COM:8000", "wildcard-token").await, 200);
    assert_eq!(check("exact.example.org:443", "exact-token").await, 200);
    assert_eq!(check("EXACT.example.ORG", "exact-token").await, 200);
    assert_eq!(check("exact.example.org", "wildcard-token").await, 401);

    // Regex: must match the whole host.
    assert_eq!(check("t-x.example.work", "regex-token").await, 200);
    assert_eq!(check("t-x.example.work", "wildcard-token").await, 401);
    assert_eq!(check("t-x.example.work.evil.com", "regex-token").await, 403);
    assert_eq!(check("evil-t-x.example.work", "regex-token").await, 403);

    assert_eq!(
        stack.upstream_targets(),
        [
            "/a.example.com",
            "/a.b.example.com",
            "/A.EXAMPLE.COM:8000",
            "/exact.example.org:443",
            "/EXACT.example.ORG",
            "/t-x.example.work",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_matching_host_is_forbidden_and_never_proxied() {
    let stack = Stack::start(&crate::common::configs::basic()).await;
    let admin = basic("admin", "admin123");

    for host in ["other.example.com", "basic.example.com.evil", "example.com"] {
        let response = stack.get(host, "/", &[("authorization", &admin)]).await;
        assert_eq!(response.status, 403, "{host}: {}", response.text());
    }
    assert!(stack.upstream_requests().is_empty());
    // Control: the same credentials do work on the configured host.
    let ok = stack
        .get("basic.example.com", "/", &[("authorization", &admin)])
        .await;
    assert_upstream_ok(&ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_applies_to_unmatched_hosts() {
    let fallback = format!(
        "fallback:\n  service:\n    name: default\n    port: 80\n    auth:\n{}",
        indent(6, [bearer_tokens(&["fallback-token"])])
    );
    let app = rule("app.example.com", &bearer_tokens(&["app-token"]));
    let stack = Stack::start(&(rules(&[app]) + &fallback)).await;
    let get = async |host: &str, token: &str| {
        let authorization = bearer(token);
        stack
            .get(host, "/", &[("authorization", &authorization)])
            .await
            .status
    };

    assert_eq!(get("unknown.example.net", "fallback-token").await, 200);
    assert_eq!(get("unknown.example.net", "app-token").await, 401);
    assert_eq!(get("app.example.com", "app-token").await, 200);
    assert_eq!(get("app.example.com", "fallback-token").await, 401);
    assert_eq!(stack.upstream_requests().len(), 2);
}
