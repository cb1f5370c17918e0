//! Fake OAuth2 providers for the login-flow tests (SPEC §6, §7): one
//! in-process axum server per test, on an ephemeral loopback port, serving a
//! provider's authorize, token and user endpoints at that provider's real
//! paths and in its real response shapes (GitHub's HTTP 200 error bodies,
//! Slack's `ok:false`, Feishu's `code != 0`, numeric ids, ...).
//!
//! The fake is strict the way the real provider is: a code is good once, for
//! the client and `redirect_uri` it was issued to; a PKCE challenge must be
//! met by its verifier (S256); the user endpoint wants the access token it
//! issued; GitHub's API wants a `User-Agent`. Whatever it refuses is also
//! written to [`FakeProvider::rejections`], so that a failing test says why.
//! Every request is recorded ([`FakeProvider::calls`]) for assertions on what
//! the service sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::fake_http::{self, FakeHttp, Shared, lookup, server_error};
pub use super::fake_http::{Call, pkce_s256};

/// The client the fakes know unless told otherwise.
pub const CLIENT_ID: &str = "cid";
pub const CLIENT_SECRET: &str = "oauth2-client-secret-for-tests";

/// The ten providers of SPEC §7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Github,
    Gitlab,
    Google,
    Microsoft,
    Feishu,
    Slack,
    Kakao,
    Auth0,
    Okta,
    Doreamon,
}

impl Kind {
    pub const ALL: [Self; 10] = [
        Self::Github,
        Self::Gitlab,
        Self::Google,
        Self::Microsoft,
        Self::Feishu,
        Self::Slack,
        Self::Kakao,
        Self::Auth0,
        Self::Okta,
        Self::Doreamon,
    ];

