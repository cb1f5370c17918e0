//! Failed-authentication throttling (SPEC §13.2): per (route, client
//! address) and, for basic, per (route, username). A key with
//! `max_failures` failures inside one window is refused — with 429 and
//! `Retry-After`, a correct credential too, or guessing would go on —
//! until its window ends. Counting is per route, so an attacker on one
//! route never throttles another. Only failures are counted.
//!
//! Memory is bounded: each table holds at most [`CAPACITY`] keys; when it
//! is full, expired windows go first, then the oldest half.
//!
//! With a store (`authz.store.redis`, SPEC §13.3) the counts are shared
//! too. Every failure is still counted here at once, so a replica alone
//! never lets more through than without a store; [`Throttle::share`] then
//! counts it in the store under the route's label (the same on every
//! replica), and a subject whose shared count reaches the limit is blocked
//! on every replica until the shared window ends (the store's
//! [`ThrottleBlocks`]). The gate itself stays local: [`Throttle::blocked`]
//! reads the local tables and the local copy of the shared blocks, never
//! the store. A store that is down leaves the local counts.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::decision::RouteId;
use crate::store::Runtime;
use crate::store::blocks::{Scope, Subject, ThrottleBlocks};

/// Keys kept per table (about 64 bytes each).
pub const CAPACITY: usize = 100_000;

/// How long a failed check waits for its count in the store before it
/// answers anyway (the count goes on, under the store's own timeout): with
/// a password hash (at most 300 ms) well inside Envoy's 0.5 s budget.
pub const SHARE_WAIT: Duration = Duration::from_millis(100);

/// The settings (`authz.login_throttle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleSettings {
    pub enabled: bool,
    pub max_failures: u32,
    pub window: Duration,
    /// None: no per-user limit (it lets anyone lock an account out).
    pub max_failures_per_user: Option<u32>,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_failures: 10,
            window: Duration::from_secs(60),
            max_failures_per_user: Some(100),
        }
    }
}

/// Failures of one key in its current window.
#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

/// One table of windows.
#[derive(Debug)]
struct Table<K> {
    windows: Mutex<HashMap<K, Window>>,
    max: u32,
    epoch: Instant,
    /// Until when (ms after `epoch`) some key may be blocked: while nothing
    /// is, a check costs one atomic load here and takes no lock.
    blocked_until: AtomicU64,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(max: u32, epoch: Instant) -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
            max: max.max(1),
            epoch,
            blocked_until: AtomicU64::new(0),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Seconds until `key` may try again, if it is blocked now.
    fn blocked(&self, key: &K, window: Duration, now: Instant) -> Option<u64> {
        if self.blocked_until.load(Ordering::Relaxed) <= self.millis(now) {
            return None;
        }
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.get(key)?;
        let ends = w.started + window;
        (w.failures >= self.max && ends > now).then(|| seconds_until(ends, now))
    }

