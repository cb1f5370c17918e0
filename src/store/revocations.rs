//! The revocation set every check reads: which sessions ended before their
//! cookie did. Local and lock-light: while it is empty a check costs one
//! atomic load; otherwise a read lock and a few hash lookups, never a
//! store round trip. The store (when there is one) fills it at start, after
//! every reconnect, and through pub/sub; logouts and `RevokeUser` add to it
//! at once.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::session::Session;

/// One revocation, as stored in Redis and sent over pub/sub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// One session (its id), until its cookie would have expired anyway.
    Session { id: String, until: u64 },
    /// Every session of `user` at `provider` (a session's provider, e.g.
    /// `oidc:https://idp`; empty: at any provider) issued at or before
    /// `before` (Unix seconds).
    User {
        provider: String,
        user: String,
        before: u64,
    },
    /// Every session of the provider's session `sid` (the ID token's
    /// `sid`, OpenID back-channel logout) issued at or before `before`.
    Sid {
        provider: String,
        sid: String,
        before: u64,
    },
}

impl Revocation {
    /// What identifies it in the store: a later revocation of the same
    /// thing replaces it.
    pub fn subject(&self) -> String {
        match self {
            Self::Session { id, .. } => format!("s\u{0}{id}"),
            Self::User { provider, user, .. } => format!("u\u{0}{provider}\u{0}{user}"),
            Self::Sid { provider, sid, .. } => format!("o\u{0}{provider}\u{0}{sid}"),
        }
    }

    /// Until when (Unix seconds) it can still matter, given that no
    /// session lives longer than `max_life` seconds.
    pub fn relevant_until(&self, max_life: u64) -> u64 {
        match self {
            Self::Session { until, .. } => *until,
            Self::User { before, .. } | Self::Sid { before, .. } => before.saturating_add(max_life),
        }
    }
}

/// "Revoked before" times of one user or provider session, by provider.
type ByProvider = Vec<(String, u64)>;

#[derive(Default, Debug)]
struct Sets {
    /// Session id → until.
    sessions: HashMap<String, u64>,
    /// User id → (provider, before).
    users: HashMap<String, ByProvider>,
    /// Provider session id → (provider, before).
    sids: HashMap<String, ByProvider>,
}

impl Sets {
    fn len(&self) -> usize {
        self.sessions.len() + self.users.len() + self.sids.len()
    }
}

/// Keeps, for each provider, the latest time.
fn raise(entries: &mut ByProvider, provider: &str, before: u64) {
    match entries.iter_mut().find(|(p, _)| p == provider) {
        Some((_, t)) => *t = (*t).max(before),
        None => entries.push((provider.to_string(), before)),
    }
}

/// Whether `issued` is at or before the time revoked for this provider
/// (or for every provider).
fn covers(entries: Option<&ByProvider>, provider: &str, issued: u64) -> bool {
    entries.is_some_and(|entries| {
        entries
            .iter()
            .any(|(p, before)| (p.is_empty() || p == provider) && issued <= *before)
    })
}

#[derive(Default)]
pub struct Revocations {
    /// False while the set is empty: the common case reads nothing else.
    any: AtomicBool,
    sets: RwLock<Sets>,
}

/// Session and user ids are not secrets, but they are personal: only the
/// size is shown.
impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("entries", &self.len())
            .finish()
    }
}

