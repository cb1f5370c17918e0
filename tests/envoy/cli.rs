//! The command line as operators meet it: what `validate`, `explain` and
//! `serve` print when something is wrong, on which channel, and the exit
//! statuses scripts read.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use ingress_authz::admin::proto::ExplainRequest;
use ingress_authz::admin::proto::admin_client::AdminClient;
use serde_json::Value;

use crate::common::fake_http::{FakeHttp, listen};
use crate::common::fake_oidc::{CLIENT_ID, CLIENT_SECRET, FakeOidc, reserve_port};
use crate::common::{self, Authz};

const BIN: &str = env!("CARGO_BIN_EXE_ingress-authz");

/// A config file in its own directory (kept while the value lives).
struct ConfigFile {
    dir: tempfile::TempDir,
}

impl ConfigFile {
    fn new(yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.yaml"), yaml).expect("write config");
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }
}

fn run(args: &[&str], config: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run ingress-authz")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `explain` of `url` (with extra arguments before it): exit code, stdout.
fn explain(config: &Path, extra: &[&str], url: &str) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .arg("explain")
        .arg("--config")
        .arg(config)
        .args(extra)
        .arg(url)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run ingress-authz explain");
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

const BASIC: &str = "rules:\n  - host: app.example.com\n    backend:\n      service:\n        auth:\n          type: basic\n          basic:\n            users:\n              - {username: admin, password: cli-test-password}\n    paths:\n      - path: /public/\n        backend: {service: {auth: {enabled: false}}}\n";

/// `validate` prints its findings as plain lines on stderr: the warnings
/// the loader logs (a weak jwt key) come out the same way as its own, never
/// as JSON log lines beside them.
#[test]
fn validate_writes_one_plain_channel() {
    let config = ConfigFile::new(
        "waf: {enabled: true}\nrules:\n  - host: a.example.com\n    backend: {service: {auth: {type: jwt, secret: short}}}\n",
    );
    let out = run(&["validate"], &config.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "warning: a jwt HMAC secret is shorter than 16 bytes; use at least 32 random bytes\n\
         warning: line 1:1: waf: ignored: handled by Envoy\n"
    );
    assert_eq!(
        text(&out.stdout),
        format!("{}: valid\n", config.path().display())
    );
}

/// Exit statuses: 0 allow, 3 deny, 1 error; `--method` is the request's.
#[test]
fn explain_exit_statuses_and_method() {
    let config = ConfigFile::new(BASIC);
    let path = config.path();
    let (code, out, _) = explain(&path, &[], "http://app.example.com/public/x");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("request:  GET app.example.com/public/x\n"),
        "{out}"
    );
    assert!(out.ends_with("decision: allow (open)\n"), "{out}");

    let (code, out, _) = explain(&path, &["--method", "post"], "http://app.example.com/admin");
    assert_eq!(code, Some(3), "a 401 is a deny: {out}");
    assert!(
        out.starts_with("request:  POST app.example.com/admin\n"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "decision: deny 401 (missing_credentials), WWW-Authenticate: Basic realm=\"Restricted\", charset=\"UTF-8\"\n"
        ),
        "{out}"
    );

    // admin:cli-test-password
    let (code, out, _) = explain(
        &path,
        &[
            "-H",
            "Authorization: Basic YWRtaW46Y2xpLXRlc3QtcGFzc3dvcmQ=",
        ],
        "http://app.example.com/admin",
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with("decision: allow (authenticated)\n"), "{out}");

    let (code, out, _) = explain(&path, &[], "http://nobody.example.com/");
    assert_eq!(code, Some(3), "no route is a deny: {out}");
    assert!(out.ends_with("decision: deny 403 (no_route)\n"), "{out}");

    let (code, out, err) = explain(&path, &[], "not a url");
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        err,
        "ingress-authz: invalid URL `not a url`: relative URL without a base\n"
    );
    let (code, _, err) = explain(&path, &["-H", "no colon"], "http://app.example.com/");
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "ingress-authz: header `no colon` is not `Name: value`\n"
    );

    let broken = ConfigFile::new("rules:\n  - host: a.example.com\n    bogus: 1\n");
    let (code, _, err) = explain(&broken.path(), &[], "http://a.example.com/");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("line 3:5: rules[0].bogus: unknown key `bogus`"),
        "{err}"
    );
}

