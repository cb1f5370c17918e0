//! The login dance of `type: oauth2` and `type: oidc` routes as a browser
//! goes through it, for any provider: a navigation without a session (the
//! 302 to the provider's authorize URL and the login-state cookie), the
//! provider's side ([`Provider`]: a fake approves at once, the real one
//! through its pages), and the browser back at the callback with its cookie.
//! What a test checks of each step stays in the test; this is the walking.
//!
//! [`IdpStack`] is the real provider (tests/common/idp.rs) wired to a stack.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use url::Url;

use super::fake_oidc::FakeOidc;
use super::idp::{
    self, AtProvider, Idp, Jar, LOGIN_COOKIE_PREFIX, NAVIGATE, SESSION_COOKIE, SetCookie,
    new_session, set_cookies,
};
use super::providers::FakeProvider;
use super::{Request, Response, Stack, client};

pub const CALLBACK: &str = "/oauth2/callback";
/// How long the headless-browser login may take.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(240);

/// A provider's side of a login.
pub trait Provider {
    /// Where the provider sends the browser from `authorize`, once the user
    /// has signed in and consented.
    async fn sign_in(&self, authorize: &Url) -> Url;
}

impl Provider for FakeProvider {
    async fn sign_in(&self, authorize: &Url) -> Url {
        approve(self.addr(), authorize, || self.rejections()).await
    }
}

impl Provider for FakeOidc {
    async fn sign_in(&self, authorize: &Url) -> Url {
        approve(self.addr(), authorize, || self.rejections()).await
    }
}

/// A fake's authorize endpoint (no login page): its redirect back.
async fn approve(addr: SocketAddr, authorize: &Url, rejections: impl Fn() -> Vec<String>) -> Url {
    let request = Request::get(&addr.to_string(), &authorize[url::Position::BeforePath..]);
    let response = client::send(addr, &request)
        .await
        .expect("fake authorize endpoint");
    assert_eq!(
        response.status,
        302,
        "the fake provider refused the authorize request {authorize}: {} (rejections {:?})",
        response.text(),
        rejections()
    );
    Url::parse(response.header("location").unwrap()).expect("redirect_uri")
}

/// The real provider, where the user does `action`; `context` goes into
/// failure messages.
pub struct AtIdp<'a> {
    pub idp: &'a Idp,
    pub action: AtProvider,
    pub context: String,
}

impl Provider for AtIdp<'_> {
    async fn sign_in(&self, authorize: &Url) -> Url {
        idp::at_provider(self.idp, authorize, self.action, &self.context).await
    }
}

/// A login in flight: the redirect to the provider and its login-state
/// cookie.
pub struct Login {
    /// The navigation's answer, the 302 to the provider.
    pub redirect: Response,
    pub authorize: Url,
    /// The authorize URL's query.
    pub params: BTreeMap<String, String>,
    /// The login-state cookie the redirect sets.
    pub set_cookie: SetCookie,
    /// `name=value` of it, as the browser sends it back.
    pub cookie: String,
}

impl Login {
    /// The login a redirect to the provider starts.
    pub fn from_redirect(redirect: Response) -> Self {
        let location = redirect.header("location").expect("Location");
        let authorize =
            Url::parse(location).unwrap_or_else(|e| panic!("Location {location:?}: {e}"));
        let params = authorize.query_pairs().into_owned().collect();
        let set_cookie = set_cookies(&redirect)
            .into_iter()
            .find(|c| c.name.starts_with(LOGIN_COOKIE_PREFIX) && !c.deletes())
            .unwrap_or_else(|| panic!("no {LOGIN_COOKIE_PREFIX}* cookie: {:?}", redirect.headers));
        Self {
            cookie: format!("{}={}", set_cookie.name, set_cookie.value),
            redirect,
            authorize,
            params,
            set_cookie,
        }
    }

    /// A parameter of the authorize URL (`""` when absent).
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map_or("", String::as_str)
    }
}

