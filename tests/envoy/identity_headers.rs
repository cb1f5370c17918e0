//! Identity headers for upstreams (`auth.identity_headers`) and
//! `auth.strip_credentials`, through real Envoy: the verified user, email
//! and groups reach the upstream under the configured names for every auth
//! type; a client's copies of any configured name never do, on any route;
//! stripping removes the password and the token.

use serde_json::{Value, json};

use crate::common::configs::{self, basic_users, path_entry, paths, rule};
use crate::common::creds::{self, basic, bearer};
use crate::common::expect::assert_upstream_ok;
use crate::common::fake_oidc::{CLIENT_ID, CLIENT_SECRET, FakeOidc};
use crate::common::idp::{Jar, NAVIGATE};
use crate::common::login::{self, Browser, Provider};
use crate::common::{Recorded, Request, Stack};

const SESSION_SECRET: &str = "identity-headers-session-secret-0123456789";
const JWT_SECRET: &str = "identity-headers-jwt-secret-7c1f9e";
const TOKEN: &str = "ci-token-4f8b2a61d3";

/// The configured names, in a mix of cases (they compare case-insensitively).
const HEADERS: &str = "identity_headers:\n  user: X-Auth-Request-User\n  email: x-auth-request-email\n  groups: X-Auth-Request-Groups";

/// Every configured name and a forged value for each.
const FORGED: [(&str, &str); 3] = [
    ("X-Auth-Request-User", "admin"),
    ("x-auth-request-email", "ceo@example.com"),
    ("X-AUTH-REQUEST-GROUPS", "admins"),
];

fn forged(request: Request) -> Request {
    FORGED.iter().fold(request, |r, (n, v)| r.header(n, v))
}

/// The identity headers one upstream request carried.
fn identity(request: &Recorded) -> [Option<&str>; 3] {
    [
        request.header("x-auth-request-user"),
        request.header("x-auth-request-email"),
        request.header("x-auth-request-groups"),
    ]
}

/// The one request that reached the upstream since the last call.
#[track_caller]
fn last(stack: &Stack) -> Recorded {
    let requests = stack.upstream_requests();
    stack.upstream.clear();
    let [request] = <[Recorded; 1]>::try_from(requests)
        .unwrap_or_else(|r| panic!("one upstream request expected: {r:?}"));
    request
}

