//! Decisions of the engine for whole configs, without the network.

// Tokens are minted against the wall clock jsonwebtoken checks them by.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;

use base64::Engine as _;
use ingress_authz::decision::{Reason, Verdict};
use ingress_authz::engine::Engine;
use ingress_authz::request::RequestView;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

fn engine(yaml: &str) -> Engine {
    Engine::from_text(yaml, "test.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

struct Outcome {
    status: u16,
    reason: &'static str,
    challenge: Option<String>,
    route: Option<String>,
}

fn decide(engine: &Engine, host: &str, path: &str, auth: Option<&str>) -> Outcome {
    let mut headers = HashMap::new();
    if let Some(a) = auth {
        headers.insert("authorization".to_string(), a.to_string());
    }
    let req = RequestView {
        host,
        path,
        method: "GET",
        scheme: "http",
        headers: &headers,
        client: None,
    };
    let d = engine.decide_inline(&req);
    let route = d.label.map(str::to_string);
    match d.verdict {
        Verdict::Allow { reason, .. } => Outcome {
            status: 200,
            reason: reason.code(),
            challenge: None,
            route,
        },
        Verdict::Deny(denial) | Verdict::Pending { then: denial, .. } => Outcome {
            status: denial.status.code(),
            reason: denial.reason.code(),
            challenge: denial.challenge.map(str::to_string),
            route,
        },
    }
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn corpus(rel: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/ingress-examples")
        .join(rel);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("corpus file {} is needed: {e}", p.display()))
}

#[test]
fn guide_path_level_example_behaves_as_documented() {
    let e = engine(&corpus("authentication/path-level-mixed.yaml"));
    let host = "mixed-auth.example.com";
    let admin = basic("admin", "admin123");
    let superadmin = basic("superadmin", "super123");
    let default = basic("default", "default123");
    let table: &[(&str, Option<&str>, u16)] = &[
        // /admin requires admin credentials
        ("/admin", Some(&admin), 200),
        ("/admin/users", Some(&superadmin), 200),
        ("/admin", Some(&default), 401),
        ("/admin", None, 401),
        ("/admin", Some("Bearer api-token-1"), 401),
        // /api requires a bearer token
        ("/api/items", Some("Bearer api-token-2"), 200),
        ("/api", Some("Bearer wrong"), 401),
        ("/api", Some(&default), 401),
        // everything else uses the default basic auth
        ("/", Some(&default), 200),
        ("/other", Some(&default), 200),
        ("/other", Some(&admin), 401),
        ("/other", None, 401),
        // path tricks land on /admin's rule, not /api's
        ("/api/../admin", Some("Bearer api-token-1"), 401),
        ("//admin", Some("Bearer api-token-1"), 401),
        ("/%61dmin", Some("Bearer api-token-1"), 401),
        ("/api/%2e%2e/admin", Some("Bearer api-token-1"), 401),
        ("/api/../admin", Some(&admin), 200),
        ("/api/..%2fadmin", Some("Bearer api-token-1"), 400),
        ("/../admin", Some(&admin), 400),
    ];
    for (path, auth, want) in table {
        let got = decide(&e, host, path, *auth);
        assert_eq!(
            got.status, *want,
            "{path} with {auth:?} (reason {})",
            got.reason
        );
    }
    assert_eq!(
        decide(&e, host, "/admin", None).route.as_deref(),
        Some("rules[0].paths[0]")
    );
    assert_eq!(
        decide(&e, host, "/x", None).route.as_deref(),
        Some("rules[0]")
    );
}

#[test]
fn challenges_per_type() {
    let e = engine(&corpus("authentication/path-level-mixed.yaml"));
    let h = "mixed-auth.example.com";
    assert_eq!(
        decide(&e, h, "/", None).challenge.as_deref(),
        Some("Basic realm=\"Restricted\", charset=\"UTF-8\"")
    );
    assert_eq!(
        decide(&e, h, "/api", None).challenge.as_deref(),
        Some("Bearer")
    );
    assert_eq!(
        decide(&e, h, "/api", Some("Bearer nope"))
            .challenge
            .as_deref(),
        Some("Bearer error=\"invalid_token\"")
    );
    assert_eq!(decide(&e, h, "/api", None).reason, "missing_credentials");
    assert_eq!(
        decide(&e, h, "/api", Some("Bearer nope")).reason,
        "invalid_credentials"
    );
}

const HOSTS: &str = r#"
rules:
  - host: exact.example.com
    backend: {service: {name: a, port: 1}}
  - host: "*.example.com"
    backend:
      service:
        name: b
        auth: {type: bearer, bearer: {tokens: [wild]}}
  - host: '^t-(\w+)\.example\.work'
    backend:
      service:
        name: c
        auth: {type: bearer, bearer: {tokens: [re]}}
  - host: shadowed.example.com
    backend: {service: {name: d}}
"#;

#[test]
fn host_matching_first_rule_wins() {
    let e = engine(HOSTS);
    let cases: &[(&str, Option<&str>)] = &[
        ("exact.example.com", Some("rules[0]")),
        ("EXACT.Example.com:8080", Some("rules[0]")),
        ("a.example.com", Some("rules[1]")),
        ("a.b.example.com", Some("rules[1]")),
        // the wildcard comes first, so it wins over the later exact rule
        ("shadowed.example.com", Some("rules[1]")),
        ("t-x.example.work", Some("rules[2]")),
        ("T-X.EXAMPLE.WORK:443", Some("rules[2]")),
        ("t-x.example.work.evil.com", None),
        ("example.com", None),
    ];
    for (host, want) in cases {
        let got = decide(&e, host, "/", None);
        assert_eq!(got.route.as_deref(), *want, "{host}");
        if want.is_none() {
            assert_eq!((got.status, got.reason), (403, "no_route"), "{host}");
        }
    }
    assert_eq!(decide(&e, "exact.example.com", "/", None).reason, "open");
}

#[test]
fn fallback_applies_when_no_host_matches() {
    let e = engine(
        "rules: []\nfallback:\n  service:\n    name: f\n    auth: {type: bearer, bearer: {tokens: [fb]}}\n",
    );
    let got = decide(&e, "anything.test", "/", Some("Bearer fb"));
    assert_eq!((got.status, got.route.as_deref()), (200, Some("fallback")));
    assert_eq!(decide(&e, "anything.test", "/", None).status, 401);
}

#[test]
fn enabled_table_and_inheritance() {
    let yaml = r#"
rules:
  - host: a.com
    backend:
      service:
        auth: {type: bearer, bearer: {tokens: [t]}}
    paths:
      - path: /public
        backend: {service: {auth: {enabled: false}}}
      - path: /inherits
        backend: {service: {name: x}}
      - path: /kept-off
        backend: {service: {auth: {enabled: false, type: basic, basic: {users: [{username: u, password: p}]}}}}
      - path: /redirect
        backend: {type: redirect, redirect: {url: "https://x"}}
      - path: /empty
        backend: {service: {auth: {}}}
      - path: /on
        backend: {service: {auth: {enabled: true, type: bearer, bearer: {tokens: [on]}}}}
"#;
    let e = engine(yaml);
    let cases: &[(&str, Option<&str>, u16, &str)] = &[
        ("/public", None, 200, "open"),
        ("/inherits", None, 401, "missing_credentials"),
        ("/inherits", Some("Bearer t"), 200, "authenticated"),
        ("/kept-off", None, 200, "open"),
        ("/redirect", None, 200, "open"),
        ("/empty", None, 200, "open"),
        ("/on", Some("Bearer on"), 200, "authenticated"),
        ("/on", Some("Bearer t"), 401, "invalid_credentials"),
        ("/", None, 401, "missing_credentials"),
    ];
    for (path, auth, status, reason) in cases {
        let got = decide(&e, "a.com", path, *auth);
        assert_eq!((got.status, got.reason), (*status, *reason), "{path}");
    }
}

#[test]
fn hashed_basic_users_and_htpasswd_file() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!(
            "# users\nfile-user:{}\n",
            bcrypt::hash("file-pass", 4).unwrap()
        ),
    )
    .unwrap();
    use argon2::PasswordHasher;
    let argon = argon2::Argon2::default()
        .hash_password(b"argon-pass")
        .unwrap()
        .to_string();
    let yaml = format!(
        "rules:\n  - host: a.com\n    backend:\n      service:\n        auth:\n          type: basic\n          basic:\n            realm: Staff\n            users_file: {}\n            users:\n              - {{username: ops, password: '{argon}'}}\n",
        htpasswd.display()
    );
    let e = engine(&yaml);
    for _ in 0..2 {
        // the second round is served from the verification cache
        assert_eq!(
            decide(&e, "a.com", "/", Some(&basic("ops", "argon-pass"))).status,
            200
        );
        assert_eq!(
            decide(&e, "a.com", "/", Some(&basic("file-user", "file-pass"))).status,
            200
        );
    }
    assert_eq!(
        decide(&e, "a.com", "/", Some(&basic("ops", "argon-pasS"))).status,
        401
    );
    assert_eq!(
        decide(&e, "a.com", "/", Some(&basic("file-user", "x"))).status,
        401
    );
    assert_eq!(
        decide(&e, "a.com", "/", Some(&basic("nobody", "x"))).status,
        401
    );
    assert_eq!(
        decide(&e, "a.com", "/", None).challenge.as_deref(),
        Some("Basic realm=\"Staff\", charset=\"UTF-8\"")
    );
}

