//! Throttle blocks shared by every replica (SPEC §13.2, §13.3): which
//! subjects — a route's client address or username, as a [`Subject`]
//! digest — the shared failure counters closed, and until when. Filled by
//! this replica when its count in the store reaches the limit, and by the
//! store's pub/sub (and the durable block keys loaded after every
//! reconnect) when another replica's does. Local and lock-light like the
//! revocation set: while nothing is blocked a check costs one atomic load,
//! never a store round trip.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Blocks kept at most (about 60 bytes each).
pub const CAPACITY: usize = 100_000;

/// Which limit a subject counts towards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Per (route, client address).
    Client,
    /// Per (route, username).
    User,
}

/// What failures are counted under across replicas: SHA-256 of the
/// route's label, the scope and the client address or username. The same
/// on every replica serving the same config; neither address nor name is
/// ever stored in clear.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subject([u8; 32]);

impl Subject {
    pub fn of(label: &str, scope: Scope, who: &[u8]) -> Self {
        let scope: &[u8] = match scope {
            Scope::Client => b"client",
            Scope::User => b"user",
        };
        let mut h = Sha256::new();
        for part in [label.as_bytes(), scope, who] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        Self(h.finalize().into())
    }

    /// Lower-case hex: the store's key suffix and the published form.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

/// A digest, but short: it is not a secret, and logs need no more.
impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subject({}…)", &self.hex()[..12])
    }
}

/// A block as published to the other replicas: the subject and how long
/// it has left (milliseconds, so that replicas' clocks need not agree).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMessage {
    pub subject: String,
    pub ms: u64,
}

impl BlockMessage {
    /// The subject and until when it is blocked, counted from `now`.
    pub fn read(payload: &str, now: Instant) -> Option<(Subject, Instant)> {
        let m: Self = serde_json::from_str(payload).ok()?;
        let subject = Subject::from_hex(&m.subject)?;
        Some((subject, now + Duration::from_millis(m.ms)))
    }
}

#[derive(Debug)]
pub struct ThrottleBlocks {
    epoch: Instant,
    /// Until when (ms after `epoch`) some subject may be blocked; 0: never
    /// was. While it is past, a check reads nothing else.
    until: AtomicU64,
    blocks: Mutex<HashMap<Subject, Instant>>,
    /// The store failed to count a failure since it last succeeded (one
    /// warning per outage).
    degraded: AtomicBool,
}

impl Default for ThrottleBlocks {
    fn default() -> Self {
        Self {
            epoch: crate::clock::now(),
            until: AtomicU64::new(0),
            blocks: Mutex::default(),
            degraded: AtomicBool::new(false),
        }
    }
}

impl ThrottleBlocks {
    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// False when no subject can be blocked at `now` (one atomic load; no
    /// clock read while nothing ever was).
    pub fn may_block(&self, now: impl FnOnce() -> Instant) -> bool {
        let until = self.until.load(Ordering::Relaxed);
        until != 0 && until > self.millis(now())
    }

    /// Seconds until `subject` may try again, if it is blocked at `now`.
    pub fn blocked(&self, subject: &Subject, now: Instant) -> Option<u64> {
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let until = *blocks.get(subject)?;
        (until > now).then(|| seconds_until(until, now))
    }

    /// Blocks `subject` until `until` (a later block of it wins).
    pub fn block(&self, subject: Subject, until: Instant, now: Instant) {
        if until <= now {
            return;
        }
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        if blocks.len() >= CAPACITY && !blocks.contains_key(&subject) {
            evict(&mut blocks, now);
        }
        let kept = blocks.entry(subject).or_insert(until);
        *kept = (*kept).max(until);
        self.until
            .fetch_max(self.millis(until) + 1, Ordering::Relaxed);
    }

    /// Drops blocks that ended.
    pub fn prune(&self, now: Instant) {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        blocks.retain(|_, until| *until > now);
    }