fn oidc_config(issuer: &str) -> String {
    format!(
        "authz:\n  session:\n    secret: cli-test-session-secret-0123456789abcdef\nrules:\n  - host: app.example.com\n    backend:\n      service:\n        auth:\n          type: oidc\n          issuer: {issuer}\n          client_id: {CLIENT_ID}\n          client_secret: {CLIENT_SECRET}\n          allow: {{users: [alice]}}\n"
    )
}

/// Offline, an oidc route says what it does without its provider (a
/// login) instead of `idp_unavailable`; the running server's admin
/// `Explain`, which has the metadata, agrees, and `--online` gives the
/// admin's very text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_explain_of_an_oidc_route_agrees_with_the_live_one() {
    let idp = FakeOidc::start().await;
    let yaml = oidc_config(idp.issuer());
    let config = ConfigFile::new(&yaml);
    let authz = Authz::start(&yaml).await;
    let mut admin = AdminClient::connect(format!("http://{}", authz.admin_addr()))
        .await
        .expect("connect admin");
    // The server fetches discovery at start; until then it says 503.
    let mut live = None;
    for _ in 0..200 {
        let request = ExplainRequest {
            host: "app.example.com".into(),
            path: "/".into(),
            method: "GET".into(),
            headers: HashMap::new(),
        };
        let ex = admin.explain(request).await.unwrap().into_inner();
        if ex.reason != "idp_unavailable" {
            live = Some(ex);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let live = live.expect("the server never had the provider's metadata");
    assert_eq!((live.status, live.reason.as_str()), (401, "login_required"));

    let (code, out, err) = explain(&config.path(), &[], "http://app.example.com/");
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.ends_with(
            "decision: deny 401 (login_required)\nnote:     provider metadata not fetched offline (--online fetches it)\n"
        ),
        "{out}"
    );
    assert_eq!(
        out.strip_suffix(
            "decision: deny 401 (login_required)\nnote:     provider metadata not fetched offline (--online fetches it)\n"
        ),
        live.text.strip_suffix("decision: deny 401 (login_required)\n"),
        "the same account up to the decision"
    );
    let (code, out, _) = explain(
        &config.path(),
        &["-H", "Sec-Fetch-Mode: navigate"],
        "http://app.example.com/",
    );
    assert_eq!(code, Some(3), "a login redirect is a deny: {out}");
    assert!(
        out.contains(
            "decision: deny 302 (login_redirect) to the provider's authorization endpoint\n"
        ),
        "{out}"
    );

    let (code, out, err) = explain(&config.path(), &["--online"], "http://app.example.com/");
    assert_eq!(code, Some(3), "{out}{err}");
    assert_eq!(out, live.text, "--online decides as the server does");
    assert_eq!(err, "", "no warning when the provider answers");
}

