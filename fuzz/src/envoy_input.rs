//! The `envoy_config` target's input: a config built from a structure of
//! rules, hosts, paths, backends and auth types.

use arbitrary::Arbitrary;
use serde_json::{Value, json};

#[derive(Arbitrary, Debug)]
pub struct Config {
    pub rules: Vec<Rule>,
    pub fallback: Option<Backend>,
    pub session_secret: bool,
    pub listen: Option<u16>,
}

#[derive(Arbitrary, Debug)]
pub struct Rule {
    host: Host,
    host_type: Option<u8>,
    backend: Option<Backend>,
    paths: Vec<PathRule>,
}

#[derive(Arbitrary, Debug)]
pub enum Host {
    Exact(u8, u8),
    Wildcard(u8, bool),
    Regex(u8),
    Ipv6(bool),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub struct PathRule {
    path: PathSpec,
    backend: Option<Backend>,
}

#[derive(Arbitrary, Debug)]
pub enum PathSpec {
    Known(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Backend {
    Service {
        name: Name,
        port: Option<u16>,
        protocol: Option<u8>,
        strip_prefix: bool,
        rewrite: Option<(String, String)>,
        host_rewrite: bool,
        header: Option<(String, String)>,
        timeout: Option<u16>,
        auth: Option<Auth>,
    },
    Redirect {
        url: String,
        known: bool,
        permanent: bool,
    },
    Handler {
        status: u16,
        body: String,
        header: Option<(String, String)>,
    },
}

#[derive(Arbitrary, Debug)]
pub enum Name {
    Known(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Auth {
    Disabled,
    Basic { report_only: bool },
    Bearer { strip: bool },
    Jwt,
    OAuth2 { identity_header: bool },
    Oidc,
    OAuth2AndBearer,
    Raw(String),
}

const LABELS: [&str; 8] = ["app", "api", "www", "a-b", "x1", "login", "admin", "z"];
const DOMAINS: [&str; 4] = [
    "example.com",
    "example.org",
    "svc.cluster.local",
    "localhost",
];
const REGEXES: [&str; 6] = [
    "(a|b)\\.example\\.com",
    "[a-z]+\\.example\\.org",
    "api-v[0-9]+\\.example\\.com",
    "(?:www\\.)?example\\.net",
    "x+y?\\.example\\.com",
    ".*\\.internal",
];
const PATHS: [&str; 10] = [
    "/",
    "/api",
    "/api/",
    "/admin",
    "/v[0-9]+/items$",
    "/static/",
    "/a.b",
    "/x$",
    "/(x|y)/z",
    "/ü",
];
const NAMES: [&str; 5] = ["web", "api-service", "127.0.0.1", "backend.svc", "h_2"];

fn pick<'a>(l: &[&'a str], i: u8) -> &'a str {
    l[usize::from(i) % l.len()]
}

fn auth_json(a: &Auth) -> Value {
    match a {
        Auth::Disabled => json!({"enabled": false}),
        Auth::Basic { report_only } => json!({
            "type": "basic", "report_only": report_only,
            "basic": {"users": [{"username": "u", "password": "plain-password"}]},
            "allow": {"users": ["u"]}
        }),
        Auth::Bearer { strip } => {
            json!({"type": "bearer", "strip_credentials": strip, "bearer": {"tokens": ["t-0123456789"]}})
        }
        Auth::Jwt => {
            json!({"type": "jwt", "secret": "fuzz-jwt-secret-0123456789abcdef", "jwt": {"issuer": "i"}})
        }
        Auth::OAuth2 { identity_header } => {
            let mut v = json!({"type": "oauth2", "oauth2": {"provider": "github", "client_id": "c", "client_secret": "s"}, "allow": {"logins": ["octocat"]}});
            if *identity_header {
                v["identity_headers"] = json!({"user": "x-user"});
            }
            v
        }
        Auth::Oidc => {
            json!({"type": "oidc", "oidc": {"issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s"}, "allow": {"emails": ["a@example.com"]}})
        }
        Auth::OAuth2AndBearer => json!({
            "type": ["oauth2", "bearer"],
            "oauth2": {"provider": "github", "client_id": "c", "client_secret": "s"},
            "bearer": {"tokens": ["t-0123456789"]},
            "allow": {"users": ["someone"]}
        }),
        Auth::Raw(s) => json!({"type": s}),
    }
}

fn backend_json(b: &Backend) -> Value {
    match b {
        Backend::Service {
            name,
            port,
            protocol,
            strip_prefix,
            rewrite,
            host_rewrite,
            header,
            timeout,
            auth,
        } => {
            let mut s = serde_json::Map::new();
            s.insert(
                "name".into(),
                json!(match name {
                    Name::Known(i) => pick(&NAMES, *i).to_string(),
                    Name::Raw(r) => r.clone(),
                }),
            );
            if let Some(p) = port {
                s.insert("port".into(), json!(p));
            }
            if let Some(p) = protocol {
                s.insert(
                    "protocol".into(),
                    json!(pick(&["http", "https", "h2", "h2c"], *p)),
                );
            }
            if *strip_prefix {
                s.insert("strip_prefix".into(), json!(true));
            }
            let mut request = serde_json::Map::new();
            if let Some((re, to)) = rewrite {
                request.insert("path".into(), json!({"rewrites": [format!("{re}:{to}")]}));
            }
            if *host_rewrite {
                request.insert("host".into(), json!({"rewrite": true}));
            }
            if let Some((k, v)) = header {
                request.insert("headers".into(), json!({ k: v }));
            }
            if !request.is_empty() {
                s.insert("request".into(), Value::Object(request));
            }
            if let Some(t) = timeout {
                s.insert("timeout".into(), json!(format!("{t}s")));
            }
            if let Some(a) = auth {
                s.insert("auth".into(), auth_json(a));
            }
            json!({ "service": s })
        }
        Backend::Redirect {
            url,
            known,
            permanent,
        } => {
            let url = if *known {
                format!("https://example.com/{url}")
            } else {
                url.clone()
            };
            json!({"redirect": {"url": url, "permanent": permanent}})
        }
        Backend::Handler {
            status,
            body,
            header,
        } => {
            let mut h = json!({"type": "static_response", "status_code": status, "body": body});
            if let Some((k, v)) = header {
                h["headers"] = json!({ k: v });
            }
            json!({ "handler": h })
        }
    }
}

pub fn config_text(c: &Config) -> String {
    let mut rules = Vec::new();
    for r in c.rules.iter().take(8) {
        let host = match &r.host {
            Host::Exact(l, d) => format!("{}.{}", pick(&LABELS, *l), pick(&DOMAINS, *d)),
            Host::Wildcard(d, inner) => {
                if *inner {
                    format!("api-*.{}", pick(&DOMAINS, *d))
                } else {
                    format!("*.{}", pick(&DOMAINS, *d))
                }
            }
            Host::Regex(i) => pick(&REGEXES, *i).to_string(),
            Host::Ipv6(full) => if *full { "[2001:db8::1]" } else { "[::1]" }.to_string(),
            Host::Raw(s) => s.clone(),
        };
        let mut rule = json!({ "host": host });
        if let Some(t) = r.host_type {
            rule["host_type"] = json!(pick(&["auto", "exact", "wildcard", "regex"], t));
        }
        if let Some(b) = &r.backend {
            rule["backend"] = backend_json(b);
        }
        let paths: Vec<Value> = r
            .paths
            .iter()
            .take(6)
            .map(|p| {
                let path = match &p.path {
                    PathSpec::Known(i) => pick(&PATHS, *i).to_string(),
                    PathSpec::Raw(s) => s.clone(),
                };
                let mut v = json!({ "path": path });
                if let Some(b) = &p.backend {
                    v["backend"] = backend_json(b);
                }
                v
            })
            .collect();
        if !paths.is_empty() {
            rule["paths"] = json!(paths);
        }
        rules.push(rule);
    }
    let mut authz = serde_json::Map::new();
    if c.session_secret {
        authz.insert(
            "session".into(),
            json!({"secret": "fuzz-envoy-session-secret-0123456789abcdef"}),
        );
    }
    if let Some(p) = c.listen {
        authz.insert("envoy".into(), json!({"listen": format!("127.0.0.1:{p}")}));
    }
    let mut root = json!({ "authz": authz, "rules": rules });
    if let Some(f) = &c.fallback {
        root["fallback"] = backend_json(f);
    }
    // JSON is YAML: the config as a (flow-style) YAML document.
    serde_json::to_string_pretty(&root).expect("JSON")
}