    /// The `provider:` value in the config.
    pub fn name(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Google => "google",
            Self::Microsoft => "microsoft",
            Self::Feishu => "feishu",
            Self::Slack => "slack",
            Self::Kakao => "kakao",
            Self::Auth0 => "auth0",
            Self::Okta => "okta",
            Self::Doreamon => "doreamon",
        }
    }

    /// Paths the fake serves. With `base_url` these are the provider's real
    /// paths; google and microsoft are configured by `auth_url`/`token_url`/
    /// `userinfo_url`, pointed at paths shaped like theirs.
    pub fn endpoints(self) -> Endpoints {
        let (authorize, token, user) = match self {
            Self::Github => (
                "/login/oauth/authorize",
                "/login/oauth/access_token",
                "/api/v3/user",
            ),
            Self::Gitlab => ("/oauth/authorize", "/oauth/token", "/api/v4/user"),
            Self::Google => ("/o/oauth2/v2/auth", "/token", "/v1/userinfo"),
            Self::Microsoft => (
                "/contoso/oauth2/v2.0/authorize",
                "/contoso/oauth2/v2.0/token",
                "/v1.0/me",
            ),
            Self::Feishu => (
                "/open-apis/authen/v1/index",
                "/open-apis/authen/v1/access_token",
                "/open-apis/authen/v1/user_info",
            ),
            Self::Slack => (
                "/oauth/v2/authorize",
                "/api/oauth.v2.access",
                "/api/users.identity",
            ),
            Self::Kakao => ("/oauth/authorize", "/oauth/token", "/v2/user/me"),
            Self::Auth0 => ("/authorize", "/oauth/token", "/userinfo"),
            Self::Okta => (
                "/oauth2/default/v1/authorize",
                "/oauth2/default/v1/token",
                "/oauth2/default/v1/userinfo",
            ),
            Self::Doreamon => ("/authorize", "/token", "/user"),
        };
        Endpoints {
            authorize,
            token,
            user,
            github_emails: (self == Self::Github).then_some("/api/v3/user/emails"),
            github_orgs: (self == Self::Github).then_some("/api/v3/user/orgs"),
            github_teams: (self == Self::Github).then_some("/api/v3/user/teams"),
            feishu_app_token: (self == Self::Feishu)
                .then_some("/open-apis/auth/v3/app_access_token/internal"),
        }
    }

    /// Whether the service is expected to use PKCE (S256) with this provider.
    pub fn uses_pkce(self) -> bool {
        matches!(
            self,
            Self::Gitlab
                | Self::Google
                | Self::Microsoft
                | Self::Auth0
                | Self::Okta
                | Self::Kakao
                | Self::Doreamon
        )
    }

    /// The authorize-URL parameter carrying the client id.
    pub fn client_id_param(self) -> &'static str {
        if self == Self::Feishu {
            "app_id"
        } else {
            "client_id"
        }
    }

    /// The authorize-URL parameter carrying the scopes, if any.
    pub fn scope_param(self) -> Option<&'static str> {
        match self {
            Self::Slack => Some("user_scope"),
            Self::Feishu | Self::Kakao => None,
            _ => Some("scope"),
        }
    }

    /// SPEC §7's default scopes (`None`: the provider's default, not checked).
    pub fn default_scopes(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Github => Some(&["user:email"]),
            Self::Gitlab => Some(&["read_user"]),
            Self::Google | Self::Microsoft | Self::Auth0 | Self::Okta => {
                Some(&["openid", "profile", "email"])
            }
            Self::Slack => Some(&["identity.basic", "identity.email", "identity.avatar"]),
            Self::Doreamon => Some(&["openid", "email", "profile"]),
            Self::Feishu | Self::Kakao => None,
        }
    }

    /// The user endpoint's answer for the default test user, in the
    /// provider's own shape (whole response body).
    pub fn default_profile(self) -> Value {
        match self {
            Self::Github => json!({
                "login": "octocat",
                "id": 583231,
                "node_id": "MDQ6VXNlcjU4MzIzMQ==",
                "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4",
                "gravatar_id": "",
                "html_url": "https://github.com/octocat",
                "type": "User",
                "site_admin": false,
                "name": "The Octocat",
                "company": "@github",
                "blog": "https://github.blog",
                "location": "San Francisco",
                "email": "octocat@github.example",
                "hireable": null,
                "bio": null,
                "public_repos": 8,
                "followers": 9000,
                "following": 9,
                "created_at": "2011-01-25T18:44:36Z",
                "updated_at": "2024-01-22T12:00:00Z"
            }),
            Self::Gitlab => json!({
                "id": 4021,
                "username": "john_smith",
                "name": "John Smith",
                "state": "active",
                "locked": false,
                "avatar_url": "https://gitlab.example/uploads/-/system/user/avatar/4021/avatar.png",
                "web_url": "https://gitlab.example/john_smith",
                "created_at": "2012-05-23T08:00:58Z",
                "bio": "",
                "public_email": "",
                "email": "john@gitlab.example",
                "confirmed_at": "2012-05-23T09:05:22Z",
                "two_factor_enabled": false,
                "is_admin": false
            }),
            Self::Google => json!({
                "sub": "110169484474386276334",
                "name": "Grace Hopper",
                "given_name": "Grace",
                "family_name": "Hopper",
                "picture": "https://lh3.googleusercontent.com/a/grace=s96-c",
                "email": "grace@google.example",
                "email_verified": true,
                "locale": "en"
            }),
            Self::Microsoft => json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
                "businessPhones": ["+1 425 555 0109"],
                "displayName": "Adele Vance",
                "givenName": "Adele",
                "jobTitle": "Retail Manager",
                "mail": "AdeleV@contoso.example",
                "mobilePhone": null,
                "officeLocation": "18/2111",
                "preferredLanguage": "en-US",
                "surname": "Vance",
                "userPrincipalName": "adele.vance@contoso.onmicrosoft.example",
                "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
            }),
            Self::Feishu => json!({
                "code": 0,
                "msg": "success",
                "data": {
                    "name": "张三",
                    "en_name": "San Zhang",
                    "avatar_url": "https://s1-imfile.feishucdn.example/avatar/zhangsan.jpg",
                    "avatar_thumb": "https://s1-imfile.feishucdn.example/avatar/zhangsan_72.jpg",
                    "avatar_middle": "https://s1-imfile.feishucdn.example/avatar/zhangsan_240.jpg",
                    "avatar_big": "https://s1-imfile.feishucdn.example/avatar/zhangsan_640.jpg",
                    "open_id": "ou_caecc734c2e3328a62489fe0648c4b98779515d3",
                    "union_id": "on_d89jhk3b6d7g5b2ed2f43cd3e4a4b3b2",
                    "email": "zhangsan@personal.example",
                    "enterprise_email": "zhangsan@corp.example",
                    "user_id": "5d9bdxxx",
                    "mobile": "+8613000000000",
                    "tenant_key": "736588c92lxf175d",
                    "employee_no": "111222333"
                }
            }),
            Self::Slack => json!({
                "ok": true,
                "user": {
                    "name": "Sonny Whether",
                    "id": "U0G9QF9C6",
                    "email": "sonny@slack.example",
                    "image_24": "https://avatars.slack-edge.example/sonny_24.png",
                    "image_32": "https://avatars.slack-edge.example/sonny_32.png",
                    "image_48": "https://avatars.slack-edge.example/sonny_48.png",
                    "image_72": "https://avatars.slack-edge.example/sonny_72.png",
                    "image_192": "https://avatars.slack-edge.example/sonny_192.png",
                    "image_512": "https://avatars.slack-edge.example/sonny_512.png"
                },
                "team": { "id": "T0G9PQBBK" }
            }),
            Self::Kakao => json!({
                "id": 2632890179u64,
                "connected_at": "2022-04-11T01:45:28Z",
                "properties": {
                    "nickname": "홍길동",
                    "profile_image": "http://k.kakaocdn.example/dn/profile_640x640.jpg",
                    "thumbnail_image": "http://k.kakaocdn.example/dn/profile_110x110.jpg"
                },
                "kakao_account": {
                    "profile_nickname_needs_agreement": false,
                    "profile_image_needs_agreement": false,
                    "profile": {
                        "nickname": "홍길동",
                        "thumbnail_image_url": "http://k.kakaocdn.example/dn/profile_110x110.jpg",
                        "profile_image_url": "http://k.kakaocdn.example/dn/profile_640x640.jpg",
                        "is_default_image": false
                    },
                    "has_email": true,
                    "email_needs_agreement": false,
                    "is_email_valid": true,
                    "is_email_verified": true,
                    "email": "hong@kakao.example"
                }
            }),
            Self::Auth0 => json!({
                "sub": "auth0|64f1c2a0b1d2",
                "nickname": "jdoe",
                "name": "Jane Doe",
                "picture": "https://s.gravatar.example/avatar/jdoe.png",
                "updated_at": "2024-01-01T00:00:00.000Z",
                "email": "jane@auth0.example",
                "email_verified": true
            }),
            Self::Okta => json!({
                "sub": "00uid4BxXw6I6TV4m0g3",
                "name": "John Doe",
                "nickname": "Jimmy",
                "given_name": "John",
                "middle_name": "James",
                "family_name": "Doe",
                "profile": "https://example.com/john.doe",
                "zoneinfo": "America/Los_Angeles",
                "locale": "en-US",
                "updated_at": 1311280970,
                "email": "john.doe@okta.example",
                "email_verified": true,
                "preferred_username": "jdoe@okta.example"
            }),
            Self::Doreamon => json!({
                "id": 42,
                "username": "nobita",
                "email": "nobita@zcorky.example",
                "nickname": "Nobi Nobita",
                "avatar": "https://login.zcorky.example/avatar/42.png"
            }),
        }
    }

    /// What SPEC §7 maps [`Kind::default_profile`] to.
    pub fn default_identity(self) -> Identity {
        Identity::from_profile(self, &self.default_profile(), None)
    }
}

