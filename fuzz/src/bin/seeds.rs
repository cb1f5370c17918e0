//! Writes the fixture's sealed session cookies (fixtures/sessions.txt,
//! once: they are sealed with random nonces), the `decision` dictionary's
//! credentials, and `decision` seeds: for every protected route of the
//! fixture, inputs that reach an allow with its real credentials (found by
//! decoding random bytes as inputs and keeping those the engine allows and
//! the reference accepts).
//!
//! `cargo run --release --manifest-path fuzz/Cargo.toml --features seeds --bin seeds`
//! (no nightly needed).

use std::collections::BTreeMap;
use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine as _;
use ingress_authz::decision::Reason;
use ingress_authz::session::{ATTRIBUTES_VERSION, Attributes, Identity, Purpose, Session};
use ingress_authz_fuzz::{fixture, harness, input::Input, reference};

fn session(provider: &str, client: &str, id: &str, login: &str) -> Session {
    Session {
        id: format!("fuzz-session-{id}"),
        sid: None,
        identity: Identity {
            id: id.into(),
            username: login.into(),
            email: format!("{login}@example.com"),
            nickname: login.into(),
            avatar: String::new(),
        },
        provider: provider.into(),
        client_id: client.into(),
        issued: 1_700_000_000,
        expires: fixture::FAR_FUTURE,
        refresh: None,
        renew_at: 0,
        attrs: Attributes {
            version: ATTRIBUTES_VERSION,
            read_at: 1_700_000_000,
            ..Default::default()
        },
    }
}

fn write_sessions() {
    if Path::new(fixture::SESSIONS_FILE).exists() {
        println!("{} kept", fixture::SESSIONS_FILE);
        return;
    }
    let keys = &fixture::engine().login.keys;
    let mut out = String::from(
        "# Sealed session cookies of the fuzz fixture (provider, login, value);\n# written once by `cargo run --bin seeds`. Fuzzing only.\n",
    );
    for (provider, client, id, login) in [
        (fixture::GITHUB, fixture::GITHUB_CLIENT, "583231", "octocat"),
        (fixture::GITHUB, fixture::GITHUB_CLIENT, "108287", "hubot"),
        (
            fixture::OIDC,
            fixture::OIDC_CLIENT,
            "oidc-alice-1",
            "alice-oidc",
        ),
    ] {
        let sealed = keys.seal_json(Purpose::Session, &session(provider, client, id, login));
        out.push_str(&format!("{provider}\t{login}\t{sealed}\n"));
    }
    std::fs::write(fixture::SESSIONS_FILE, out).expect("write sessions");
    println!("{} written", fixture::SESSIONS_FILE);
}

fn write_dictionary(dir: &Path) {
    let mut lines = vec![
        "# The fixture's credentials, hosts and path pieces (written by `seeds`).".to_string(),
    ];
    // libFuzzer's format: printable ASCII in quotes, `\\`, `\"` and `\xNN`.
    let mut add = |s: &str| {
        if s.is_empty() {
            return;
        }
        let mut entry = String::from("\"");
        for b in s.bytes() {
            match b {
                b'\\' => entry.push_str("\\\\"),
                b'"' => entry.push_str("\\\""),
                b' '..=b'~' => entry.push(char::from(b)),
                _ => entry.push_str(&format!("\\x{b:02X}")),
            }
        }
        entry.push('"');
        lines.push(entry);
    };
    for (u, p) in fixture::BASIC_USERS {
        add(&base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
        add(u);
        add(p);
    }
    for t in fixture::BEARER_TOKENS {
        add(t);
    }
    for t in ingress_authz_fuzz::mint::fixture_jwts() {
        add(&t);
    }
    for s in fixture::sessions() {
        add(&s.value);
    }
    for h in fixture::HOSTS {
        add(h);
    }
    for s in fixture::SEGMENTS {
        add(s);
    }
    for s in [
        "Basic ",
        "Bearer ",
        "ingress_authz=",
        "__Host-ingress_authz=",
        "__Secure-ingress_authz=",
        "ingress_authz_login_",
        "text/html",
        "navigate",
        "https",
        "/..",
        "/./",
        "//",
        ";",
        "%2e",
        "%2f",
        "?",
        "#",
    ] {
        add(s);
    }
    let text = lines.join("\n") + "\n";
    std::fs::write(dir.join("decision.dict"), &text).expect("write dict");
    std::fs::write(dir.join("authorization_header.dict"), text).expect("write dict");
}

/// Random bytes from a small xorshift (deterministic runs).
struct Rng(u64);

impl Rng {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 24) as u8
            })
            .collect()
    }
}

