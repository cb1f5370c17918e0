//! Every test's ingress-authz logs are scanned for the secrets of its
//! configs: a secret in a log line fails the test that produced it.

use ingress_authz::config::yaml::{self, Node, Value};

/// Keys whose values are secrets in our schema.
const SECRET_KEYS: &[&str] = &["password", "secret", "client_secret", "tokens"];

/// Values shorter than this are too likely to occur in logs by chance
/// (`t`, `p`) to say anything; test secrets that matter are longer.
const MIN_LEN: usize = 8;

/// The secret values in a config text (best effort: unparsable text has none).
pub fn secrets_in(config_yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(root) = yaml::parse(config_yaml) {
        collect(&root, false, &mut out);
    }
    out.retain(|s| s.len() >= MIN_LEN);
    out
}

fn collect(node: &Node, secret: bool, out: &mut Vec<String>) {
    match &node.value {
        Value::Scalar { text, .. } if secret => out.push(text.clone()),
        Value::Scalar { .. } => {}
        Value::Seq(items) => items.iter().for_each(|n| collect(n, secret, out)),
        Value::Map(entries) => {
            for (k, v) in entries {
                let is_secret = matches!(&k.value, Value::Scalar { text, .. } if SECRET_KEYS.contains(&text.as_str()));
                collect(v, is_secret, out);
            }
        }
    }
}

/// Panics (naming only the secret's length, not the secret) if `logs`
/// contains any of `secrets`.
pub fn assert_no_secret(logs: &str, secrets: &[String], log_path: &std::path::Path) {
    for secret in secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a configured secret ({} bytes) appears in the log {}",
            secret.len(),
            log_path.display()
        );
    }
}

#[test]
fn finds_secrets_of_every_kind() {
    let found = secrets_in(
        "rules:\n  - host: a\n    backend:\n      service:\n        auth:\n          type: basic\n          basic:\n            users: [{username: admin, password: password-123}]\n          bearer: {tokens: [token-abcdef, t]}\n          secret: jwt-secret-xyz\n",
    );
    assert_eq!(found, ["password-123", "token-abcdef", "jwt-secret-xyz"]);
}