/// The paths a fake serves for one provider.
#[derive(Clone, Copy, Debug)]
pub struct Endpoints {
    pub authorize: &'static str,
    pub token: &'static str,
    pub user: &'static str,
    pub github_emails: Option<&'static str>,
    /// GitHub: `GET /user/orgs` (the organizations the user belongs to).
    pub github_orgs: Option<&'static str>,
    /// GitHub: `GET /user/teams` (the user's teams, across organizations).
    pub github_teams: Option<&'static str>,
    pub feishu_app_token: Option<&'static str>,
}

/// The identity of SPEC §7, as the connect token carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub username: String,
    pub email: String,
    pub nickname: String,
    pub avatar: String,
}

impl Identity {
    /// SPEC §7's mapping, written independently of the implementation.
    /// `github_emails`: the /user/emails answer, used when `email` is null.
    pub fn from_profile(kind: Kind, p: &Value, github_emails: Option<&Value>) -> Self {
        let s = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        let first = |a: &Value, b: &Value| {
            let a = s(a);
            if a.is_empty() { s(b) } else { a }
        };
        let (id, username, email, nickname, avatar) = match kind {
            Kind::Github => {
                let email = match &p["email"] {
                    Value::String(e) if !e.is_empty() => e.clone(),
                    _ => github_emails
                        .and_then(Value::as_array)
                        .and_then(|list| {
                            list.iter().find(|e| {
                                e["primary"] == Value::Bool(true)
                                    && e["verified"] == Value::Bool(true)
                            })
                        })
                        .map(|e| s(&e["email"]))
                        .unwrap_or_default(),
                };
                (
                    s(&p["id"]),
                    s(&p["login"]),
                    email,
                    s(&p["name"]),
                    s(&p["avatar_url"]),
                )
            }
            Kind::Gitlab => (
                s(&p["id"]),
                s(&p["username"]),
                s(&p["email"]),
                s(&p["name"]),
                s(&p["avatar_url"]),
            ),
            Kind::Google => (
                s(&p["sub"]),
                s(&p["email"]),
                s(&p["email"]),
                s(&p["name"]),
                s(&p["picture"]),
            ),
            Kind::Microsoft => (
                s(&p["id"]),
                s(&p["userPrincipalName"]),
                s(&p["mail"]),
                s(&p["displayName"]),
                String::new(),
            ),
            Kind::Feishu => {
                let d = &p["data"];
                (
                    s(&d["union_id"]),
                    first(&d["en_name"], &d["name"]),
                    first(&d["enterprise_email"], &d["email"]),
                    s(&d["name"]),
                    s(&d["avatar_url"]),
                )
            }
            Kind::Slack => {
                let u = &p["user"];
                (
                    s(&u["id"]),
                    s(&u["name"]),
                    s(&u["email"]),
                    s(&u["name"]),
                    s(&u["image_48"]),
                )
            }
            Kind::Kakao => (
                s(&p["id"]),
                s(&p["properties"]["nickname"]),
                s(&p["kakao_account"]["email"]),
                s(&p["properties"]["nickname"]),
                s(&p["properties"]["profile_image"]),
            ),
            Kind::Auth0 => (
                s(&p["sub"]),
                s(&p["nickname"]),
                s(&p["email"]),
                s(&p["name"]),
                s(&p["picture"]),
            ),
            Kind::Okta => (
                s(&p["sub"]),
                s(&p["preferred_username"]),
                s(&p["email"]),
                s(&p["name"]),
                String::new(),
            ),
            Kind::Doreamon => (
                s(&p["id"]),
                s(&p["username"]),
                s(&p["email"]),
                s(&p["nickname"]),
                s(&p["avatar"]),
            ),
        };
        Self {
            id,
            username,
            email,
            nickname,
            avatar,
        }
    }
}

/// How the fake misbehaves on the next token/user exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Behave.
    None,
    /// Reject the code the way this provider does: GitHub HTTP 200
    /// `{"error":"bad_verification_code"}`, Slack 200 `{"ok":false}`, Feishu
    /// 200 `{"code":20003}`, others 400/403 `{"error":"invalid_grant"}`.
    BadCode,
    /// The token endpoint answers 500 (HTML body).
    TokenServerError,
    /// A success-shaped token answer whose access token is `""`.
    EmptyToken,
    /// A success-shaped token answer without any access token field.
    NoToken,
    /// The user endpoint answers without the id the mapping needs
    /// (Feishu and Slack: `""`; others: the field is absent).
    MissingUserId,
    /// The user endpoint answers 500.
    UserServerError,
    /// Feishu only: the app_access_token request fails (`code != 0`).
    AppTokenError,
    /// The token endpoint answers `307` to [`REDIRECT_TRAP`] on this fake
    /// (which must never be called: provider calls follow no redirects).
    TokenRedirect,
    /// The user endpoint answers 200 with an HTML page.
    UserNotJson,
    /// The token endpoint answers only after [`HANG`].
    Hang,
}

/// Where [`Failure::TokenRedirect`] points.
pub const REDIRECT_TRAP: &str = "/redirect-trap/token";
/// How long [`Failure::Hang`] keeps the token request waiting.
pub const HANG: std::time::Duration = std::time::Duration::from_secs(40);

/// What the authorize endpoint was asked, kept until the code is redeemed.
#[derive(Clone, Debug)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

