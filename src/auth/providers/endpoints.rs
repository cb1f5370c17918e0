//! A provider's endpoints, resolved from its row and the config's
//! overrides, and its authorize URL.

use url::Url;

use super::table::Kind;
use crate::auth::BuildError;
use crate::config::spec::OAuth2Spec;

/// A provider with its endpoints resolved.
#[derive(Debug)]
pub struct Provider {
    pub kind: Kind,
    pub auth_url: Url,
    pub token_url: Url,
    pub userinfo_url: Url,
    /// Feishu's app_access_token endpoint.
    pub(super) app_token_url: Option<Url>,
    pub scopes: Vec<String>,
    pub pkce: bool,
    /// Microsoft's tenant (emails count only with a fixed one).
    pub(super) tenant: Option<String>,
}

fn join(base: &Url, path: &str) -> Result<Url, BuildError> {
    let url = format!("{}{path}", base.as_str().trim_end_matches('/'));
    Url::parse(&url).map_err(|source| BuildError::Endpoint { url, source })
}

fn url(s: &str) -> Url {
    Url::parse(s).expect("built-in provider URLs are valid")
}

impl Provider {
    pub fn from_spec(spec: &OAuth2Spec) -> Result<Self, BuildError> {
        let kind = spec.provider;
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
                let b = b.ok_or(BuildError::NeedsBaseUrl("auth0"))?;
                (
                    join(b, "/authorize")?,
                    join(b, "/oauth/token")?,
                    join(b, "/userinfo")?,
                    None,
                )
            }
            (Kind::Okta, b) => {
                let b = b.ok_or(BuildError::NeedsBaseUrl("okta"))?;
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
