//! What the running server shares between the check service, the HTTP
//! sidecar, the admin API and the reloader.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::engine::Engine;
use crate::envoy::xds::Snapshot;
use crate::metrics::Metrics;

pub struct Shared {
    engine: ArcSwap<Engine>,
    /// The engine before the last reload that changed Envoy's resources,
    /// and when it was replaced: checks of requests Envoy still routes by
    /// that generation's routes are decided by its rules (for a while).
    /// Lock-free: every check of a generated config looks here.
    previous: arc_swap::ArcSwapOption<Previous>,
    /// The Envoy resources of the serving config, for the ADS streams:
    /// generated when the first stream opens, then on every reload.
    xds: tokio::sync::watch::Sender<Option<Arc<Snapshot>>>,
    /// SHA-256 of the config text the serving engine was built from: the
    /// first ADS stream reads the file again and builds from it only if
    /// it is still that text (no copy of a large config kept for it).
    text_digest: Mutex<[u8; 32]>,
    /// Set by the first ADS stream: from then on reloads build snapshots.
    xds_wanted: std::sync::atomic::AtomicBool,
    /// ADS streams that take routes, by id: the route version each last
    /// applied. The previous engine is kept only while one of them has not
    /// applied the current version.
    route_streams: Mutex<std::collections::HashMap<u64, String>>,
    next_stream: AtomicU64,
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
    /// The revocations and the store: every engine built shares them.
    pub runtime: Arc<crate::store::Runtime>,
}

