//! HTTP Basic authentication (RFC 7617) against plaintext, argon2id or
//! bcrypt passwords, from the config and/or an htpasswd file.

use std::collections::HashMap;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use std::sync::Arc;

use super::cache::VerifiedCache;
use super::{AuthResult, Denial};
use crate::config::error::Diagnostic;
use crate::config::spec::BasicSpec;
use crate::decision::Pending;
use crate::hashing::{HashError, HashPool};
use crate::request::RequestView;

/// A stored password, in the form it can be checked in.
#[derive(Clone)]
enum Stored {
    /// SHA-256 of a plaintext password: compared in constant time.
    Plain([u8; 32]),
    /// A PHC string (`$argon2id$...`), parsed at load.
    Argon2(String),
    /// `$2a$`/`$2b$`/`$2y$` bcrypt.
    Bcrypt(String),
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "Plain([redacted])",
            Self::Argon2(_) => "Argon2([redacted])",
            Self::Bcrypt(_) => "Bcrypt([redacted])",
        })
    }
}

/// Hash parameters above these are refused at load: memory is bounded by
/// `hash_concurrency` × `m_cost`, time by the costs.
pub const MAX_ARGON2_M_KIB: u32 = 64 * 1024;
pub const MAX_ARGON2_T: u32 = 10;
pub const MAX_ARGON2_P: u32 = 4;
pub const MAX_BCRYPT_COST: u32 = 14;

/// Why a configured password or users_file hash is refused.
#[derive(Debug, thiserror::Error)]
enum PasswordError {
    /// A `$argon2...` string that is not a PHC hash.
    #[error("invalid argon2 hash")]
    Argon2Hash,
    /// argon2i or argon2d.
    #[error("only argon2id hashes are accepted")]
    NotArgon2id,
    /// The PHC string's parameters do not parse.
    #[error("invalid argon2 parameters")]
    Argon2Params,
    /// Costs above the caps.
    #[error(
        "argon2id parameters m={m}, t={t}, p={p} exceed the caps m={MAX_ARGON2_M_KIB} (64 MiB), t={MAX_ARGON2_T}, p={MAX_ARGON2_P}: a flood of wrong passwords would exhaust memory; rehash with smaller parameters"
    )]
    Argon2Caps { m: u32, t: u32, p: u32 },
    /// A `$2?$` string that is not a bcrypt hash.
    #[error("invalid bcrypt hash")]
    BcryptHash,
    /// A bcrypt cost above the cap.
    #[error(
        "bcrypt cost {0} exceeds the cap {MAX_BCRYPT_COST}: each wrong password would cost seconds of CPU; rehash with a lower cost"
    )]
    BcryptCost(u32),
    /// MD5 or SHA-1 htpasswd formats.
    #[error("MD5/SHA1 htpasswd hashes are too weak; use bcrypt (htpasswd -B) or argon2id")]
    Weak,
    /// Some other `$id$...` hash.
    #[error(
        "unsupported password hash; use argon2id or bcrypt (a plaintext password must not look like a hash)"
    )]
    Unsupported,
}

impl Stored {
    fn parse(password: &str) -> Result<Self, PasswordError> {
        if password.starts_with("$argon2") {
            let hash = PasswordHash::new(password).map_err(|_| PasswordError::Argon2Hash)?;
            if !password.starts_with("$argon2id$") {
                return Err(PasswordError::NotArgon2id);
            }
            let params =
                argon2::Params::try_from(&hash).map_err(|_| PasswordError::Argon2Params)?;
            if params.m_cost() > MAX_ARGON2_M_KIB
                || params.t_cost() > MAX_ARGON2_T
                || params.p_cost() > MAX_ARGON2_P
            {
                return Err(PasswordError::Argon2Caps {
                    m: params.m_cost(),
                    t: params.t_cost(),
                    p: params.p_cost(),
                });
            }
            Ok(Self::Argon2(password.to_string()))
        } else if ["$2a$", "$2b$", "$2y$"]
            .iter()
            .any(|p| password.starts_with(p))
        {
            let parts = password
                .parse::<bcrypt::HashParts>()
                .map_err(|_| PasswordError::BcryptHash)?;
            if parts.get_cost() > MAX_BCRYPT_COST {
                return Err(PasswordError::BcryptCost(parts.get_cost()));
            }
            Ok(Self::Bcrypt(password.to_string()))
        } else if password.starts_with("$apr1$")
            || password.starts_with("{SHA}")
            || password.starts_with("$1$")
        {
            Err(PasswordError::Weak)
        } else if password.starts_with('$') && password[1..].contains('$') {
            Err(PasswordError::Unsupported)
        } else {
            Ok(Self::Plain(Sha256::digest(password.as_bytes()).into()))
        }
    }

