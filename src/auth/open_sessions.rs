//! Session cookies already opened. A browser sends the same cookie on every
//! request until it is renewed, so a known cookie costs a hash-map lookup
//! instead of base64, AES-GCM and JSON, and its `X-Connect-Token` is signed
//! once for all its requests rather than once per request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwapOption;

use crate::connect::Signed;
use crate::session::Session;

/// Sessions kept at most; when full, the cache starts over (opening a
/// cookie again costs microseconds, so this bounds memory, not correctness).
const CAPACITY: usize = 4_096;

/// An opened session of this client, with its current connect token.
#[derive(Debug)]
pub struct Opened {
    pub session: Session,
    /// Swapped for a new one when it nears expiry; read without a lock.
    pub connect: ArcSwapOption<Signed>,
    /// For a server-side session: when its record was read from the store.
    pub read_at: Option<std::time::Instant>,
}

impl Opened {
    pub fn new(session: Session) -> Self {
        Self {
            session,
            connect: ArcSwapOption::empty(),
            read_at: None,
        }
    }

    /// A server-side session's record, read from the store now.
    pub fn read_now(session: Session) -> Self {
        Self {
            read_at: Some(crate::clock::now()),
            ..Self::new(session)
        }
    }
}

/// Per login client (so per engine: a reload, or a rotated session secret,
/// starts empty). Only cookies that decrypted to a session of this client
/// are kept; everything a session's validity depends on besides (expiry,
/// renewal, allow lists) is checked on each request, as for a new cookie.
#[derive(Default)]
pub struct OpenSessions {
    entries: RwLock<HashMap<Box<str>, Arc<Opened>>>,
}

/// Keyed by session cookies, which are credentials: only their number is shown.
impl std::fmt::Debug for OpenSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSessions")
            .field("entries", &self.read().len())
            .finish()
    }
}

impl OpenSessions {
    /// The opened session for `cookie`, from the cache or from `open`
    /// (None: not a session of this client; not cached).
    pub fn get_or_open(
        &self,
        cookie: &str,
        open: impl FnOnce() -> Option<Session>,
    ) -> Option<Arc<Opened>> {
        if let Some(opened) = self.read().get(cookie) {
            return Some(opened.clone());
        }
        let opened = Arc::new(Opened::new(open()?));
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        let kept = entries.entry(cookie.into()).or_insert(opened);
        Some(kept.clone())
    }

    /// The cached entry for `cookie`, if any.
    pub fn get(&self, cookie: &str) -> Option<Arc<Opened>> {
        self.read().get(cookie).cloned()
    }

    /// Caches (or replaces) an entry.
    pub fn insert(&self, cookie: &str, opened: Arc<Opened>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(cookie.into(), opened);
    }

    /// Forgets an entry (a session that ended).
    pub fn remove(&self, cookie: &str) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(cookie);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Box<str>, Arc<Opened>>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session {
            id: String::new(),
            sid: None,
            identity: crate::session::Identity {
                id: id.into(),
                ..Default::default()
            },
            provider: "github".into(),
            client_id: "client".into(),
            issued: 0,
            attrs: Default::default(),
            expires: u64::MAX,
            refresh: None,
            renew_at: 0,
        }
    }

    #[test]
    fn a_cookie_is_opened_once_and_refusals_are_not_kept() {
        let cache = OpenSessions::default();
        let a = cache
            .get_or_open("cookie-a", || Some(session("a")))
            .unwrap();
        let again = cache
            .get_or_open("cookie-a", || panic!("cached: not opened again"))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert!(cache.get_or_open("forged", || None).is_none());
        assert_eq!(cache.cached(), 1);
        let b = cache
            .get_or_open("cookie-b", || Some(session("b")))
            .unwrap();
        assert_eq!(b.session.identity.id, "b");
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = OpenSessions::default();
        for i in 0..CAPACITY + 10 {
            cache.get_or_open(&format!("c{i}"), || Some(session("x")));
        }
        assert!(cache.cached() <= CAPACITY);
    }
}
