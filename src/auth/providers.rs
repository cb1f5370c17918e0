//! The OAuth2 providers of SPEC §7: endpoints, token-request quirks and
//! identity mapping. Every endpoint can be overridden in the config.

use std::time::Duration;

use serde_json::Value;
use url::Url;

use crate::config::spec::OAuth2Spec;
use crate::session::{ATTRIBUTES_VERSION, Attributes, Identity};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// How a provider vouches for a user's email (SPEC §13.1): anything it
/// does not vouch for never counts for `allow.emails` / `allow.domains`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailTrust {
    /// Not at all: such a provider has no verified email.
    None,
    /// `GET {user}/emails` entries marked `verified` (GitHub).
    GithubVerified,
    /// The profile's `confirmed_at` is set (GitLab).
    ConfirmedAt,
    /// `email_verified: true` in the profile (OpenID userinfo: Auth0, Okta).
    EmailVerified,
    /// Google: `email_verified: true`; `domains` only from the Workspace
    /// `hd` claim.
    EmailVerifiedHostedDomain,
    /// Microsoft: `mail` (or the UPN) only with a fixed tenant id; with
    /// `common`/`organizations`/`consumers` any tenant could claim any address.
    FixedTenant,
    /// Kakao: `kakao_account.is_email_verified` and `is_email_valid`.
    KakaoVerified,
}

/// Where a provider's groups come from in oauth2 mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSource {
    None,
    /// `GET {api}/user/orgs` (`org`) and `GET {api}/user/teams` (`org/team`).
    GithubOrgsTeams,
    /// `GET /api/v4/groups` (`full_path`).
    GitlabGroups,
}

/// Everything known about one provider, in one row.
#[derive(Debug)]
pub struct Descriptor {
    pub kind: Kind,
    pub name: &'static str,
    /// Scopes that fetch an identity with the default endpoints (SPEC §7).
    pub default_scopes: &'static [&'static str],
    /// Accepts PKCE (S256) on the authorization-code flow.
    pub pkce: bool,
    pub email_trust: EmailTrust,
    pub groups: GroupSource,
    /// Extra scope to ask for when a policy reads groups.
    pub groups_scope: Option<&'static str>,
    /// Anyone on earth can have an account (a route without `allow` admits them all).
    pub public: bool,
}

// One positional row per provider keeps the table readable at a glance.
#[allow(clippy::too_many_arguments)]
const fn row(
    kind: Kind,
    name: &'static str,
    default_scopes: &'static [&'static str],
    pkce: bool,
    email_trust: EmailTrust,
    groups: GroupSource,
    groups_scope: Option<&'static str>,
    public: bool,
) -> Descriptor {
    Descriptor {
        kind,
        name,
        default_scopes,
        pkce,
        email_trust,
        groups,
        groups_scope,
        public,
    }
}

const OPENID: &[&str] = &["openid", "profile", "email"];

/// The provider table. GitLab and Microsoft count as public on their
/// shared instances (gitlab.com, tenant `common`): see [`Descriptor::public`].
#[rustfmt::skip]
pub static PROVIDERS: [Descriptor; 10] = [
    row(Kind::Github, "github", &["user:email"], false, EmailTrust::GithubVerified, GroupSource::GithubOrgsTeams, Some("read:org"), true),
    row(Kind::Gitlab, "gitlab", &["read_user"], true, EmailTrust::ConfirmedAt, GroupSource::GitlabGroups, Some("read_api"), true),
    row(Kind::Google, "google", OPENID, true, EmailTrust::EmailVerifiedHostedDomain, GroupSource::None, None, true),
    row(Kind::Microsoft, "microsoft", OPENID, true, EmailTrust::FixedTenant, GroupSource::None, None, true),
    row(Kind::Feishu, "feishu", &[], false, EmailTrust::None, GroupSource::None, None, false),
    row(Kind::Slack, "slack", &["identity.basic", "identity.email", "identity.avatar"], false, EmailTrust::None, GroupSource::None, None, true),
    row(Kind::Kakao, "kakao", &[], true, EmailTrust::KakaoVerified, GroupSource::None, None, true),
    row(Kind::Auth0, "auth0", OPENID, true, EmailTrust::EmailVerified, GroupSource::None, None, false),
    row(Kind::Okta, "okta", OPENID, true, EmailTrust::EmailVerified, GroupSource::None, None, false),
    row(Kind::Doreamon, "doreamon", &["openid", "email", "profile"], true, EmailTrust::None, GroupSource::None, None, false),
];

