//! One refresh per session across replicas. Providers that rotate refresh
//! tokens let each be redeemed once: two replicas redeeming the same one
//! log the user out. The replica that takes the lease (`SET NX PX` with a
//! random token) redeems, renewing the lease while the provider works (a
//! slow redeem never outlives it), publishes the outcome under a result
//! key and releases the lease with a compare-and-delete; the others wait
//! for that outcome and reuse it. A replica that dies mid-refresh stops
//! renewing: its lease expires and another takes over. The outcome (a new
//! session cookie) is sealed with a key derived from the old cookie, so
//! the store can neither read nor forge it.

use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Store, StoreError};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
/// session cookie value, or empty for a server-side session whose ticket
/// stays — or `None` (the provider refused: the session ends).
pub type Outcome = Option<String>;

/// The key an outcome is sealed with: derived from the session version,
/// which only holders of the old cookie know (the store sees its digest
/// alone), so the store can neither read a new session cookie nor forge
/// an outcome.
struct OutcomeKey(Zeroizing<[u8; 32]>);

impl OutcomeKey {
    fn of(version: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"ingress-authz refresh outcome v1\0");
        h.update(version.as_bytes());
        Self(Zeroizing::new(h.finalize().into()))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.0))
    }

    fn seal(&self, outcome: &Outcome) -> String {
        let plain = Zeroizing::new(match outcome {
            Some(value) => format!("+{value}"),
            None => "-".to_string(),
        });
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(&Nonce::from(nonce), plain.as_bytes())
            .expect("AES-GCM encryption of a small message cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// None: not sealed by this key (tampered, or another version's).
    fn open(&self, stored: &str) -> Option<Outcome> {
        let raw = B64.decode(stored).ok()?;
        let (nonce, sealed) = raw.split_at_checked(12)?;
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        let plain = Zeroizing::new(self.cipher().decrypt(&Nonce::from(nonce), sealed).ok()?);
        match plain.split_first()? {
            (b'+', value) => Some(Some(String::from_utf8(value.to_vec()).ok()?)),
            (b'-', []) => Some(None),
            _ => None,
        }
    }
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
    let key = OutcomeKey::of(version);
    let lease_key = store.key("lease", &digest);
    let result_key = store.key("refreshed", &digest);
    let started = crate::clock::now();
    loop {
        let done: Option<String> = store
            .call("refresh_outcome", redis::cmd("GET").arg(&result_key))
            .await?;
        if let Some(done) = done {
            return key
                .open(&done)
                .ok_or(StoreError::Refused("a refresh outcome that does not open"));
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
            return run_leased(store, &key, &lease_key, &result_key, &token, run).await;
        }
        if started.elapsed() > WAIT_LIMIT {
            return Err(StoreError::Timeout);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn run_leased<F, Fut>(
    store: &Arc<Store>,
    key: &OutcomeKey,
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
        .arg(key.seal(&outcome))
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
    fn outcomes_open_only_under_their_version() {
        let key = OutcomeKey::of("old-cookie-value");
        for outcome in [None, Some(String::new()), Some("sealed-value".to_string())] {
            let stored = key.seal(&outcome);
            assert!(!stored.contains("sealed-value"));
            assert_eq!(key.open(&stored), Some(outcome.clone()));
            assert_eq!(OutcomeKey::of("another-cookie").open(&stored), None);
        }
        let mut tampered = B64.decode(key.seal(&None)).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(key.open(&B64.encode(tampered)), None);
        for junk in ["", "-", "+value", "!!"] {
            assert_eq!(key.open(junk), None, "{junk}");
        }
    }
}