/// A browser on one app host through a stack's Envoy.
pub struct Browser<'a> {
    pub stack: &'a Stack,
    /// The Host it sends (Envoy's port included where the provider knows it).
    pub host: String,
    /// The headers of a top-level navigation.
    pub navigate: &'a [(&'a str, &'a str)],
    /// The real provider, for failure messages.
    pub idp: Option<&'a Idp>,
}

impl<'a> Browser<'a> {
    pub fn new(stack: &'a Stack, host: &str, navigate: &'a [(&'a str, &'a str)]) -> Self {
        Self {
            stack,
            host: host.to_owned(),
            navigate,
            idp: None,
        }
    }

    /// A top-level navigation to `target` with `cookies` (`name=value`;
    /// empty ones left out, and no `Cookie` header without any).
    pub async fn navigate(&self, target: &str, cookies: &[&str]) -> Response {
        let request = self
            .navigate
            .iter()
            .fold(Request::get(&self.host, target), |r, (n, v)| r.header(n, v));
        let cookies: Vec<&str> = cookies.iter().copied().filter(|c| !c.is_empty()).collect();
        let request = if cookies.is_empty() {
            request
        } else {
            request.header("cookie", &cookies.join("; "))
        };
        self.stack.send(request).await
    }

    /// A navigation to `target` without a session, which is sent to the
    /// provider: the login it starts.
    pub async fn begin(&self, target: &str) -> Login {
        let response = self.navigate(target, &[]).await;
        assert_eq!(
            response.status,
            302,
            "navigation to {}{target} without a session: {}\n{}",
            self.host,
            response.text(),
            self.logs()
        );
        Login::from_redirect(response)
    }

    /// The browser back from the provider at `back`, with `cookies`.
    pub async fn callback(&self, back: &Url, cookies: &[&str]) -> Response {
        self.navigate(&back[url::Position::BeforePath..], cookies)
            .await
    }

    /// The stack's logs, and the provider's when it is the real one.
    pub fn logs(&self) -> String {
        match self.idp {
            Some(idp) => format!(
                "{}\n--- provider ({}):\n{}",
                self.stack.debug_logs(),
                idp.log_path.display(),
                idp.logs()
            ),
            None => self.stack.debug_logs(),
        }
    }
}

/// A successful callback: back to `target`, with the session cookie it
/// sets (`rejections`: what the fake provider refused, for the message).
#[track_caller]
pub fn assert_session(
    stack: &Stack,
    callback: &Response,
    target: &str,
    rejections: &[String],
) -> SetCookie {
    assert_eq!(
        callback.status,
        302,
        "callback: {}\nfake provider rejections: {rejections:?}\n{}",
        callback.text(),
        stack.debug_logs()
    );
    assert_eq!(callback.header("location"), Some(target));
    new_session(callback).unwrap_or_else(|| panic!("no session cookie: {:?}", callback.headers))
}

/// Verifies an `X-Connect-Token` as an upstream would: HS256, the shared
/// `secret`, a standard library. Returns its claims.
pub fn decode_connect_token(token: &str, secret: &str) -> Value {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["ingress-authz"]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
    validation.validate_aud = false;
    let key = DecodingKey::from_secret(secret.as_bytes()).expect("HMAC key");
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("X-Connect-Token does not verify ({e}): {token}"))
        .claims
}

/// The real provider and a stack whose app host logs in there.
pub struct IdpStack {
    pub idp: Idp,
    pub stack: Stack,
    host: &'static str,
}

impl IdpStack {
    /// The provider (with `env`) and a stack with `config(issuer)`; the
    /// provider's client accepts `http://{host}:<envoy port>/oauth2/callback`
    /// (until then it answers 503).
    pub async fn start(
        env: &[(&str, &str)],
        host: &'static str,
        config: impl FnOnce(&str) -> String,
    ) -> Self {
        let idp = Idp::spawn(env).await;
        let stack = Stack::start(&config(&idp.url)).await;
        let mut world = Self { idp, stack, host };
        let redirect_uri = format!("http://{}{CALLBACK}", world.app());
        world.idp.configure(&[redirect_uri]).await;
        world
    }

