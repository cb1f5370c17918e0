//! The bounded pool that verifies password hashes (SPEC §13.2).
//!
//! argon2id and bcrypt cost milliseconds of CPU and, for argon2, megabytes
//! of memory per verification by design. Run on the threads that answer
//! checks, a flood of wrong passwords would starve every other route; so
//! they run here instead: on `concurrency` threads of their own, at the
//! lowest scheduling priority (nice 19), behind a queue as long again.
//! Other checks therefore keep the CPU they need however long the flood
//! lasts; a full pool answers 429 `busy` at once, a check waits at most
//! [`MAX_QUEUE_WAIT`] for its hash to start and [`MAX_WAIT`] in all — so it
//! answers before Envoy's ext_authz timeout, never a 5xx.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};

/// The longest a verification waits in the queue for a thread: past it the
/// check answers 429 and the verification is dropped unrun. Once running,
/// a verification is waited for up to [`MAX_WAIT`].
pub const MAX_QUEUE_WAIT: Duration = Duration::from_millis(150);

/// The longest a check waits for its verification, well inside the shipped
/// Envoy's 0.5 s ext_authz timeout (the rest is for a loaded machine's
/// scheduling and the round trip): past it the answer is 429, and the
/// verification runs on — a success is cached, so the retry passes.
pub const MAX_WAIT: Duration = Duration::from_millis(300);

/// Why a verification did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The pool and its queue are full, or the verification took too long.
    #[error("the password-hash pool is busy")]
    Busy,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug)]
pub struct HashPool {
    /// Verifications running or queued.
    admitted: Arc<Semaphore>,
    /// The threads' queue, made with the threads at the first verification
    /// (a config without hashed passwords starts none); dropping it ends them.
    jobs: std::sync::OnceLock<Mutex<mpsc::Sender<Job>>>,
    concurrency: usize,
}

impl HashPool {
    /// `concurrency` threads; as many verifications again may queue.
    pub fn new(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            admitted: Arc::new(Semaphore::new(concurrency * 2)),
            jobs: std::sync::OnceLock::new(),
            concurrency,
        }
    }

    fn start(concurrency: usize) -> Mutex<mpsc::Sender<Job>> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..concurrency {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    // Best effort: without it the pool is still bounded.
                    let _ = thread_priority::ThreadPriority::Min.set_for_current();
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hash thread");
            }
        }
        Mutex::new(tx)
    }

    /// Half the cores, at least one.
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }

    /// Runs `verify` on the pool when a slot is free.
    pub async fn run<T: Send + 'static>(
        &self,
        verify: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashError::Busy)?;
        let (started, on_start) = oneshot::channel::<()>();
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _slot = admitted;
            // The check gave up waiting: nobody wants this hash any more.
            if started.send(()).is_err() {
                return;
            }
            let _ = done.send(verify());
        });
        self.jobs
            .get_or_init(|| Self::start(self.concurrency))
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| HashError::Busy)?;
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        match tokio::time::timeout(MAX_QUEUE_WAIT, on_start).await {
            Ok(Ok(())) => {}
            _ => return Err(HashError::Busy),
        }
        match tokio::time::timeout_at(deadline, result).await {
            Ok(Ok(value)) => Ok(value),
            // Too slow (it runs on and caches a success), or it panicked:
            // never an allow.
            _ => Err(HashError::Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool's threads yield the CPU to the threads that answer checks.
    #[cfg(target_os = "linux")]
    #[test]
    fn hash_threads_run_at_the_lowest_priority() {
        let pool = HashPool::new(1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert_eq!(
            runtime.block_on(pool.run(|| 7)),
            Ok(7),
            "threads start at the first hash"
        );
        let nice = (0..50).find_map(|_| {
            std::thread::sleep(Duration::from_millis(10));
            std::fs::read_dir("/proc/self/task")
                .ok()?
                .flatten()
                .find_map(|task| {
                    let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
                    if comm.trim() != "password-hash-0" {
                        return None;
                    }
                    let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
                    // Fields after the parenthesised name; nice is field 19.
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(16)?.parse::<i32>().ok()
                })
        });
        assert_eq!(nice, Some(19));
        drop(pool);
    }
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