fn basic_jwt_bearer_config() -> String {
    let jwt =
        format!("type: jwt\njwt:\n  secret: {JWT_SECRET}\n{HEADERS}\nstrip_credentials: true");
    configs::rules(&[
        rule(
            "basic.example.com",
            &format!(
                "{}\n{HEADERS}\nstrip_credentials: true",
                basic_users(&[("alice", "alice-pass-1")])
            ),
        ),
        // Paths without auth inherit the rule's, identity headers included.
        format!(
            "{}{}",
            rule(
                "bearer.example.com",
                &format!(
                    "type: bearer\nbearer:\n  tokens:\n    - {{name: ci, token: {TOKEN}}}\n    - unnamed-token-9d0c\n{HEADERS}\nstrip_credentials: true"
                ),
            ),
            paths(&[path_entry("/inherited", "app")]),
        ),
        rule("jwt.example.com", &jwt),
        // Basic without identity headers or stripping: control.
        rule("plain.example.com", &basic_users(&[("bob", "bob-pass-2")])),
        rule("open.example.com", "enabled: false"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_bearer_and_jwt_identities_reach_the_upstream_and_forgeries_never_do() {
    let stack = Stack::start(&basic_jwt_bearer_config()).await;
    let send = async |host: &str, target: &str, authorization: Option<&str>| {
        let request = forged(Request::get(host, target));
        let request = match authorization {
            Some(a) => request.header("authorization", a),
            None => request,
        };
        let response = stack.send(request).await;
        assert_upstream_ok(&response);
        last(&stack)
    };

    // basic: the username; no email or groups; the password stripped.
    let seen = send(
        "basic.example.com",
        "/",
        Some(&basic("alice", "alice-pass-1")),
    )
    .await;
    assert_eq!(identity(&seen), [Some("alice"), None, None], "{seen:?}");
    assert_eq!(
        seen.header("authorization"),
        None,
        "the password was stripped"
    );

    // A named bearer token: its name; the token stripped; on an inheriting path too.
    for target in ["/", "/inherited/x"] {
        let seen = send("bearer.example.com", target, Some(&bearer(TOKEN))).await;
        assert_eq!(
            identity(&seen),
            [Some("ci"), None, None],
            "{target}: {seen:?}"
        );
        assert_eq!(
            seen.header("authorization"),
            None,
            "{target}: the token was stripped"
        );
    }
    // An unnamed token has no user: the header is absent, the forgery gone.
    let seen = send(
        "bearer.example.com",
        "/",
        Some(&bearer("unnamed-token-9d0c")),
    )
    .await;
    assert_eq!(identity(&seen), [None, None, None], "{seen:?}");

    // jwt: sub, the verified email, the groups (a group with a comma left out).
    let claims = |extra: Value| {
        let mut c = json!({"sub": "user-42", "exp": creds::now() + 3600});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let verified = creds::hs256(
        JWT_SECRET,
        &claims(json!({
            "email": "dev@example.com",
            "email_verified": true,
            "groups": ["dev", "x,admins", "ops"],
        })),
    );
    let seen = send("jwt.example.com", "/", Some(&bearer(&verified))).await;
    assert_eq!(
        identity(&seen),
        [Some("user-42"), Some("dev@example.com"), Some("dev,ops")],
        "{seen:?}"
    );
    assert_eq!(seen.header("authorization"), None);
    // An unverified email is no email; a groups claim with a CR/LF is no group.
    let unverified = creds::hs256(
        JWT_SECRET,
        &claims(json!({"email": "dev@example.com", "groups": ["a\r\nx-admin: 1"]})),
    );
    let seen = send("jwt.example.com", "/", Some(&bearer(&unverified))).await;
    assert_eq!(identity(&seen), [Some("user-42"), None, None], "{seen:?}");

    // Control: a route without the keys sends none of them, keeps the
    // credential, and still loses the forgeries (a name another route configures).
    let password = basic("bob", "bob-pass-2");
    let seen = send("plain.example.com", "/", Some(&password)).await;
    assert_eq!(identity(&seen), [None, None, None], "{seen:?}");
    assert_eq!(seen.header("authorization"), Some(password.as_str()));
    // An open route, too.
    let seen = send("open.example.com", "/", None).await;
    assert_eq!(identity(&seen), [None, None, None], "{seen:?}");
}

/// A report-only route lets a wrong password through: no identity is
/// sent and the forged copies are removed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_only_allows_carry_no_forged_identity() {
    let auth = format!(
        "{}\nreport_only: true\n{HEADERS}",
        basic_users(&[("alice", "alice-pass-1")])
    );
    let stack = Stack::start(&configs::rules(&[rule("ro.example.com", &auth)])).await;
    let request = forged(Request::get("ro.example.com", "/"))
        .header("authorization", &basic("alice", "wrong"));
    assert_upstream_ok(&stack.send(request).await);
    let seen = last(&stack);
    assert_eq!(identity(&seen), [None, None, None], "{seen:?}");
}

fn oidc_config(fake: &FakeOidc) -> String {
    let login = format!(
        "type: oidc\nissuer: \"{}\"\nclient_id: {CLIENT_ID}\nclient_secret: {CLIENT_SECRET}\nscopes: [openid, email, profile]\n{HEADERS}",
        fake.issuer()
    );
    let api = format!(
        "type: oidc\nissuer: \"{}\"\naudience: [my-api]\n{HEADERS}\nstrip_credentials: true",
        fake.issuer()
    );
    configs::with_session(
        SESSION_SECRET,
        &[],
        &[
            rule("app.example.com", &login),
            rule("api.example.com", &api),
        ],
    )
}

/// OpenID login sessions (at the fake provider, whose user is in the real
/// shape) and API mode: `sub`, the verified email and the groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sessions_and_api_mode_send_the_verified_identity() {
    let fake = FakeOidc::start().await;
    let stack = Stack::start(&oidc_config(&fake)).await;
    let browser = Browser::new(&stack, "app.example.com", NAVIGATE);

    // Discovery may still be on its way: the first navigation can be a 503.
    let mut begun = None;
    for _ in 0..50 {
        let response = browser.navigate("/home", &[]).await;
        if response.status == 302 {
            begun = Some(login::Login::from_redirect(response));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let login = begun.unwrap_or_else(|| panic!("no login redirect\n{}", stack.debug_logs()));
    let back = fake.sign_in(&login.authorize).await;
    let callback = browser.callback(&back, &[&login.cookie]).await;
    let session = login::assert_session(&stack, &callback, "/home", &fake.rejections());
    let mut jar = Jar::default();
    jar.update(&callback);
    let cookie = format!("{}={}", session.name, session.value);
    stack.upstream.clear();

    let request = NAVIGATE
        .iter()
        .fold(
            forged(Request::get("app.example.com", "/home")),
            |r, (n, v)| r.header(n, v),
        )
        .header("cookie", &cookie);
    assert_upstream_ok(&stack.send(request).await);
    let seen = last(&stack);
    assert_eq!(
        identity(&seen),
        [
            Some("248289761001"),
            Some("jane.doe@example.com"),
            Some("staff,admins")
        ],
        "{seen:?}"
    );

    // API mode: the access token's claims; the token stripped.
    let mut claims = fake.access_claims("my-api");
    claims["email"] = json!("svc@example.com");
    claims["email_verified"] = json!(true);
    claims["groups"] = json!(["deployers"]);
    let token = fake.mint(&claims);
    let request =
        forged(Request::get("api.example.com", "/v1")).header("authorization", &bearer(&token));
    let response = stack.send(request).await;
    assert_upstream_ok(&response);
    let seen = last(&stack);
    assert_eq!(
        identity(&seen),
        [
            Some("api-client-7"),
            Some("svc@example.com"),
            Some("deployers")
        ],
        "{seen:?}"
    );
    assert_eq!(seen.header("authorization"), None, "the token was stripped");
}

/// `ingress-authz validate` names the location and the reason of a
/// refused identity header.
#[test]
fn validate_refuses_a_header_we_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    let auth = format!(
        "{}\nidentity_headers:\n  user: X-Connect-Token",
        basic_users(&[("a", "b")])
    );
    std::fs::write(&file, configs::rules(&[rule("h.example.com", &auth)])).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ingress-authz"))
        .args(["validate", "--config"])
        .arg(&file)
        .output()
        .expect("run validate");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 15:13: rules[0].backend.service.auth.identity_headers.user: `X-Connect-Token` cannot be an identity header: the proxy or the authorizer owns it"),
        "{stderr}"
    );
}