#[test]
fn basic_scheme_is_case_insensitive_and_password_may_hold_colons() {
    let e = engine(&with_basic("u", "p:a:ss"));
    let creds = basic("u", "p:a:ss");
    let lower = creds.replacen("Basic", "basic", 1);
    assert_eq!(decide(&e, "a.com", "/", Some(&lower)).status, 200);
    assert_eq!(
        decide(&e, "a.com", "/", Some(&creds.replacen("Basic", "BASIC", 1))).status,
        200
    );
    for garbage in [
        "Basic",
        "Basic !!!",
        "Basic dTpw",
        "Digest abc",
        "Basic dTpwOmE6c3M= extra",
    ] {
        assert_eq!(
            decide(&e, "a.com", "/", Some(garbage)).status,
            401,
            "{garbage}"
        );
    }
}

fn with_basic(user: &str, pass: &str) -> String {
    format!(
        "rules:\n  - host: a.com\n    backend:\n      service:\n        auth:\n          type: basic\n          basic:\n            users:\n              - username: '{user}'\n                password: '{pass}'\n"
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn jwt_engine(auth: &str) -> Engine {
    let indented: String = auth.lines().map(|l| format!("          {l}\n")).collect();
    engine(&format!(
        "rules:\n  - host: a.com\n    backend:\n      service:\n        auth:\n{indented}"
    ))
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
    format!(
        "Bearer {}",
        encode(&Header::new(alg), &claims, key).unwrap()
    )
}

#[test]
fn jwt_hmac_guide_form_with_issuer_and_audience() {
    let e = engine(&corpus("authentication/jwt.yaml"));
    let host = "jwt.example.com";
    let key = EncodingKey::from_secret(b"change-me-in-production").unwrap();
    let good = serde_json::json!({"sub": "u1", "iss": "ingress-demo", "aud": "api.example.com", "exp": now() + 60});
    let status = |alg, key: &EncodingKey, claims: serde_json::Value| {
        decide(&e, host, "/", Some(&sign(alg, key, claims))).status
    };
    assert_eq!(status(Algorithm::HS256, &key, good.clone()), 200);
    assert_eq!(status(Algorithm::HS512, &key, good.clone()), 200);
    let mut arr = good.clone();
    arr["aud"] = serde_json::json!(["other", "api.example.com"]);
    assert_eq!(status(Algorithm::HS256, &key, arr), 200);
    let cases = [
        (
            "expired",
            serde_json::json!({"iss": "ingress-demo", "aud": "api.example.com", "exp": now() - 120}),
        ),
        (
            "no exp",
            serde_json::json!({"iss": "ingress-demo", "aud": "api.example.com"}),
        ),
        (
            "not yet valid",
            serde_json::json!({"iss": "ingress-demo", "aud": "api.example.com", "exp": now() + 600, "nbf": now() + 300}),
        ),
        (
            "wrong iss",
            serde_json::json!({"iss": "evil", "aud": "api.example.com", "exp": now() + 60}),
        ),
        (
            "no iss",
            serde_json::json!({"aud": "api.example.com", "exp": now() + 60}),
        ),
        (
            "wrong aud",
            serde_json::json!({"iss": "ingress-demo", "aud": "other", "exp": now() + 60}),
        ),
        (
            "no aud",
            serde_json::json!({"iss": "ingress-demo", "exp": now() + 60}),
        ),
    ];
    for (name, claims) in cases {
        assert_eq!(status(Algorithm::HS256, &key, claims), 401, "{name}");
    }
    // within leeway (30s default)
    let mut leeway = good.clone();
    leeway["exp"] = serde_json::json!(now() - 5);
    assert_eq!(status(Algorithm::HS256, &key, leeway), 200);
    assert_eq!(
        status(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"wrong").unwrap(),
            good.clone()
        ),
        401
    );
    // alg none, hand-made
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "Bearer {}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    assert_eq!(decide(&e, host, "/", Some(&none)).status, 401);
    for garbage in [
        "Bearer a.b.c",
        "Bearer ...",
        "Bearer x",
        "Bearer eyJ.eyJ.sig",
    ] {
        assert_eq!(
            decide(&e, host, "/", Some(garbage)).status,
            401,
            "{garbage}"
        );
    }
}

#[test]
fn jwt_public_keys_fix_the_algorithm() {
    let exp = serde_json::json!({"sub": "u", "exp": now() + 60});
    let pem_auth = |pub_file: &str| {
        let pem: String = fixture(pub_file)
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect();
        format!("type: jwt\njwt:\n  public_key: |\n{pem}")
    };
    let cases = [
        (
            "rsa.pub",
            "rsa.key",
            vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::PS256,
                Algorithm::PS512,
            ],
        ),
        ("ec256.pub", "ec256.key", vec![Algorithm::ES256]),
        ("ec384.pub", "ec384.key", vec![Algorithm::ES384]),
        ("ed25519.pub", "ed25519.key", vec![Algorithm::EdDSA]),
    ];
    for (public, private, algs) in cases {
        let e = jwt_engine(&pem_auth(public));
        let pem = fixture(private);
        let key = match algs[0] {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            _ => EncodingKey::from_ec_pem(pem.as_bytes()),
        }
        .unwrap();
        for alg in algs {
            assert_eq!(
                decide(&e, "a.com", "/", Some(&sign(alg, &key, exp.clone()))).status,
                200,
                "{public} {alg:?}"
            );
        }
        // HS256 signed with the public key's PEM bytes as the HMAC secret: the classic confusion.
        let confused = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(fixture(public).as_bytes()).unwrap(),
            exp.clone(),
        );
        assert_eq!(
            decide(&e, "a.com", "/", Some(&confused)).status,
            401,
            "{public} alg confusion"
        );
    }
    // An explicit algorithm list narrows what the key accepts.
    let e = jwt_engine(&format!("{}  algorithms: [RS256]\n", pem_auth("rsa.pub")));
    let key = EncodingKey::from_rsa_pem(fixture("rsa.key").as_bytes()).unwrap();
    assert_eq!(
        decide(
            &e,
            "a.com",
            "/",
            Some(&sign(Algorithm::RS256, &key, exp.clone()))
        )
        .status,
        200
    );
    assert_eq!(
        decide(&e, "a.com", "/", Some(&sign(Algorithm::PS256, &key, exp))).status,
        401
    );
}

