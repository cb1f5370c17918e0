//! Server-side session records being read from the store, by cookie value:
//! concurrent checks of one session whose cached record is missing or
//! stale share one read instead of each asking Redis (a busy session would
//! otherwise send one read per check in flight every time its record goes
//! stale).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::StoreError;

/// One read's outcome: whether the record exists (and is now cached).
type LoadCell = tokio::sync::OnceCell<Result<bool, StoreError>>;

#[derive(Default)]
pub struct RecordLoads {
    cells: Mutex<HashMap<Box<str>, Arc<LoadCell>>>,
}

/// Keyed by tickets (credentials): only their number is shown.
impl std::fmt::Debug for RecordLoads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.cells.lock().map_or(0, |c| c.len());
        f.debug_struct("RecordLoads")
            .field("in_flight", &n)
            .finish()
    }
}

impl RecordLoads {
    /// The outcome of `load` for `value`: run once for all the callers
    /// that ask while it runs; forgotten once it is done (the record is
    /// then in the cache, or there is none).
    pub async fn run<F>(&self, value: &str, load: impl FnOnce() -> F) -> Result<bool, StoreError>
    where
        F: Future<Output = Result<bool, StoreError>>,
    {
        let cell = self
            .lock()
            .entry(value.into())
            .or_insert_with(|| Arc::new(LoadCell::new()))
            .clone();
        let outcome = cell.get_or_init(load).await.clone();
        let mut cells = self.lock();
        if cells.get(value).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            cells.remove(value);
        }
        outcome
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<LoadCell>>> {
        self.cells.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_loads_of_one_value_share_one_read() {
        let loads = Arc::new(RecordLoads::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (loads, reads) = (loads.clone(), reads.clone());
            set.spawn(async move {
                loads
                    .run("t1.ticket", || async {
                        reads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Ok(true)
                    })
                    .await
            });
        }
        while let Some(outcome) = set.join_next().await {
            assert!(outcome.unwrap().unwrap());
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(loads.lock().len(), 0, "forgotten once done");
        // A later load reads again; another value has its own read.
        let again = loads
            .run("t1.ticket", || async { Err(StoreError::Timeout) })
            .await;
        assert!(matches!(again, Err(StoreError::Timeout)));
        assert!(loads.run("t1.other", || async { Ok(false) }).await.is_ok());
    }
}