impl Kind {
    pub fn parse(name: &str) -> Option<Self> {
        PROVIDERS.iter().find(|d| d.name == name).map(|d| d.kind)
    }

    pub fn descriptor(self) -> &'static Descriptor {
        PROVIDERS
            .iter()
            .find(|d| d.kind == self)
            .expect("every kind has a row")
    }

    pub fn as_str(self) -> &'static str {
        self.descriptor().name
    }
}

/// Microsoft tenants that admit accounts of any tenant.
pub fn is_multi_tenant(tenant: Option<&str>) -> bool {
    matches!(
        tenant.unwrap_or("common"),
        "common" | "organizations" | "consumers"
    )
}

/// A provider with its endpoints resolved.
#[derive(Debug)]
pub struct Provider {
    pub kind: Kind,
    pub auth_url: Url,
    pub token_url: Url,
    pub userinfo_url: Url,
    /// Feishu's app_access_token endpoint.
    app_token_url: Option<Url>,
    pub scopes: Vec<String>,
    pub pkce: bool,
    /// Microsoft's tenant (emails count only with a fixed one).
    tenant: Option<String>,
}

fn join(base: &Url, path: &str) -> Result<Url, String> {
    let base = base.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}{path}")).map_err(|e| format!("invalid endpoint {base}{path}: {e}"))
}

fn url(s: &str) -> Url {
    Url::parse(s).expect("built-in provider URLs are valid")
}

impl Provider {
    pub fn from_spec(spec: &OAuth2Spec) -> Result<Self, String> {
        let kind = Kind::parse(&spec.provider)
            .ok_or_else(|| format!("unknown provider {}", spec.provider))?;
        let base = spec.base_url.as_ref();
        let tenant = spec.tenant.as_deref().unwrap_or("common");
        let (auth, token, user, app_token) = match (kind, base) {
            (Kind::Github, None) => (
                url("https://github.com/login/oauth/authorize"),
                url("https://github.com/login/oauth/access_token"),
                url("https://api.github.com/user"),
                None,
            ),
            (Kind::Github, Some(b)) => (
                join(b, "/login/oauth/authorize")?,
                join(b, "/login/oauth/access_token")?,
                join(b, "/api/v3/user")?,
                None,
            ),
            (Kind::Gitlab, b) => {
                let b = b.cloned().unwrap_or_else(|| url("https://gitlab.com"));
                (
                    join(&b, "/oauth/authorize")?,
                    join(&b, "/oauth/token")?,
                    join(&b, "/api/v4/user")?,
                    None,
                )
            }
            (Kind::Google, _) => (
                url("https://accounts.google.com/o/oauth2/v2/auth"),
                url("https://oauth2.googleapis.com/token"),
                url("https://openidconnect.googleapis.com/v1/userinfo"),
                None,
            ),
            (Kind::Microsoft, b) => {
                let b = b
                    .cloned()
                    .unwrap_or_else(|| url("https://login.microsoftonline.com"));
                (
                    join(&b, &format!("/{tenant}/oauth2/v2.0/authorize"))?,
                    join(&b, &format!("/{tenant}/oauth2/v2.0/token"))?,
                    url("https://graph.microsoft.com/v1.0/me"),
                    None,
                )
            }
            (Kind::Feishu, b) => {
                let b = b.cloned().unwrap_or_else(|| url("https://open.feishu.cn"));
                (
                    join(&b, "/open-apis/authen/v1/index")?,
                    join(&b, "/open-apis/authen/v1/access_token")?,
                    join(&b, "/open-apis/authen/v1/user_info")?,
                    Some(join(&b, "/open-apis/auth/v3/app_access_token/internal")?),
                )
            }
            (Kind::Slack, b) => {
                let b = b.cloned().unwrap_or_else(|| url("https://slack.com"));
                (
                    join(&b, "/oauth/v2/authorize")?,
                    join(&b, "/api/oauth.v2.access")?,
                    join(&b, "/api/users.identity")?,
                    None,
                )
            }
            (Kind::Kakao, None) => (
                url("https://kauth.kakao.com/oauth/authorize"),
                url("https://kauth.kakao.com/oauth/token"),
                url("https://kapi.kakao.com/v2/user/me"),
                None,
            ),
            (Kind::Kakao, Some(b)) => (
                join(b, "/oauth/authorize")?,
                join(b, "/oauth/token")?,
                join(b, "/v2/user/me")?,
                None,
            ),
            (Kind::Auth0, b) => {
                let b = b.ok_or("auth0 needs base_url")?;
                (
                    join(b, "/authorize")?,
                    join(b, "/oauth/token")?,
                    join(b, "/userinfo")?,
                    None,
                )
            }
            (Kind::Okta, b) => {
                let b = b.ok_or("okta needs base_url")?;
                (
                    join(b, "/oauth2/default/v1/authorize")?,
                    join(b, "/oauth2/default/v1/token")?,
                    join(b, "/oauth2/default/v1/userinfo")?,
                    None,
                )
            }
            (Kind::Doreamon, b) => {
                let b = b
                    .cloned()
                    .unwrap_or_else(|| url("https://login.zcorky.com"));
                (
                    join(&b, "/authorize")?,
                    join(&b, "/token")?,
                    join(&b, "/user")?,
                    None,
                )
            }
        };
        Ok(Self {
            kind,
            auth_url: spec.auth_url.clone().unwrap_or(auth),
            token_url: spec.token_url.clone().unwrap_or(token),
            userinfo_url: spec.userinfo_url.clone().unwrap_or(user),
            app_token_url: app_token,
            scopes: spec.scopes.clone().unwrap_or_else(|| {
                kind.descriptor()
                    .default_scopes
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }),
            pkce: kind.descriptor().pkce,
            tenant: spec.tenant.clone(),
        })
    }