fn write_decision_seeds(dir: &Path) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    let engine = fixture::engine();
    let now = fixture::now();
    // Per route: the allows found (at most 3 kept), and a denial or two.
    let mut found: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let want_per_route = 3;
    for _ in 0..30_000_000 {
        let len = 16 + (rng.bytes(1)[0] as usize % 200);
        let bytes = rng.bytes(len);
        let Ok(input) = Input::arbitrary(&mut Unstructured::new(&bytes)) else {
            continue;
        };
        let check = input.check_request(now);
        let outcome = harness::check(engine, &check);
        let Some(label) = outcome.label.clone() else {
            continue;
        };
        let key = match outcome.allowed {
            Some(Reason::Authenticated) => {
                let http = check
                    .attributes
                    .as_ref()
                    .unwrap()
                    .request
                    .as_ref()
                    .unwrap()
                    .http
                    .as_ref()
                    .unwrap();
                let r = reference::route(&http.host, &http.path).unwrap_or(label.clone());
                assert!(
                    reference::accepts(&r, &http.headers, now),
                    "seed allowed without a credential: {input:?}"
                );
                format!("allow-{label}")
            }
            Some(_) => format!("open-{label}"),
            None => format!("deny-{label}"),
        };
        let keep = if key.starts_with("allow-") {
            want_per_route
        } else {
            1
        };
        let list = found.entry(key).or_default();
        if list.len() < keep {
            list.push(bytes);
        }
        let allowed_routes = found.keys().filter(|k| k.starts_with("allow-")).count();
        if allowed_routes == fixture::PROTECTED.len()
            && found
                .iter()
                .filter(|(k, _)| k.starts_with("allow-"))
                .all(|(_, v)| v.len() >= want_per_route)
        {
            break;
        }
    }
    for (key, inputs) in &found {
        for (i, bytes) in inputs.iter().enumerate() {
            let name = format!("{}-{i}", key.replace(['[', ']', '.'], "_"));
            std::fs::write(dir.join(name), bytes).expect("write seed");
        }
    }
    let missing: Vec<&str> = fixture::PROTECTED
        .iter()
        .copied()
        .filter(|l| !found.contains_key(&format!("allow-{l}")))
        .collect();
    println!(
        "decision seeds: {} kinds; protected routes without an allow seed: {missing:?}",
        found.len()
    );
    assert!(
        missing.is_empty(),
        "every protected route needs an allow seed"
    );
}