    /// A provider and a stack that were started apart.
    pub fn of(idp: Idp, stack: Stack, host: &'static str) -> Self {
        Self { idp, stack, host }
    }

    /// The Host a browser sends for the app (Envoy's port included, so the
    /// default redirect_uri is the registered one).
    pub fn app(&self) -> String {
        format!("{}:{}", self.host, self.stack.envoy.addr().port())
    }

    pub async fn app_get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        self.stack.get(&self.app(), target, headers).await
    }

    /// A browser on the app.
    pub fn browser(&self) -> Browser<'_> {
        Browser {
            idp: Some(&self.idp),
            ..Browser::new(&self.stack, &self.app(), NAVIGATE)
        }
    }

    /// Follows the provider's pages from `authorize` back to the app.
    pub async fn at_provider(&self, authorize: &Url, action: AtProvider) -> Url {
        let at = AtIdp {
            idp: &self.idp,
            action,
            context: self.stack.debug_logs(),
        };
        at.sign_in(authorize).await
    }

    /// Everything a failed assertion should show.
    pub fn logs(&self) -> String {
        self.browser().logs()
    }

    /// The callback of `account`'s successful login from `target`: back
    /// there, the session cookie the one cookie of the browser's jar, which
    /// it returns.
    #[track_caller]
    pub fn logged_in(&self, callback: &Response, target: &str, account: &str) -> Jar {
        assert_eq!(
            callback.status,
            302,
            "{account}'s login callback: {}\n{}",
            callback.text(),
            self.logs()
        );
        assert_eq!(
            callback.header("location"),
            Some(target),
            "{account}: back to the original URL"
        );
        let mut jar = Jar::default();
        jar.update(callback);
        assert_eq!(
            jar.names(),
            [SESSION_COOKIE],
            "{account}'s login sets the session: {:?}",
            callback.headers
        );
        jar
    }

    /// tests/browser/login.mjs in headless Chromium against the app and the
    /// provider, with `env` (`LOGIN`, `LOGIN_MODE`, ...) and screenshots in
    /// the test's temporary directory under `screenshots`; it must pass.
    pub async fn browser_login(&self, screenshots: &str, env: &[(&str, &str)]) {
        assert!(
            idp::repo()
                .join("tests/browser/node_modules/playwright-core")
                .is_dir(),
            "tests/browser/node_modules is missing: run scripts/install-deps"
        );
        let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join(screenshots);
        let mut command = tokio::process::Command::new(idp::node());
        command
            .arg(idp::repo().join("tests/browser/login.mjs"))
            .arg(format!("http://{}", self.stack.envoy.addr()))
            .arg(&self.idp.url)
            .env("APP_HOST", self.host)
            .env("SCREENSHOT_DIR", &screenshots)
            .env(
                "BROWSER_TEST_TIMEOUT_MS",
                (BROWSER_TIMEOUT.as_millis() - 20_000).to_string(),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(BROWSER_TIMEOUT, command.output())
            .await
            .unwrap_or_else(|_| panic!("the browser test hung\n{}", self.logs()))
            .expect("run node tests/browser/login.mjs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mode = env
            .iter()
            .find(|(k, _)| *k == "LOGIN_MODE")
            .map(|(_, v)| format!(" ({v})"))
            .unwrap_or_default();
        assert!(
            output.status.success(),
            "tests/browser/login.mjs{mode} failed ({}); screenshots in {}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}\n{}",
            output.status,
            screenshots.display(),
            self.logs()
        );
        assert!(stdout.contains("all checks passed"), "{stdout}");
        // Shown with --nocapture: what the browser went through.
        println!("{stdout}");
    }
}
