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

#[cfg(test)]
mod tests {
    use super::*;

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
