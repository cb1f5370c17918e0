//! Single sign-on across subdomains through real Envoy, with one login at
//! the real OpenID provider (`oidc-provider`): `authz.session.cookie_domain`
//! makes the session cookie `Domain=example.test` (no `__Host-` prefix),
//! and `authz.login_host` sends every covered host's login through
//! `auth.example.test`, whose callback is the one registered. Return URLs
//! outside the domain, and routes the return URL does not reach, are
//! refused without a redirect.

use std::time::Duration;

use url::Url;

use crate::common::configs::{self, rule};
use crate::common::idp::{
    AtProvider, IDP_CLIENT_ID, IDP_CLIENT_SECRET, Idp, LOGIN_COOKIE_PREFIX, NAVIGATE,
    SESSION_COOKIE, SetCookie, set_cookies,
};
use crate::common::login::{Browser, CALLBACK, Login};
use crate::common::{Response, Stack};

const SESSION_SECRET: &str = "sso-test-session-secret-0123456789abcdef";

fn config(issuer: &str) -> String {
    let login = format!(
        "type: oidc\nissuer: \"{issuer}\"\nclient_id: {IDP_CLIENT_ID}\nclient_secret: {IDP_CLIENT_SECRET}\nscopes: [openid, email, profile]\nidentity_headers:\n  user: X-Auth-Request-User"
    );
    configs::with_session(
        SESSION_SECRET,
        &["cookie_domain: .example.test"],
        &[
            rule("a.example.test", &login),
            rule("b.example.test", &login),
        ],
    )
    .replace("rules:\n", "  login_host: auth.example.test\nrules:\n")
}

struct World {
    idp: Idp,
    stack: Stack,
}

impl World {
    async fn start() -> Self {
        let mut idp = Idp::spawn(&[]).await;
        let stack = Stack::start(&config(&idp.url)).await;
        let port = stack.envoy.addr().port();
        // The one callback registered: the login host's.
        idp.configure(&[format!("http://auth.example.test:{port}{CALLBACK}")])
            .await;
        Self { idp, stack }
    }

    /// `name.example.test` with Envoy's port, as a browser sends it.
    fn host(&self, name: &str) -> String {
        format!("{name}.example.test:{}", self.stack.envoy.addr().port())
    }

