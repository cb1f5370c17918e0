//! A bounded, short-lived cache of successful hashed-password checks.
//!
//! argon2id and bcrypt cost milliseconds by design; without this cache every
//! request of a hashed user would pay it. Keys are a keyed hash of the
//! credential (the key is random per process), so the cache holds no
//! password and its keys cannot be checked offline.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub struct VerifiedCache {
    key: [u8; 32],
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

impl VerifiedCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        VerifiedCache {
            key,
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn fingerprint(&self, user: &[u8], password: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length");
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user);
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    pub fn contains(&self, fingerprint: &[u8; 32]) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(fingerprint)
            .is_some_and(|expiry| *expiry > Instant::now())
    }

    pub fn insert(&self, fingerprint: [u8; 32]) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, expiry| *expiry > now);
            if entries.len() >= self.capacity {
                // Still full of live entries: start over rather than grow.
                entries.clear();
            }
        }
        entries.insert(fingerprint, now + self.ttl);
    }
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Bearer JWTs that verified, so a client sending the same token again does
/// not pay for a signature check (RS256 ~60 µs, ES256 ~140 µs). Keyed by
/// the token's SHA-256; an entry lives until the token expires, at most
/// [`TOKEN_TTL`]; bounded like [`VerifiedCache`].
pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], TokenEntry>>,
    capacity: usize,
}

/// Valid until, and the token's subject.
type TokenEntry = (Instant, Option<String>);

/// Longest a verified token is trusted without a new check (also bounds how
/// long a key removed from a JWKS keeps verifying tokens it signed).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

impl Default for VerifiedTokens {
    fn default() -> Self {
        VerifiedTokens {
            entries: Mutex::new(HashMap::new()),
            capacity: 10_000,
        }
    }
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens").finish_non_exhaustive()
    }
}

impl VerifiedTokens {
    pub fn key(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    /// The subject of a token verified before and not yet expired.
    pub fn get(&self, key: &[u8; 32]) -> Option<Option<String>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, sub)| sub.clone())
    }

    /// Remembers a verified token until `exp` (Unix seconds), at most [`TOKEN_TTL`].
    pub fn insert(&self, key: [u8; 32], exp: Option<u64>, sub: Option<String>) {
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let left = exp.map_or(TOKEN_TTL, |e| {
            Duration::from_secs(e.saturating_sub(now_unix))
        });
        let ttl = left.min(TOKEN_TTL);
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, (until, _)| *until > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (now + ttl, sub));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_tokens_expire_with_the_token() {
        let tokens = VerifiedTokens::default();
        let key = VerifiedTokens::key("a.b.c");
        assert_eq!(tokens.get(&key), None);
        tokens.insert(key, Some(0), Some("u".into()));
        assert_eq!(tokens.get(&key), None, "an expired token is not remembered");
        tokens.insert(key, None, Some("u".into()));
        assert_eq!(tokens.get(&key), Some(Some("u".into())));
    }

    #[test]
    fn hits_expire_and_capacity_is_bounded() {
        let cache = VerifiedCache::new(Duration::from_millis(50), 2);
        let a = cache.fingerprint(b"u", b"p");
        assert_ne!(a, cache.fingerprint(b"u", b"q"));
        assert_ne!(
            cache.fingerprint(b"ab", b"c"),
            cache.fingerprint(b"a", b"bc")
        );
        assert!(!cache.contains(&a));
        cache.insert(a);
        assert!(cache.contains(&a));
        cache.insert([1; 32]);
        cache.insert([2; 32]);
        assert!(cache.entries.lock().unwrap().len() <= 2);
        std::thread::sleep(Duration::from_millis(60));
        assert!(!cache.contains(&[2; 32]));
    }
}