struct FakeState {
    kind: Kind,
    client_id: String,
    client_secret: String,
    profile: Value,
    github_emails: Value,
    github_orgs: Value,
    github_teams: Value,
    failure: Failure,
    grants: HashMap<String, Grant>,
    access_tokens: Vec<String>,
    app_tokens: Vec<String>,
    rejections: Vec<String>,
}

/// A running fake provider.
pub struct FakeProvider {
    kind: Kind,
    http: FakeHttp<FakeState>,
}

impl FakeProvider {
    /// A fake of `kind` for client [`CLIENT_ID`] / [`CLIENT_SECRET`].
    pub async fn start(kind: Kind) -> Self {
        Self::start_for(kind, CLIENT_ID, CLIENT_SECRET).await
    }

    pub async fn start_for(kind: Kind, client_id: &str, client_secret: &str) -> Self {
        let state = FakeState {
            kind,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            profile: kind.default_profile(),
            github_emails: json!([
                {"email": "octocat@github.example", "primary": true, "verified": true, "visibility": "public"}
            ]),
            github_orgs: json!([github_org("acme", GITHUB_ACME_ID)]),
            github_teams: json!([github_team(
                "acme",
                GITHUB_ACME_ID,
                "platform",
                "Platform",
                GITHUB_PLATFORM_TEAM_ID
            )]),
            failure: Failure::None,
            grants: HashMap::new(),
            access_tokens: Vec::new(),
            app_tokens: Vec::new(),
            rejections: Vec::new(),
        };
        let listener = fake_http::listen(0, "fake provider").await;
        Self {
            kind,
            http: FakeHttp::serve(listener, state, handle),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// Sends `request` to the fake directly (not through Envoy).
    pub async fn send(&self, request: super::Request) -> super::Response {
        self.http.send(request).await
    }

    /// The code the authorize endpoint hands out for `target` (its path
    /// and query).
    pub async fn code_for(&self, target: &str) -> String {
        let r = self
            .send(super::Request::get(&self.addr().to_string(), target))
            .await;
        let back = url::Url::parse(r.header("location").unwrap()).unwrap();
        let code = back.query_pairs().find(|(k, _)| k == "code");
        code.map(|(_, v)| v.into_owned()).unwrap()
    }

    /// POSTs the form-encoded `form` to `path`, with `headers` too.
    pub async fn post_form(
        &self,
        path: &str,
        form: String,
        headers: &[(&str, &str)],
    ) -> super::Response {
        let request = super::Request::new("POST", &self.addr().to_string(), path)
            .header("content-type", "application/x-www-form-urlencoded");
        let request = headers.iter().fold(request, |r, (n, v)| r.header(n, v));
        self.send(request.body(form)).await
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn client_id(&self) -> String {
        self.lock().client_id.clone()
    }

    pub fn client_secret(&self) -> String {
        self.lock().client_secret.clone()
    }

    /// The YAML lines (`key: value`, unindented) that point the service's
    /// oauth2 config at this fake.
    pub fn endpoint_yaml(&self) -> Vec<String> {
        let base = self.base_url();
        let e = self.kind.endpoints();
        match self.kind {
            Kind::Google => vec![
                format!("auth_url: {base}{}", e.authorize),
                format!("token_url: {base}{}", e.token),
                format!("userinfo_url: {base}{}", e.user),
            ],
            Kind::Microsoft => vec![
                "tenant: contoso".to_owned(),
                format!("auth_url: {base}{}", e.authorize),
                format!("token_url: {base}{}", e.token),
                format!("userinfo_url: {base}{}", e.user),
            ],
            _ => vec![format!("base_url: {base}")],
        }
    }

    /// Edits the user endpoint's answer in place.
    pub fn edit_profile(&self, edit: impl FnOnce(&mut Value)) {
        edit(&mut self.lock().profile);
    }

    /// GitHub: the `/user/emails` answer.
    pub fn set_github_emails(&self, emails: Value) {
        self.lock().github_emails = emails;
    }

    /// GitHub: the `/user/orgs` answer (a JSON array; see [`github_org`]).
    pub fn set_github_orgs(&self, orgs: Value) {
        self.lock().github_orgs = orgs;
    }

    /// GitHub: the `/user/teams` answer (a JSON array; see [`github_team`]).
    pub fn set_github_teams(&self, teams: Value) {
        self.lock().github_teams = teams;
    }

    /// The identity SPEC §7 maps the current profile to.
    pub fn expected_identity(&self) -> Identity {
        let state = self.lock();
        Identity::from_profile(self.kind, &state.profile, Some(&state.github_emails))
    }

    pub fn set_failure(&self, failure: Failure) {
        self.lock().failure = failure;
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.http.calls()
    }

    /// The requests to one path.
    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.path == path)
            .collect()
    }

    /// Why the fake refused requests (empty when all was in order).
    pub fn rejections(&self) -> Vec<String> {
        self.lock().rejections.clone()
    }

    /// Access tokens (and Feishu app tokens) it handed out: none may appear
    /// in the service's logs.
    pub fn issued_tokens(&self) -> Vec<String> {
        let state = self.lock();
        state
            .access_tokens
            .iter()
            .chain(&state.app_tokens)
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.http.lock()
    }
}

fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}{n}x{nanos:08x}")
}

fn json_response(status: StatusCode, body: Value) -> Response {
    fake_http::json_response(status, "application/json; charset=utf-8", &body)
}

