//! Static bearer tokens (RFC 6750) from the config and/or a tokens file,
//! each optionally named: the name is the identity policies and audit see.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{AuthKind, AuthResult, Denial};
use crate::config::error::Diagnostic;
use crate::config::spec::BearerSpec;
use crate::identity::Identity;
use crate::request::RequestView;

pub const CHALLENGE: &str = "Bearer";
pub const CHALLENGE_INVALID: &str = "Bearer error=\"invalid_token\"";

/// Tokens are kept only as SHA-256 digests. Looking a presented token's
/// digest up in a map is timing-safe: timing can at most reveal something
/// about a digest, which an attacker cannot steer towards a real token.
pub struct Bearer {
    /// Digest → the token's name, if it has one.
    digests: HashMap<[u8; 32], Option<Arc<str>>>,
}

/// Digests are derived from credentials: never printed.
impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer")
            .field("tokens", &self.digests.len())
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A tokens_file line: `token`, or `name token`.
fn file_line(line: &str) -> Result<(Option<&str>, &str), &'static str> {
    let mut fields = line.split_whitespace();
    match (fields.next(), fields.next(), fields.next()) {
        (Some(token), None, _) => Ok((None, token)),
        (Some(name), Some(token), None) => Ok((Some(name), token)),
        _ => Err("expected `token` or `name token`"),
    }
}

impl Bearer {
    pub fn build(spec: &BearerSpec) -> Result<Self, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let mut digests = HashMap::new();
        for (name, token, loc) in &spec.tokens {
            if token.expose().contains(char::is_whitespace) {
                errors.push(Diagnostic::at(
                    loc,
                    "a bearer token must not contain whitespace",
                ));
            }
            digests.insert(digest(token.expose()), name.as_deref().map(Arc::from));
        }
        if let Some((path, loc)) = &spec.tokens_file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let lines = text
                        .lines()
                        .map(str::trim)
                        .enumerate()
                        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
                    for (i, line) in lines {
                        match file_line(line) {
                            Ok((name, token)) => {
                                digests.insert(digest(token), name.map(Arc::from));
                            }
                            Err(message) => errors.push(Diagnostic::at(
                                loc,
                                format_args!("{}:{}: {message}", path.display(), i + 1),
                            )),
                        }
                    }
                    // An empty file holds no token (every check 401):
                    // emptying it revokes, it never keeps old tokens alive.
                }
                Err(e) => errors.push(Diagnostic::at(
                    loc,
                    format_args!("cannot read tokens_file `{}`: {e}", path.display()),
                )),
            }
        }
        if errors.is_empty() {
            Ok(Self { digests })
        } else {
            Err(errors)
        }
    }

    pub fn authenticate(&self, req: &RequestView<'_>) -> AuthResult<'_> {
        let Some(token) = req.authorization("bearer") else {
            return AuthResult::Deny(Denial::missing(Some(CHALLENGE)));
        };
        match self.digests.get(&digest(token.trim())) {
            Some(name) => AuthResult::Allow {
                identity: Identity::named(AuthKind::Bearer, name.clone()),
                upstream: Vec::new(),
            },
            None => AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_are_a_token_or_a_name_and_a_token() {
        assert_eq!(file_line("abc"), Ok((None, "abc")));
        assert_eq!(file_line("ci  abc"), Ok((Some("ci"), "abc")));
        assert!(file_line("a b c").is_err());
    }
}
