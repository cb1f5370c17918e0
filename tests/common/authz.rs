//! The ingress-authz binary under test, run as a child process on ephemeral
//! ports.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Authz {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
    stderr_path: PathBuf,
    _dir: TempDir,
}

impl Authz {
    /// Writes `config_yaml` to a file and runs `ingress-authz serve` on it,
    /// returning once it has printed its `listening` line.
    pub async fn start(config_yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, config_yaml).expect("write config");
        let stderr_path = dir.path().join("ingress-authz.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ingress-authz"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).expect("create log file"))
            .spawn()
            .expect("spawn ingress-authz");
        let line = first_stdout_line(&mut child).await;
        let Some((grpc, http)) = line.as_deref().and_then(parse_listening) else {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "ingress-authz did not print `listening grpc=.. http=..` \
                 (got {line:?}, exit {status:?}); stderr:\n{}",
                read_log(&stderr_path)
            );
        };
        Self {
            child,
            grpc,
            http,
            stderr_path,
            _dir: dir,
        }
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The process's stderr (its logs), for debugging a failed test.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    pub fn logs(&self) -> String {
        read_log(&self.stderr_path)
    }
}

impl Drop for Authz {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// `listening grpc=127.0.0.1:PORT http=127.0.0.1:PORT`
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut words = line.split_whitespace();
    if words.next()? != "listening" {
        return None;
    }
    let grpc = words.next()?.strip_prefix("grpc=")?.parse().ok()?;
    let http = words.next()?.strip_prefix("http=")?.parse().ok()?;
    Some((grpc, http))
}

pub(crate) fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read {path:?}: {e}>"))
}