#[test]
fn hostile_paths_are_400_before_matching() {
    let e = engine(HOSTS);
    for path in ["/a%2fb", "/..", "/a/../../b", "/a%00", "/a\\b", "relative"] {
        let got = decide(&e, "exact.example.com", path, None);
        assert_eq!(
            (got.status, got.reason),
            (400, Reason::BadPath.code()),
            "{path}"
        );
    }
}

#[test]
fn oauth2_navigations_redirect_and_api_calls_get_401() {
    let e = engine(&corpus("authentication/oauth2-github.yaml"));
    let host = "oauth2-github.example.com";
    let got = decide(&e, host, "/", None);
    assert_eq!((got.status, got.reason), (401, "login_required"));
    let mut headers = HashMap::new();
    headers.insert("accept".to_string(), "text/html".to_string());
    let req = RequestView {
        host,
        path: "/repos?page=2",
        method: "GET",
        scheme: "http",
        headers: &headers,
        client: None,
    };
    let d = e.decide(&req);
    let Verdict::Deny(denial) = d.verdict else {
        panic!("a navigation without session must redirect")
    };
    assert_eq!(denial.status.code(), 302);
    let redirect = denial.redirect.expect("redirect");
    let location = url::Url::parse(&redirect.location).unwrap();
    assert_eq!(location.host_str(), Some("github.com"));
    let q: HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], "your-github-client-id");
    assert_eq!(
        q["redirect_uri"],
        "http://oauth2-github.example.com/oauth2/callback"
    );
    assert_eq!(q["scope"], "user:email");
    assert!(q["state"].len() >= 32, "state carries at least 128 bits");
    assert!(redirect.set_cookie.starts_with("ingress_authz_login_"));
    assert!(
        redirect.set_cookie.contains("HttpOnly") && redirect.set_cookie.contains("Path=/oauth2/")
    );
}