/// The engine a reload replaced, while Envoy may still route by its
/// resources.
pub struct Previous {
    engine: Arc<Engine>,
    since: std::time::Instant,
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
    /// `text`: the config file's text the engine was built from.
    pub fn new(
        engine: Engine,
        config_path: PathBuf,
        text: &str,
        runtime: Arc<crate::store::Runtime>,
    ) -> Arc<Self> {
        let inputs = fingerprint(&config_path, &engine.files);
        runtime.set_max_life(engine.session_max_life());
        Arc::new(Self {
            text_digest: Mutex::new(Sha256::digest(text.as_bytes()).into()),
            xds_wanted: std::sync::atomic::AtomicBool::new(false),
            route_streams: Mutex::new(std::collections::HashMap::new()),
            next_stream: AtomicU64::new(1),
            previous: arc_swap::ArcSwapOption::empty(),
            xds: tokio::sync::watch::Sender::new(None),
            engine: ArcSwap::from_pointee(engine),
            generation: AtomicU64::new(1),
            config_path,
            metrics: Metrics::new(),
            http: crate::auth::providers::ProviderHttp::default(),
            reloaded: tokio::sync::Notify::new(),
            inputs: Mutex::new(inputs),
            stale: Mutex::new(None),
            runtime,
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

    /// The engine whose Envoy resources have `version`: the current one,
    /// or for [`PREVIOUS_GRACE`] after a reload the one before. None for
    /// any other version (the caller decides with the current engine and
    /// its route cross-check).
    pub fn engine_for(&self, version: &str) -> Option<Arc<Engine>> {
        let current = self.engine.load();
        if current.envoy_version.get().is_some_and(|v| v == version) {
            return Some(Arc::clone(&current));
        }
        let previous = self.previous.load();
        previous
            .as_ref()
            .filter(|p| {
                p.engine.envoy_version.get().is_some_and(|v| v == version)
                    && p.since.elapsed() < PREVIOUS_GRACE
            })
            .map(|p| Arc::clone(&p.engine))
    }

    /// Builds the first snapshot from the file, if it still holds the text
    /// the serving engine was built from. Serialised with reloads.
    fn snapshot_from_disk(&self) -> bool {
        let _inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        if self.xds.borrow().is_some() {
            return true;
        }
        let Ok(text) = std::fs::read_to_string(&self.config_path) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if digest != *self.text_digest.lock().unwrap_or_else(|e| e.into_inner()) {
            return false;
        }
        let engine = self.engine.load_full();
        let snapshot = envoy_snapshot(&engine, &text, None);
        self.xds.send_replace(Some(Arc::new(snapshot)));
        true
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, String>> {
        self.route_streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An ADS stream subscribed to routes: its id.
    pub fn ads_route_stream(&self) -> u64 {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        self.streams().insert(id, String::new());
        id
    }

    /// Stream `id` applied routes of `version`. Once every stream runs the
    /// current version, the previous engine is let go.
    pub fn ads_routes_applied(&self, id: u64, version: &str) {
        let mut streams = self.streams();
        if let Some(v) = streams.get_mut(&id) {
            version.clone_into(v);
        }
        self.retire_previous_if_applied(&streams);
    }

    /// Stream `id` ended.
    pub fn ads_stream_closed(&self, id: u64) {
        let mut streams = self.streams();
        streams.remove(&id);
        self.retire_previous_if_applied(&streams);
    }

    fn retire_previous_if_applied(&self, streams: &std::collections::HashMap<u64, String>) {
        let engine = self.engine.load();
        let current = engine.envoy_version.get();
        if streams.values().all(|v| Some(v) == current) {
            self.previous.store(None);
        }
    }

    /// A receiver of the Envoy resources, current and future; the first
    /// call generates them (a config that no Envoy takes over ADS costs
    /// nothing here).
    pub fn xds_snapshots(&self) -> tokio::sync::watch::Receiver<Option<Arc<Snapshot>>> {
        self.xds_wanted.store(true, Ordering::Release);
        if self.xds.borrow().is_none() && !self.snapshot_from_disk() {
            // The file changed since the serving config was loaded: load
            // it (a reload builds the snapshot now that one is wanted).
            if let Err(e) = self.reload(true) {
                tracing::warn!(error = %e, "xds: no Envoy resources while the config does not load");
            }
        }
        self.xds.subscribe()
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
        match Engine::load_with_text(&self.config_path, &self.runtime) {
            Ok((engine, text)) => {
                let old = self.xds.borrow().clone();
                let snapshot = old
                    .as_ref()
                    .map(|o| envoy_snapshot(&engine, &text, Some(o)));
                *inputs = fingerprint(&self.config_path, &engine.files);
                self.runtime.set_max_life(engine.session_max_life());
                match (&engine.settings.store, self.runtime.store()) {
                    (Some(new), Some(running)) if !running.serves(new) => {
                        tracing::warn!(location = %new.loc, "store: a changed authz.store takes effect at restart; the running store stays");
                    }
                    (Some(new), None) => {
                        tracing::warn!(location = %new.loc, "store: authz.store takes effect at restart; until then there is none (server-side sessions cannot be saved)");
                    }
                    (None, Some(_)) => {
                        tracing::warn!(
                            "store: authz.store was removed; the running store stays until restart"
                        );
                    }
                    _ => {}
                }
                for w in &engine.warnings {
                    tracing::warn!(location = %w.loc, "{}", w.message);
                }
                let changed = match (&snapshot, &old) {
                    (Some(new), Some(old)) => new.version != old.version,
                    (Some(_), None) => true,
                    _ => false,
                };
                *self.text_digest.lock().unwrap_or_else(|e| e.into_inner()) =
                    Sha256::digest(text.as_bytes()).into();
                // The old engine is freed here unless a check still holds
                // it, or Envoy may still route by its resources. The new
                // engine serves before the new routes are pushed: a request
                // routed by either generation finds its rules.
                let replaced = self.engine.swap(Arc::new(engine));
                if changed {
                    // Only an Envoy on ADS moves to the new routes; a static
                    // one never does, and its old-version requests get the
                    // new rules (and their route cross-check) at once.
                    let any_ads = !self.streams().is_empty();
                    self.previous.store(any_ads.then(|| {
                        Arc::new(Previous {
                            engine: replaced,
                            since: crate::clock::now(),
                        })
                    }));
                    self.xds.send_replace(snapshot.map(Arc::new));
                }
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

/// How long, at most, the rules of the previous Envoy resources keep
/// deciding the requests Envoy routes by them: until every ADS stream has
/// applied the new routes (milliseconds), never longer than this (an Envoy
/// that NACKed them). A request still labelled with the old version after
/// that is decided by the current rules, whose route cross-check refuses
/// it if its route moved.
pub const PREVIOUS_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// The Envoy resources of `engine` (whose version it records), as the ADS
/// snapshot that replaces `previous`.
fn envoy_snapshot(engine: &Engine, text: &str, previous: Option<&Snapshot>) -> Snapshot {
    // The engine was built from this very text, so it parses; were it not
    // to, no route would have a target and each would answer 501.
    let root = crate::config::yaml::parse(text).unwrap_or_else(|_| crate::config::yaml::Node {
        value: crate::config::yaml::Value::Map(Vec::new()),
        mark: Default::default(),
    });
    let resources = crate::envoy::resources(engine, &root);
    // Set once per engine: a reload builds a new engine.
    let _ = engine.envoy_version.set(resources.version.clone());
    let listen = crate::envoy::listen_address(&engine.settings);
    Snapshot::new(&resources, &listen, previous)
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