async fn handle(state: Shared<FakeState>, call: Call) -> Response {
    let hang = {
        let state = state.lock().unwrap();
        state.failure == Failure::Hang && call.path == state.kind.endpoints().token
    };
    if hang {
        tokio::time::sleep(HANG).await;
        return server_error();
    }
    let mut state = state.lock().unwrap();
    let e = state.kind.endpoints();
    let path = call.path.as_str();
    let (response, rejection) = if path == e.authorize {
        authorize(&mut state, &call)
    } else if Some(path) == e.feishu_app_token {
        feishu_app_token(&mut state, &call)
    } else if path == e.token {
        token(&mut state, &call)
    } else if path == e.user {
        user(&state, &call)
    } else if Some(path) == e.github_emails {
        github_emails(&state, &call)
    } else if Some(path) == e.github_orgs {
        github_list(&state, &call, state.github_orgs.clone())
    } else if Some(path) == e.github_teams {
        github_list(&state, &call, state.github_teams.clone())
    } else {
        (
            (StatusCode::NOT_FOUND, "not found").into_response(),
            Some(format!("unknown endpoint {} {path}", call.method)),
        )
    };
    if let Some(why) = rejection {
        state.rejections.push(why);
    }
    response
}

type Answer = (Response, Option<String>);

fn reject(response: Response, why: impl Into<String>) -> Answer {
    (response, Some(why.into()))
}

fn bad_request(why: &str) -> Answer {
    reject(
        json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": why}),
        ),
        why,
    )
}

/// The consent screen, approved at once: 302 to `redirect_uri?code&state`.
fn authorize(state: &mut FakeState, call: &Call) -> Answer {
    let kind = state.kind;
    if call.method != "GET" {
        return bad_request("authorize: not a GET");
    }
    let client_id = call.query_param(kind.client_id_param()).unwrap_or_default();
    if client_id != state.client_id {
        return bad_request(&format!(
            "authorize: {}={client_id:?}, expected {:?}",
            kind.client_id_param(),
            state.client_id
        ));
    }
    if kind != Kind::Feishu && call.query_param("response_type") != Some("code") {
        return bad_request("authorize: response_type is not `code`");
    }
    let Some(redirect_uri) = call.query_param("redirect_uri") else {
        return bad_request("authorize: no redirect_uri");
    };
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        return bad_request("authorize: redirect_uri is not an absolute URL");
    };
    let code_challenge = call.query_param("code_challenge").map(str::to_owned);
    let code_challenge_method = call.query_param("code_challenge_method").map(str::to_owned);
    if code_challenge.is_some() && code_challenge_method.as_deref() != Some("S256") {
        return bad_request("authorize: code_challenge_method is not S256");
    }
    let code = unique(&format!("{}-code-", kind.name()));
    state.grants.insert(
        code.clone(),
        Grant {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            code_challenge,
            code_challenge_method,
        },
    );
    {
        let mut query = target.query_pairs_mut();
        query.append_pair("code", &code);
        if let Some(s) = call.query_param("state") {
            query.append_pair("state", s);
        }
    }
    let response = (
        StatusCode::FOUND,
        [(header::LOCATION, target.to_string())],
        "",
    )
        .into_response();
    (response, None)
}

/// The provider's way of saying "bad code" (or "bad request").
fn bad_code(kind: Kind, why: &str) -> Answer {
    let response = match kind {
        Kind::Github => json_response(
            StatusCode::OK,
            json!({
                "error": "bad_verification_code",
                "error_description": "The code passed is incorrect or expired.",
                "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code"
            }),
        ),
        Kind::Slack => json_response(
            StatusCode::OK,
            json!({"ok": false, "error": "invalid_code"}),
        ),
        Kind::Feishu => json_response(
            StatusCode::OK,
            json!({"code": 20003, "msg": "invalid code"}),
        ),
        Kind::Kakao => json_response(
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid_grant",
                "error_description": "authorization code not found for code=...",
                "error_code": "KOE320"
            }),
        ),
        Kind::Microsoft => json_response(
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid_grant",
                "error_description": "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.",
                "error_codes": [70008],
                "timestamp": "2024-01-01 00:00:00Z",
                "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
                "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd"
            }),
        ),
        Kind::Auth0 => json_response(
            StatusCode::FORBIDDEN,
            json!({"error": "invalid_grant", "error_description": "Invalid authorization code"}),
        ),
        _ => json_response(
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid_grant",
                "error_description": "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client."
            }),
        ),
    };
    reject(response, why)
}

/// Feishu: `POST /open-apis/auth/v3/app_access_token/internal`, JSON
/// `{app_id, app_secret}`.
fn feishu_app_token(state: &mut FakeState, call: &Call) -> Answer {
    if call.method != "POST" {
        return bad_request("feishu app token: not a POST");
    }
    let body = call.json();
    if body["app_id"] != state.client_id.as_str()
        || body["app_secret"] != state.client_secret.as_str()
    {
        return reject(
            json_response(
                StatusCode::OK,
                json!({"code": 10014, "msg": "app secret invalid"}),
            ),
            format!("feishu app token: wrong app_id/app_secret in {body}"),
        );
    }
    if state.failure == Failure::AppTokenError {
        return reject(
            json_response(
                StatusCode::OK,
                json!({"code": 10003, "msg": "invalid param"}),
            ),
            "feishu app token: failure mode AppTokenError",
        );
    }
    let token = unique("a-feishu-app-");
    state.app_tokens.push(token.clone());
    let answer = json!({
        "code": 0,
        "msg": "ok",
        "app_access_token": token,
        "expire": 7200
    });
    (json_response(StatusCode::OK, answer), None)
}