    fn fail(&self, key: K, window: Duration, now: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= CAPACITY && !windows.contains_key(&key) {
            evict(&mut windows, window, now);
        }
        let w = windows.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if w.started + window <= now {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        if w.failures >= self.max {
            let ends = self.millis(w.started + window) + 1;
            self.blocked_until.fetch_max(ends, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.windows.lock().unwrap().len()
    }
}

/// Expired windows go; if that frees too little, the oldest half.
fn evict<K: Hash + Eq + Clone>(windows: &mut HashMap<K, Window>, window: Duration, now: Instant) {
    windows.retain(|_, w| w.started + window > now);
    if windows.len() >= CAPACITY / 2 {
        let mut starts: Vec<Instant> = windows.values().map(|w| w.started).collect();
        let middle = starts.len() / 2;
        let (_, median, _) = starts.select_nth_unstable(middle);
        let median = *median;
        windows.retain(|_, w| w.started > median);
    }
}

fn seconds_until(at: Instant, now: Instant) -> u64 {
    let left = at.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

/// Keys are 64-bit keyed hashes of (route, client) and (route, user):
/// nothing to allocate per check, and a key per client of a few bytes.
#[derive(Debug)]
pub struct Throttle {
    settings: ThrottleSettings,
    hasher: std::collections::hash_map::RandomState,
    by_client: Table<u64>,
    by_user: Option<Table<u64>>,
    /// The running server's: counts shared through its store, if any.
    shared: Option<Shared>,
}

/// What counting across replicas needs.
#[derive(Debug)]
struct Shared {
    /// The store, once attached.
    runtime: Arc<Runtime>,
    /// The runtime's shared blocks (one pointer less on the gate).
    blocks: Arc<ThrottleBlocks>,
    /// Each route's label, by [`RouteId`]: what the store counts under.
    labels: Box<[String]>,
}

impl Shared {
    fn blocks(&self) -> &ThrottleBlocks {
        &self.blocks
    }
}

impl Throttle {
    /// A throttle of its own: counts and blocks on this replica only.
    pub fn new(settings: ThrottleSettings) -> Self {
        let epoch = crate::clock::now();
        Self {
            by_client: Table::new(settings.max_failures, epoch),
            by_user: settings
                .max_failures_per_user
                .map(|max| Table::new(max, epoch)),
            hasher: Default::default(),
            settings,
            shared: None,
        }
    }

    /// A throttle of the running server: it also obeys `runtime`'s shared
    /// blocks and, once a store is attached, counts there. `labels` are the
    /// routes' labels by [`RouteId`].
    pub fn shared(settings: ThrottleSettings, runtime: Arc<Runtime>, labels: Vec<String>) -> Self {
        Self {
            shared: Some(Shared {
                blocks: runtime.throttle_blocks.clone(),
                runtime,
                labels: labels.into(),
            }),
            ..Self::new(settings)
        }
    }

    /// False when no key of any route can be blocked now (one atomic load
    /// per table): the common case costs nothing more.
    pub fn may_block(&self) -> bool {
        if !self.settings.enabled {
            return false;
        }
        let until = |t: &Table<u64>| t.blocked_until.load(Ordering::Relaxed);
        let latest = until(&self.by_client).max(self.by_user.as_ref().map_or(0, until));
        // Nothing was ever blocked: no clock read either.
        (latest != 0 && latest > self.by_client.millis(crate::clock::now()))
            || self
                .shared
                .as_ref()
                .is_some_and(|s| s.blocks().may_block(crate::clock::now))
    }

    fn key(&self, route: RouteId, who: &[u8]) -> u64 {
        self.hasher.hash_one((route.0, who))
    }

    /// Seconds to wait, when this client (or this username) is blocked on
    /// this route. `client` is None only for a CheckRequest without a
    /// source address (Envoy always sends one).
    pub fn blocked(
        &self,
        route: RouteId,
        client: Option<&str>,
        user: Option<&[u8]>,
    ) -> Option<u64> {
        if !self.settings.enabled {
            return None;
        }
        let now = crate::clock::now();
        let window = self.settings.window;
        let by_client = client.and_then(|c| {
            self.by_client
                .blocked(&self.key(route, c.as_bytes()), window, now)
        });
        let by_user = match (&self.by_user, user) {
            (Some(table), Some(user)) => table.blocked(&self.key(route, user), window, now),
            _ => None,
        };
        by_client
            .max(by_user)
            .max(self.blocked_shared(route, client, user, now))
    }

    /// The shared blocks' part of [`Self::blocked`]: local, and nothing
    /// hashed while no subject is blocked.
    fn blocked_shared(
        &self,
        route: RouteId,
        client: Option<&str>,
        user: Option<&[u8]>,
        now: Instant,
    ) -> Option<u64> {
        let shared = self.shared.as_ref()?;
        if !shared.blocks().may_block(|| now) {
            return None;
        }
        self.subjects(route, client, user)
            .filter_map(|(subject, _)| shared.blocks().blocked(&subject, now))
            .max()
    }

    /// What a failure of `client` / `user` on `route` counts under across
    /// replicas, with the limit of each.
    fn subjects<'a>(
        &'a self,
        route: RouteId,
        client: Option<&'a str>,
        user: Option<&'a [u8]>,
    ) -> impl Iterator<Item = (Subject, u32)> + 'a {
        let label = self
            .shared
            .as_ref()
            .and_then(|s| s.labels.get(route.0 as usize));
        let by_client = client.map(|c| (Scope::Client, c.as_bytes(), self.by_client.max));
        let by_user = self
            .by_user
            .as_ref()
            .zip(user)
            .map(|(table, user)| (Scope::User, user, table.max));
        label.into_iter().flat_map(move |label| {
            [by_client, by_user]
                .into_iter()
                .flatten()
                .map(move |(scope, who, max)| (Subject::of(label, scope, who), max))
        })
    }

    /// Counts one failed authentication, already counted here by
    /// [`Self::fail`], in the store too; at the limit every replica blocks
    /// it. Waits for that at most [`SHARE_WAIT`] (the check is a denial
    /// anyway): normally the block is in place here before the answer
    /// goes out. Without a store, or with one that is down, nothing more
    /// happens.
    pub async fn share(&self, route: RouteId, client: Option<&str>, user: Option<&[u8]>) {
        if !self.settings.enabled {
            return;
        }
        let Some(store) = self.shared.as_ref().and_then(|s| s.runtime.store()) else {
            return;
        };
        let subjects: Vec<(Subject, u32)> = self.subjects(route, client, user).collect();
        if subjects.is_empty() {
            return;
        }
        let (store, window) = (store.clone(), self.settings.window);
        // Errors are counted and logged by the store; the local count stands.
        let count = tokio::spawn(async move { store.count_failures(&subjects, window).await });
        let _ = tokio::time::timeout(SHARE_WAIT, count).await;
    }

    /// Counts one failed authentication.
    pub fn fail(&self, route: RouteId, client: Option<&str>, user: Option<&[u8]>) {
        if !self.settings.enabled {
            return;
        }
        let now = crate::clock::now();
        let window = self.settings.window;
        if let Some(client) = client {
            self.by_client
                .fail(self.key(route, client.as_bytes()), window, now);
        }
        if let (Some(table), Some(user)) = (&self.by_user, user) {
            table.fail(self.key(route, user), window, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(max: u32, per_user: Option<u32>) -> Throttle {
        Throttle::new(ThrottleSettings {
            enabled: true,
            max_failures: max,
            window: Duration::from_secs(60),
            max_failures_per_user: per_user,
        })
    }

    #[test]
    fn blocks_after_max_failures_per_route_and_client() {
        let t = throttle(3, None);
        let (a, b) = (RouteId(0), RouteId(1));
        for _ in 0..2 {
            t.fail(a, Some("10.0.0.1"), None);
        }
        assert_eq!(t.blocked(a, Some("10.0.0.1"), None), None, "2 of 3");
        t.fail(a, Some("10.0.0.1"), None);
        let wait = t.blocked(a, Some("10.0.0.1"), None).expect("blocked");
        assert!((59..=60).contains(&wait), "{wait}");
        assert_eq!(t.blocked(b, Some("10.0.0.1"), None), None, "another route");
        assert_eq!(t.blocked(a, Some("10.0.0.2"), None), None, "another client");
    }

    #[test]
    fn per_user_limit_counts_across_addresses_and_can_be_off() {
        let t = throttle(100, Some(3));
        for i in 0..3 {
            t.fail(RouteId(0), Some(&format!("10.0.0.{i}")), Some(b"alice"));
        }
        assert!(
            t.blocked(RouteId(0), Some("10.9.9.9"), Some(b"alice"))
                .is_some()
        );
        assert!(
            t.blocked(RouteId(0), Some("10.9.9.9"), Some(b"bob"))
                .is_none()
        );
        let off = throttle(100, None);
        for i in 0..10 {
            off.fail(RouteId(0), Some(&format!("10.0.0.{i}")), Some(b"alice"));
        }
        assert!(
            off.blocked(RouteId(0), Some("10.9.9.9"), Some(b"alice"))
                .is_none()
        );
    }

    #[test]
    fn a_window_that_ended_starts_over() {
        let table = Table::<u32>::new(2, crate::clock::now());
        let window = Duration::from_secs(60);
        let t0 = crate::clock::now();
        table.fail(1, window, t0);
        table.fail(1, window, t0);
        assert!(
            table
                .blocked(&1, window, t0 + Duration::from_secs(59))
                .is_some()
        );
        assert!(table.blocked(&1, window, t0 + window).is_none());
        table.fail(1, window, t0 + window);
        assert!(
            table.blocked(&1, window, t0 + window).is_none(),
            "one failure in the new window"
        );
    }

    fn shared(max: u32, per_user: Option<u32>) -> (Throttle, Arc<Runtime>) {
        let runtime = Arc::new(Runtime::default());
        let t = Throttle::shared(
            ThrottleSettings {
                enabled: true,
                max_failures: max,
                window: Duration::from_secs(60),
                max_failures_per_user: per_user,
            },
            runtime.clone(),
            vec!["rules[0]".into(), "rules[1]".into()],
        );
        (t, runtime)
    }

    #[test]
    fn shared_blocks_close_the_gate_for_their_route_and_subject_only() {
        let (t, runtime) = shared(10, Some(100));
        assert!(!t.may_block(), "nothing blocked anywhere");
        let now = crate::clock::now();
        // What another replica published: 10.0.0.1 on rules[0] for 30 s.
        runtime.throttle_blocks.block(
            Subject::of("rules[0]", Scope::Client, b"10.0.0.1"),
            now + Duration::from_secs(30),
            now,
        );
        assert!(t.may_block());
        let wait = t
            .blocked(RouteId(0), Some("10.0.0.1"), None)
            .expect("blocked");
        assert!((29..=30).contains(&wait), "{wait}");
        assert_eq!(
            t.blocked(RouteId(1), Some("10.0.0.1"), None),
            None,
            "another route"
        );
        assert_eq!(
            t.blocked(RouteId(0), Some("10.0.0.2"), None),
            None,
            "another client"
        );
        // A username blocked across replicas, from any address.
        runtime.throttle_blocks.block(
            Subject::of("rules[1]", Scope::User, b"alice"),
            now + Duration::from_secs(10),
            now,
        );
        assert!(
            t.blocked(RouteId(1), Some("10.9.9.9"), Some(b"alice"))
                .is_some()
        );
        assert!(
            t.blocked(RouteId(1), Some("10.9.9.9"), Some(b"bob"))
                .is_none()
        );
        // The longer of a local and a shared block.
        for _ in 0..10 {
            t.fail(RouteId(0), Some("10.0.0.1"), None);
        }
        let wait = t
            .blocked(RouteId(0), Some("10.0.0.1"), None)
            .expect("blocked");
        assert!((59..=60).contains(&wait), "{wait}");
        // A throttle that is off ignores them too.
        let off = Throttle::shared(
            ThrottleSettings {
                enabled: false,
                ..Default::default()
            },
            runtime,
            vec!["rules[0]".into()],
        );
        assert!(!off.may_block());
        assert_eq!(off.blocked(RouteId(0), Some("10.0.0.1"), None), None);
    }

    #[test]
    fn subjects_carry_each_limit_and_skip_the_per_user_one_when_off() {
        let (t, _) = shared(6, Some(40));
        let subjects: Vec<_> = t
            .subjects(RouteId(1), Some("10.0.0.1"), Some(b"alice"))
            .collect();
        assert_eq!(
            subjects,
            [
                (Subject::of("rules[1]", Scope::Client, b"10.0.0.1"), 6),
                (Subject::of("rules[1]", Scope::User, b"alice"), 40),
            ]
        );
        let (off, _) = shared(6, None);
        assert_eq!(
            off.subjects(RouteId(1), Some("10.0.0.1"), Some(b"alice"))
                .count(),
            1
        );
        assert_eq!(
            off.subjects(RouteId(7), Some("10.0.0.1"), None).count(),
            0,
            "no such route"
        );
        assert_eq!(
            throttle(6, None)
                .subjects(RouteId(0), Some("10.0.0.1"), None)
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn without_a_store_sharing_is_a_no_op() {
        let (t, runtime) = shared(1, None);
        t.fail(RouteId(0), Some("10.0.0.1"), None);
        t.share(RouteId(0), Some("10.0.0.1"), None).await;
        assert!(runtime.throttle_blocks.is_empty());
        assert!(
            t.blocked(RouteId(0), Some("10.0.0.1"), None).is_some(),
            "local"
        );
    }

    #[test]
    fn a_flood_of_distinct_clients_stays_bounded() {
        let t = throttle(10, None);
        for i in 0..(CAPACITY + 50_000) {
            t.fail(RouteId(0), Some(&format!("c{i}")), None);
        }
        assert!(t.by_client.len() <= CAPACITY, "{}", t.by_client.len());
    }
}
