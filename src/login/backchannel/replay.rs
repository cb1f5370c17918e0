//! A logout token's `jti` is accepted once: in the store when there is
//! one (every replica), else in a bounded map of this process.

use super::*;

/// Identifies one (issuer, jti): hashed, so keys have a fixed size and
/// hold nothing the provider sent.
pub(super) struct ReplayKey(pub(super) [u8; 32]);

impl ReplayKey {
    pub(super) fn new(iss: &str, jti: &str) -> Self {
        let mut h = Sha256::new();
        h.update(iss.as_bytes());
        // A separator: ("ab", "c") and ("a", "bc") are different tokens.
        h.update([0]);
        h.update(jti.as_bytes());
        Self(h.finalize().into())
    }

    pub(super) fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Records the `jti` for `ttl` seconds; false when it was already there.
/// With a store every replica sees it (`SET NX`); without, this one does.
pub(super) async fn remember(
    store: Option<&Store>,
    key: &ReplayKey,
    ttl: u64,
    now: u64,
) -> Result<bool, Rejection> {
    let Some(store) = store else {
        return local_jtis().record(key.0, now + ttl, now);
    };
    let mut set = redis::cmd("SET");
    set.arg(store.key("jti", &key.hex()))
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(ttl);
    let answer: Option<String> = store
        .call("backchannel_jti", &set)
        .await
        .map_err(Rejection::Store)?;
    Ok(answer.is_some())
}

/// Undoes [`remember`] (best effort: the store may be what failed).
pub(super) async fn forget(store: Option<&Store>, key: &ReplayKey) {
    let Some(store) = store else {
        local_jtis().forget(&key.0);
        return;
    };
    let mut del = redis::cmd("DEL");
    del.arg(store.key("jti", &key.hex()));
    if let Err(e) = store.call::<i64>("backchannel_jti", &del).await {
        tracing::warn!(error = %e, "store: a failed back-channel logout's jti stays recorded");
    }
}

/// The `jti`s this replica saw (no store), until each may no longer come.
pub(super) struct SeenJtis {
    until: HashMap<[u8; 32], u64>,
    capacity: usize,
}

impl SeenJtis {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            until: HashMap::new(),
            capacity,
        }
    }

    /// Records `key` until `until`; false when it is there and current.
    pub(super) fn record(
        &mut self,
        key: [u8; 32],
        until: u64,
        now: u64,
    ) -> Result<bool, Rejection> {
        if self.until.get(&key).is_some_and(|u| *u > now) {
            return Ok(false);
        }
        if self.until.len() >= self.capacity {
            self.until.retain(|_, u| *u > now);
        }
        if self.until.len() >= self.capacity {
            return Err(Rejection::ReplayCacheFull);
        }
        self.until.insert(key, until);
        Ok(true)
    }

    pub(super) fn forget(&mut self, key: &[u8; 32]) {
        self.until.remove(key);
    }
}

/// Process-wide: it outlives config reloads, as replays would.
pub(super) fn local_jtis() -> std::sync::MutexGuard<'static, SeenJtis> {
    static SEEN: LazyLock<Mutex<SeenJtis>> =
        LazyLock::new(|| Mutex::new(SeenJtis::new(MAX_LOCAL_JTIS)));
    SEEN.lock().unwrap_or_else(|e| e.into_inner())
}
