//! [`Store`]: the Redis client. One multiplexed connection (the client
//! crate's connection manager reconnects it) carries every call, each
//! under the configured timeout; a second connection holds the feed's
//! subscription: revocations on `{prefix}revocations`, throttle blocks on
//! `{prefix}throttle`. The feed is what says the store is up: it loads the
//! durable revocation and block keys after it subscribes (so nothing
//! published in between is missed), at start and after every reconnect,
//! and pings the store every second.
//!
//! Shared throttle counters (SPEC §13.3): each failed authentication is
//! counted under `{prefix}throttle:{subject}` by one Lua script (`INCR`,
//! the window as expiry on the first), which at the limit also writes the
//! durable block `{prefix}throttle_block:{subject}` for the rest of the
//! window and publishes it; the replica that counted blocks it at once,
//! the others when the message (or, after a reconnect, the key) arrives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::FromRedisValue;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

use super::blocks::{Subject, ThrottleBlocks};
use super::revocations::{Revocation, Revocations};
use crate::config::spec::StoreSpec;
use crate::metrics::StoreMetrics;

/// Why a store call failed. Carries no key, value or URL.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// No answer within `store.redis.timeout`.
    #[error("the store did not answer in time")]
    Timeout,
    /// No connection (refused, reset, not yet connected).
    #[error("the store is unreachable")]
    Unavailable,
    /// The store answered with an error (or an answer of the wrong shape).
    #[error("the store refused the call ({0})")]
    Refused(&'static str),
}

impl StoreError {
    pub(super) fn of(e: &redis::RedisError) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            Self::Unavailable
        } else {
            Self::Refused(match e.kind() {
                redis::ErrorKind::AuthenticationFailed => "authentication failed",
                redis::ErrorKind::UnexpectedReturnType | redis::ErrorKind::Parse => {
                    "unexpected answer"
                }
                _ => "server error",
            })
        }
    }

    /// The metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Refused(_) => "error",
        }
    }
}

/// Keys asked for per SCAN step while loading revocations and blocks.
const SCAN_COUNT: usize = 1000;

/// One failure more for each subject, atomically. KEYS: the counters,
/// then as many block keys; ARGV: the window (ms), the channel, then per
/// subject its limit and its hex. A counter without expiry (the first
/// failure of a window) gets the window; one at its limit blocks the
/// subject durably for what is left of the window and publishes the
/// block. Returns each subject's count and milliseconds left.
const COUNT_FAILURES: &str = r#"
local n = #KEYS / 2
local window = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  local count = redis.call('INCR', KEYS[i])
  local left = redis.call('PTTL', KEYS[i])
  if left < 1 then
    redis.call('PEXPIRE', KEYS[i], window)
    left = window
  end
  if count >= tonumber(ARGV[1 + 2 * i]) then
    redis.call('SET', KEYS[n + i], '1', 'PX', left)
    redis.call('PUBLISH', ARGV[2], '{"subject":"' .. ARGV[2 + 2 * i] .. '","ms":' .. left .. '}')
  end
  out[2 * i - 1] = count
  out[2 * i] = left
end
return out
"#;

static COUNT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(COUNT_FAILURES));

pub struct Store {
    pub(super) client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    pub(super) timeout: Duration,
    /// The feed is subscribed and the last ping answered.
    up: AtomicBool,
    /// The revocations were loaded at least once.
    loaded: AtomicBool,
    /// Woken whenever `up` or `loaded` change.
    changed: tokio::sync::Notify,
    pub(super) revocations: Arc<Revocations>,
    /// Where blocks of the shared throttle counters take effect here.
    pub(super) blocks: Arc<ThrottleBlocks>,
    /// SHA-256 of the URL: a reload tells whether it names this store.
    url_digest: [u8; 32],
    pub metrics: StoreMetrics,
}

