//! The decision path (match + authenticate) for 10 and 10,000 rules.

use std::collections::HashMap;
use std::hint::black_box;

use base64::Engine as _;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ingress_authz::engine::Engine;
use ingress_authz::request::RequestView;

const JWT_SECRET: &str = "bench-secret-0123456789abcdef";

/// `n` rules cycling through the auth types; the hosts used for measuring
/// are the last rules, so a linear scan would pay for all of them.
fn config(n: usize, argon_hash: &str) -> String {
    let mut yaml = String::from("rules:\n");
    for i in 0..n {
        let auth = match i % 4 {
            0 => {
                "{type: basic, basic: {users: [{username: admin, password: admin123}]}}".to_string()
            }
            1 => format!(
                "{{type: basic, basic: {{users: [{{username: admin, password: '{argon_hash}'}}]}}}}"
            ),
            2 => "{type: bearer, bearer: {tokens: [token-abc-123]}}".to_string(),
            _ => format!("{{type: jwt, secret: {JWT_SECRET}}}"),
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
            &serde_json::json!({"sub": "u", "exp": exp}),
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    );
    let mut group = c.benchmark_group("decide");
    for n in [10usize, 10_000] {
        let engine = Engine::from_text(&config(n, &argon), "bench", &|_| None).unwrap();
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
            assert!(engine.decide(&req).is_allowed(), "{name} must be allowed");
            group.bench_with_input(BenchmarkId::new(name, n), &req, |b, req| {
                b.iter(|| black_box(engine.decide(black_box(req))).is_allowed())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
