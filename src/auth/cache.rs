//! Caches of successful credential checks.
//!
//! argon2id and bcrypt cost milliseconds by design; without
//! [`VerifiedCache`] every request of a hashed user would pay it. Keys are a
//! keyed hash of the credential (the key is random per process), so the
//! cache holds no password and its keys cannot be checked offline.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};

use crate::identity::TokenIdentity;
use sha2::Sha256;

/// Credentials that matched a stored hash. A stored hash never changes
/// while its engine serves (a changed user list is a new engine with an
/// empty cache), so an entry stays true until the engine is replaced: no
/// expiry, and so no moment when every client pays the hash at once.
/// Concurrent first checks of one credential share a single hash
/// computation.
pub struct VerifiedCache {
    key: [u8; 32],
    capacity: usize,
    /// Read on every check of a hashed user, written once per credential.
    verified: RwLock<HashSet<[u8; 32]>>,
    /// Hash computations in flight, by fingerprint.
    in_flight: Mutex<HashMap<[u8; 32], Arc<OnceLock<bool>>>>,
}

impl VerifiedCache {
    pub fn new(capacity: usize) -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self {
            key,
            capacity,
            verified: RwLock::new(HashSet::new()),
            in_flight: Mutex::new(HashMap::new()),
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
        let verified = self.verified.read().unwrap_or_else(|e| e.into_inner());
        verified.contains(fingerprint)
    }

    /// The cached result, or `verify()` run once for all concurrent callers
    /// with this fingerprint (the others wait for its answer). `verify` may
    /// block: call this where blocking is allowed.
    pub fn get_or_verify(&self, fingerprint: [u8; 32], verify: impl FnOnce() -> bool) -> bool {
        if self.contains(&fingerprint) {
            return true;
        }
        let flight = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            in_flight.entry(fingerprint).or_default().clone()
        };
        let mut ran = false;
        let ok = *flight.get_or_init(|| {
            ran = true;
            verify()
        });
        if ran {
            if ok {
                self.insert(fingerprint);
            }
            // Cached first, then no longer in flight: a later caller finds one.
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            in_flight.remove(&fingerprint);
        }
        ok
    }

    fn insert(&self, fingerprint: [u8; 32]) {
        let mut verified = self.verified.write().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= self.capacity {
            // Full: start over rather than grow (only credentials that
            // matched get here, so filling it takes that many real ones).
            verified.clear();
        }
        verified.insert(fingerprint);
    }
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache")
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

/// Valid until, and what the token says.
type TokenEntry = (Instant, Arc<TokenIdentity>);

/// Longest a verified token is trusted without a new check (also bounds how
/// long a key removed from a JWKS keeps verifying tokens it signed).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self {
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
        Sha256::digest(token.as_bytes()).into()
    }

    /// What a token verified before and not yet expired says.
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<TokenIdentity>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(until, _)| *until > crate::clock::now())
            .map(|(_, sub)| sub.clone())
    }

    /// Remembers a verified token until `exp` (Unix seconds), at most [`TOKEN_TTL`].
    pub fn insert(&self, key: [u8; 32], exp: Option<u64>, sub: Arc<TokenIdentity>) {
        let now_unix = crate::clock::system_now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let left = exp.map_or(TOKEN_TTL, |e| {
            Duration::from_secs(e.saturating_sub(now_unix))
        });
        let ttl = left.min(TOKEN_TTL);
        if ttl.is_zero() {
            return;
        }
        let now = crate::clock::now();
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
        let who = Arc::new(TokenIdentity {
            sub: Some("u".into()),
            ..Default::default()
        });
        tokens.insert(key, Some(0), who.clone());
        assert_eq!(tokens.get(&key), None, "an expired token is not remembered");
        tokens.insert(key, None, who.clone());
        assert_eq!(tokens.get(&key), Some(who));
    }

    #[test]
    fn fingerprints_separate_user_and_password() {
        let cache = VerifiedCache::new(2);
        let a = cache.fingerprint(b"u", b"p");
        assert_ne!(a, cache.fingerprint(b"u", b"q"));
        assert_ne!(
            cache.fingerprint(b"ab", b"c"),
            cache.fingerprint(b"a", b"bc")
        );
    }

    #[test]
    fn only_successes_are_kept_and_capacity_is_bounded() {
        let cache = VerifiedCache::new(2);
        assert!(!cache.get_or_verify([9; 32], || false));
        assert!(!cache.contains(&[9; 32]), "a failure is not cached");
        assert!(cache.get_or_verify([1; 32], || true));
        assert!(cache.get_or_verify([1; 32], || panic!("cached: not verified again")));
        cache.get_or_verify([2; 32], || true);
        cache.get_or_verify([3; 32], || true);
        assert!(cache.verified.read().unwrap().len() <= 2);
        assert!(cache.in_flight.lock().unwrap().is_empty());
    }

    #[test]
    fn concurrent_first_checks_share_one_verification() {
        let cache = Arc::new(VerifiedCache::new(10));
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, runs, barrier) = (cache.clone(), runs.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    cache.get_or_verify([7; 32], || {
                        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        true
                    })
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap());
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