#[test]
fn our_cookies_never_reach_the_upstream() {
    let e = engine(&with_basic("u", "p"));
    let auth = basic("u", "p");
    let cases: &[(&str, Option<&str>)] = &[
        ("ingress_authz=abc; theme=dark", Some("theme=dark")),
        (
            "a=1; ingress_authz_login_0123456789ab=x; b=2",
            Some("a=1; b=2"),
        ),
        ("ingress_authz=abc", None),
        ("theme=dark; ingress_authzx=keep", Some("untouched")),
    ];
    for (cookie, want) in cases {
        let headers: HashMap<String, String> = [
            ("authorization".to_string(), auth.clone()),
            ("cookie".to_string(), cookie.to_string()),
        ]
        .into();
        let req = RequestView {
            host: "a.com",
            path: "/",
            method: "GET",
            scheme: "http",
            headers: &headers,
            client: None,
        };
        let Verdict::Allow {
            upstream, remove, ..
        } = e.decide(&req).verdict
        else {
            panic!("allowed")
        };
        let set = upstream
            .iter()
            .find(|(k, _)| *k == "cookie")
            .map(|(_, v)| v.as_str());
        match *want {
            Some("untouched") => assert!(set.is_none() && !remove.contains(&"cookie"), "{cookie}"),
            Some(kept) => assert_eq!(set, Some(kept), "{cookie}"),
            None => assert!(remove.contains(&"cookie") && set.is_none(), "{cookie}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The policy stage on sessions: per route, on every request, fail-closed
// for cookies of the previous release.

const SESSION_SECRET: &str = "decisions-session-secret-0123456789";

/// One host: the rule logs in with GitHub and no policy; `/admin` is the
/// same client with `admin_allow`.
fn session_engine(admin_allow: &str) -> Engine {
    let login =
        "type: oauth2\n          oauth2: {provider: github, client_id: cid, client_secret: cs}";
    engine(&format!(
        "authz:\n  session: {{secret: {SESSION_SECRET}}}\nrules:\n  - host: app.example.com\n    backend:\n      service:\n        auth:\n          {login}\n    paths:\n      - path: /admin\n        backend:\n          service:\n            auth:\n              type: oauth2\n              oauth2: {{provider: github, client_id: cid, client_secret: cs}}\n              allow: {admin_allow}\n"
    ))
}

/// A session cookie sealed with the engine's keys from raw JSON (the
/// shape a release wrote).
fn sealed_cookie(e: &Engine, session: serde_json::Value) -> String {
    let json = serde_json::to_vec(&session).unwrap();
    let sealed = e
        .login
        .keys
        .seal(ingress_authz::session::Purpose::Session, &json);
    format!("ingress_authz={sealed}")
}

fn session_json(attrs: Option<serde_json::Value>) -> serde_json::Value {
    let mut s = serde_json::json!({
        "u": {"id": "583231", "username": "octocat", "email": "octocat@github.example", "nickname": "", "avatar": ""},
        "p": "github", "c": "cid", "i": now(), "e": now() + 3600
    });
    if let Some(a) = attrs {
        s["a"] = a;
    }
    s
}

fn with_cookie(e: &Engine, path: &str, cookie: &str, accept: &str) -> (u16, Reason) {
    let headers: HashMap<String, String> = [
        ("cookie".to_string(), cookie.to_string()),
        ("accept".to_string(), accept.to_string()),
    ]
    .into();
    let req = RequestView {
        host: "app.example.com",
        path,
        method: "GET",
        scheme: "https",
        headers: &headers,
        client: None,
    };
    match e.decide(&req).verdict {
        Verdict::Allow { reason, .. } => (200, reason),
        Verdict::Deny(d) | Verdict::Pending { then: d, .. } => (d.status.code(), d.reason),
    }
}

#[test]
fn a_session_is_judged_by_the_policy_of_the_route_it_reaches() {
    let e = session_engine("{logins: [someone-else]}");
    let cookie = sealed_cookie(
        &e,
        session_json(Some(serde_json::json!({"v": 1, "t": now()}))),
    );
    assert_eq!(
        with_cookie(&e, "/", &cookie, "application/json"),
        (200, Reason::Authenticated)
    );
    assert_eq!(
        with_cookie(&e, "/admin", &cookie, "application/json"),
        (403, Reason::NotAllowed),
        "the same client's session does not carry another route's policy"
    );
    assert_eq!(
        with_cookie(&e, "/admin", &cookie, "text/html"),
        (403, Reason::NotAllowed),
        "a navigation gets a page, not a login loop"
    );
    let e = session_engine("{logins: [OctoCat]}");
    assert_eq!(
        with_cookie(&e, "/admin", &cookie, "application/json"),
        (200, Reason::Authenticated),
        "logins compare case-insensitively"
    );
}

#[test]
fn emails_count_only_when_the_session_holds_them_as_verified() {
    let e = session_engine("{emails: [octocat@github.example]}");
    let unverified = sealed_cookie(
        &e,
        session_json(Some(serde_json::json!({"v": 1, "t": now()}))),
    );
    assert_eq!(
        with_cookie(&e, "/admin", &unverified, "application/json"),
        (403, Reason::NotAllowed),
        "the profile's email is not a verified one"
    );
    let verified = sealed_cookie(
        &e,
        session_json(Some(
            serde_json::json!({"v": 1, "t": now(), "m": "octocat@github.example", "d": "github.example"}),
        )),
    );
    assert_eq!(
        with_cookie(&e, "/admin", &verified, "application/json"),
        (200, Reason::Authenticated)
    );
}

#[test]
fn a_previous_release_session_opens_fail_closed() {
    let e = session_engine("{emails: [octocat@github.example]}");
    let old = sealed_cookie(&e, session_json(None));
    assert_eq!(
        with_cookie(&e, "/", &old, "application/json"),
        (200, Reason::Authenticated),
        "routes without a policy keep working"
    );
    assert_eq!(
        with_cookie(&e, "/admin", &old, "text/html"),
        (302, Reason::LoginRedirect),
        "a navigation logs in again to learn what the old cookie lacks"
    );
    assert_eq!(
        with_cookie(&e, "/admin", &old, "application/json"),
        (401, Reason::LoginRequired),
        "anything else is refused, never allowed"
    );
}

#[test]
fn explain_shows_the_policy_and_which_kind_failed_never_the_credential() {
    let e = engine(
        "rules:\n  - host: a.example.com\n    backend:\n      service:\n        auth:\n          type: basic\n          basic: {users: [{username: alice, password: alice-secret-pw}, {username: bob, password: bob-secret-pw}]}\n          allow: {users: [alice]}\n",
    );
    let headers: HashMap<String, String> =
        [("authorization".to_string(), basic("bob", "bob-secret-pw"))].into();
    let ex = ingress_authz::explain::explain_url(&e, "http://a.example.com/x", &headers).unwrap();
    assert_eq!((ex.status, ex.reason.as_str()), (403, "not_allowed"));
    assert!(
        ex.text.contains("policy:   users any of [alice]"),
        "{}",
        ex.text
    );
    assert!(
        ex.text.contains("the `users` condition failed"),
        "{}",
        ex.text
    );
    assert!(!ex.text.contains("bob-secret-pw"), "{}", ex.text);

    let metrics = ingress_authz::metrics::Metrics::new();
    let req = RequestView {
        host: "a.example.com",
        path: "/x",
        method: "GET",
        scheme: "http",
        headers: &headers,
        client: None,
    };
    metrics.record_check(&e.decide(&req), 0.001);
    let text = metrics.encode();
    let line = text
        .lines()
        .find(|l| l.starts_with("ingress_authz_checks_total{"))
        .expect("a checks_total sample");
    assert!(
        line.contains("reason=\"not_allowed\"") && line.contains("condition=\"users\""),
        "{line}"
    );
    assert!(!text.contains("bob"), "no value of the identity in metrics");
}

#[test]
fn require_exp_false_makes_exp_optional_never_ignored() {
    let e = jwt_engine(
        "type: jwt\njwt:\n  secret: optional-exp-secret-0123456789\n  require_exp: false",
    );
    let key = EncodingKey::from_secret(b"optional-exp-secret-0123456789").unwrap();
    let status = |claims: serde_json::Value| {
        decide(
            &e,
            "a.com",
            "/",
            Some(&sign(Algorithm::HS256, &key, claims)),
        )
        .status
    };
    assert_eq!(status(serde_json::json!({"sub": "u"})), 200, "no exp");
    assert_eq!(
        status(serde_json::json!({"sub": "u", "exp": now() + 60})),
        200
    );
    assert_eq!(
        status(serde_json::json!({"sub": "u", "exp": now() - 3600})),
        401,
        "an exp that is present and passed"
    );
}

/// `type: [bearer, basic]`: explain, metrics and the deciding kind name the
/// method whose answer it is; a basic credential's failures still count
/// per user on the route.
#[test]
fn several_methods_say_which_decided_and_basic_failures_count_per_user() {
    let e = engine(
        "authz:\n  login_throttle: {max_failures: 100, max_failures_per_user: 2}\nrules:\n  - host: a.example.com\n    backend:\n      service:\n        auth:\n          type: [bearer, basic]\n          bearer: {tokens: [{name: ci, token: ci-token-123}], allow: {users: [ci]}}\n          basic: {users: [{username: alice, password: alice-secret-pw}]}\n",
    );
    let explain = |auth: String| {
        let headers: HashMap<String, String> = [("authorization".to_string(), auth)].into();
        ingress_authz::explain::explain_url(&e, "http://a.example.com/x", &headers).unwrap()
    };
    let ex = explain("Bearer ci-token-123".into());
    assert_eq!((ex.status, ex.auth_type.as_str()), (200, "bearer"));
    assert!(ex.text.contains("auth:     bearer, basic\n"), "{}", ex.text);
    assert!(
        ex.text
            .contains("policy:   bearer identities also: users any of [ci]\n"),
        "{}",
        ex.text
    );
    assert!(
        ex.text.contains("method:   bearer decided\n"),
        "{}",
        ex.text
    );
    let ex = explain(basic("alice", "alice-secret-pw"));
    assert_eq!((ex.status, ex.auth_type.as_str()), (200, "basic"));
    assert!(ex.text.contains("method:   basic decided\n"), "{}", ex.text);

    let wrong = decide(&e, "a.example.com", "/x", Some("Bearer nope"));
    assert_eq!(
        (wrong.status, wrong.challenge.as_deref()),
        (
            401,
            Some("Bearer error=\"invalid_token\", Basic realm=\"Restricted\", charset=\"UTF-8\"")
        )
    );
    for _ in 0..2 {
        let d = decide(&e, "a.example.com", "/x", Some(&basic("alice", "wrong")));
        assert_eq!((d.status, d.reason), (401, "invalid_credentials"));
    }
    let d = decide(
        &e,
        "a.example.com",
        "/x",
        Some(&basic("alice", "alice-secret-pw")),
    );
    assert_eq!(
        (d.status, d.reason),
        (429, "throttled"),
        "alice's guesses counted on the route, so her right password waits too"
    );
    let d = decide(&e, "a.example.com", "/x", Some("Bearer ci-token-123"));
    assert_eq!(
        d.status, 200,
        "the per-user limit is alice's, not the route's"
    );
}

/// `[oauth2, bearer]`: a navigation without a credential logs in; one with
/// a bearer header, even a malformed one, gets the bearer methods' 401.
#[test]
fn a_navigation_with_a_bearer_header_is_never_sent_to_log_in() {
    let e = engine(
        "authz:\n  session: {secret: decisions-session-secret-0123456789abcdef}\nrules:\n  - host: a.example.com\n    backend:\n      service:\n        auth:\n          type: [oauth2, bearer]\n          oauth2: {provider: github, client_id: c, client_secret: s}\n          bearer: {tokens: [t-123]}\n          allow: {users: [someone]}\n",
    );
    let navigate = |auth: Option<&str>| {
        let mut headers: HashMap<String, String> = [
            ("accept".to_string(), "text/html".to_string()),
            ("sec-fetch-mode".to_string(), "navigate".to_string()),
        ]
        .into();
        if let Some(a) = auth {
            headers.insert("authorization".into(), a.into());
        }
        let req = RequestView {
            host: "a.example.com",
            path: "/",
            method: "GET",
            scheme: "https",
            headers: &headers,
            client: None,
        };
        let d = e.decide_inline(&req);
        let kind = d.kind.map(|k| k.as_str());
        let denial = d.denial().cloned().expect("a denial");
        (denial.status.code(), denial.reason.code(), kind)
    };
    assert_eq!(navigate(None), (302, "login_redirect", Some("oauth2")));
    for header in ["Bearer wrong", "Bearer a b", "Bearer", "bearer x, Bearer y"] {
        let (status, _, kind) = navigate(Some(header));
        assert_eq!((status, kind), (401, Some("bearer")), "{header}");
    }
    // A scheme no listed method takes counts as no credential.
    assert_eq!(
        navigate(Some("Basic YTpi")),
        (302, "login_redirect", Some("oauth2"))
    );
}
