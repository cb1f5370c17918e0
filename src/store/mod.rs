//! State shared by every replica (SPEC §13.3): the optional Redis store
//! and what outlives a config reload beside it.
//!
//! * [`Runtime`] — held by the running server and by every engine it
//!   builds: the local [`Revocations`] set every check reads, the store
//!   connection once `serve` attached one, and the longest session life
//!   (which bounds how long a revocation matters), and the throttle
//!   blocks every engine's throttle consults.
//! * [`client`] — [`Store`]: the Redis client (multiplexed, reconnecting,
//!   a timeout on every call), the revocation feed (durable keys loaded at
//!   start and after every reconnect, pub/sub for speed) and its health,
//!   and the shared failure counters of the login throttle.
//! * [`blocks`] — the local set of throttle blocks the shared counters
//!   closed (here or on another replica).
//! * [`lease`] — one refresh per session across replicas.
//! * [`records`] — server-side session records behind ticket cookies.
//! * [`revocations`] — the local revocation set.
//!
//! Nothing on the hot path of a cookie-session check waits on Redis: the
//! revocation set is local, and so are the records a replica has read.
//! Nor does the throttle gate: only a failed authentication, already a
//! denial, waits for its shared count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

pub mod blocks;
pub mod client;
mod feed;
pub mod lease;
pub mod records;
pub mod revocations;

pub use blocks::ThrottleBlocks;
pub use client::{Store, StoreError};
pub use revocations::{Revocation, Revocations};

/// Where a revocation took effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Stored and published: every replica enforces it (now, or when it
    /// next loads the set).
    EveryReplica,
    /// No store is configured: this replica only, until it restarts.
    ThisReplica,
}

/// What a running server shares with every engine it builds.
#[derive(Debug)]
pub struct Runtime {
    pub revocations: Arc<Revocations>,
    /// Subjects the shared throttle counters blocked: they outlive a
    /// reload, as the counts in the store do.
    pub throttle_blocks: Arc<ThrottleBlocks>,
    store: OnceLock<Arc<Store>>,
    /// The longest a session lives (`session.max_age`, seconds).
    max_life: AtomicU64,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            revocations: Arc::default(),
            throttle_blocks: Arc::default(),
            store: OnceLock::new(),
            max_life: AtomicU64::new(24 * 3600),
        }
    }
}

impl Runtime {
    /// The store, once `serve` attached it.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.get()
    }

    /// Attaches the store (once; `serve` does it before it binds).
    pub fn attach(&self, store: Arc<Store>) {
        let _ = self.store.set(store);
    }

    pub fn max_life(&self) -> u64 {
        self.max_life.load(Ordering::Relaxed)
    }

    /// The config's session lifetime (at start and after every reload).
    pub fn set_max_life(&self, secs: u64) {
        self.max_life.store(secs.max(1), Ordering::Relaxed);
    }

    /// Whether sessions can be checked against revocations now: always
    /// without a store; with one, once its revocations were loaded (a
    /// replica that never saw them cannot know who was logged out).
    pub fn revocations_known(&self) -> bool {
        self.store().is_none_or(|s| s.loaded())
    }

    /// Revokes here at once, then in the store for every replica. An
    /// error means this replica enforces it but the others may not.
    pub async fn revoke(&self, revocation: Revocation) -> Result<Reach, StoreError> {
        let now = crate::clock::unix_secs();
        self.revocations.add(&revocation, now, self.max_life());
        match self.store() {
            Some(store) => {
                store.revoke(&revocation, self.max_life()).await?;
                Ok(Reach::EveryReplica)
            }
            None => Ok(Reach::ThisReplica),
        }
    }
}
