//! Hot reload: on SIGHUP, and when the config file or a file it reads
//! changes. Directories are watched rather than files, so atomic renames and
//! Kubernetes ConfigMap symlink swaps (`..data`) are seen.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::state::Shared;

/// Editors and ConfigMap updates write in several steps: wait for quiet.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// The file watcher and SIGHUP handler, set up before the server
/// announces itself: a change or signal right after start is not missed.
pub struct Reloader {
    shared: Arc<Shared>,
    hup: Hangup,
    rx: mpsc::UnboundedReceiver<()>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
}

impl Reloader {
    /// Watching is best effort: if it cannot be set up, SIGHUP and the admin
    /// `Reload` still work.
    pub fn prepare(shared: Arc<Shared>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<()>();
        let mut watcher = match notify::recommended_watcher(
            move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            },
        ) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config for changes; SIGHUP still reloads");
                None
            }
        };
        let mut watched = HashSet::new();
        if let Some(w) = watcher.as_mut() {
            watch_dirs(w, &shared, &mut watched);
        }
        Self {
            shared,
            hup: hangup_signal(),
            rx,
            watcher,
            watched,
        }
    }

    /// Runs until the process ends.
    pub async fn run(mut self) {
        // A change between loading the config and watching it: catch up.
        self.reload(false).await;
        loop {
            let force = tokio::select! {
                Some(()) = self.rx.recv() => false,
                () = recv_signal(&mut self.hup) => true,
            };
            if force {
                tracing::info!("SIGHUP: reloading config");
            } else {
                tokio::time::sleep(DEBOUNCE).await;
                while self.rx.try_recv().is_ok() {}
            }
            self.reload(force).await;
        }
    }

    async fn reload(&mut self, force: bool) {
        let s = self.shared.clone();
        // Loading reads files and parses hashes: off the async threads.
        let _ = tokio::task::spawn_blocking(move || s.reload(force)).await;
        if let Some(w) = self.watcher.as_mut() {
            watch_dirs(w, &self.shared, &mut self.watched);
        }
    }
}

fn watch_dirs(watcher: &mut impl Watcher, shared: &Shared, watched: &mut HashSet<PathBuf>) {
    let engine = shared.engine();
    let files = std::iter::once(shared.config_path.as_path())
        .chain(engine.files.iter().map(PathBuf::as_path));
    for file in files {
        let dir = parent_dir(file);
        if watched.contains(&dir) {
            continue;
        }
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(dir);
            }
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory"),
        }
    }
}

fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

async fn recv_signal(hup: &mut Hangup) {
    #[cfg(unix)]
    if let Some(signal) = hup.as_mut()
        && signal.recv().await.is_some()
    {
        return;
    }
    let _ = hup;
    std::future::pending::<()>().await;
}