/// Spawns `serve` with `args` (ephemeral ports unless given), returning once
/// it printed its `listening` line or exited; the child is killed on drop.
struct Served {
    child: std::process::Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start(config: &Path, args: &[&str]) -> (Self, Option<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr = dir.path().join("stderr.log");
        let mut defaults = vec![];
        for (flag, value) in [
            ("--grpc-addr", "127.0.0.1:0"),
            ("--http-addr", "127.0.0.1:0"),
            ("--admin-addr", "127.0.0.1:0"),
        ] {
            if !args.contains(&flag) {
                defaults.extend([flag, value]);
            }
        }
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(defaults)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn serve");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        let listening = line.starts_with("listening ").then_some(line);
        (
            Self {
                child,
                stderr,
                _dir: dir,
            },
            listening,
        )
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait(&mut self) -> Option<i32> {
        self.child.wait().expect("wait").code()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port in use is one line naming the address and what it is for, in
/// either log format.
#[test]
fn a_port_in_use_is_reported_once_with_its_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap().to_string();
    let config = ConfigFile::new(BASIC);
    for (flag, what, from) in [
        (
            "--grpc-addr",
            "gRPC ext_authz",
            "--grpc-addr or authz.grpc_addr",
        ),
        ("--http-addr", "HTTP", "--http-addr or authz.http_addr"),
        (
            "--admin-addr",
            "the admin API",
            "--admin-addr or authz.admin_addr",
        ),
    ] {
        for format in ["json", "text"] {
            let (mut served, listening) = Served::start(
                &config.path(),
                &[flag, addr.as_str(), "--log-format", format],
            );
            assert_eq!(listening, None, "served with {addr} taken");
            assert_eq!(served.wait(), Some(1));
            let stderr = served.stderr();
            let mentions: Vec<&str> = stderr.lines().filter(|l| l.contains(&addr)).collect();
            assert_eq!(
                mentions,
                [format!(
                    "ingress-authz: cannot listen on {addr} for {what} ({from}): Address already in use (os error 98)"
                )],
                "{format}: {stderr}"
            );
        }
    }
}

/// `--log-format text` writes text lines even into a file; `json` (the
/// default off a terminal) JSON lines.
#[test]
fn serve_log_format_json_or_text() {
    let config = ConfigFile::new(BASIC);
    for (args, json) in [
        (&[][..], true),
        (&["--log-format", "json"][..], true),
        (&["--log-format", "text"][..], false),
    ] {
        let (served, listening) = Served::start(&config.path(), args);
        assert!(listening.is_some(), "{args:?}: {}", served.stderr());
        let mut stderr = String::new();
        for _ in 0..100 {
            stderr = served.stderr();
            if stderr.contains("serving") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let line = stderr
            .lines()
            .find(|l| l.contains("serving"))
            .unwrap_or_else(|| panic!("{args:?}: no `serving` line in {stderr}"));
        let parsed = serde_json::from_str::<Value>(line);
        assert_eq!(parsed.is_ok(), json, "{args:?}: {line}");
        if !json {
            assert!(
                line.contains(" INFO ") && !line.contains('\u{1b}'),
                "{line}"
            );
        }
    }
}

/// The JSON log line of a failed fetch whose message is `message`.
fn failure_line(logs: &str, message: &str, url: &str) -> Option<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == message && v["url"] == url)
}

/// Discovery and JWKS failures name the URL (without userinfo or query)
/// and the cause: a refused connection, a status, a body that is not JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_fetch_failures_name_the_url_and_the_cause() {
    let refused = reserve_port();
    let html = FakeHttp::serve(
        listen(0, "an HTML server").await,
        (),
        |_, call| async move {
            if call.path().contains("missing") {
                StatusCode::NOT_FOUND.into_response()
            } else {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html>a login page</html>",
                )
                    .into_response()
            }
        },
    );
    let web = html.addr();
    let rule = |host: &str, auth: &str| {
        format!("  - host: {host}\n    backend:\n      service:\n        auth: {auth}\n")
    };
    let yaml = format!(
        "authz:\n  session:\n    secret: cli-test-session-secret-0123456789abcdef\nrules:\n{}{}{}{}",
        rule(
            "refused.example.com",
            &format!(
                "{{type: oidc, issuer: \"http://user:pw@127.0.0.1:{refused}/realm\", client_id: c, client_secret: s, allow: {{users: [a]}}}}"
            )
        ),
        rule(
            "html.example.com",
            &format!(
                "{{type: oidc, issuer: \"http://{web}/html\", client_id: c, client_secret: s, allow: {{users: [a]}}}}"
            )
        ),
        rule(
            "missing.example.com",
            &format!(
                "{{type: oidc, issuer: \"http://{web}/missing\", client_id: c, client_secret: s, allow: {{users: [a]}}}}"
            )
        ),
        rule(
            "jwks.example.com",
            &format!(
                "{{type: jwt, jwt: {{jwks_url: \"http://127.0.0.1:{refused}/keys?api_key=not-for-logs\"}}}}"
            )
        ),
    );
    let authz = Authz::start(&yaml).await;
    let cases = [
        (
            "OpenID discovery failed",
            format!("http://127.0.0.1:{refused}/realm/.well-known/openid-configuration"),
            "request failed: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
        ),
        (
            "OpenID discovery failed",
            format!("http://{web}/html/.well-known/openid-configuration"),
            "response is not JSON (content-type text/html; charset=utf-8)",
        ),
        (
            "OpenID discovery failed",
            format!("http://{web}/missing/.well-known/openid-configuration"),
            "HTTP 404",
        ),
        (
            "JWKS fetch failed",
            format!("http://127.0.0.1:{refused}/keys"),
            "request failed: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
        ),
    ];
    for (message, url, error) in &cases {
        common::eventually(
            &format!("a `{message}` line for {url}"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async { failure_line(&authz.logs(), message, url).is_some() },
        )
        .await;
        let line = failure_line(&authz.logs(), message, url).expect("the line");
        assert_eq!(line["error"], *error, "{line}");
        assert_eq!(line["level"], "WARN", "{line}");
    }
    let logs = authz.logs();
    for hidden in ["user:pw", "pw@", "api_key", "not-for-logs"] {
        assert!(!logs.contains(hidden), "`{hidden}` in the logs:\n{logs}");
    }
}