    fn browser(&self, name: &str) -> Browser<'_> {
        Browser {
            idp: Some(&self.idp),
            ..Browser::new(&self.stack, &self.host(name), NAVIGATE)
        }
    }

    /// A navigation until discovery is done (503 before).
    async fn navigate(&self, name: &str, target: &str, cookies: &[&str]) -> Response {
        for _ in 0..100 {
            let response = self.browser(name).navigate(target, cookies).await;
            if response.status != 503 {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("discovery never succeeded\n{}", self.logs())
    }

    fn logs(&self) -> String {
        self.browser("a").logs()
    }
}

/// The session cookie a response sets (not a clearing one).
fn session_cookie(response: &Response) -> Option<SetCookie> {
    set_cookies(response)
        .into_iter()
        .find(|c| c.name.ends_with(SESSION_COOKIE) && !c.deletes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_login_at_the_login_host_covers_every_subdomain() {
    let world = World::start().await;
    let port = world.stack.envoy.addr().port();
    let original = format!("http://{}/page?x=1", world.host("a"));

    // a without a session: to the login host's start, setting nothing here.
    let to_start = world.navigate("a", "/page?x=1", &[]).await;
    assert_eq!(
        to_start.status,
        302,
        "{}\n{}",
        to_start.text(),
        world.logs()
    );
    assert!(set_cookies(&to_start).is_empty(), "{:?}", to_start.headers);
    let start = Url::parse(to_start.header("location").unwrap()).unwrap();
    assert_eq!(
        start.as_str(),
        format!(
            "http://auth.example.test:{port}/oauth2/start?rd={}&route=rules%5B0%5D",
            url::form_urlencoded::byte_serialize(original.as_bytes()).collect::<String>()
        )
    );

    // The login host: its own login-state cookie (host-only), the provider
    // with the login host's callback.
    let auth = world.browser("auth");
    let begun = auth
        .navigate(&start[url::Position::BeforePath..], &[])
        .await;
    assert_eq!(begun.status, 302, "{}\n{}", begun.text(), world.logs());
    let login = Login::from_redirect(begun);
    assert!(login.set_cookie.name.starts_with(LOGIN_COOKIE_PREFIX));
    login.set_cookie.assert_protected("/oauth2/");
    assert_eq!(
        login.param("redirect_uri"),
        format!("http://auth.example.test:{port}{CALLBACK}")
    );

    // One sign-in at the provider; back at the login host's callback.
    let back = crate::common::idp::at_provider(
        &world.idp,
        &login.authorize,
        AtProvider::SignIn("alice"),
        &world.logs(),
    )
    .await;
    assert_eq!(back.host_str(), Some("auth.example.test"), "{back}");
    let callback = auth.callback(&back, &[&login.cookie]).await;
    assert_eq!(
        callback.status,
        302,
        "{}\n{}",
        callback.text(),
        world.logs()
    );
    assert_eq!(callback.header("location"), Some(original.as_str()));
    let session = session_cookie(&callback)
        .unwrap_or_else(|| panic!("no session cookie: {:?}", callback.headers));
    assert_eq!(
        session.name, SESSION_COOKIE,
        "no __Host- prefix: {session:?}"
    );
    assert_eq!(session.attr("domain"), Some("example.test"), "{session:?}");
    assert_eq!(session.attr("path"), Some("/"));
    assert!(session.attrs.contains_key("httponly"));
    let cookie = format!("{}={}", session.name, session.value);

    // a and b are allowed with the one cookie; no second login.
    world.stack.upstream.clear();
    for name in ["a", "b"] {
        let response = world.navigate(name, "/page?x=1", &[&cookie]).await;
        assert_eq!(
            response.status,
            200,
            "{name}: {}\n{}",
            response.text(),
            world.logs()
        );
        assert_eq!(response.json()["upstream"], true);
    }
    let seen = world.stack.upstream_requests();
    assert_eq!(seen.len(), 2);
    let user = seen[0].header("x-auth-request-user").map(str::to_owned);
    assert!(user.is_some(), "{seen:?}");
    assert_eq!(seen[1].header("x-auth-request-user"), user.as_deref());
    assert_eq!(
        world.idp.stats().await.get("authorization").copied(),
        Some(1),
        "one authorization request at the provider"
    );

    // Logout (on b) expires the domain cookie.
    let logout = world.navigate("b", "/oauth2/logout", &[&cookie]).await;
    assert_eq!(logout.status, 302);
    assert!(
        set_cookies(&logout).iter().any(|c| c.name == SESSION_COOKIE
            && c.deletes()
            && c.attr("domain") == Some("example.test")),
        "{:?}",
        logout.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_host_refuses_return_urls_it_does_not_serve() {
    let world = World::start().await;
    // Discovery done first, so that refusals are not 503s.
    assert_eq!(world.navigate("a", "/", &[]).await.status, 302);
    let port = world.stack.envoy.addr().port();
    let start = |rd: &str, route: &str| {
        let mut u = Url::parse("http://x/oauth2/start").unwrap();
        u.query_pairs_mut()
            .append_pair("rd", rd)
            .append_pair("route", route);
        u[url::Position::BeforePath..].to_owned()
    };
    let auth = world.browser("auth");
    for (rd, route, status, reason) in [
        (
            "http://evil.test/".to_owned(),
            "rules[0]",
            400,
            "bad_return",
        ),
        (
            format!("http://a.example.test.evil.test:{port}/"),
            "rules[0]",
            400,
            "bad_return",
        ),
        (
            format!("http://evil.test\\@a.example.test:{port}/"),
            "rules[0]",
            400,
            "bad_return",
        ),
        ("/relative".to_owned(), "rules[0]", 400, "bad_return"),
        // The route named is not the one b's URL reaches.
        (
            format!("http://b.example.test:{port}/"),
            "rules[0]",
            400,
            "bad_return",
        ),
        (
            format!("http://a.example.test:{port}/"),
            "rules[7]",
            400,
            "stale_login",
        ),
    ] {
        let response = auth.navigate(&start(&rd, route), &[]).await;
        assert_eq!(response.status, status, "{rd}: {}", response.text());
        assert_eq!(response.header("location"), None, "{rd}: no redirect");
        assert!(
            response.text().contains(reason),
            "{rd}: {}",
            response.text()
        );
        assert!(
            set_cookies(&response).is_empty(),
            "{rd}: {:?}",
            response.headers
        );
    }
    // Only the login host starts logins.
    let elsewhere = world
        .browser("a")
        .navigate(
            &start(&format!("http://a.example.test:{port}/"), "rules[0]"),
            &[],
        )
        .await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.text());
    assert_eq!(elsewhere.header("location"), None);
}
