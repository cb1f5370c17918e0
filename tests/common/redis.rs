//! A real Redis (Debian's `redis-server`, installed by scripts/install-deps)
//! for the tests of the shared session store: one instance per test on an
//! ephemeral loopback port, without persistence (`--save ''`, no AOF), so
//! that a restart comes back empty; killed on drop. The harness speaks RESP2
//! to it directly ([`Redis::command`]), independently of the `redis` crate
//! the service uses.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::authz::read_log;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// `redis-server` on 127.0.0.1:[`Redis::port`], its working directory and
/// log in a temporary directory.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    log_path: PathBuf,
    dir: TempDir,
    /// Every write in an append-only file, so that a restart keeps the data.
    persistent: bool,
}

impl Redis {
    /// Starts `redis-server` on a free loopback port and returns once it
    /// answers PING with PONG.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// As [`Redis::start`], writing every change to an append-only file
    /// (fsync always) that a [`Redis::restart`] loads again: an outage,
    /// not a data loss.
    pub async fn start_persistent() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(persistent: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("redis.log");
        let mut redis = Self {
            child: None,
            port: free_port(),
            log_path,
            dir,
            persistent,
        };
        redis.spawn().await;
        redis
    }

    /// `redis://127.0.0.1:PORT/0`, what a config's store URL names.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// SIGKILL (no shutdown, no save), and waits for the process to exit:
    /// from here on connections to the port are refused.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if it runs, and starts a new one on the same port,
    /// with no data (unless [`Redis::start_persistent`]); returns once it
    /// answers PONG. A
    /// port still busy for a moment (the old server's sockets) is retried.
    pub async fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.dir.path().join("dump.rdb"));
        self.spawn().await;
    }

    /// Sends one command (`args`: its name and arguments) on a new
    /// connection and returns the reply; an error reply is a
    /// [`RespValue::Error`], not a panic. Panics if the server cannot be
    /// reached or does not answer in time.
    pub async fn command(&self, args: &[&str]) -> RespValue {
        self.try_command(args)
            .await
            .unwrap_or_else(|e| self.fail(&format!("redis {args:?}: {e}")))
    }

    /// As [`Redis::command`], with a failure to connect or to read the reply
    /// as an error (for a server that is expected to be down).
    pub async fn try_command(&self, args: &[&str]) -> io::Result<RespValue> {
        send_command(self.addr(), args).await
    }

    /// The server's log (all its runs), for assertion messages.
    pub fn logs(&self) -> String {
        read_log(&self.log_path)
    }

    /// Runs `redis-server` on `self.port` until it answers PONG; a server
    /// that exits at once (the port still busy) is started again.
    async fn spawn(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let mut child = self.spawn_once();
            match self.wait_for_pong(&mut child, deadline).await {
                Ok(()) => {
                    self.child = Some(child);
                    return;
                }
                Err(exited) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if Instant::now() > deadline {
                        self.fail(&format!(
                            "redis-server on port {} did not answer PING: {exited}",
                            self.port
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn spawn_once(&self) -> Child {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open redis log");
        let port = self.port.to_string();
        Command::new(redis_server_bin())
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no"]
            })
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone redis log"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server")
    }

    /// Ok once PING answers PONG; Err(why) if the process exits first or
    /// `deadline` passes.
    async fn wait_for_pong(&self, child: &mut Child, deadline: Instant) -> Result<(), String> {
        loop {
            if let Ok(reply) = send_command(self.addr(), &["PING"]).await {
                if reply == RespValue::Simple("PONG".into()) {
                    return Ok(());
                }
                return Err(format!("PING answered {reply:?}"));
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("it exited ({status})"));
            }
            if Instant::now() > deadline {
                return Err("timed out".into());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn fail(&self, message: &str) -> ! {
        panic!("{message}\n--- redis log:\n{}", self.logs())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on right now (the kernel's pick for 127.0.0.1:0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `REDIS_SERVER`, else `redis-server` on PATH. Missing Redis is a test
/// failure, never a skip.
pub fn redis_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("REDIS_SERVER") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "REDIS_SERVER={bin:?} does not exist");
        return bin;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server not found: run scripts/install-deps (installs Debian's \
                 redis-server), or set REDIS_SERVER, or put redis-server on PATH"
            )
        })
}

// ------------------------------------------------------------------- RESP2

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespValue {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$3\r\nabc`
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`: no such key (GET), no value.
    Nil,
    /// `*2\r\n...`
    Array(Vec<Self>),
}

impl RespValue {
    /// An integer reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// A simple string, or a bulk string that is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Simple(s) => Some(s),
            Self::Bulk(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    /// The elements of an array reply.
    pub fn as_array(&self) -> Option<&[Self]> {
        match self {
            Self::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// `args` as a RESP array of bulk strings, on a new connection to `addr`;
/// the one reply.
async fn send_command(addr: SocketAddr, args: &[&str]) -> io::Result<RespValue> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(&encode_command(args)).await?;
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((value, _)) = parse_reply(&buffer)? {
                return Ok(value);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {} bytes of a reply", buffer.len()),
                ));
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(COMMAND_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no reply from {addr} within {COMMAND_TIMEOUT:?}"),
            ))
        })
}

fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One reply at the start of `input` and the bytes it took; `None` while
/// it is incomplete.
fn parse_reply(input: &[u8]) -> io::Result<Option<(RespValue, usize)>> {
    let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&input[1..end])
        .map_err(|_| invalid(format!("a reply line that is not UTF-8: {input:?}")))?;
    let rest = end + 2;
    let number = || {
        line.parse::<i64>()
            .map_err(|_| invalid(format!("a bad length or integer {line:?}")))
    };
    match input[0] {
        b'+' => Ok(Some((RespValue::Simple(line.to_owned()), rest))),
        b'-' => Ok(Some((RespValue::Error(line.to_owned()), rest))),
        b':' => Ok(Some((RespValue::Int(number()?), rest))),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Some((RespValue::Nil, rest)));
            };
            if input.len() < rest + len + 2 {
                return Ok(None);
            }
            let bulk = input[rest..rest + len].to_vec();
            Ok(Some((RespValue::Bulk(bulk), rest + len + 2)))
        }
        b'*' => {
            let Ok(count) = usize::try_from(number()?) else {
                return Ok(Some((RespValue::Nil, rest)));
            };
            let mut items = Vec::with_capacity(count);
            let mut at = rest;
            for _ in 0..count {
                let Some((item, used)) = parse_reply(&input[at..])? else {
                    return Ok(None);
                };
                items.push(item);
                at += used;
            }
            Ok(Some((RespValue::Array(items), at)))
        }
        other => Err(invalid(format!(
            "an unknown reply type {:?}",
            other as char
        ))),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
