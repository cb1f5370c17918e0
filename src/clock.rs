//! The clock: the one place that reads the time (`.clippy.toml` disallows
//! `Instant::now` and `SystemTime::now` everywhere else).
//!
//! Expiry, rate windows and caches all ask here, so a unit test moves time
//! with `advance` instead of sleeping. The skew is per thread and exists
//! only in the crate's own test build; release builds read the OS clock
//! directly.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A monotonic reading, for deadlines, windows and cache ages.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now() + skew()
}

/// Wall-clock time, for what is shown to people (`stale since …`).
#[allow(clippy::disallowed_methods)]
pub fn system_now() -> SystemTime {
    SystemTime::now() + skew()
}

/// The time since the Unix epoch, as tokens and cookies state it.
pub fn unix_now() -> Duration {
    system_now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Whole seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    unix_now().as_secs()
}

#[cfg(test)]
thread_local! {
    static SKEW: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

#[cfg(test)]
fn skew() -> Duration {
    SKEW.with(std::cell::Cell::get)
}

#[cfg(not(test))]
#[inline(always)]
const fn skew() -> Duration {
    Duration::ZERO
}

/// Moves this thread's clock forward (unit tests only).
#[cfg(test)]
pub(crate) fn advance(by: Duration) {
    SKEW.with(|s| s.set(s.get() + by));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_both_clocks_on_this_thread_only() {
        let (mono, unix) = (now(), unix_now());
        advance(Duration::from_secs(90));
        assert!(now() >= mono + Duration::from_secs(90));
        assert!(unix_now() >= unix + Duration::from_secs(90));
        let other = std::thread::spawn(unix_now).join().unwrap();
        assert!(
            other < unix + Duration::from_secs(90),
            "other threads keep the OS clock"
        );
    }
}
