//! Inputs the fuzz targets (fuzz/, scripts/fuzz) found, minimised, kept
//! in tests/fixtures/fuzz/<target>/ and replayed here with the targets'
//! checks, so a fixed bug stays fixed without nightly or libFuzzer.

use std::path::{Path, PathBuf};

use ingress_authz::config::ConfigError;
use ingress_authz::engine::Engine;

fn inputs(target: &str) -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text)
        })
        .collect();
    files.sort();
    files
}

/// The `config` target's property: no panic, and every error and warning
/// has a location (line and column from 1, within the text).
#[test]
fn config_errors_always_have_a_location() {
    let cases = inputs("config");
    assert!(!cases.is_empty());
    for (path, text) in cases {
        let lines = text.split(['\n', '\r']).count() + 1;
        let located = |line: usize, col: usize| line >= 1 && col >= 1 && line <= lines;
        match Engine::from_text(&text, "fuzz.yaml", &|_| None) {
            Ok(engine) => {
                for w in &engine.warnings {
                    assert!(
                        located(w.loc.mark.line, w.loc.mark.col),
                        "{}: {w}",
                        path.display()
                    );
                }
            }
            Err(ConfigError::Invalid { errors, .. }) => {
                assert!(!errors.is_empty(), "{}", path.display());
                for e in &errors {
                    assert!(
                        located(e.loc.mark.line, e.loc.mark.col),
                        "{}: {e}",
                        path.display()
                    );
                }
            }
            Err(ConfigError::Syntax { source, .. }) => {
                assert!(
                    located(source.mark.line, source.mark.col),
                    "{}: {source}",
                    path.display()
                );
            }
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
}

/// The `tokens` target: a JWK Set and a token (`token\njwks-json\nnow`)
/// checked as an ID token and as a logout token: no panic, and a key
/// jsonwebtoken cannot use is never loaded.
#[test]
fn odd_keys_never_panic_a_token_check() {
    let cases = inputs("tokens");
    assert!(!cases.is_empty());
    for (path, text) in cases {
        let mut lines = text.lines();
        let token = lines.next().unwrap_or_default();
        let doc: serde_json::Value =
            serde_json::from_str(lines.next().unwrap_or_default()).expect("JWKS JSON");
        let now: u64 = lines
            .next()
            .unwrap_or_default()
            .trim()
            .parse()
            .expect("now");
        let issuer = "https://idp.example.com";
        let jwks =
            ingress_authz::auth::jwks::Jwks::new("https://idp.example.com/jwks".parse().unwrap());
        let _ = jwks.load(doc);
        let id =
            ingress_authz::auth::oidc::check_id_token(&jwks, issuer, "client", token, None, now);
        assert!(id.is_err(), "{}", path.display());
        let logout = ingress_authz::login::check_logout_token(token, &jwks, issuer, "client", now);
        assert!(logout.is_err(), "{}", path.display());
    }
}

/// The `envoy_config` target: the static bootstrap of a config that loads
/// renders, and every generated regex compiles.
#[test]
fn generated_regexes_always_compile() {
    use ingress_authz::envoy::{self, Endpoint, Format, Options};
    let cases = inputs("envoy_config");
    assert!(!cases.is_empty());
    for (path, text) in cases {
        let engine = Engine::from_text(&text, "fuzz.yaml", &|_| None)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let root = ingress_authz::config::yaml::parse(&text).expect("it loaded");
        let resources = envoy::resources(&engine, &root);
        let options = Options {
            listen: envoy::listen_address(&engine.settings),
            admin: "127.0.0.1:9901".parse::<Endpoint>().unwrap(),
            authz: "ingress-authz:9001".parse::<Endpoint>().unwrap(),
            sidecar: "127.0.0.1:9002".parse::<Endpoint>().unwrap(),
        };
        let json = envoy::static_bootstrap(&resources, &options, "fuzz.yaml", Format::Json);
        let tree: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let mut regexes = Vec::new();
        collect_regexes(&tree, &mut regexes);
        assert!(!regexes.is_empty(), "{}: no regex", path.display());
        for re in regexes {
            regex::Regex::new(&re).unwrap_or_else(|e| panic!("{}: {re:?}: {e}", path.display()));
        }
    }
}

fn collect_regexes(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if let (true, serde_json::Value::String(s)) = (k == "regex", v) {
                    out.push(s.clone());
                }
                collect_regexes(v, out);
            }
        }
        serde_json::Value::Array(l) => l.iter().for_each(|v| collect_regexes(v, out)),
        _ => {}
    }
}
