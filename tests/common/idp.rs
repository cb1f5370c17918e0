//! The real OpenID provider (`oidc-provider` 8, tests/idp/server.mjs) and
//! what a browser does with it, for tests through real Envoy: start the
//! provider, follow its pages like a browser (login and consent forms),
//! a minimal cookie jar, and verification of tokens with `jose` (a JavaScript
//! JWT library, tests/idp/verify-jwt.mjs), not with our Rust code.
//!
//! Independent of any one config: tests/envoy/idp.rs (OAuth2 against the
//! provider) and tests/envoy/oidc.rs (OIDC) drive it with their own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use url::Url;

use super::client::{self, Request, Response};

pub const IDP_CLIENT_ID: &str = "authz-test";
pub const IDP_CLIENT_SECRET: &str = "idp-client-secret-3f9a1c7e5b";
pub const SESSION_COOKIE: &str = "ingress_authz";
pub const LOGIN_COOKIE_PREFIX: &str = "ingress_authz_login_";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a browser sends on a top-level navigation.
pub const NAVIGATE: &[(&str, &str)] = &[
    ("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
];

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn node() -> PathBuf {
    std::env::var_os("NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from)
}

// ------------------------------------------------------------------ provider

/// `node tests/idp/server.mjs` on an ephemeral port; killed on drop.
pub struct Idp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    /// The issuer, `http://127.0.0.1:PORT`.
    pub url: String,
    pub addr: SocketAddr,
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Idp {
    /// Starts the provider with client [`IDP_CLIENT_ID`] /
    /// [`IDP_CLIENT_SECRET`] (`client_secret_post`, PKCE required) and the
    /// extra environment `env` (IDP_SIGNING_ALG, IDP_JWT_ACCESS_TOKENS, ...);
    /// it answers 503 until [`Idp::configure`] gives it the client's redirect
    /// URIs (which name Envoy's port).
    pub async fn spawn(env: &[(&str, &str)]) -> Self {
        let script = repo().join("tests/idp/server.mjs");
        assert!(
            repo().join("tests/idp/node_modules/oidc-provider").is_dir(),
            "tests/idp/node_modules is missing: run scripts/install-deps"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("idp.log");
        let mut command = Command::new(node());
        command
            .arg(&script)
            .arg("0")
            .env("IDP_CLIENT_ID", IDP_CLIENT_ID)
            .env("IDP_CLIENT_SECRET", IDP_CLIENT_SECRET)
            .env("IDP_TOKEN_AUTH_METHOD", "client_secret_post")
            .env("IDP_PKCE_REQUIRED", "true")
            .env_remove("IDP_REDIRECT_URIS")
            .env_remove("IDP_SIGNING_ALG")
            .env_remove("IDP_JWT_ACCESS_TOKENS")
            .env_remove("IDP_ACCESS_TOKEN_TTL")
            .env_remove("IDP_ROTATE_REFRESH_TOKENS")
            .env_remove("IDP_BACKCHANNEL_LOGOUT_URI");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).expect("create idp log"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node (Node.js >= 20 must be on PATH)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut stdout = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = stdout.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut idp = Self {
            stdin: child.stdin.take(),
            child,
            lines,
            url: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_path,
            _dir: dir,
        };
        let line = idp.next_line("`listening http://127.0.0.1:PORT`").await;
        idp.url = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| idp.fail(&format!("unexpected first line {line:?}")))
            .to_owned();
        idp.addr = Url::parse(&idp.url)
            .ok()
            .and_then(|u| u.socket_addrs(|| None).ok())
            .and_then(|a| a.first().copied())
            .unwrap_or_else(|| idp.fail(&format!("bad issuer {:?}", idp.url)));
        idp
    }

    pub async fn configure(&mut self, redirect_uris: &[String]) {
        self.configure_lines(&[redirect_uris.join(",")]).await;
    }

    /// As [`Idp::configure`], for a provider spawned with
    /// `IDP_BACKCHANNEL_LOGOUT_URI=stdin`: the client's back-channel logout
    /// URI too.
    pub async fn configure_with_backchannel(&mut self, redirect_uris: &[String], logout_uri: &str) {
        self.configure_lines(&[redirect_uris.join(","), logout_uri.to_owned()])
            .await;
    }

    async fn configure_lines(&mut self, lines: &[String]) {
        let mut stdin = self.stdin.take().expect("configure once");
        for line in lines {
            stdin
                .write_all(format!("{line}\n").as_bytes())
                .await
                .expect("write the client's URIs to the provider");
        }
        stdin.flush().await.expect("flush");
        let line = self.next_line("`ready`").await;
        if line != "ready" {
            self.fail(&format!("expected `ready`, got {line:?}"));
        }
    }

    async fn next_line(&mut self, what: &str) -> String {
        match tokio::time::timeout(STARTUP_TIMEOUT, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => {
                let status = self.child.try_wait();
                self.fail(&format!("provider exited ({status:?}) before {what}"))
            }
            Err(_) => self.fail(&format!("timed out waiting for the provider's {what}")),
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// GET /__test/stats: requests served per endpoint (`authorization`,
    /// `token`, `userinfo`, `jwks`, `discovery`, ...).
    pub async fn stats(&self) -> BTreeMap<String, u64> {
        let response = self.send(Request::get(&self.host(), "/__test/stats")).await;
        serde_json::from_slice(&response.body).expect("stats JSON")
    }

    /// POST /__test/rotate-keys: a new signing key replaces the old one.
    /// Returns the new kid.
    pub async fn rotate_keys(&self) -> String {
        let response = self
            .send(Request::new("POST", &self.host(), "/__test/rotate-keys"))
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["kid"]
            .as_str()
            .expect("kid in the rotation answer")
            .to_owned()
    }

    /// POST /__test/groups: `account`'s `groups` claim becomes `groups` for
    /// every later userinfo answer (and ID token). The accounts start with
    /// alice [admins, staff], bob [staff], carol [staff].
    pub async fn set_groups(&self, account: &str, groups: &[&str]) {
        let body = serde_json::json!({ "account": account, "groups": groups }).to_string();
        let response = self
            .send(
                Request::new("POST", &self.host(), "/__test/groups")
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        if response.status != 200 {
            self.fail(&format!(
                "set the groups of {account:?} to {groups:?}: {} {}",
                response.status,
                response.text()
            ));
        }
    }

    /// POST /__test/backchannel-logout: the provider sends its back-channel
    /// logout for every session of `account`; the answer lists the sids
    /// and the statuses our endpoint answered.
    pub async fn backchannel_logout(&self, account: &str) -> Value {
        let body = serde_json::json!({ "account": account }).to_string();
        let response = self
            .send(
                Request::new("POST", &self.host(), "/__test/backchannel-logout")
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    }

    /// POST /__test/sign: `claims` as a JWT signed with the provider's
    /// current key (`alg` None), or unsigned (`Some("none")`); `header`
    /// fields merged over the protected header.
    pub async fn sign(&self, claims: &Value, alg: Option<&str>, header: &Value) -> String {
        let body =
            serde_json::json!({ "claims": claims, "alg": alg, "header": header }).to_string();
        let response = self
            .send(
                Request::new("POST", &self.host(), "/__test/sign")
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["token"]
            .as_str()
            .expect("token in the sign answer")
            .to_owned()
    }

    /// A JWT access token (IDP_JWT_ACCESS_TOKENS) for `resource` by the
    /// client-credentials grant.
    pub async fn client_credentials(&self, resource: &str, scope: &str) -> String {
        let body = form_body(&[
            ("grant_type", "client_credentials"),
            ("client_id", IDP_CLIENT_ID),
            ("client_secret", IDP_CLIENT_SECRET),
            ("resource", resource),
            ("scope", scope),
        ]);
        let response = self
            .send(
                Request::new("POST", &self.host(), "/token")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body),
            )
            .await;
        assert_eq!(
            response.status,
            200,
            "client_credentials: {}\n{}",
            response.text(),
            self.logs()
        );
        response.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub async fn send(&self, request: Request) -> Response {
        client::send(self.addr, &request)
            .await
            .unwrap_or_else(|e| self.fail(&format!("{request:?} to the provider: {e}")))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn fail(&self, message: &str) -> ! {
        panic!("{message}\n--- provider log:\n{}", self.logs())
    }
}

// ------------------------------------------------------------------ cookies

/// A minimal cookie jar for one site: name -> value, honouring deletions
/// (empty value, `Max-Age=0`, an `Expires` in the past). Paths are ignored:
/// each jar is used for one host, and the flows never set one name twice.
#[derive(Default, Debug, Clone)]
pub struct Jar(pub BTreeMap<String, String>);

impl Jar {
    pub fn update(&mut self, response: &Response) {
        for cookie in set_cookies(response) {
            if cookie.deletes() {
                self.0.remove(&cookie.name);
            } else {
                self.0.insert(cookie.name, cookie.value);
            }
        }
    }

    pub fn header(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(n, v)| format!("{n}={v}")).collect();
        pairs.join("; ")
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[derive(Debug, Clone)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// Attribute names lower-cased -> value ("" for flags).
    pub attrs: BTreeMap<String, String>,
}

impl SetCookie {
    pub fn parse(header: &str) -> Self {
        let mut parts = header.split(';').map(str::trim);
        let (name, value) = parts
            .next()
            .and_then(|p| p.split_once('='))
            .unwrap_or_else(|| panic!("bad Set-Cookie {header:?}"));
        let attrs = parts
            .map(|a| match a.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_owned()),
                None => (a.to_ascii_lowercase(), String::new()),
            })
            .collect();
        Self {
            name: name.trim().to_owned(),
            value: value.trim().to_owned(),
            attrs,
        }
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    pub fn deletes(&self) -> bool {
        self.value.is_empty()
            || self.attr("max-age") == Some("0")
            || self.attr("expires").is_some_and(|e| e.contains("1970"))
    }

    /// `HttpOnly; SameSite=Lax; Path=<path>`, host-only (no Domain).
    #[track_caller]
    pub fn assert_protected(&self, path: &str) {
        assert_eq!(self.attr("path"), Some(path), "{self:?}");
        assert!(self.attrs.contains_key("httponly"), "{self:?}");
        assert!(
            self.attr("samesite")
                .is_some_and(|s| s.eq_ignore_ascii_case("lax")),
            "{self:?}"
        );
        assert!(!self.attrs.contains_key("domain"), "host-only: {self:?}");
    }
}

pub fn set_cookies(response: &Response) -> Vec<SetCookie> {
    response
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| SetCookie::parse(v))
        .collect()
}

/// The session cookie a response sets (not a clearing one), if any.
pub fn new_session(response: &Response) -> Option<SetCookie> {
    set_cookies(response)
        .into_iter()
        .find(|c| c.name == SESSION_COOKIE && !c.deletes())
}

// ------------------------------------------------------- the provider's pages

/// The login or consent form of oidc-provider's development interactions.
struct Form {
    action: String,
    prompt: String,
    abort: Option<String>,
}

fn parse_form(html: &str) -> Option<Form> {
    let attr = |pattern: &str| {
        regex::Regex::new(pattern)
            .unwrap()
            .captures(html)
            .map(|c| html_unescape(&c[1]))
    };
    Some(Form {
        action: attr(r#"<form[^>]*\baction="([^"]+)""#)?,
        prompt: attr(r#"<input[^>]*name="prompt"[^>]*value="([^"]+)""#)?,
        abort: attr(r#"<a href="([^"]+)">\[ Cancel \]</a>"#),
    })
}

fn html_unescape(s: &str) -> String {
    s.replace("&#x2F;", "/")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

pub fn form_body(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// What a user does at the provider's pages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AtProvider {
    /// Sign in as this account and consent.
    SignIn(&'static str),
    /// Press "Cancel" on the login page.
    Cancel,
}

/// Follows the provider's redirects and fills its forms like a browser (with
/// its own cookie jar for the provider), starting at `start`, until the
/// provider sends the browser elsewhere. Returns that URL. `context` is added
/// to failure messages.
pub async fn at_provider(idp: &Idp, start: &Url, action: AtProvider, context: &str) -> Url {
    let base = Url::parse(&idp.url).unwrap();
    let mut jar = Jar::default();
    let mut next = (start.clone(), None::<String>);
    for _ in 0..16 {
        let (url, body) = next;
        assert_eq!(url.origin(), base.origin(), "left the provider for {url}");
        let target = &url[url::Position::BeforePath..];
        let request = match &body {
            Some(form) => Request::new("POST", &idp.host(), target)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.clone()),
            None => Request::get(&idp.host(), target),
        };
        let request = request.header("accept", "text/html");
        let request = match jar.header() {
            cookies if cookies.is_empty() => request,
            cookies => request.header("cookie", &cookies),
        };
        let response = idp.send(request).await;
        jar.update(&response);
        match response.status {
            302 | 303 => {
                let location = response.header("location").unwrap_or_default();
                let location = url.join(location).unwrap();
                if location.origin() != base.origin() {
                    return location;
                }
                next = (location, None);
            }
            200 => {
                let html = response.text();
                let form = parse_form(&html).unwrap_or_else(|| {
                    panic!(
                        "no interaction form at {url}: {html}\n{context}\n--- provider:\n{}",
                        idp.logs()
                    )
                });
                let action_url = url.join(&form.action).unwrap();
                next = match (form.prompt.as_str(), action) {
                    ("login", AtProvider::Cancel) => {
                        (url.join(&form.abort.expect("a Cancel link")).unwrap(), None)
                    }
                    ("login", AtProvider::SignIn(login)) => {
                        let fields = [
                            ("prompt", "login"),
                            ("login", login),
                            ("password", "any-password"),
                        ];
                        (action_url, Some(form_body(&fields)))
                    }
                    ("consent", _) => (action_url, Some(form_body(&[("prompt", "consent")]))),
                    (other, _) => panic!("unexpected prompt {other:?} at {url}"),
                };
            }
            status => panic!(
                "provider answered {status} at {url}: {}\n{context}\n--- provider:\n{}",
                response.text(),
                idp.logs()
            ),
        }
    }
    panic!("no redirect away from the provider after 16 pages")
}

// -------------------------------------------------------------------- JWTs

/// Verifies `token` with jose (tests/idp/verify-jwt.mjs): HS256, the shared
/// secret, `iss` = ingress-authz, `iat`, `exp`, `sub`. Returns the verified
/// payload.
pub fn verify_with_jose(token: &str, secret: &str) -> Value {
    let output = std::process::Command::new(node())
        .arg(repo().join("tests/idp/verify-jwt.mjs"))
        .env("JWT", token)
        .env("JWT_SECRET", secret)
        .output()
        .expect("run node tests/idp/verify-jwt.mjs");
    assert!(
        output.status.success(),
        "jose rejected the X-Connect-Token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verified: Value = serde_json::from_slice(&output.stdout).expect("verify-jwt JSON");
    assert_eq!(verified["header"]["alg"], "HS256", "{verified}");
    verified["payload"].clone()
}

/// Whether jose accepts `token` with the same secret (for a negative check).
pub fn jose_accepts(token: &str, secret: &str) -> bool {
    std::process::Command::new(node())
        .arg(repo().join("tests/idp/verify-jwt.mjs"))
        .env("JWT", token)
        .env("JWT_SECRET", secret)
        .output()
        .expect("run node tests/idp/verify-jwt.mjs")
        .status
        .success()
}

/// The payload of a compact JWS, unverified (for looking, not trusting).
pub fn jwt_payload(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a compact JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

/// The protected header of a compact JWS, unverified.
pub fn jwt_header(token: &str) -> Value {
    use base64::Engine as _;
    let header = token.split('.').next().expect("a compact JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url header");
    serde_json::from_slice(&bytes).expect("JSON header")
}
