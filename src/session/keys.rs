//! The keys that seal our cookies: AES-256-GCM, derived by HKDF-SHA256
//! from `authz.session.secret` (a list rotates keys: the first seals, all
//! open), with the cookie's purpose bound as associated data.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::secret::Secret;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// Version byte in front of every sealed value, so the format can change.
const VERSION: u8 = 1;

/// What a sealed value is for (its associated data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Session,
    LoginState,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Self::Session => b"ingress-authz session v1",
            Self::LoginState => b"ingress-authz login-state v1",
        }
    }
}

pub struct SessionKeys {
    ciphers: Vec<Aes256Gcm>,
    /// True when no secret was configured and a random one is in use.
    pub ephemeral: bool,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("keys", &self.ciphers.len())
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

fn derive(secret: &[u8]) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(Some(b"ingress-authz"), secret);
    let mut okm = zeroize::Zeroizing::new([0u8; 32]);
    hk.expand(b"session cookie aes-256-gcm", okm.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(*okm))
}

impl SessionKeys {
    pub fn from_secrets(secrets: &[Secret]) -> Self {
        if secrets.is_empty() {
            let mut random = zeroize::Zeroizing::new([0u8; 32]);
            rand::fill(random.as_mut());
            return Self {
                ciphers: vec![derive(random.as_ref())],
                ephemeral: true,
            };
        }
        Self {
            ciphers: secrets
                .iter()
                .map(|s| derive(s.expose().as_bytes()))
                .collect(),
            ephemeral: false,
        }
    }

    /// `base64url(version || nonce || ciphertext+tag)`.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let sealed = self.ciphers[0]
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose.aad(),
                },
            )
            .expect("AES-GCM encryption of a small message cannot fail");
        let mut out = Vec::with_capacity(1 + 12 + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// The plaintext, or None for anything tampered, foreign or malformed.
    pub fn open(&self, purpose: Purpose, sealed: &str) -> Option<Vec<u8>> {
        let raw = B64.decode(sealed.trim()).ok()?;
        if raw.len() < 1 + 12 + 16 || raw[0] != VERSION {
            return None;
        }
        let nonce: [u8; 12] = raw[1..13].try_into().ok()?;
        let payload = Payload {
            msg: &raw[13..],
            aad: purpose.aad(),
        };
        self.ciphers
            .iter()
            .find_map(|c| c.decrypt(&Nonce::from(nonce), Payload { ..payload }).ok())
    }

    pub fn seal_json<T: Serialize>(&self, purpose: Purpose, value: &T) -> String {
        let json = serde_json::to_vec(value).expect("plain structs serialise");
        self.seal(purpose, &json)
    }

    pub fn open_json<T: for<'de> Deserialize<'de>>(
        &self,
        purpose: Purpose,
        sealed: &str,
    ) -> Option<T> {
        serde_json::from_slice(&self.open(purpose, sealed)?).ok()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn keys(secrets: &[&str]) -> SessionKeys {
        SessionKeys::from_secrets(
            &secrets
                .iter()
                .map(|s| Secret::new(s.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn seal_and_open_round_trip_bound_to_purpose() {
        let k = keys(&["0123456789abcdef0123456789abcdef"]);
        let sealed = k.seal(Purpose::Session, b"hello");
        assert_eq!(
            k.open(Purpose::Session, &sealed).as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(k.open(Purpose::LoginState, &sealed), None);
        assert_ne!(
            sealed,
            k.seal(Purpose::Session, b"hello"),
            "fresh nonce each time"
        );
    }

    #[test]
    fn tampered_foreign_and_garbage_values_do_not_open() {
        let k = keys(&["0123456789abcdef0123456789abcdef"]);
        let other = keys(&["another-secret-another-secret-xx"]);
        let sealed = k.seal(Purpose::Session, b"hello");
        assert_eq!(other.open(Purpose::Session, &sealed), None);
        let mut raw = B64.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(k.open(Purpose::Session, &B64.encode(&raw)), None);
        for garbage in ["", "x", "!!!!", &"A".repeat(100)] {
            assert_eq!(k.open(Purpose::Session, garbage), None);
        }
    }

    #[test]
    fn rotation_old_keys_still_open() {
        let old = keys(&["old-secret-old-secret-old-secret"]);
        let rotated = keys(&[
            "new-secret-new-secret-new-secret",
            "old-secret-old-secret-old-secret",
        ]);
        let sealed = old.seal(Purpose::Session, b"v");
        assert_eq!(
            rotated.open(Purpose::Session, &sealed).as_deref(),
            Some(&b"v"[..])
        );
        let fresh = rotated.seal(Purpose::Session, b"w");
        assert_eq!(
            old.open(Purpose::Session, &fresh),
            None,
            "new cookies use the first key"
        );
    }

    proptest::proptest! {
        #[test]
        fn open_never_panics(s in "\\PC*") {
            let k = keys(&["0123456789abcdef0123456789abcdef"]);
            let _ = k.open(Purpose::Session, &s);
        }
    }
}
