//! The bounded pool that verifies password hashes (SPEC §13.2).
//!
//! argon2id and bcrypt cost milliseconds of CPU and, for argon2, megabytes
//! of memory per verification by design. Run on the threads that answer
//! checks, a flood of wrong passwords would starve every other route; so
//! they run here instead: on blocking threads, at most `concurrency` at a
//! time, behind a short queue. When both are full a check is not made to
//! wait: it answers 429 `busy` at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// How long a queued verification may wait for a slot before the check
/// gives up with 429 (well inside Envoy's ext_authz timeout).
const QUEUE_WAIT: Duration = Duration::from_millis(150);

/// Why a verification did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The pool and its queue are full.
    #[error("the password-hash pool is busy")]
    Busy,
}

#[derive(Debug)]
pub struct HashPool {
    /// Verifications running.
    running: Arc<Semaphore>,
    /// Verifications running or queued.
    admitted: Arc<Semaphore>,
    concurrency: usize,
}

impl HashPool {
    /// `concurrency` verifications at a time, as many again may queue.
    pub fn new(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        HashPool {
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency * 2)),
            concurrency,
        }
    }

    /// Half the cores, at least one.
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Runs `verify` on a blocking thread when a slot is free.
    pub async fn run<T: Send + 'static>(
        &self,
        verify: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashError::Busy)?;
        let running = tokio::time::timeout(QUEUE_WAIT, self.running.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        let result = tokio::task::spawn_blocking(move || {
            let _slots = (admitted, running);
            verify()
        })
        .await;
        // A panicking hash is a failed verification, never an allow.
        result.map_err(|_| HashError::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_concurrency_run_and_a_full_queue_is_busy_at_once() {
        let pool = Arc::new(HashPool::new(1));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        let mut busy = 0;
        for t in tasks {
            if t.await.unwrap() == Err(HashError::Busy) {
                busy += 1;
            }
        }
        assert_eq!(peak.load(Ordering::SeqCst), 1, "one at a time");
        assert!(busy >= 3, "a queue of 1 behind 1 running: {busy} busy of 6");
    }
}
