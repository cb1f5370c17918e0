//! The `decision` target's fixture: fixtures/config.yaml, the credentials
//! it accepts, and the sealed session cookies `seeds` wrote (fixtures/sessions.txt).

use std::sync::OnceLock;

use ingress_authz::engine::Engine;

/// The fixture config (see its comments).
pub const CONFIG: &str = include_str!("../fixtures/config.yaml");

/// Where the sealed session cookies are kept (`cargo run --bin seeds` writes it).
pub const SESSIONS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sessions.txt");

/// Every basic user of the fixture and their password (bcrypt cost 4 for
/// alice and carol, plaintext for bob and dave).
pub const BASIC_USERS: [(&str, &str); 4] = [
    ("alice", "alice-password"),
    ("bob", "bob-plain-password"),
    ("carol", "carol-password"),
    ("dave", "dave-fallback-password"),
];

/// Every static bearer token of the fixture.
pub const BEARER_TOKENS: [&str; 4] = [
    "fuzz-bearer-token-0001",
    "fuzz-bearer-token-ci-0002",
    "fuzz-app-api-token-0003",
    "fuzz-mixed-token-0004",
];

pub const JWT_SECRET: &[u8] = b"fuzz-jwt-hs256-secret-0123456789abcdef";
pub const JWT_ISSUER: &str = "fuzz-issuer";
pub const JWT_AUDIENCE: &str = "fuzz-api";
/// The jwt routes' leeway (the default).
pub const JWT_LEEWAY: u64 = 30;

/// Session providers as sessions are bound to them.
pub const GITHUB: &str = "github";
pub const GITHUB_CLIENT: &str = "fuzz-gh-client";
pub const OIDC: &str = "oidc:https://idp.example.com";
pub const OIDC_CLIENT: &str = "fuzz-oidc-client";

/// 2100-01-01: tokens and sessions of the seeds never expire in a run.
pub const FAR_FUTURE: u64 = 4_102_444_800;

/// Our cookie name (the config's default).
pub const COOKIE: &str = "ingress_authz";

/// Hosts the structured request picks from (the fixture's, and others).
pub const HOSTS: [&str; 14] = [
    "basic.example.com",
    "x.bearer.example.com",
    "a.b.bearer.example.com",
    "api.jwt.example.com",
    "v2.jwt.example.com",
    "v.jwt.example.com",
    "app.example.com",
    "sso.example.com",
    "www.mixed.example.com",
    "mixed.example.com",
    "bearer.example.com",
    "unknown.example.org",
    "[::1]",
    "127.0.0.1",
];

/// Path segments the structured request picks from: the fixture's path
/// rules and the spellings normalisation must see through.
pub const SEGMENTS: [&str; 32] = [
    "admin",
    "api",
    "public",
    "static",
    "named",
    "report",
    "v1",
    "v22",
    "health",
    "items",
    ".",
    "..",
    "%2e%2e",
    "%2E",
    "%2f",
    "%2F",
    "%61dmin",
    "admin;x=1",
    "..;",
    "",
    "%3B",
    "%00",
    "~user",
    "%7e",
    "ADMIN",
    "%5c",
    "a%20b",
    ";",
    "%",
    "%zz",
    "%C3%A9",
    "apix",
];

/// One sealed session cookie: whose, and its value.
#[derive(Clone, Debug)]
pub struct SessionSeed {
    /// [`GITHUB`] or [`OIDC`].
    pub provider: String,
    /// The login name it carries (`octocat`, `hubot`, `alice-oidc`).
    pub login: String,
    pub value: String,
}

/// The sealed session cookies of fixtures/sessions.txt (empty before
/// `seeds` first ran).
pub fn sessions() -> &'static [SessionSeed] {
    static SESSIONS: OnceLock<Vec<SessionSeed>> = OnceLock::new();
    SESSIONS.get_or_init(|| {
        std::fs::read_to_string(SESSIONS_FILE)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some(SessionSeed {
                    provider: f.next()?.to_string(),
                    login: f.next()?.to_string(),
                    value: f.next()?.to_string(),
                })
            })
            .collect()
    })
}

/// The engine of the fixture, built once.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::from_text(CONFIG, "fuzz/fixtures/config.yaml", &|_| None)
            .unwrap_or_else(|e| panic!("the fixture config must load: {e}"))
    })
}

/// The route labels of the fixture that need a credential, and those open.
pub const PROTECTED: [&str; 14] = [
    "rules[0]",
    "rules[0].paths[1]",
    "rules[1]",
    "rules[1].paths[0]",
    "rules[2]",
    "rules[2].paths[0]",
    "rules[3]",
    "rules[3].paths[0]",
    "rules[3].paths[2]",
    "rules[4]",
    "rules[5]",
    "rules[5].paths[0]",
    "rules[5].paths[1]",
    "fallback",
];
pub const OPEN: [&str; 3] = [
    "rules[0].paths[0]",
    "rules[2].paths[1]",
    "rules[3].paths[1]",
];

/// Unix seconds now, from the service's one clock.
pub fn now() -> u64 {
    ingress_authz::clock::unix_secs()
}