    /// The provider's authorize URL for one login.
    pub fn authorize_url(
        &self,
        client_id: &str,
        redirect_uri: &str,
        state: &str,
        challenge: Option<&str>,
    ) -> String {
        let mut u = self.auth_url.clone();
        {
            let mut q = u.query_pairs_mut();
            let client_key = if self.kind == Kind::Feishu {
                "app_id"
            } else {
                "client_id"
            };
            q.append_pair(client_key, client_id);
            q.append_pair("redirect_uri", redirect_uri);
            q.append_pair("response_type", "code");
            if !self.scopes.is_empty() {
                let scope_key = if self.kind == Kind::Slack {
                    "user_scope"
                } else {
                    "scope"
                };
                let separator = if self.kind == Kind::Slack { "," } else { " " };
                q.append_pair(scope_key, &self.scopes.join(separator));
            }
            q.append_pair("state", state);
            if let Some(c) = challenge {
                q.append_pair("code_challenge", c);
                q.append_pair("code_challenge_method", "S256");
            }
        }
        u.to_string()
    }
}

/// What the token request of a login sends.
#[derive(Clone, Copy)]
pub struct CodeExchange<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub verifier: Option<&'a str>,
}

/// Why a login failed after the provider sent the user back.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The token endpoint refused or failed.
    #[error("code exchange failed: {0}")]
    Exchange(String),
    /// The token response had no access token.
    #[error("the provider returned no access token")]
    EmptyToken,
    /// The user endpoint refused or failed.
    #[error("user profile request failed: {0}")]
    Profile(String),
    /// The profile had no user id.
    #[error("the provider returned no user id")]
    EmptyUser,
}

impl LoginError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Exchange(_) => "exchange_failed",
            Self::EmptyToken => "empty_token",
            Self::Profile(_) => "profile_failed",
            Self::EmptyUser => "empty_user",
        }
    }
}

/// The HTTP client for provider calls: a timeout, no redirects followed,
/// status checked, response size bounded.
#[derive(Clone, Debug)]
pub struct ProviderHttp {
    client: reqwest::Client,
}

const MAX_RESPONSE: usize = 1 << 20;

impl Default for ProviderHttp {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl ProviderHttp {
    pub fn new(timeout: Duration) -> Self {
        // reqwest is built without a bundled TLS provider: use ring. An
        // error only means a provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ingress-authz/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with a TLS provider installed");
        Self { client }
    }

    /// GET a JSON document (discovery, JWKS).
    pub async fn get_json(&self, url: &Url) -> Result<Value, String> {
        self.json(self.client.get(url.clone())).await
    }

    /// POST a form, JSON answer (an OpenID token request).
    pub async fn post_form(&self, url: &Url, form: &[(&str, &str)]) -> Result<Value, String> {
        self.json(self.client.post(url.clone()).form(form)).await
    }

