//! Session refreshes in flight or just done, so concurrent requests with
//! one session cookie share one call to the provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A refresh outcome is reused for requests still carrying the old cookie.
const REFRESH_MEMORY: Duration = Duration::from_secs(60);

/// One refresh's outcome: (cookie value, Set-Cookie), or None if refused.
type RefreshCell = tokio::sync::OnceCell<Option<(String, String)>>;

/// Session refreshes in flight or just done, by session-cookie digest:
/// concurrent requests with one cookie share one refresh, so a provider
/// that rotates refresh tokens does not log the user out.
#[derive(Default)]
pub struct RefreshFlights {
    cells: Mutex<HashMap<[u8; 32], Flight>>,
}

/// Keyed by digests of session cookies: only their number is shown.
impl std::fmt::Debug for RefreshFlights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cells = self.cells.lock().map_or(0, |c| c.len());
        f.debug_struct("RefreshFlights")
            .field("cells", &cells)
            .finish()
    }
}

/// When a refresh started, and its outcome (once known).
type Flight = (Instant, Arc<RefreshCell>);

impl RefreshFlights {
    /// The outcome of `refresh` for this cookie: run once, shared by every
    /// request with it in the meantime and for a minute after.
    pub async fn run<F>(
        &self,
        cookie: &str,
        refresh: impl FnOnce() -> F,
    ) -> Option<(String, String)>
    where
        F: Future<Output = Option<(String, String)>>,
    {
        let key: [u8; 32] = Sha256::digest(cookie.as_bytes()).into();
        let cell = {
            let now = crate::clock::now();
            let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
            cells.retain(|_, (started, _)| now.duration_since(*started) < REFRESH_MEMORY);
            cells
                .entry(key)
                .or_insert_with(|| (now, Arc::new(RefreshCell::new())))
                .1
                .clone()
        };
        cell.get_or_init(refresh).await.clone()
    }
}
