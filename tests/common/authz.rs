//! The ingress-authz binary under test, run as a child process on ephemeral
//! ports.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};
use serde_json::Value;
use tempfile::TempDir;
use tonic::transport::Channel;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Authz {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
    admin: Option<SocketAddr>,
    config_path: PathBuf,
    stderr_path: PathBuf,
    /// Secrets of every config this process was given: never in its logs.
    secrets: std::sync::Mutex<Vec<String>>,
    _dir: TempDir,
}

/// The suite sends many wrong credentials from one address on purpose;
/// failed-login throttling (on by default) is tested by configs that set
/// `login_throttle` themselves, and every other config gets a limit its
/// test never reaches.
pub fn untrottled(config_yaml: &str) -> String {
    const LIMIT: &str = "  login_throttle: {max_failures: 1000000, per_user: false}\n";
    if config_yaml.contains("login_throttle") {
        return config_yaml.to_owned();
    }
    if let Some(rest) = config_yaml.strip_prefix("authz:\n") {
        return format!("authz:\n{LIMIT}{rest}");
    }
    if let Some(at) = config_yaml.find("\nauthz:\n") {
        let split = at + "\nauthz:\n".len();
        return format!("{}{LIMIT}{}", &config_yaml[..split], &config_yaml[split..]);
    }
    if config_yaml.contains("authz:") {
        // Another form (flow style): left as the test wrote it.
        return config_yaml.to_owned();
    }
    // At the end, so that line numbers in the test's assertions hold.
    let sep = if config_yaml.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    format!("{config_yaml}{sep}authz:\n{LIMIT}")
}

impl Authz {
    /// Writes `config_yaml` to a file and runs `ingress-authz serve` on it,
    /// returning once it has printed its `listening` line.
    pub async fn start(config_yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, untrottled(config_yaml)).expect("write config");
        Self::spawn(config, dir).await
    }

    /// Runs `ingress-authz serve` on an existing config file.
    pub async fn start_at(config: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn(config.to_owned(), dir).await
    }

    /// Runs `ingress-authz serve` on an existing config file, with its gRPC
    /// port (checks and ADS) at `grpc`.
    pub async fn start_at_grpc(config: &Path, grpc: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn_on(config.to_owned(), dir, &grpc.to_string()).await
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Runs `ingress-authz serve` on `config_yaml` with `RUST_LOG=rust_log`
    /// and its stderr (its logs) going to `stderr` instead of a file: a
    /// pipe the test never reads, `/dev/full`, ... ([`Authz::logs`] then
    /// has nothing).
    pub async fn start_with_stderr(config_yaml: &str, stderr: Stdio, rust_log: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, untrottled(config_yaml)).expect("write config");
        Self::spawn_with(config, dir, "127.0.0.1:0", Some((stderr, rust_log))).await
    }

    /// The read end of the process's stderr, when it was started with
    /// `Stdio::piped()` (once).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    async fn spawn(config: PathBuf, dir: TempDir) -> Self {
        Self::spawn_on(config, dir, "127.0.0.1:0").await
    }

    async fn spawn_on(config: PathBuf, dir: TempDir, grpc: &str) -> Self {
        Self::spawn_with(config, dir, grpc, None).await
    }

    /// `logs`: where stderr goes and `RUST_LOG`; by default a file in
    /// `dir` and `RUST_LOG` as the test run has it (else debug).
    async fn spawn_with(
        config: PathBuf,
        dir: TempDir,
        grpc: &str,
        logs: Option<(Stdio, &str)>,
    ) -> Self {
        let stderr_path = dir.path().join("ingress-authz.log");
        let (stderr, rust_log) = match logs {
            Some((stderr, rust_log)) => (stderr, rust_log.to_owned()),
            None => (
                File::create(&stderr_path).expect("create log file").into(),
                std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into()),
            ),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_ingress-authz"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--grpc-addr", grpc, "--http-addr", "127.0.0.1:0"])
            .args(["--admin-addr", "127.0.0.1:0"])
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn ingress-authz");
        let line = first_stdout_line(&mut child).await;
        let Some(listening) = line.as_deref().and_then(parse_listening) else {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "ingress-authz did not print `listening grpc=.. http=..` \
                 (got {line:?}, exit {status:?}); stderr:\n{}",
                read_log(&stderr_path)
            );
        };
        let secrets =
            super::secrets::secrets_in(&std::fs::read_to_string(&config).unwrap_or_default());
        Self {
            child,
            grpc: listening.grpc,
            http: listening.http,
            admin: listening.admin,
            config_path: config,
            stderr_path,
            secrets: std::sync::Mutex::new(secrets),
            _dir: dir,
        }
    }

    /// The process id (for its RSS and open files in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// A client of the ext_authz gRPC API, as Envoy is one.
    /// Sends one CheckRequest on a new connection; its answer.
    pub async fn check(&self, request: CheckRequest) -> CheckResponse {
        self.grpc_client()
            .await
            .check(request)
            .await
            .expect("a CheckResponse")
            .into_inner()
    }

    pub async fn grpc_client(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("connect gRPC")
    }

    /// GET `path` on the HTTP sidecar: (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        // reqwest is built without a bundled TLS provider (see ProviderHttp).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let response = reqwest::get(format!("http://{}{path}", self.http))
            .await
            .expect("HTTP sidecar answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// The admin gRPC API (`admin=` in the listening line).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("ingress-authz printed no admin= address")
    }

    /// Replaces the config file atomically (written beside it, then renamed
    /// over it), so a file watcher never reads a half-written config.
    pub fn write_config(&self, config_yaml: &str) {
        // A sub-directory: the staging file's own events stay out of the
        // watched directory.
        let staging = self.config_path.with_file_name("staging");
        std::fs::create_dir_all(&staging).expect("create staging dir");
        let staged = staging.join("config.yaml");
        std::fs::write(&staged, untrottled(config_yaml)).expect("write staged config");
        self.secrets
            .lock()
            .unwrap()
            .extend(super::secrets::secrets_in(config_yaml));
        std::fs::rename(&staged, &self.config_path).expect("replace config");
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's stderr (its logs), for debugging a failed test.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    pub fn logs(&self) -> String {
        read_log(&self.stderr_path)
    }

    /// The audit events (JSON lines of the `audit` target) so far.
    pub fn audit_events(&self) -> Vec<Value> {
        audit_events(&self.logs())
    }
}