    fn is_hashed(&self) -> bool {
        !matches!(self, Self::Plain(_))
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Plain(digest) => {
                let presented: [u8; 32] = Sha256::digest(password).into();
                presented.ct_eq(digest).into()
            }
            Self::Argon2(phc) => PasswordHash::new(phc)
                .is_ok_and(|h| Argon2::default().verify_password(password, &h).is_ok()),
            Self::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }
}

#[derive(Debug)]
pub struct Basic {
    users: HashMap<String, Stored>,
    /// Checked when the user is unknown, so an unknown user costs what a known one does.
    decoy: Stored,
    challenge: String,
    cache: Arc<VerifiedCache>,
}

impl Basic {
    pub fn build(spec: &BasicSpec) -> Result<Self, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let mut users = HashMap::new();
        for user in &spec.users {
            match Stored::parse(user.password.expose()) {
                Ok(stored) => {
                    if users.insert(user.username.clone(), stored).is_some() {
                        errors.push(Diagnostic::at(
                            &user.loc,
                            format!("duplicate user `{}`", user.username),
                        ));
                    }
                }
                Err(msg) => errors.push(Diagnostic::at(
                    &user.loc.child("password", user.loc.mark),
                    msg,
                )),
            }
        }
        if let Some((path, loc)) = &spec.users_file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    for (i, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        let where_ = format!("{}:{}", path.display(), i + 1);
                        match line.split_once(':') {
                            Some((name, hash)) if !name.is_empty() => match Stored::parse(hash) {
                                Ok(stored) if stored.is_hashed() => {
                                    users.insert(name.to_string(), stored);
                                }
                                Ok(_) => errors.push(Diagnostic::at(loc, format!("{where_}: users_file entries must be bcrypt or argon2id hashes"))),
                                Err(msg) => errors.push(Diagnostic::at(loc, format!("{where_}: {msg}"))),
                            },
                            _ => errors.push(Diagnostic::at(loc, format!("{where_}: expected `user:hash`"))),
                        }
                    }
                }
                Err(e) => errors.push(Diagnostic::at(
                    loc,
                    format!("cannot read users_file `{}`: {e}", path.display()),
                )),
            }
        }
        // An empty users_file is a file with no users (every check 401):
        // emptying it revokes access, it is not an error that keeps the old
        // users working.
        if users.is_empty() && errors.is_empty() && spec.users_file.is_none() {
            errors.push(Diagnostic::at(
                &spec.loc,
                "basic needs at least one user (`users` or `users_file`)",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let decoy = users
            .values()
            .find(|s| s.is_hashed())
            .cloned()
            .unwrap_or(Stored::Plain([0; 32]));
        Ok(Self {
            users,
            decoy,
            challenge: format!("Basic realm=\"{}\", charset=\"UTF-8\"", spec.realm),
            cache: Arc::new(VerifiedCache::new(10_000)),
        })
    }

    pub fn challenge(&self) -> &str {
        &self.challenge
    }

    pub fn authenticate(&self, req: &RequestView<'_>) -> AuthResult<'_> {
        let Some((user, password)) = req.authorization("basic").and_then(decode_credentials) else {
            return AuthResult::Deny(Denial::missing(Some(&self.challenge)));
        };
        let (stored, known) = self.stored(&user);
        if !stored.is_hashed() {
            return self.answer(&user, known && stored.verify(&password));
        }
        if known
            && self
                .cache
                .contains(&self.cache.fingerprint(&user, &password))
        {
            return self.answer(&user, true);
        }
        // A hash to compute (also the decoy for an unknown user, so that
        // costs what a known user costs): on the bounded pool, never here.
        AuthResult::Pending {
            work: Pending::VerifyPassword,
            then: Denial::invalid(Some(&self.challenge)),
        }
    }

    /// The stored password of `user`, or the decoy; and whether it is theirs.
    fn stored(&self, user: &[u8]) -> (&Stored, bool) {
        match std::str::from_utf8(user)
            .ok()
            .and_then(|n| self.users.get(n))
        {
            Some(stored) => (stored, true),
            None => (&self.decoy, false),
        }
    }

    fn answer(&self, user: &[u8], ok: bool) -> AuthResult<'_> {
        if !ok {
            return AuthResult::Deny(Denial::invalid(Some(&self.challenge)));
        }
        let name: Arc<str> = String::from_utf8_lossy(user).into();
        AuthResult::Allow {
            identity: crate::identity::Identity::named(super::AuthKind::Basic, Some(name)),
            upstream: Vec::new(),
        }
    }

    /// Verifies the request's password hash on `pool`: Ok(true) when it
    /// matched (and is cached, so deciding again allows).
    pub async fn verify_on(
        &self,
        pool: &HashPool,
        req: &RequestView<'_>,
    ) -> Result<bool, HashError> {
        let Some((user, password)) = req.authorization("basic").and_then(decode_credentials) else {
            return Ok(false);
        };
        let (stored, known) = self.stored(&user);
        let stored = stored.clone();
        let cache = self.cache.clone();
        pool.run(move || {
            if !known {
                let _ = stored.verify(&password);
                return false;
            }
            let fingerprint = cache.fingerprint(&user, &password);
            cache.get_or_verify(fingerprint, || stored.verify(&password))
        })
        .await
    }

    /// The same, on this thread (`explain`, tests).
    pub fn verify_here(&self, req: &RequestView<'_>) -> bool {
        let Some((user, password)) = req.authorization("basic").and_then(decode_credentials) else {
            return false;
        };
        match self.stored(&user) {
            (stored, true) => {
                let fingerprint = self.cache.fingerprint(&user, &password);
                self.cache
                    .get_or_verify(fingerprint, || stored.verify(&password))
            }
            (decoy, false) => {
                let _ = decoy.verify(&password);
                false
            }
        }
    }
}

/// `base64(user:password)` → (user, password); the password may contain `:`.
pub fn decode_credentials(encoded: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    const ENGINE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = ENGINE.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let password = decoded[colon + 1..].to_vec();
    let mut user = decoded;
    user.truncate(colon);
    Some((user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_decoding_table() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            decode_credentials(&b64("admin:admin123")),
            Some((b"admin".to_vec(), b"admin123".to_vec()))
        );
        assert_eq!(
            decode_credentials(&b64("u:pa:ss")),
            Some((b"u".to_vec(), b"pa:ss".to_vec()))
        );
        assert_eq!(
            decode_credentials(&b64("u:")),
            Some((b"u".to_vec(), vec![]))
        );
        assert_eq!(decode_credentials(&b64("nocolon")), None);
        assert_eq!(decode_credentials("!!!notbase64"), None);
        assert_eq!(
            decode_credentials("YWRtaW46YWRtaW4xMjM"),
            Some((b"admin".to_vec(), b"admin123".to_vec()))
        );
    }

    #[test]
    fn stored_password_kinds() {
        let bcrypt_hash = bcrypt::hash("s3cret", 4).unwrap();
        let b = Stored::parse(&bcrypt_hash).unwrap();
        assert!(b.is_hashed() && b.verify(b"s3cret") && !b.verify(b"wrong"));

        let p = Stored::parse("plain-pass").unwrap();
        assert!(!p.is_hashed() && p.verify(b"plain-pass") && !p.verify(b"plain-pas"));

        assert!(Stored::parse("$2y$10$tooshort").is_err());
        assert!(Stored::parse("$argon2id$v=19$garbage").is_err());
        assert!(Stored::parse("$apr1$abc$def").is_err());
        assert!(Stored::parse("{SHA}abc=").is_err());
        assert!(Stored::parse("$6$salt$hash").is_err());
    }

    #[test]
    fn argon2id_hashes_verify() {
        use argon2::PasswordHasher;
        let hash = Argon2::default().hash_password(b"pw").unwrap().to_string();
        let s = Stored::parse(&hash).unwrap();
        assert!(s.verify(b"pw") && !s.verify(b"px"));
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(s in "\\PC*") {
            let _ = decode_credentials(&s);
        }
    }
}
