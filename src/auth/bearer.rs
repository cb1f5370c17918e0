//! Static bearer tokens (RFC 6750) from the config and/or a tokens file.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use super::{AuthResult, Denial};
use crate::config::error::Diagnostic;
use crate::config::spec::BearerSpec;
use crate::request::RequestView;

pub const CHALLENGE: &str = "Bearer";
pub const CHALLENGE_INVALID: &str = "Bearer error=\"invalid_token\"";

/// Tokens are kept only as SHA-256 digests. Looking a presented token's
/// digest up in a set is timing-safe: timing can at most reveal something
/// about a digest, which an attacker cannot steer towards a real token.
#[derive(Debug)]
pub struct Bearer {
    digests: HashSet<[u8; 32]>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Bearer {
    pub fn build(spec: &BearerSpec) -> Result<Self, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let mut digests = HashSet::new();
        for (token, loc) in &spec.tokens {
            if token.expose().contains(char::is_whitespace) {
                errors.push(Diagnostic {
                    loc: loc.clone(),
                    message: "a bearer token must not contain whitespace".into(),
                });
            }
            digests.insert(digest(token.expose()));
        }
        if let Some((path, loc)) = &spec.tokens_file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let before = digests.len();
                    digests.extend(
                        text.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty() && !l.starts_with('#'))
                            .map(digest),
                    );
                    if digests.len() == before && spec.tokens.is_empty() {
                        errors.push(Diagnostic {
                            loc: loc.clone(),
                            message: format!("tokens_file `{}` holds no token", path.display()),
                        });
                    }
                }
                Err(e) => errors.push(Diagnostic {
                    loc: loc.clone(),
                    message: format!("cannot read tokens_file `{}`: {e}", path.display()),
                }),
            }
        }
        if errors.is_empty() {
            Ok(Bearer { digests })
        } else {
            Err(errors)
        }
    }

    pub fn authenticate(&self, req: &RequestView<'_>) -> AuthResult<'_> {
        match req.authorization("bearer") {
            None => AuthResult::Deny(Denial::missing(Some(CHALLENGE))),
            Some(token) if self.digests.contains(&digest(token.trim())) => AuthResult::Allow {
                user: None,
                upstream: Vec::new(),
            },
            Some(_) => AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID))),
        }
    }
}