    pub fn len(&self) -> usize {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Notes that the store could not count a failure; true the first time
    /// since it last could (warn then).
    pub fn degrade(&self) -> bool {
        !self.degraded.swap(true, Ordering::Relaxed)
    }

    /// Notes that the store counted a failure; true when it had not been
    /// able to before.
    pub fn recover(&self) -> bool {
        self.degraded.load(Ordering::Relaxed) && self.degraded.swap(false, Ordering::Relaxed)
    }
}

/// Ended blocks go; if that frees too little, those ending soonest.
fn evict(blocks: &mut HashMap<Subject, Instant>, now: Instant) {
    blocks.retain(|_, until| *until > now);
    if blocks.len() >= CAPACITY / 2 {
        let mut ends: Vec<Instant> = blocks.values().copied().collect();
        let middle = ends.len() / 2;
        let (_, median, _) = ends.select_nth_unstable(middle);
        let median = *median;
        blocks.retain(|_, until| *until > median);
    }
}

fn seconds_until(at: Instant, now: Instant) -> u64 {
    let left = at.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_differ_by_route_scope_and_who_and_round_trip_as_hex() {
        let a = Subject::of("rules[0]", Scope::Client, b"10.0.0.1");
        assert_eq!(a, Subject::of("rules[0]", Scope::Client, b"10.0.0.1"));
        assert_ne!(a, Subject::of("rules[1]", Scope::Client, b"10.0.0.1"));
        assert_ne!(a, Subject::of("rules[0]", Scope::User, b"10.0.0.1"));
        assert_ne!(a, Subject::of("rules[0]", Scope::Client, b"10.0.0.2"));
        // Lengths are part of the digest: no two splits of one string meet.
        assert_ne!(
            Subject::of("ab", Scope::User, b"c"),
            Subject::of("a", Scope::User, b"bc")
        );
        assert_eq!(a.hex().len(), 64);
        assert_eq!(Subject::from_hex(&a.hex()), Some(a));
        assert_eq!(Subject::from_hex("zz"), None);
    }

    #[test]
    fn a_block_holds_until_it_ends_and_a_later_one_wins() {
        let blocks = ThrottleBlocks::default();
        let t0 = crate::clock::now();
        assert!(!blocks.may_block(|| t0), "nothing ever blocked");
        let s = Subject::of("rules[0]", Scope::Client, b"10.0.0.1");
        let other = Subject::of("rules[0]", Scope::Client, b"10.0.0.2");
        blocks.block(s, t0 + Duration::from_secs(30), t0);
        assert!(blocks.may_block(|| t0));
        assert_eq!(blocks.blocked(&s, t0), Some(30));
        assert_eq!(blocks.blocked(&other, t0), None);
        // An earlier end (a late message) never shortens it.
        blocks.block(s, t0 + Duration::from_secs(5), t0);
        assert_eq!(blocks.blocked(&s, t0 + Duration::from_secs(10)), Some(20));
        let end = t0 + Duration::from_secs(30);
        assert_eq!(blocks.blocked(&s, end), None);
        assert!(!blocks.may_block(|| end + Duration::from_millis(2)));
        blocks.prune(end);
        assert!(blocks.is_empty());
        // A block that already ended is none.
        blocks.block(other, t0, t0 + Duration::from_secs(1));
        assert!(blocks.is_empty());
    }

    #[test]
    fn messages_are_read_relative_to_arrival() {
        let s = Subject::of("fallback", Scope::User, b"alice");
        let payload = serde_json::to_string(&BlockMessage {
            subject: s.hex(),
            ms: 1500,
        })
        .unwrap();
        let now = crate::clock::now();
        assert_eq!(
            BlockMessage::read(&payload, now),
            Some((s, now + Duration::from_millis(1500)))
        );
        assert_eq!(
            BlockMessage::read("{\"subject\":\"x\",\"ms\":1}", now),
            None
        );
        assert_eq!(BlockMessage::read("not json", now), None);
    }

    #[test]
    fn a_flood_of_blocks_stays_bounded() {
        let blocks = ThrottleBlocks::default();
        let now = crate::clock::now();
        for i in 0..(CAPACITY + 10_000) {
            let s = Subject::of("r", Scope::Client, i.to_string().as_bytes());
            blocks.block(s, now + Duration::from_secs(60 + i as u64), now);
        }
        assert!(blocks.len() <= CAPACITY, "{}", blocks.len());
    }

    #[test]
    fn one_warning_per_outage() {
        let blocks = ThrottleBlocks::default();
        assert!(!blocks.recover(), "never degraded");
        assert!(blocks.degrade());
        assert!(!blocks.degrade());
        assert!(blocks.recover());
        assert!(!blocks.recover());
        assert!(blocks.degrade(), "a new outage warns again");
    }
}
