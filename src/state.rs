//! What the running server shares between the check service, the HTTP
//! sidecar, the admin API and the reloader.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::engine::Engine;
use crate::metrics::Metrics;

pub struct Shared {
    engine: ArcSwap<Engine>,
    generation: AtomicU64,
    pub config_path: PathBuf,
    pub metrics: Metrics,
    /// Woken after every successful reload.
    pub reloaded: tokio::sync::Notify,
    /// The client for identity-provider calls.
    pub http: crate::auth::providers::ProviderHttp,
    /// Fingerprint of the inputs of the config serving; serialises reloads.
    inputs: Mutex<[u8; 32]>,
    /// Set while the last reload failed: the previous config serves.
    stale: Mutex<Option<Stale>>,
}

/// A failed reload, as operators are told on `/readyz` and `ConfigSummary`.
#[derive(Clone, Debug)]
pub struct Stale {
    /// The first failure since the last good load.
    pub since: std::time::SystemTime,
    /// The first error of the latest failure.
    pub error: String,
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stale since {}: {}",
            httpdate::fmt_http_date(self.since),
            self.error
        )
    }
}

/// The outcome of a reload attempt.
#[derive(Debug)]
pub enum Reloaded {
    /// The new config serves; its generation.
    Swapped(u64),
    /// Nothing changed on disk.
    Unchanged(u64),
}

impl Shared {
    pub fn new(engine: Engine, config_path: PathBuf) -> Arc<Self> {
        let inputs = fingerprint(&config_path, &engine.files);
        Arc::new(Self {
            engine: ArcSwap::from_pointee(engine),
            generation: AtomicU64::new(1),
            config_path,
            metrics: Metrics::new(),
            http: crate::auth::providers::ProviderHttp::default(),
            reloaded: tokio::sync::Notify::new(),
            inputs: Mutex::new(inputs),
            stale: Mutex::new(None),
        })
    }

    /// The engine serving now, owned (to hold across an await).
    pub fn engine_arc(&self) -> Arc<Engine> {
        self.engine.load_full()
    }

    /// The engine serving now; a check keeps the one it loaded to the end.
    pub fn engine(&self) -> arc_swap::Guard<Arc<Engine>> {
        self.engine.load()
    }

    /// Why the config serving is not the one on disk, if it is not.
    pub fn stale(&self) -> Option<Stale> {
        self.stale.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Loads and validates the config file; swaps it in only if valid.
    /// With `force` false, a config whose files did not change is left alone.
    pub fn reload(&self, force: bool) -> Result<Reloaded, ConfigError> {
        let mut inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.engine();
        let before = fingerprint(&self.config_path, &current.files);
        if !force && before == *inputs {
            return Ok(Reloaded::Unchanged(self.generation()));
        }
        match Engine::load(&self.config_path) {
            Ok(engine) => {
                *inputs = fingerprint(&self.config_path, &engine.files);
                for w in &engine.warnings {
                    tracing::warn!(location = %w.loc, "{}", w.message);
                }
                // The old engine is freed here unless a check still holds it.
                self.engine.store(Arc::new(engine));
                *self.stale.lock().unwrap_or_else(|e| e.into_inner()) = None;
                crate::memory::release_free_heap();
                let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                self.metrics.record_reload(true, generation);
                self.reloaded.notify_waiters();
                tracing::info!(generation, file = %self.config_path.display(), "config reloaded");
                Ok(Reloaded::Swapped(generation))
            }
            Err(e) => {
                // Remember the broken inputs so they are not retried until they change.
                *inputs = before;
                let error = match &e {
                    ConfigError::Invalid { errors, .. } => errors
                        .first()
                        .map_or_else(|| e.to_string(), ToString::to_string),
                    other => other.to_string(),
                };
                let mut stale = self.stale.lock().unwrap_or_else(|e| e.into_inner());
                let since = stale
                    .as_ref()
                    .map_or_else(crate::clock::system_now, |s| s.since);
                *stale = Some(Stale { since, error });
                self.metrics.record_reload(false, self.generation());
                log_reload_error(&e);
                Err(e)
            }
        }
    }
}

/// Keeps OpenID metadata and JWKS of the serving config fresh: at start
/// (a provider down at start is retried with backoff, without waiting for a
/// request), periodically, and right after each reload.
pub async fn keep_fresh(shared: Arc<Shared>) {
    const PERIOD: std::time::Duration = std::time::Duration::from_secs(300);
    loop {
        let engine = shared.engine_arc();
        let mut next = PERIOD;
        for fetcher in engine.fetchers() {
            fetcher.run(&shared.http).await;
            if let crate::auth::Fetcher::Discovery(d) = &fetcher {
                let due = d.next_attempt_in().await;
                next = next.min(due.max(std::time::Duration::from_millis(200)));
            }
        }
        drop(engine);
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = shared.reloaded.notified() => {}
        }
    }
}

fn log_reload_error(e: &ConfigError) {
    match e {
        ConfigError::Invalid { file, errors } => {
            for err in errors {
                tracing::error!(file = %file, location = %err.loc, "config reload refused: {}", err.message);
            }
        }
        other => tracing::error!("config reload refused: {other}"),
    }
    tracing::warn!("the previous config keeps serving");
}

/// SHA-256 over the config file and every file it reads (missing files
/// hash as absent), so a reload can tell whether anything changed.
fn fingerprint(config: &std::path::Path, files: &[PathBuf]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for path in std::iter::once(&config.to_path_buf()).chain(files) {
        hasher.update(path.as_os_str().as_encoded_bytes());
        match std::fs::read(path) {
            Ok(bytes) => {
                hasher.update([1]);
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(&bytes);
            }
            Err(_) => hasher.update([0]),
        }
    }
    hasher.finalize().into()
}