    /// GET with a bearer token, JSON answer (userinfo).
    pub async fn get_bearer(&self, url: &Url, token: &str) -> Result<Value, String> {
        self.json(self.client.get(url.clone()).bearer_auth(token))
            .await
    }

    /// Sends, checks for 2xx, reads at most 1 MiB and parses JSON.
    async fn json(&self, request: reqwest::RequestBuilder) -> Result<Value, String> {
        let mut response = request
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    format!("request failed: {}", without_url(&e))
                }
            })?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading the response: {}", without_url(&e)))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err("response larger than 1 MiB".into());
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        serde_json::from_slice(&body).map_err(|_| "response is not JSON".to_string())
    }
}

/// reqwest errors can print the URL, whose query may hold a code: drop it.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(u) = e.url() {
        msg = msg.replace(u.as_str(), "<url>");
    }
    msg
}

/// A string at `path` (dot-separated); numbers become strings (GitHub and
/// Kakao ids are numbers).
fn field(v: &Value, path: &str) -> String {
    let mut cur = v;
    for key in path.split('.') {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn first_non_empty(a: String, b: String) -> String {
    if a.is_empty() { b } else { a }
}

impl Provider {
    /// Exchanges the code and fetches the profile: the whole callback's
    /// provider side.
    pub async fn login(
        &self,
        http: &ProviderHttp,
        exchange: &CodeExchange<'_>,
        want_groups: bool,
    ) -> Result<(Identity, Attributes), LoginError> {
        let CodeExchange {
            client_id,
            client_secret,
            code,
            redirect_uri,
            verifier,
        } = *exchange;
        let token = match self.kind {
            Kind::Feishu => {
                self.feishu_token(http, client_id, client_secret, code)
                    .await?
            }
            _ => {
                self.standard_token(http, client_id, client_secret, code, redirect_uri, verifier)
                    .await?
            }
        };
        if token.is_empty() {
            return Err(LoginError::EmptyToken);
        }
        let profile = http
            .json(self.http_get(http, &self.userinfo_url, &token))
            .await
            .map_err(LoginError::Profile)?;
        let mut identity = self.map_identity(&profile).map_err(LoginError::Profile)?;
        if identity.id.is_empty() {
            return Err(LoginError::EmptyUser);
        }
        let mut attrs = Attributes {
            version: ATTRIBUTES_VERSION,
            read_at: crate::clock::unix_secs(),
            ..Default::default()
        };
        let verified = match self.kind.descriptor().email_trust {
            EmailTrust::GithubVerified => {
                let verified = self.github_email(http, &token).await;
                if identity.email.is_empty() {
                    identity.email = verified.clone();
                }
                Some(verified)
            }
            EmailTrust::ConfirmedAt => profile
                .get("confirmed_at")
                .is_some_and(|c| c.as_str().is_some_and(|s| !s.is_empty()))
                .then(|| identity.email.clone()),
            EmailTrust::EmailVerified | EmailTrust::EmailVerifiedHostedDomain => {
                crate::identity::email_verified(&profile).then(|| identity.email.clone())
            }
            EmailTrust::FixedTenant => (!is_multi_tenant(self.tenant.as_deref())).then(|| {
                if identity.email.is_empty() {
                    identity.username.clone()
                } else {
                    identity.email.clone()
                }
            }),
            EmailTrust::KakaoVerified => {
                let flag = |k: &str| {
                    profile.get("kakao_account").and_then(|a| a.get(k)) == Some(&Value::Bool(true))
                };
                (flag("is_email_verified") && flag("is_email_valid"))
                    .then(|| identity.email.clone())
            }
            EmailTrust::None => None,
        };
        attrs.email = verified.filter(|e| crate::identity::domain_of(e).is_some());
        attrs.domain = match self.kind.descriptor().email_trust {
            // Google vouches for a domain only as the Workspace (`hd`) it is.
            EmailTrust::EmailVerifiedHostedDomain => {
                let hd = field(&profile, "hd").to_ascii_lowercase();
                attrs
                    .email
                    .as_deref()
                    .and_then(crate::identity::domain_of)
                    .filter(|d| !hd.is_empty() && *d == hd)
            }
            _ => attrs.email.as_deref().and_then(crate::identity::domain_of),
        };
        if want_groups && self.kind.descriptor().groups != GroupSource::None {
            attrs.groups = self.groups(http, &token).await;
            attrs.access = Some(crate::secret::Secret::new(token));
        }
        Ok((identity, attrs))
    }

    /// The user's groups at the provider; None when they cannot be read
    /// (policies that need them then deny).
    pub async fn groups(&self, http: &ProviderHttp, token: &str) -> Option<Vec<String>> {
        let under_user = |path: &str| {
            Url::parse(&format!(
                "{}{path}",
                self.userinfo_url.as_str().trim_end_matches('/')
            ))
            .ok()
        };
        let get = |url: Url| async move {
            match http.json(self.http_get(http, &url, token)).await {
                Ok(Value::Array(items)) => Some(items),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(provider = self.kind.as_str(), error = %e, "reading groups failed");
                    None
                }
            }
        };
        match self.kind.descriptor().groups {
            GroupSource::GithubOrgsTeams => {
                let orgs = get(under_user("/orgs?per_page=100")?).await?;
                let teams = get(under_user("/teams?per_page=100")?).await?;
                let mut groups: Vec<String> = orgs
                    .iter()
                    .map(|o| field(o, "login"))
                    .filter(|l| !l.is_empty())
                    .collect();
                groups.extend(teams.iter().filter_map(|t| {
                    let (org, slug) = (field(t, "organization.login"), field(t, "slug"));
                    (!org.is_empty() && !slug.is_empty()).then(|| format!("{org}/{slug}"))
                }));
                Some(groups)
            }
            GroupSource::GitlabGroups => {
                let base = self.userinfo_url.as_str().trim_end_matches('/');
                let url = base.strip_suffix("/user").unwrap_or(base);
                let url =
                    Url::parse(&format!("{url}/groups?min_access_level=10&per_page=100")).ok()?;
                let groups = get(url).await?;
                Some(
                    groups
                        .iter()
                        .map(|g| field(g, "full_path"))
                        .filter(|p| !p.is_empty())
                        .collect(),
                )
            }
            GroupSource::None => None,
        }
    }

    fn http_get(&self, http: &ProviderHttp, url: &Url, token: &str) -> reqwest::RequestBuilder {
        http.client.get(url.clone()).bearer_auth(token)
    }

    /// RFC 6749 §4.1.3, with the provider quirks: GitHub answers errors with
    /// HTTP 200, Slack puts the user token under `authed_user`.
    async fn standard_token(
        &self,
        http: &ProviderHttp,
        client_id: &str,
        client_secret: &str,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Result<String, LoginError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        let body = http
            .json(http.client.post(self.token_url.clone()).form(&form))
            .await
            .map_err(LoginError::Exchange)?;
        if let Some(err) = body.get("error").filter(|e| !e.is_null()) {
            return Err(LoginError::Exchange(format!(
                "provider error {}",
                err_code(err)
            )));
        }
        if self.kind == Kind::Slack {
            if body.get("ok") != Some(&Value::Bool(true)) {
                return Err(LoginError::Exchange("slack answered ok=false".into()));
            }
            return Ok(field(&body, "authed_user.access_token"));
        }
        Ok(field(&body, "access_token"))
    }

    /// Feishu: an app_access_token first, then the user token with it.
    async fn feishu_token(
        &self,
        http: &ProviderHttp,
        app_id: &str,
        app_secret: &str,
        code: &str,
    ) -> Result<String, LoginError> {
        let app_url = self
            .app_token_url
            .clone()
            .expect("feishu has an app token endpoint");
        let app = http
            .json(
                http.client
                    .post(app_url)
                    .json(&serde_json::json!({"app_id": app_id, "app_secret": app_secret})),
            )
            .await
            .map_err(LoginError::Exchange)?;
        feishu_ok(&app).map_err(LoginError::Exchange)?;
        let app_token = field(&app, "app_access_token");
        if app_token.is_empty() {
            return Err(LoginError::Exchange(
                "feishu returned no app_access_token".into(),
            ));
        }
        let user = http
            .json(
                http.client
                    .post(self.token_url.clone())
                    .bearer_auth(&app_token)
                    .json(&serde_json::json!({"grant_type": "authorization_code", "code": code})),
            )
            .await
            .map_err(LoginError::Exchange)?;
        feishu_ok(&user).map_err(LoginError::Exchange)?;
        Ok(field(&user, "data.access_token"))
    }

    async fn github_email(&self, http: &ProviderHttp, token: &str) -> String {
        let Ok(emails_url) = Url::parse(&format!(
            "{}/emails",
            self.userinfo_url.as_str().trim_end_matches('/')
        )) else {
            return String::new();
        };
        let Ok(Value::Array(emails)) = http.json(self.http_get(http, &emails_url, token)).await
        else {
            return String::new();
        };
        let pick = |primary: bool| {
            emails.iter().find(|e| {
                e.get("verified") == Some(&Value::Bool(true))
                    && (!primary || e.get("primary") == Some(&Value::Bool(true)))
            })
        };
        pick(true)
            .or_else(|| pick(false))
            .map(|e| field(e, "email"))
            .unwrap_or_default()
    }

    /// SPEC §7's identity mapping.
    fn map_identity(&self, v: &Value) -> Result<Identity, String> {
        let f = |p: &str| field(v, p);
        Ok(match self.kind {
            Kind::Github => Identity {
                id: f("id"),
                username: f("login"),
                email: f("email"),
                nickname: f("name"),
                avatar: f("avatar_url"),
            },
            Kind::Gitlab => Identity {
                id: f("id"),
                username: f("username"),
                email: f("email"),
                nickname: f("name"),
                avatar: f("avatar_url"),
            },
            Kind::Google => Identity {
                id: f("sub"),
                username: f("email"),
                email: f("email"),
                nickname: f("name"),
                avatar: f("picture"),
            },
            Kind::Microsoft => Identity {
                id: f("id"),
                username: f("userPrincipalName"),
                email: f("mail"),
                nickname: f("displayName"),
                avatar: String::new(),
            },
            Kind::Feishu => {
                feishu_ok(v)?;
                Identity {
                    id: f("data.union_id"),
                    username: first_non_empty(f("data.en_name"), f("data.name")),
                    email: first_non_empty(f("data.enterprise_email"), f("data.email")),
                    nickname: f("data.name"),
                    avatar: f("data.avatar_url"),
                }
            }
            Kind::Slack => {
                if v.get("ok") != Some(&Value::Bool(true)) {
                    return Err("slack answered ok=false".into());
                }
                Identity {
                    id: f("user.id"),
                    username: f("user.name"),
                    email: f("user.email"),
                    nickname: f("user.name"),
                    avatar: f("user.image_48"),
                }
            }
            Kind::Kakao => Identity {
                id: f("id"),
                username: f("properties.nickname"),
                email: f("kakao_account.email"),
                nickname: f("properties.nickname"),
                avatar: f("properties.profile_image"),
            },
            Kind::Auth0 => Identity {
                id: f("sub"),
                username: f("nickname"),
                email: f("email"),
                nickname: f("name"),
                avatar: f("picture"),
            },
            Kind::Okta => Identity {
                id: f("sub"),
                username: f("preferred_username"),
                email: f("email"),
                nickname: f("name"),
                avatar: String::new(),
            },
            Kind::Doreamon => Identity {
                id: first_non_empty(f("id"), f("email")),
                username: f("username"),
                email: f("email"),
                nickname: f("nickname"),
                avatar: f("avatar"),
            },
        })
    }
}

/// Feishu wraps every answer in `{code, msg}`; non-zero code is an error.
fn feishu_ok(v: &Value) -> Result<(), String> {
    match v.get("code").and_then(Value::as_i64) {
        Some(0) => Ok(()),
        Some(code) => Err(format!("feishu error code {code}")),
        None => Err("feishu answer without code".into()),
    }
}

/// A provider's `error` value, reduced to a short code safe to log.
fn err_code(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_become_strings_and_paths_nest() {
        let v = serde_json::json!({"id": 42, "a": {"b": "c"}, "n": null});
        assert_eq!(field(&v, "id"), "42");
        assert_eq!(field(&v, "a.b"), "c");
        assert_eq!(field(&v, "n"), "");
        assert_eq!(field(&v, "missing.x"), "");
    }

    #[test]
    fn feishu_envelope() {
        assert!(feishu_ok(&serde_json::json!({"code": 0})).is_ok());
        assert!(feishu_ok(&serde_json::json!({"code": 20003, "msg": "bad"})).is_err());
        assert!(feishu_ok(&serde_json::json!({})).is_err());
    }

    #[test]
    fn error_codes_are_sanitised() {
        assert_eq!(
            err_code(&serde_json::json!("bad_verification_code")),
            "bad_verification_code"
        );
        assert_eq!(err_code(&serde_json::json!("x\ny<script>")), "xyscript");
    }
}
