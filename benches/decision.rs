//! The decision path (match + authenticate) for 10 and 10,000 rules.

// Tokens and cookies are minted against the wall clock.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::hint::black_box;

use base64::Engine as _;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ingress_authz::engine::Engine;
use ingress_authz::request::RequestView;

/// The binary's allocator, so the numbers are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const JWT_SECRET: &str = "bench-secret-0123456789abcdef";

/// `n` rules cycling through the auth types; the hosts used for measuring
/// are the last rules, so a linear scan would pay for all of them.
/// With `policy`, each route also has an `allow` block the credential meets.
fn config(n: usize, argon_hash: &str, policy: bool) -> String {
    let mut yaml = String::from("rules:\n");
    for i in 0..n {
        let (users, bearer, jwt) = if policy {
            (
                ", allow: {users: [admin]}",
                "{type: bearer, bearer: {tokens: [{name: ci, token: token-abc-123}]}, allow: {users: [ci]}}",
                ", allow: {users: [u], claims: {scope: read}}",
            )
        } else {
            ("", "{type: bearer, bearer: {tokens: [token-abc-123]}}", "")
        };
        let auth = match i % 4 {
            0 => format!(
                "{{type: basic, basic: {{users: [{{username: admin, password: admin123}}]}}{users}}}"
            ),
            1 => format!(
                "{{type: basic, basic: {{users: [{{username: admin, password: '{argon_hash}'}}]}}{users}}}"
            ),
            2 => bearer.to_string(),
            _ => format!("{{type: jwt, secret: {JWT_SECRET}{jwt}}}"),
        };
        yaml.push_str(&format!(
            "  - host: h{i}.example.com\n    backend:\n      service:\n        name: s\n        auth: {auth}\n    paths:\n      - path: /admin\n        backend: {{service: {{auth: {{enabled: false}}}}}}\n      - path: /api/v[0-9]+/\n"
        ));
    }
    yaml
}

fn bench(c: &mut Criterion) {
    use argon2::PasswordHasher;
    let argon = argon2::Argon2::default()
        .hash_password(b"admin123")
        .unwrap()
        .to_string();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:admin123")
    );
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let jwt = format!(
        "Bearer {}",
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"sub": "u", "exp": exp, "scope": "read write"}),
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    );
    // `decide_policy/*/10` against `decide/*/10`: what the policy stage costs.
    for (group_name, sizes, policy) in [
        ("decide", &[10usize, 10_000][..], false),
        ("decide_policy", &[10usize][..], true),
    ] {
        let mut group = c.benchmark_group(group_name);
        for &n in sizes {
            let engine = Engine::from_text(&config(n, &argon, policy), "bench", &|_| None).unwrap();
            // The last rule of each type (rule index % 4 picks the type).
            let last = |kind: usize| format!("h{}.example.com", (n - 1 - kind) / 4 * 4 + kind);
            let cases = [
                ("basic", last(0), basic.clone()),
                ("basic_argon2id_cached", last(1), basic.clone()),
                ("bearer", last(2), "Bearer token-abc-123".to_string()),
                ("jwt_hs256", last(3), jwt.clone()),
            ];
            for (name, host, authorization) in cases {
                let headers: HashMap<String, String> = [
                    ("authorization".to_string(), authorization),
                    ("accept".to_string(), "*/*".to_string()),
                ]
                .into();
                let req = RequestView {
                    host: &host,
                    path: "/api/items?page=2",
                    method: "GET",
                    scheme: "http",
                    headers: &headers,
                    client: None,
                };
                assert!(
                    engine.decide_inline(&req).is_allowed(),
                    "{name} must be allowed"
                );
                group.bench_with_input(BenchmarkId::new(name, n), &req, |b, req| {
                    b.iter(|| black_box(engine.decide(black_box(req))).is_allowed());
                });
            }
        }
        group.finish();
    }
}