/// Random inputs of a structured target, one kept per `key` (a variant,
/// an outcome), at most `max` in all.
fn search<T, K>(dir: &Path, seed: u64, tries: usize, max: usize, key: K)
where
    T: for<'a> Arbitrary<'a> + std::fmt::Debug,
    K: Fn(&T) -> Option<String>,
{
    std::fs::create_dir_all(dir).expect("corpus dir");
    let mut rng = Rng(seed);
    let mut kept = BTreeMap::new();
    for _ in 0..tries {
        let len = 8 + (rng.bytes(1)[0] as usize % 250);
        let bytes = rng.bytes(len);
        let Ok(input) = T::arbitrary(&mut Unstructured::new(&bytes)) else {
            continue;
        };
        if let Some(k) = key(&input) {
            kept.entry(k).or_insert(bytes);
        }
        if kept.len() >= max {
            break;
        }
    }
    for (k, bytes) in &kept {
        let name: String = k
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
    println!(
        "{}: {} seeds ({:?})",
        dir.display(),
        kept.len(),
        kept.keys().collect::<Vec<_>>()
    );
}

/// The variant name of a value's `Debug` form.
fn variant(debug: &str) -> String {
    debug
        .split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `tokens` text seeds (`token\njwks\nnow`): an ID token and a logout
/// token each key of the fixture signs, both accepted, and their JWKS;
/// plus structured seeds (a leading NUL) of random structure.
fn write_token_seeds(dir: &Path) {
    use ingress_authz_fuzz::tokens::{self, CLIENT, EVENT, ISSUER, NONCE};
    use jsonwebtoken::{Header, encode};
    std::fs::create_dir_all(dir).expect("corpus dir");
    let now = 1_700_000_000u64;
    let keys = tokens::keys();
    let jwks = serde_json::json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
        .to_string();
    for k in keys {
        let mut header = Header::new(k.alg);
        header.kid = Some(k.name.to_string());
        let id = serde_json::json!({"iss": ISSUER, "aud": CLIENT, "sub": "fuzz-subject", "exp": fixture::FAR_FUTURE, "iat": now, "nonce": NONCE});
        let logout = serde_json::json!({"iss": ISSUER, "aud": [CLIENT], "sub": "fuzz-subject", "sid": "fuzz-sid", "iat": now, "jti": "fuzz-jti", "events": {EVENT: {}}});
        header.typ = Some("JWT".into());
        let id = encode(&header, &id, &k.encoding).expect("sign");
        header.typ = Some("logout+jwt".into());
        let logout = encode(&header, &logout, &k.encoding).expect("sign");
        for (kind, token) in [("id", id), ("logout", logout)] {
            let text = format!("{token}\n{jwks}\n{now}");
            let (id_ok, logout_ok) = tokens::run_text(&text);
            assert!(
                if kind == "id" { id_ok } else { logout_ok },
                "{kind} seed of {} is accepted",
                k.name
            );
            std::fs::write(dir.join(format!("{kind}-{}", k.name)), text).expect("write seed");
        }
    }
    let mut rng = Rng(7);
    for i in 0..4 {
        let mut bytes = vec![0u8];
        bytes.extend(rng.bytes(200));
        std::fs::write(dir.join(format!("structured-{i}")), bytes).expect("write seed");
    }
    println!("{}: token seeds written", dir.display());
}

fn write_text_seeds(dir: &Path, seeds: &[(&str, String)]) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    for (name, text) in seeds {
        std::fs::write(dir.join(name), text).expect("write seed");
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    write_sessions();
    write_dictionary(&root.join("dict"));
    write_decision_seeds(&root.join("corpus/decision"));

    let basic = |u: &str, p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let [jwt, _] = ingress_authz_fuzz::mint::fixture_jwts();
    write_text_seeds(
        &root.join("corpus/authorization_header"),
        &[
            ("basic-bob", basic("bob", "bob-plain-password")),
            (
                "basic-alice",
                format!("{}\nbasic", basic("alice", "alice-password")),
            ),
            ("basic-colon", basic("u", "pa:ss")),
            ("bearer", "Bearer fuzz-bearer-token-0001\nbearer".into()),
            ("bearer-tab", "bearer\tfuzz-bearer-token-ci-0002".into()),
            ("bearer-jwt", format!("Bearer {jwt}\nbearer")),
            ("joined", "Bearer a, Bearer b\nbearer".into()),
            (
                "nopad",
                "basic Ym9iOmJvYi1wbGFpbi1wYXNzd29yZA\nBASIC".into(),
            ),
        ],
    );
    write_text_seeds(
        &root.join("corpus/normalize"),
        &[
            ("dotdot", "/api/../admin".into()),
            ("params", "basic.example.com\n/public/..;/admin".into()),
            ("encoded", "x.bearer.example.com\n/named/%2e%2e/x%2F".into()),
            ("ipv6", "[::1]:8080\n/a//b/./c/".into()),
            (
                "regex",
                "V12.JWT.example.com.:443\n/v12/health?x=1#f".into(),
            ),
            (
                "unreserved",
                "app.example.com\n/%61pi/%7euser;x=1/%C3%A9".into(),
            ),
            ("above", "www.mixed.example.com\n/a/../../b".into()),
            ("bad", "userinfo@host\n/%zz".into()),
        ],
    );
    let fixture_config =
        std::fs::read_to_string(root.join("fixtures/config.yaml")).expect("fixture");
    let local_stack =
        std::fs::read_to_string(root.join("../examples/local-stack.yaml")).expect("example");
    write_text_seeds(
        &root.join("corpus/config"),
        &[
            ("fixture.yaml", fixture_config),
            ("local-stack.yaml", local_stack),
            ("list.yaml", "- a\n- b\n".into()),
            ("anchors.yaml", "x: &a {host: a.example.com}\nrules: [*a, {host: '*.b', paths: [{path: /p, backend: {service: {auth: {enabled: false}}}}]}]\n".into()),
            ("errors.yaml", "rules:\n  - host: a:80\n    paths: [{path: '/a('}]\n    backend: {service: {auth: {type: jwt}}}\nauthz: {session: {secret: short}}\n".into()),
            ("env.yaml", "authz:\n  session: {secret: \"${SECRET}\"}\nrules:\n  - host: ${HOST}\n    backend: {service: {auth: {type: basic, basic: {users: [{username: u, password: \"${MISSING}\"}]}}}}\n".into()),
        ],
    );

    write_token_seeds(&root.join("corpus/tokens"));

    use ingress_authz_fuzz::envoy_input;
    search::<envoy_input::Config, _>(&root.join("corpus/envoy_config"), 11, 200_000, 8, |c| {
        let text = envoy_input::config_text(c);
        let engine =
            ingress_authz::engine::Engine::from_text(&text, "seed.yaml", &|_| None).ok()?;
        let routes = engine.router().rules().len();
        (routes > 0).then(|| {
            format!(
                "loads-{}-rules-fallback-{}",
                routes.min(4),
                c.fallback.is_some()
            )
        })
    });

    use ingress_authz_fuzz::cookies_input;
    search::<cookies_input::Input, _>(&root.join("corpus/cookies"), 13, 200_000, 12, |c| {
        Some(format!(
            "{}-{}-{}",
            variant(&format!("{:?}", c.sealed)),
            variant(&format!("{:?}", c.ticket)),
            c.header.len().min(2)
        ))
    });
}