/// The token endpoint: checks client, code, redirect_uri and PKCE as the
/// real provider would, then answers in its shape.
fn token(state: &mut FakeState, call: &Call) -> Answer {
    let kind = state.kind;
    if call.method != "POST" {
        return bad_request("token: not a POST");
    }
    if state.failure == Failure::TokenServerError {
        return reject(server_error(), "token: failure mode TokenServerError");
    }
    if state.failure == Failure::TokenRedirect {
        let response = (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, REDIRECT_TRAP)],
            "",
        )
            .into_response();
        return reject(response, "token: failure mode TokenRedirect");
    }
    let (code, redirect_uri, verifier) = if kind == Kind::Feishu {
        // JSON body, app token as Bearer.
        let Some(app_token) = call.bearer() else {
            return reject(
                json_response(
                    StatusCode::OK,
                    json!({"code": 99991661, "msg": "Missing access token for authorization"}),
                ),
                "feishu token: no Authorization: Bearer <app_access_token>",
            );
        };
        if !state.app_tokens.iter().any(|t| t == app_token) {
            return reject(
                json_response(
                    StatusCode::OK,
                    json!({"code": 99991664, "msg": "invalid app access token"}),
                ),
                "feishu token: the Bearer is not an app_access_token we issued",
            );
        }
        let body = call.json();
        if body["grant_type"] != "authorization_code" {
            return bad_code(kind, &format!("feishu token: grant_type in {body}"));
        }
        (
            body["code"].as_str().unwrap_or_default().to_owned(),
            None,
            None,
        )
    } else {
        let form = call.form();
        if !call
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
        {
            return bad_request("token: body is not application/x-www-form-urlencoded");
        }
        if lookup(&form, "grant_type") != Some("authorization_code") && kind != Kind::Github {
            return bad_request("token: grant_type is not authorization_code");
        }
        // Client authentication: in the form (client_secret_post), or, where
        // the real provider accepts it, HTTP Basic.
        let in_form = (
            lookup(&form, "client_id").map(str::to_owned),
            lookup(&form, "client_secret").map(str::to_owned),
        );
        let credentials = match (in_form, call.basic_credentials()) {
            ((Some(id), Some(secret)), _) => Some((id, secret)),
            (_, Some(basic)) if !matches!(kind, Kind::Github | Kind::Kakao) => Some(basic),
            _ => None,
        };
        if credentials != Some((state.client_id.clone(), state.client_secret.clone())) {
            let response = if kind == Kind::Github {
                json_response(
                    StatusCode::OK,
                    json!({"error": "incorrect_client_credentials", "error_description": "The client_id and/or client_secret passed are incorrect."}),
                )
            } else if kind == Kind::Slack {
                json_response(
                    StatusCode::OK,
                    json!({"ok": false, "error": "invalid_client_id"}),
                )
            } else {
                json_response(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}))
            };
            return reject(response, "token: wrong or missing client credentials");
        }
        (
            lookup(&form, "code").unwrap_or_default().to_owned(),
            lookup(&form, "redirect_uri").map(str::to_owned),
            lookup(&form, "code_verifier").map(str::to_owned),
        )
    };
    // A code is good once.
    let Some(grant) = state.grants.remove(&code) else {
        return bad_code(kind, &format!("token: unknown or used code {code:?}"));
    };
    if grant.client_id != state.client_id {
        return bad_code(kind, "token: code issued to another client");
    }
    // RFC 6749 §4.1.3: required (and equal) when it was in the authorize
    // request. GitHub and Slack: optional, but must match when sent.
    match (kind, redirect_uri) {
        (Kind::Feishu, _) => {}
        (Kind::Github | Kind::Slack, None) => {}
        (_, None) => return bad_code(kind, "token: no redirect_uri"),
        (_, Some(r)) if r != grant.redirect_uri => {
            return bad_code(
                kind,
                &format!(
                    "token: redirect_uri {r:?} differs from the authorize request's {:?}",
                    grant.redirect_uri
                ),
            );
        }
        _ => {}
    }
    if let Some(challenge) = &grant.code_challenge {
        debug_assert_eq!(grant.code_challenge_method.as_deref(), Some("S256"));
        match verifier {
            None => return bad_code(kind, "token: PKCE code_verifier missing"),
            Some(v) if pkce_s256(&v) != *challenge => {
                return bad_code(
                    kind,
                    "token: PKCE code_verifier does not match the challenge",
                );
            }
            Some(_) => {}
        }
    }
    if state.failure == Failure::BadCode {
        return bad_code(kind, "token: failure mode BadCode");
    }
    let issued = match kind {
        Kind::Github => unique("gho_"),
        Kind::Slack => unique("xoxp-"),
        Kind::Feishu => unique("u-feishu-"),
        _ => unique(&format!("{}-at-", kind.name())),
    };
    let token = match state.failure {
        Failure::EmptyToken => String::new(),
        _ => {
            state.access_tokens.push(issued.clone());
            issued
        }
    };
    let mut answer = match kind {
        Kind::Github => json!({
            "access_token": token,
            "token_type": "bearer",
            "scope": "user:email"
        }),
        Kind::Slack => json!({
            "ok": true,
            "app_id": "A0KRD7HC3",
            "authed_user": {
                "id": "U0G9QF9C6",
                "scope": "identity.basic,identity.email,identity.avatar",
                "access_token": token,
                "token_type": "user"
            },
            "team": {"id": "T0G9PQBBK"},
            "enterprise": null,
            "is_enterprise_install": false
        }),
        Kind::Feishu => json!({
            "code": 0,
            "msg": "success",
            "data": {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 6900,
                "refresh_token": unique("ur-feishu-"),
                "refresh_expires_in": 2592000,
                "name": "张三",
                "open_id": "ou_caecc734c2e3328a62489fe0648c4b98779515d3",
                "union_id": "on_d89jhk3b6d7g5b2ed2f43cd3e4a4b3b2"
            }
        }),
        Kind::Kakao => json!({
            "token_type": "bearer",
            "access_token": token,
            "expires_in": 43199,
            "refresh_token": unique("kakao-rt-"),
            "refresh_token_expires_in": 5184000,
            "scope": "account_email profile_image profile_nickname"
        }),
        Kind::Gitlab => json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 7200,
            "refresh_token": unique("gitlab-rt-"),
            "scope": "read_user",
            "created_at": 1607635748
        }),
        Kind::Doreamon => json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 7200,
            "refresh_token": unique("doreamon-rt-")
        }),
        // OpenID providers also return an ID token (not validated for
        // `type: oauth2`).
        Kind::Google | Kind::Microsoft | Kind::Auth0 | Kind::Okta => json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 3599,
            "scope": "openid profile email",
            "id_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
        }),
    };
    if state.failure == Failure::NoToken {
        let holder = match kind {
            Kind::Slack => "/authed_user",
            Kind::Feishu => "/data",
            _ => "",
        };
        if let Some(object) = answer.pointer_mut(holder).and_then(Value::as_object_mut) {
            object.remove("access_token");
        }
    }
    // Without `Accept: application/json` GitHub answers form-encoded.
    let wants_json = call
        .header("accept")
        .is_some_and(|a| a.contains("application/json"));
    if kind == Kind::Github && !wants_json {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in answer.as_object().unwrap() {
            form.append_pair(k, v.as_str().unwrap_or_default());
        }
        let response = (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            form.finish(),
        )
            .into_response();
        return reject(response, "github token: no `Accept: application/json`");
    }
    (json_response(StatusCode::OK, answer), None)
}

