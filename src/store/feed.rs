//! The store's feed, for as long as the store exists: it subscribes to the
//! revocation and throttle channels, then loads the durable revocations
//! and throttle blocks (so nothing published in between is missed), marks
//! the store up, applies what is published and pings every second; on any
//! failure it marks the store down and starts over with backoff. It is
//! what says the store is up.

use std::time::Duration;

use tokio_stream::StreamExt as _;

use super::blocks::BlockMessage;
use super::client::{Store, StoreError};
use super::revocations::Revocation;

/// Between attempts of the revocation feed to reconnect.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
pub(super) const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How often the feed pings the store while subscribed.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Reads the longest session life of the config serving now.
pub(super) type MaxLife = Box<dyn Fn() -> u64 + Send + Sync>;

/// The revocation feed, for as long as the store exists: subscribe, load,
/// then apply what is published and ping; on any failure, mark the store
/// down and start over.
pub(super) async fn feed(store: std::sync::Weak<Store>, max_life: MaxLife) {
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
    let (revocations, throttle) = (s.channel(), s.throttle_channel());
    tokio::time::timeout(
        s.timeout * 4,
        pubsub.subscribe(&[revocations.as_str(), throttle.as_str()]),
    )
    .await
    .map_err(|_| StoreError::Timeout)?
    .map_err(|e| StoreError::of(&e))?;
    let loaded = s.load_revocations(max_life()).await?;
    let blocks = s.load_blocks().await?;
    s.metrics.record_connect();
    tracing::debug!(
        loaded,
        blocks,
        "store: revocations and throttle blocks loaded"
    );
    s.set_state(true);
    let mut messages = pubsub.into_on_message();
    let mut ticker = tokio::time::interval(PING_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Ok(()) };
                let Ok(payload) = message.get_payload::<String>() else { continue };
                if message.get_channel_name() == throttle {
                    let now = crate::clock::now();
                    match BlockMessage::read(&payload, now) {
                        Some((subject, until)) => {
                            s.blocks.block(subject, until, now);
                            s.metrics.set_throttle_blocks(s.blocks.len());
                        }
                        None => tracing::warn!("store: ignored a malformed throttle message"),
                    }
                    continue;
                }
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
                s.blocks.prune(crate::clock::now());
                s.metrics.set_throttle_blocks(s.blocks.len());
            }
        }
    }
}