/// The URL may hold a password: only the prefix is shown.
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.prefix)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store for `spec` (no connection yet: that happens in the
    /// background, retried until it works). Needs a Tokio runtime.
    pub fn start(
        spec: &StoreSpec,
        revocations: Arc<Revocations>,
        blocks: Arc<ThrottleBlocks>,
        metrics: StoreMetrics,
        max_life: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Result<Arc<Self>, StoreError> {
        let client = redis::Client::open(spec.url.expose())
            .map_err(|_| StoreError::Refused("invalid url"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(spec.timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(spec.timeout))
            .set_number_of_retries(1)
            .set_max_delay(super::feed::RECONNECT_MAX);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| StoreError::of(&e))?;
        let store = Arc::new(Self {
            client,
            conn,
            prefix: spec.key_prefix.clone(),
            timeout: spec.timeout,
            up: AtomicBool::new(false),
            loaded: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            revocations,
            blocks,
            url_digest: Sha256::digest(spec.url.expose().as_bytes()).into(),
            metrics,
        });
        tokio::spawn(super::feed::feed(
            Arc::downgrade(&store),
            Box::new(max_life),
        ));
        Ok(store)
    }

    /// Whether `spec` names this very store (a reload cannot switch
    /// stores: the connection and the revocation set outlive it).
    pub fn serves(&self, spec: &StoreSpec) -> bool {
        let digest: [u8; 32] = Sha256::digest(spec.url.expose().as_bytes()).into();
        digest == self.url_digest && spec.key_prefix == self.prefix && spec.timeout == self.timeout
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Whether the revocations were loaded at least once.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Waits until the revocations are loaded (at most `limit`).
    pub async fn wait_loaded(&self, limit: Duration) -> bool {
        let _ = tokio::time::timeout(limit, async {
            while !self.loaded() {
                let woken = self.changed.notified();
                if self.loaded() {
                    break;
                }
                woken.await;
            }
        })
        .await;
        self.loaded()
    }

    /// `prefix` + `kind` + `:` + `rest`.
    pub fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}{kind}:{rest}", self.prefix)
    }

    pub(super) fn channel(&self) -> String {
        format!("{}revocations", self.prefix)
    }

    /// Where throttle blocks are published ([`BlockMessage`] JSON).
    pub(super) fn throttle_channel(&self) -> String {
        format!("{}throttle", self.prefix)
    }

    /// Runs one command under the timeout, with its metric.
    pub async fn call<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.timed(op, async move { cmd.query_async::<T>(&mut conn).await })
            .await
    }

    /// Runs one Lua script under the timeout, with its metric.
    pub async fn eval<T: FromRedisValue>(
        &self,
        op: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.timed(
            op,
            async move { invocation.invoke_async::<T>(&mut conn).await },
        )
        .await
    }

    /// Runs an atomic pipeline under the timeout, with its metric.
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.timed(op, async move { pipe.query_async::<T>(&mut conn).await })
            .await
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let started = crate::clock::now();
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::of(&e)),
            Err(_) => Err(StoreError::Timeout),
        };
        let label = result.as_ref().map_or_else(StoreError::code, |_| "ok");
        self.metrics
            .record_call(op, label, started.elapsed().as_secs_f64());
        result
    }

    /// The revocation's durable key: one per thing revoked.
    fn revocation_key(&self, revocation: &Revocation) -> String {
        let digest = Sha256::digest(revocation.subject().as_bytes());
        self.key("rev", &hex::encode(&digest[..16]))
    }

    /// Stores a revocation (until it no longer matters) and publishes it
    /// to the other replicas, in one atomic step.
    pub async fn revoke(&self, revocation: &Revocation, max_life: u64) -> Result<(), StoreError> {
        let now = crate::clock::unix_secs();
        let ttl = revocation
            .relevant_until(max_life)
            .saturating_sub(now)
            .max(1);
        let json = serde_json::to_string(revocation).expect("plain enum serialises");
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.revocation_key(revocation))
            .arg(&json)
            .arg("EX")
            .arg(ttl)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.channel())
            .arg(&json)
            .ignore();
        self.pipeline::<()>("revoke", &pipe).await
    }

    /// One SCAN step over the keys matching `pattern`: the next cursor (0
    /// at the end) and the keys found.
    async fn scan(
        &self,
        op: &'static str,
        pattern: &str,
        cursor: u64,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        self.call(op, &scan).await
    }

    /// Every durable revocation, into the local set.
    pub(super) async fn load_revocations(&self, max_life: u64) -> Result<usize, StoreError> {
        let pattern = format!("{}rev:*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        let mut loaded = 0;
        let now = crate::clock::unix_secs();
        loop {
            let (next, keys) = self.scan("load_revocations", &pattern, cursor).await?;
            if !keys.is_empty() {
                let mut mget = redis::cmd("MGET");
                mget.arg(&keys);
                let values: Vec<Option<String>> = self.call("load_revocations", &mget).await?;
                for value in values.into_iter().flatten() {
                    if let Ok(r) = serde_json::from_str::<Revocation>(&value) {
                        self.revocations.add(&r, now, max_life);
                        loaded += 1;
                    }
                }
            }
            if next == 0 {
                return Ok(loaded);
            }
            cursor = next;
        }
    }

    /// Counts one failed authentication of each subject (with the limit
    /// it is blocked at) in the shared windows of `window`, and blocks here
    /// those that reached their limit (the script published them for the
    /// other replicas). A store that is down is not asked: the failure was
    /// counted locally, and that is what stands until it is back (one
    /// warning per outage, and the `store_throttle_local_only` metric).
    pub async fn count_failures(
        &self,
        subjects: &[(Subject, u32)],
        window: Duration,
    ) -> Result<(), StoreError> {
        if subjects.is_empty() {
            return Ok(());
        }
        let result = if self.is_up() {
            let mut invocation = COUNT_SCRIPT.prepare_invoke();
            for (subject, _) in subjects {
                invocation.key(self.key("throttle", &subject.hex()));
            }
            for (subject, _) in subjects {
                invocation.key(self.key("throttle_block", &subject.hex()));
            }
            invocation
                .arg(window.as_millis().max(1) as u64)
                .arg(self.throttle_channel());
            for (subject, max) in subjects {
                invocation.arg(*max).arg(subject.hex());
            }
            self.eval::<Vec<i64>>("throttle_count", &invocation).await
        } else {
            Err(StoreError::Unavailable)
        };
        let result = result.and_then(|counts| {
            if counts.len() == 2 * subjects.len() {
                Ok(counts)
            } else {
                Err(StoreError::Refused("unexpected answer"))
            }
        });
        let counts = match result {
            Ok(counts) => counts,
            Err(e) => {
                self.metrics.record_throttle_local_only();
                if self.blocks.degrade() {
                    tracing::warn!(error = %e, "store: failed logins are counted by this replica only until the store answers");
                }
                return Err(e);
            }
        };
        if self.blocks.recover() {
            tracing::info!("store: failed logins are counted across replicas again");
        }
        let now = crate::clock::now();
        for ((subject, max), pair) in subjects.iter().zip(counts.chunks_exact(2)) {
            let (count, left) = (pair[0].max(0) as u64, pair[1].max(0) as u64);
            if count >= u64::from(*max) {
                self.blocks
                    .block(*subject, now + Duration::from_millis(left), now);
            }
        }
        self.metrics.set_throttle_blocks(self.blocks.len());
        Ok(())
    }

    /// Every durable throttle block, into the local set.
    pub(super) async fn load_blocks(&self) -> Result<usize, StoreError> {
        let pattern = format!("{}throttle_block:*", glob_escape(&self.prefix));
        let prefix_len = self.key("throttle_block", "").len();
        let mut cursor: u64 = 0;
        let mut loaded = 0;
        loop {
            let (next, keys) = self.scan("load_throttle_blocks", &pattern, cursor).await?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("PTTL").arg(key);
                }
                let left: Vec<i64> = self.pipeline("load_throttle_blocks", &pipe).await?;
                let now = crate::clock::now();
                for (key, left) in keys.iter().zip(left) {
                    let subject = key.get(prefix_len..).and_then(Subject::from_hex);
                    if let (Some(subject), Ok(left @ 1..)) = (subject, u64::try_from(left)) {
                        self.blocks
                            .block(subject, now + Duration::from_millis(left), now);
                        loaded += 1;
                    }
                }
            }
            if next == 0 {
                return Ok(loaded);
            }
            cursor = next;
        }
    }

    pub(super) fn set_state(&self, up: bool) {
        let was = self.up.swap(up, Ordering::AcqRel);
        if up {
            self.loaded.store(true, Ordering::Release);
        }
        if was != up {
            if up {
                tracing::info!("store: connected; revocations loaded");
            } else {
                tracing::warn!(
                    "store: unreachable; cookie sessions use the revocations known so far, server-side sessions answer 503"
                );
            }
        }
        self.metrics.set_up(up);
        self.metrics.set_revocations(self.revocations.len());
        self.metrics.set_throttle_blocks(self.blocks.len());
        self.changed.notify_waiters();
    }

    pub(super) async fn ping(&self) -> bool {
        self.call::<String>("ping", &redis::cmd("PING"))
            .await
            .is_ok()
    }
}

/// `*`, `?`, `[` and `\` in a key prefix match only themselves.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