/// The provider's "bad token" answer on its API.
fn unauthorized(kind: Kind, why: &str) -> Answer {
    let response = match kind {
        Kind::Slack => json_response(
            StatusCode::OK,
            json!({"ok": false, "error": "invalid_auth"}),
        ),
        Kind::Feishu => json_response(
            StatusCode::OK,
            json!({"code": 99991668, "msg": "Invalid access token for authorization. Please make a request with token attached."}),
        ),
        Kind::Github => json_response(
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
        ),
        Kind::Kakao => json_response(
            StatusCode::UNAUTHORIZED,
            json!({"msg": "this access token does not exist", "code": -401}),
        ),
        Kind::Microsoft => json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token validation failure."}}),
        ),
        _ => json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_token", "error_description": "The access token is invalid"}),
        ),
    };
    reject(response, why)
}

/// Checks the API call's bearer token (and GitHub's User-Agent rule):
/// `Some(refusal)` when it fails.
fn check_api_call(state: &FakeState, call: &Call) -> Option<Answer> {
    let kind = state.kind;
    if call.method != "GET" {
        return Some(bad_request(&format!("{}: not a GET", call.path)));
    }
    if kind == Kind::Github && call.header("user-agent").is_none_or(str::is_empty) {
        return Some(reject(
            (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "text/plain")],
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required).",
            )
                .into_response(),
            "github api: no User-Agent",
        ));
    }
    let Some(token) = call.bearer() else {
        return Some(unauthorized(
            kind,
            &format!("{}: no Authorization: Bearer", call.path),
        ));
    };
    if !state.access_tokens.iter().any(|t| t == token) {
        return Some(unauthorized(
            kind,
            &format!("{}: Bearer is not a token we issued", call.path),
        ));
    }
    None
}

fn user(state: &FakeState, call: &Call) -> Answer {
    if let Some(answer) = check_api_call(state, call) {
        return answer;
    }
    let kind = state.kind;
    match state.failure {
        Failure::UserServerError => {
            return reject(server_error(), "user: failure mode UserServerError");
        }
        Failure::UserNotJson => {
            let page = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html><body>Please sign in to the network</body></html>",
            )
                .into_response();
            return reject(page, "user: failure mode UserNotJson");
        }
        Failure::MissingUserId => {
            let mut profile = state.profile.clone();
            match kind {
                Kind::Feishu => profile["data"]["union_id"] = json!(""),
                Kind::Slack => profile["user"]["id"] = json!(""),
                Kind::Google | Kind::Auth0 | Kind::Okta => {
                    profile.as_object_mut().unwrap().remove("sub");
                }
                Kind::Doreamon => {
                    // SPEC §7 lets doreamon fall back to the email.
                    let object = profile.as_object_mut().unwrap();
                    object.remove("id");
                    object.remove("email");
                }
                _ => {
                    profile.as_object_mut().unwrap().remove("id");
                }
            }
            return (json_response(StatusCode::OK, profile), None);
        }
        _ => {}
    }
    (json_response(StatusCode::OK, state.profile.clone()), None)
}

fn github_emails(state: &FakeState, call: &Call) -> Answer {
    if let Some(answer) = check_api_call(state, call) {
        return answer;
    }
    (
        json_response(StatusCode::OK, state.github_emails.clone()),
        None,
    )
}

/// GitHub `/user/orgs` and `/user/teams`: the stored array, to the bearer of
/// a token we issued (with a User-Agent), as the user endpoint.
fn github_list(state: &FakeState, call: &Call, list: Value) -> Answer {
    if let Some(answer) = check_api_call(state, call) {
        return answer;
    }
    (json_response(StatusCode::OK, list), None)
}

/// The default user's organization (`acme`) and team (`acme/platform`).
pub const GITHUB_ACME_ID: u64 = 9919;
pub const GITHUB_PLATFORM_TEAM_ID: u64 = 1374297;

/// GitHub's legacy global node id: base64 of `0<len(type)>:<Type><id>`
/// (`04:User583231` → `MDQ6VXNlcjU4MzIzMQ==`, `012:Organization1`).
fn github_node_id(type_name: &str, id: u64) -> String {
    STANDARD.encode(format!("0{}:{type_name}{id}", type_name.len()))
}

