//! One refresh per session across replicas. Providers that rotate refresh
//! tokens let each be redeemed once: two replicas redeeming the same one
//! log the user out. The replica that takes the lease (`SET NX PX` with a
//! random token) redeems, renewing the lease while the provider works (a
//! slow redeem never outlives it), publishes the outcome under a result
//! key and releases the lease with a compare-and-delete; the others wait
//! for that outcome and reuse it. A replica that dies mid-refresh stops
//! renewing: its lease expires and another takes over.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Store, StoreError};

/// The lease's life; renewed every third of it while the redeem runs.
const LEASE: Duration = Duration::from_secs(3);
/// How long an outcome is kept for requests still carrying the old session.
const OUTCOME_KEPT: Duration = Duration::from_secs(60);
/// How often a waiting replica looks for the outcome.
const POLL: Duration = Duration::from_millis(15);
/// How long a replica waits for another's refresh in all.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

const RENEW: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A refresh's outcome as every replica sees it: `Some(value)` — the new
/// session cookie value, sealed (the store cannot read it), or empty for a
/// server-side session whose ticket stays — or `None` (the provider
/// refused: the session ends).
pub type Outcome = Option<String>;

fn encode(outcome: &Outcome) -> String {
    match outcome {
        Some(value) => format!("+{value}"),
        None => "-".to_string(),
    }
}

fn decode(stored: &str) -> Outcome {
    stored.strip_prefix('+').map(str::to_string)
}

/// Runs `refresh` on exactly one replica for the session version
/// `version` (an old cookie value, or a record's id and renewal time) and
/// returns its outcome (`shared` of what it returned) on every replica
/// that asks. An error: the store could not coordinate; `refresh` is then
/// still there unless this replica ran it (the caller decides whether to
/// refresh alone).
pub async fn refresh_once<F, Fut, T>(
    store: &Arc<Store>,
    version: &str,
    refresh: &mut Option<F>,
    shared: impl FnOnce(T) -> Outcome,
) -> Result<Outcome, StoreError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let digest = hex::encode(&Sha256::digest(version.as_bytes())[..16]);
    let lease_key = store.key("lease", &digest);
    let result_key = store.key("refreshed", &digest);
    let started = crate::clock::now();
    loop {
        let done: Option<String> = store
            .call("refresh_outcome", redis::cmd("GET").arg(&result_key))
            .await?;
        if let Some(done) = done {
            return Ok(decode(&done));
        }
        let token = hex::encode(rand::random::<[u8; 16]>());
        let mut take = redis::cmd("SET");
        take.arg(&lease_key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64);
        let taken: Option<String> = store.call("lease", &take).await?;
        if taken.is_some() {
            let Some(run) = refresh.take() else {
                return Err(StoreError::Refused("refresh already run"));
            };
            let run = || async move { shared(run().await) };
            return run_leased(store, &lease_key, &result_key, &token, run).await;
        }
        if started.elapsed() > WAIT_LIMIT {
            return Err(StoreError::Timeout);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn run_leased<F, Fut>(
    store: &Arc<Store>,
    lease_key: &str,
    result_key: &str,
    token: &str,
    refresh: F,
) -> Result<Outcome, StoreError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let renewer = {
        let (store, key, token) = (store.clone(), lease_key.to_string(), token.to_string());
        tokio::spawn(async move {
            let script = redis::Script::new(RENEW);
            let mut every = tokio::time::interval(LEASE / 3);
            every.tick().await;
            loop {
                every.tick().await;
                let mut renew = script.key(&key);
                renew.arg(&token).arg(LEASE.as_millis() as u64);
                if !matches!(store.eval::<i64>("lease_renew", &renew).await, Ok(1)) {
                    tracing::warn!("store: a refresh lease could not be renewed");
                }
            }
        })
    };
    let outcome = refresh().await;
    renewer.abort();
    let mut publish = redis::cmd("SET");
    publish
        .arg(result_key)
        .arg(encode(&outcome))
        .arg("PX")
        .arg(OUTCOME_KEPT.as_millis() as u64);
    let published = store.call::<()>("refresh_outcome", &publish).await;
    let script = redis::Script::new(RELEASE);
    let mut release = script.key(lease_key);
    release.arg(token);
    let _ = store.eval::<i64>("lease_release", &release).await;
    // The outcome is ours either way; unpublished, the others time out
    // waiting and end up refreshing themselves.
    if let Err(e) = published {
        tracing::warn!(error = %e, "store: a refresh outcome could not be shared");
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        for outcome in [None, Some(String::new()), Some("sealed-value".to_string())] {
            assert_eq!(decode(&encode(&outcome)), outcome);
        }
    }
}