impl Revocations {
    /// Whether `session` was revoked (logged out, its user revoked, or
    /// its provider session ended).
    pub fn revokes(&self, session: &Session) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
        let provider = session.provider.as_str();
        (!session.id.is_empty() && sets.sessions.contains_key(&session.id))
            || covers(
                sets.users.get(&session.identity.id),
                provider,
                session.issued,
            )
            || session
                .sid
                .as_ref()
                .is_some_and(|sid| covers(sets.sids.get(sid), provider, session.issued))
    }

    /// Adds one revocation; entries that no longer matter at `now` go.
    pub fn add(&self, revocation: &Revocation, now: u64, max_life: u64) {
        if revocation.relevant_until(max_life) <= now {
            return;
        }
        let mut sets = self.sets.write().unwrap_or_else(|e| e.into_inner());
        match revocation {
            Revocation::Session { id, until } => {
                let kept = sets.sessions.entry(id.clone()).or_insert(*until);
                *kept = (*kept).max(*until);
            }
            Revocation::User {
                provider,
                user,
                before,
            } => raise(
                sets.users.entry(user.clone()).or_default(),
                provider,
                *before,
            ),
            Revocation::Sid {
                provider,
                sid,
                before,
            } => raise(sets.sids.entry(sid.clone()).or_default(), provider, *before),
        }
        self.any.store(true, Ordering::Release);
    }

    /// Drops what no longer matters: sessions past their expiry, "revoked
    /// before" times older than the longest session life.
    pub fn prune(&self, now: u64, max_life: u64) {
        let mut sets = self.sets.write().unwrap_or_else(|e| e.into_inner());
        sets.sessions.retain(|_, until| *until > now);
        let Sets { users, sids, .. } = &mut *sets;
        for map in [users, sids] {
            map.retain(|_, entries| {
                entries.retain(|(_, before)| before.saturating_add(max_life) > now);
                !entries.is_empty()
            });
        }
        self.any.store(sets.len() > 0, Ordering::Release);
    }

    pub fn len(&self) -> usize {
        self.sets.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, user: &str, sid: Option<&str>, issued: u64) -> Session {
        Session {
            id: id.into(),
            sid: sid.map(Into::into),
            identity: crate::session::Identity {
                id: user.into(),
                ..Default::default()
            },
            provider: "oidc:https://idp".into(),
            client_id: "c".into(),
            issued,
            expires: issued + 3600,
            refresh: None,
            renew_at: 0,
            attrs: Default::default(),
        }
    }

    #[test]
    fn each_kind_revokes_what_it_names_and_nothing_else() {
        let set = Revocations::default();
        let a = session("s1", "alice", Some("op1"), 100);
        let b = session("s2", "bob", Some("op2"), 100);
        assert!(!set.revokes(&a));
        set.add(
            &Revocation::Session {
                id: "s1".into(),
                until: 4000,
            },
            100,
            3600,
        );
        assert!(set.revokes(&a) && !set.revokes(&b));

        set.add(
            &Revocation::User {
                provider: "oidc:https://idp".into(),
                user: "bob".into(),
                before: 150,
            },
            150,
            3600,
        );
        assert!(set.revokes(&b), "bob's session was issued before");
        assert!(
            !set.revokes(&session("s3", "bob", None, 151)),
            "a login after the revocation is not revoked"
        );
        assert!(
            !set.revokes(&Session {
                provider: "github".into(),
                ..session("s4", "bob", None, 100)
            }),
            "another provider's bob is someone else"
        );

        let c = session("s5", "carol", Some("op9"), 100);
        set.add(
            &Revocation::Sid {
                provider: String::new(),
                sid: "op9".into(),
                before: 200,
            },
            200,
            3600,
        );
        assert!(set.revokes(&c));
        assert!(!set.revokes(&session("s6", "carol", Some("op8"), 100)));
    }

    #[test]
    fn an_id_less_session_is_still_revoked_by_user() {
        let set = Revocations::default();
        set.add(
            &Revocation::User {
                provider: String::new(),
                user: "alice".into(),
                before: 100,
            },
            100,
            3600,
        );
        assert!(set.revokes(&session("", "alice", None, 50)));
        assert!(!set.revokes(&session("", "bob", None, 50)));
    }

    #[test]
    fn pruning_keeps_what_still_matters() {
        let set = Revocations::default();
        set.add(
            &Revocation::Session {
                id: "s1".into(),
                until: 200,
            },
            100,
            3600,
        );
        set.add(
            &Revocation::User {
                provider: String::new(),
                user: "u".into(),
                before: 100,
            },
            100,
            3600,
        );
        set.prune(150, 3600);
        assert_eq!(set.len(), 2);
        set.prune(250, 3600);
        assert_eq!(set.len(), 1, "the session had expired anyway");
        set.prune(3701, 3600);
        assert!(set.is_empty());
        assert!(!set.revokes(&session("s1", "u", None, 0)));
    }
}
