//! [`Store`]: the Redis client. One multiplexed connection (the client
//! crate's connection manager reconnects it) carries every call, each
//! under the configured timeout; a second connection holds the revocation
//! feed's subscription. The feed is what says the store is up: it loads
//! the durable revocation keys after it subscribes (so nothing published
//! in between is missed), at start and after every reconnect, and pings
//! the store every second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::FromRedisValue;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use tokio_stream::StreamExt as _;

use super::revocations::{Revocation, Revocations};
use crate::config::spec::StoreSpec;
use crate::metrics::StoreMetrics;

/// Why a store call failed. Carries no key, value or URL.
#[derive(Debug, thiserror::Error)]
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
    fn of(e: &redis::RedisError) -> Self {
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

/// Between attempts of the revocation feed to reconnect.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How often the feed pings the store while subscribed.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Keys asked for per SCAN step while loading revocations.
const SCAN_COUNT: usize = 1000;

pub struct Store {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    /// The feed is subscribed and the last ping answered.
    up: AtomicBool,
    /// The revocations were loaded at least once.
    loaded: AtomicBool,
    /// Woken whenever `up` or `loaded` change.
    changed: tokio::sync::Notify,
    revocations: Arc<Revocations>,
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
        metrics: StoreMetrics,
        max_life: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Result<Arc<Self>, StoreError> {
        let client = redis::Client::open(spec.url.expose())
            .map_err(|_| StoreError::Refused("invalid url"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(spec.timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(spec.timeout))
            .set_number_of_retries(1)
            .set_max_delay(RECONNECT_MAX);
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
            url_digest: Sha256::digest(spec.url.expose().as_bytes()).into(),
            metrics,
        });
        tokio::spawn(feed(Arc::downgrade(&store), Box::new(max_life)));
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

    fn channel(&self) -> String {
        format!("{}revocations", self.prefix)
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

    /// Every durable revocation, into the local set.
    async fn load_revocations(&self, max_life: u64) -> Result<usize, StoreError> {
        let pattern = format!("{}rev:*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        let mut loaded = 0;
        let now = crate::clock::unix_secs();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, keys): (u64, Vec<String>) = self.call("load_revocations", &scan).await?;
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

    fn set_state(&self, up: bool) {
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
        self.changed.notify_waiters();
    }

    async fn ping(&self) -> bool {
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

/// Reads the longest session life of the config serving now.
type MaxLife = Box<dyn Fn() -> u64 + Send + Sync>;

/// The revocation feed, for as long as the store exists: subscribe, load,
/// then apply what is published and ping; on any failure, mark the store
/// down and start over.
async fn feed(store: std::sync::Weak<Store>, max_life: MaxLife) {
    let mut delay = RECONNECT_MIN;
    loop {
        let Some(s) = store.upgrade() else { return };
        match subscribed(&s, &*max_life).await {
            Ok(()) => delay = RECONNECT_MIN,
            Err(e) => tracing::debug!(error = %e, "store: revocation feed not connected"),
        }
        s.set_state(false);
        drop(s);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

/// One subscription: returns when the connection is lost.
async fn subscribed(
    s: &Store,
    max_life: &(dyn Fn() -> u64 + Send + Sync),
) -> Result<(), StoreError> {
    let connect = s.client.get_async_pubsub();
    let mut pubsub = tokio::time::timeout(s.timeout * 4, connect)
        .await
        .map_err(|_| StoreError::Timeout)?
        .map_err(|e| StoreError::of(&e))?;
    tokio::time::timeout(s.timeout * 4, pubsub.subscribe(s.channel()))
        .await
        .map_err(|_| StoreError::Timeout)?
        .map_err(|e| StoreError::of(&e))?;
    let loaded = s.load_revocations(max_life()).await?;
    s.metrics.record_connect();
    tracing::debug!(loaded, "store: revocations loaded");
    s.set_state(true);
    let mut messages = pubsub.into_on_message();
    let mut ticker = tokio::time::interval(PING_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Ok(()) };
                let Ok(payload) = message.get_payload::<String>() else { continue };
                match serde_json::from_str::<Revocation>(&payload) {
                    Ok(r) => {
                        s.revocations.add(&r, crate::clock::unix_secs(), max_life());
                        s.metrics.set_revocations(s.revocations.len());
                    }
                    Err(_) => tracing::warn!("store: ignored a malformed revocation message"),
                }
            }
            _ = ticker.tick() => {
                if !s.ping().await {
                    return Err(StoreError::Unavailable);
                }
                s.revocations.prune(crate::clock::unix_secs(), max_life());
                s.metrics.set_revocations(s.revocations.len());
            }
        }
    }
}
