//! Config loading from arbitrary YAML bytes (`Engine::from_text`): never a
//! panic; an invalid config lists at least one error and every error and
//! warning has a location (line and column from 1, within the text).
//!
//! Inputs that name a path which is not a small regular file are skipped
//! (a config may read `users_file`, `tokens_file`, `secret_file`: a fuzzer
//! that found `/dev/stdin` would only hang the run).
#![no_main]

use ingress_authz::config::ConfigError;
use ingress_authz::config::yaml::{Node, Value};
use ingress_authz::engine::Engine;
use libfuzzer_sys::fuzz_target;

/// `${VAR}`: a few names are set, the rest are not.
fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("fuzz-env-secret-0123456789abcdef-0123456789".into()),
        "HOST" => Some("env.example.com".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// Whether any scalar could make the loader open something other than a
/// small regular file.
fn names_odd_file(node: &Node) -> bool {
    match &node.value {
        Value::Scalar { text, .. } => {
            let expanded = text.replace("${SECRET}", "").replace("${HOST}", "");
            let p = std::path::Path::new(expanded.trim());
            !expanded.trim().is_empty()
                && std::fs::metadata(p).is_ok_and(|m| !m.is_file() || m.len() > 1 << 20)
        }
        Value::Seq(items) => items.iter().any(names_odd_file),
        Value::Map(entries) => entries
            .iter()
            .any(|(k, v)| names_odd_file(k) || names_odd_file(v)),
    }
}

fn lines(text: &str) -> usize {
    text.split(['\n', '\r']).count() + 1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(root) = ingress_authz::config::yaml::parse(text)
        && names_odd_file(&root)
    {
        return;
    }
    let max_line = lines(text);
    match Engine::from_text(text, "fuzz.yaml", &env) {
        Ok(engine) => {
            for w in &engine.warnings {
                assert!(
                    w.loc.mark.line >= 1 && w.loc.mark.col >= 1 && w.loc.mark.line <= max_line,
                    "warning without a location: {w}"
                );
            }
        }
        Err(ConfigError::Syntax { source, .. }) => {
            assert!(
                source.mark.line >= 1 && source.mark.col >= 1 && source.mark.line <= max_line,
                "syntax error without a location: {source}"
            );
        }
        Err(ConfigError::Invalid { errors, .. }) => {
            assert!(!errors.is_empty(), "invalid, yet no error");
            for e in &errors {
                assert!(
                    e.loc.mark.line >= 1 && e.loc.mark.col >= 1 && e.loc.mark.line <= max_line,
                    "error without a location: {e}"
                );
                assert!(!e.message.is_empty());
            }
        }
        Err(ConfigError::Io { .. }) => unreachable!("from_text reads no file of its own"),
    }
});