/// The audit events (JSON lines of the `audit` target) in `logs`.
pub fn audit_events(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect()
}

/// What Envoy asks for a GET of `path` on `host` over `scheme` with
/// `headers`.
pub fn check_request(
    host: &str,
    path: &str,
    scheme: &str,
    headers: &[(&str, &str)],
) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    host: host.into(),
                    path: path.into(),
                    method: "GET".into(),
                    scheme: scheme.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The HTTP status Envoy would apply: 200 for OK, else the denied status.
pub fn check_status(response: &CheckResponse) -> u16 {
    match &response.http_response {
        Some(HttpResponse::OkResponse(_)) => 200,
        Some(HttpResponse::DeniedResponse(d)) => d.status.as_ref().map_or(0, |s| s.code as u16),
        other => panic!("unexpected response {other:?}"),
    }
}

impl Drop for Authz {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let secrets = self.secrets.lock().unwrap();
            super::secrets::assert_no_secret(&self.logs(), &secrets, &self.stderr_path);
        }
    }
}

/// Reads the first stdout line on a thread (std pipes block), which then keeps
/// draining stdout so the child never blocks on a full pipe.
async fn first_stdout_line(child: &mut Child) -> Option<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next().and_then(Result::ok));
        lines.for_each(drop);
    });
    tokio::time::timeout(STARTUP_TIMEOUT, rx)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
}

struct Listening {
    grpc: SocketAddr,
    http: SocketAddr,
    admin: Option<SocketAddr>,
}

/// `listening grpc=127.0.0.1:PORT http=127.0.0.1:PORT [admin=127.0.0.1:PORT]`
fn parse_listening(line: &str) -> Option<Listening> {
    let mut words = line.split_whitespace();
    if words.next()? != "listening" {
        return None;
    }
    let addr = |word: Option<&str>, key: &str| word?.strip_prefix(key)?.parse().ok();
    Some(Listening {
        grpc: addr(words.next(), "grpc=")?,
        http: addr(words.next(), "http=")?,
        admin: addr(words.next(), "admin="),
    })
}

pub(crate) fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read {path:?}: {e}>"))
}