/// One entry of GitHub's `GET /user/orgs` answer (an organization simple).
pub fn github_org(login: &str, id: u64) -> Value {
    let api = format!("https://api.github.com/orgs/{login}");
    json!({
        "login": login,
        "id": id,
        "node_id": github_node_id("Organization", id),
        "url": api,
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events"),
        "hooks_url": format!("{api}/hooks"),
        "issues_url": format!("{api}/issues"),
        "members_url": format!("{api}/members{{/member}}"),
        "public_members_url": format!("{api}/public_members{{/member}}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "description": format!("The {login} organization")
    })
}

/// One entry of GitHub's `GET /user/teams` answer: team `slug` (display
/// `name`) of organization `org` (`org_id`), with the full organization
/// object GitHub embeds.
pub fn github_team(org: &str, org_id: u64, slug: &str, name: &str, id: u64) -> Value {
    let team_api = format!("https://api.github.com/teams/{id}");
    let mut organization = github_org(org, org_id);
    let extra = json!({
        "name": org,
        "company": null,
        "blog": "",
        "location": null,
        "email": null,
        "is_verified": false,
        "has_organization_projects": true,
        "has_repository_projects": true,
        "public_repos": 12,
        "public_gists": 0,
        "followers": 4,
        "following": 0,
        "html_url": format!("https://github.com/{org}"),
        "created_at": "2015-03-02T09:14:11Z",
        "updated_at": "2024-02-12T16:20:41Z",
        "type": "Organization"
    });
    organization
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({
        "id": id,
        "node_id": github_node_id("Team", id),
        "url": team_api,
        "html_url": format!("https://github.com/orgs/{org}/teams/{slug}"),
        "name": name,
        "slug": slug,
        "description": format!("The {name} team"),
        "privacy": "closed",
        "notification_setting": "notifications_enabled",
        "permission": "pull",
        "members_url": format!("{team_api}/members{{/member}}"),
        "repositories_url": format!("{team_api}/repos"),
        "parent": null,
        "members_count": 7,
        "repos_count": 3,
        "created_at": "2019-06-18T08:30:00Z",
        "updated_at": "2024-03-01T10:00:00Z",
        "organization": organization
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_unpadded_base64url_of_sha256() {
        // SHA-256("") is 47DEQpj8...; the second value is from Python's
        // hashlib + base64.urlsafe_b64encode.
        assert_eq!(pkce_s256(""), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
        assert_eq!(
            pkce_s256("dBjftJeZ4CZP-mJAz7GzGFg-sO4lgE8IlnBSNJXhW5g"),
            "KALW0WeSVm-r0l9KuMokyNftSsKdBmt1pe6X35WWUe4"
        );
    }

    #[test]
    fn default_identities_follow_spec_mapping() {
        let github = Kind::Github.default_identity();
        assert_eq!(github.id, "583231");
        assert_eq!(github.username, "octocat");
        assert_eq!(github.nickname, "The Octocat");
        let kakao = Kind::Kakao.default_identity();
        assert_eq!(kakao.id, "2632890179");
        assert_eq!(kakao.username, "홍길동");
        let feishu = Kind::Feishu.default_identity();
        assert_eq!(feishu.username, "San Zhang");
        assert_eq!(feishu.email, "zhangsan@corp.example");
        assert_eq!(Kind::Microsoft.default_identity().avatar, "");
        assert_eq!(Kind::Okta.default_identity().username, "jdoe@okta.example");
        for kind in Kind::ALL {
            let identity = kind.default_identity();
            assert!(!identity.id.is_empty(), "{kind:?}");
            assert!(!identity.username.is_empty(), "{kind:?}");
            assert!(identity.email.contains('@'), "{kind:?}");
        }
    }

    #[test]
    fn github_orgs_and_teams_have_githubs_shapes() {
        assert_eq!(github_node_id("User", 583231), "MDQ6VXNlcjU4MzIzMQ==");
        assert_eq!(
            github_node_id("Organization", 1),
            "MDEyOk9yZ2FuaXphdGlvbjE="
        );
        assert_eq!(github_node_id("Team", 1), "MDQ6VGVhbTE=");
        let org = github_org("acme", 7);
        assert_eq!(org["login"], "acme");
        assert_eq!(org["url"], "https://api.github.com/orgs/acme");
        let team = github_team("acme", 7, "platform", "Platform", 9);
        assert_eq!(
            (&team["slug"], &team["name"], &team["organization"]["login"]),
            (&json!("platform"), &json!("Platform"), &json!("acme"))
        );
        assert_eq!(team["organization"]["id"], 7);
        assert_eq!(team["parent"], Value::Null);
        let e = Kind::Github.endpoints();
        assert_eq!(e.github_orgs, Some("/api/v3/user/orgs"));
        assert_eq!(e.github_teams, Some("/api/v3/user/teams"));
        assert_eq!(format!("{}/orgs", e.user), e.github_orgs.unwrap());
        assert_eq!(Kind::Gitlab.endpoints().github_teams, None);
    }

    #[test]
    fn github_email_falls_back_to_the_primary_verified_address() {
        let mut profile = Kind::Github.default_profile();
        profile["email"] = Value::Null;
        let emails = json!([
            {"email": "unverified@x.example", "primary": true, "verified": false},
            {"email": "other@x.example", "primary": false, "verified": true},
            {"email": "main@x.example", "primary": true, "verified": true},
        ]);
        let identity = Identity::from_profile(Kind::Github, &profile, Some(&emails));
        assert_eq!(identity.email, "main@x.example");
    }
}