/// API-mode checks (`jwt.jwks_url`) with the JWKS already cached: RS256
/// and ES256 signatures, the algorithm fixed by the cached JWK.
fn bench_jwks(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fixture = |name: &str| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap()
    };
    let keys = [
        (
            "rsa",
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::EncodingKey::from_rsa_pem(fixture("rsa.key").as_bytes()).unwrap(),
        ),
        (
            "ec",
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_pem(fixture("ec256.key").as_bytes()).unwrap(),
        ),
    ];
    let jwks: Vec<serde_json::Value> = keys
        .iter()
        .map(|(kid, alg, key)| {
            let mut jwk =
                serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(key, *alg).unwrap())
                    .unwrap();
            jwk["kid"] = serde_json::json!(kid);
            jwk
        })
        .collect();
    let body = serde_json::json!({ "keys": jwks }).to_string();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        let app =
            axum::Router::new().route("/jwks", axum::routing::get(move || async move { body }));
        axum::serve(listener, app).await.unwrap();
    });
    let config = format!(
        "rules:\n  - host: api.example.com\n    backend:\n      service:\n        auth: {{type: jwt, jwt: {{jwks_url: 'http://{addr}/jwks', issuer: https://issuer.example, audience: api}}}}\n"
    );
    let engine = Engine::from_text(&config, "bench", &|_| None).unwrap();
    let http = ingress_authz::auth::providers::ProviderHttp::default();
    for fetcher in engine.fetchers() {
        runtime.block_on(fetcher.run(&http));
    }
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut group = c.benchmark_group("decide_jwks_cached");
    for (kid, alg, key) in &keys {
        let mut header = jsonwebtoken::Header::new(*alg);
        header.kid = Some(kid.to_string());
        let claims = serde_json::json!({"sub": "u", "exp": exp, "iss": "https://issuer.example", "aud": "api"});
        let token = format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, &claims, key).unwrap()
        );
        let headers: HashMap<String, String> = [("authorization".to_string(), token)].into();
        let req = RequestView {
            host: "api.example.com",
            path: "/v1/items",
            method: "GET",
            scheme: "http",
            headers: &headers,
            client: None,
        };
        assert!(engine.decide(&req).is_allowed(), "{kid} must be allowed");
        group.bench_with_input(BenchmarkId::new(format!("{alg:?}"), 1), &req, |b, req| {
            b.iter(|| black_box(engine.decide(black_box(req))).is_allowed());
        });
    }
    group.finish();
}

/// A valid oauth2 session cookie: decrypt, check, connect token (cached).
fn bench_session(c: &mut Criterion) {
    use ingress_authz::secret::Secret;
    use ingress_authz::session::{Identity, Purpose, Session, SessionKeys};
    let secret = "bench-session-secret-0123456789abcdef";
    let config = format!(
        "authz:\n  session: {{secret: {secret}}}\nrules:\n  - host: app.example.com\n    backend:\n      service:\n        auth:\n          type: oauth2\n          oauth2: {{provider: github, client_id: cid, client_secret: cs, connect: {{enabled: true, jwt: {{secret: shared}}}}}}\n"
    );
    let engine = Engine::from_text(&config, "bench", &|_| None).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let session = Session {
        id: ingress_authz::session::new_session_id(),
        sid: None,
        identity: Identity {
            id: "583231".into(),
            username: "octocat".into(),
            email: "octocat@github.com".into(),
            nickname: "The Octocat".into(),
            avatar: "https://avatars.githubusercontent.com/u/583231?v=4".into(),
        },
        provider: "github".into(),
        client_id: "cid".into(),
        issued: now,
        expires: now + 3600,
        refresh: None,
        renew_at: 0,
        attrs: Default::default(),
    };
    let keys = SessionKeys::from_secrets(&[Secret::new(secret.into())]);
    let cookie = format!(
        "theme=dark; ingress_authz={}",
        keys.seal_json(Purpose::Session, &session)
    );
    let headers: HashMap<String, String> = [("cookie".to_string(), cookie)].into();
    let req = RequestView {
        host: "app.example.com",
        path: "/dashboard",
        method: "GET",
        scheme: "http",
        headers: &headers,
        client: None,
    };
    assert!(
        engine.decide(&req).is_allowed(),
        "the session must be valid"
    );
    c.bench_function("decide/oauth2_session_connect", |b| {
        b.iter(|| black_box(engine.decide(black_box(&req))).is_allowed());
    });
    // The same session on a route whose policy it meets.
    let config = config.replace(
        "connect: {enabled: true, jwt: {secret: shared}}}",
        "connect: {enabled: true, jwt: {secret: shared}}}\n          allow: {logins: [octocat], emails: [octocat@github.com]}",
    );
    let engine = Engine::from_text(&config, "bench", &|_| None).unwrap();
    let verified = Session {
        attrs: ingress_authz::session::Attributes {
            version: ingress_authz::session::ATTRIBUTES_VERSION,
            email: Some("octocat@github.com".into()),
            domain: Some("github.com".into()),
            read_at: now,
            ..Default::default()
        },
        ..session
    };
    let cookie = format!(
        "theme=dark; ingress_authz={}",
        keys.seal_json(Purpose::Session, &verified)
    );
    let headers: HashMap<String, String> = [("cookie".to_string(), cookie)].into();
    let req = RequestView {
        headers: &headers,
        ..req
    };
    assert!(engine.decide(&req).is_allowed(), "the policy must hold");
    c.bench_function("decide_policy/oauth2_session_connect", |b| {
        b.iter(|| black_box(engine.decide(black_box(&req))).is_allowed());
    });
}

criterion_group!(benches, bench, bench_jwks, bench_session);
criterion_main!(benches);
