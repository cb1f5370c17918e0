//! The callback's provider side for oauth2: the code exchange with each
//! provider's token-response quirks, the profile, the email the provider
//! vouches for, and groups.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::endpoints::Provider;
use super::http::ProviderHttp;
use super::lists;
use super::profiles::{self, Profile, UserInfo};
use super::table::{EmailTrust, GroupSource, Kind, is_multi_tenant};
use crate::auth::login_error::{CallError, LoginError};
use crate::auth::wire::{Lenient, Text};
use crate::secret::Secret;
use crate::session::{ATTRIBUTES_VERSION, Attributes, Identity};

/// What the token request of a login sends.
#[derive(Clone, Copy)]
pub struct CodeExchange<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub verifier: Option<&'a str>,
}

/// An RFC 6749 §5.1 token response, with Slack's user token under
/// `authed_user` and its `ok` flag.
#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenAnswer {
    /// §5.2's error (GitHub sends it with HTTP 200).
    error: Option<Text>,
    access_token: Text,
    ok: Lenient<bool>,
    authed_user: Lenient<AccessToken>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AccessToken {
    access_token: Text,
}

/// Feishu's `app_access_token/internal` answer.
#[derive(Deserialize, Default)]
#[serde(default)]
struct FeishuAppToken {
    code: Lenient<i64>,
    app_access_token: Text,
}

/// Feishu's user token answer: the token under `data`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct FeishuUserToken {
    code: Lenient<i64>,
    data: Lenient<AccessToken>,
}

async fn fetch<P: UserInfo>(
    http: &ProviderHttp,
    url: &Url,
    token: &str,
) -> Result<Profile, CallError> {
    http.get_bearer::<P>(url, token).await?.profile()
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
        let token = match self.kind {
            Kind::Feishu => self.feishu_token(http, exchange).await,
            _ => self.standard_token(http, exchange).await,
        }
        .map_err(LoginError::Exchange)?;
        if token.is_empty() {
            return Err(LoginError::EmptyToken);
        }
        let profile = self
            .profile(http, &token)
            .await
            .map_err(LoginError::Profile)?;
        let mut identity = profile.identity;
        if identity.id.is_empty() {
            return Err(LoginError::EmptyUser);
        }
        let mut attrs = Attributes {
            version: ATTRIBUTES_VERSION,
            read_at: crate::clock::unix_secs(),
            ..Default::default()
        };
        let trust = self.kind.descriptor().email_trust;
        let verified = match trust {
            EmailTrust::GithubVerified => {
                let verified = self.github_email(http, &token).await;
                if identity.email.is_empty() {
                    identity.email = verified.clone();
                }
                Some(verified)
            }
            EmailTrust::ConfirmedAt
            | EmailTrust::EmailVerified
            | EmailTrust::EmailVerifiedHostedDomain
            | EmailTrust::KakaoVerified => profile.email_verified.then(|| identity.email.clone()),
            EmailTrust::FixedTenant => (!is_multi_tenant(self.tenant.as_deref())).then(|| {
                if identity.email.is_empty() {
                    identity.username.clone()
                } else {
                    identity.email.clone()
                }
            }),
            EmailTrust::None => None,
        };
        attrs.email = verified.filter(|e| crate::identity::domain_of(e).is_some());
        let domain = attrs.email.as_deref().and_then(crate::identity::domain_of);
        attrs.domain = match trust {
            // Google vouches for a domain only as the Workspace (`hd`) it is.
            EmailTrust::EmailVerifiedHostedDomain => {
                let hd = profile.hosted_domain;
                domain.filter(|d| !hd.is_empty() && *d == hd)
            }
            _ => domain,
        };
        if want_groups && self.kind.descriptor().groups != GroupSource::None {
            attrs.groups = self.groups(http, &token).await;
            attrs.access = Some(Secret::new(token));
        }
        Ok((identity, attrs))
    }

    /// The user endpoint's answer, in the provider's own shape.
    async fn profile(&self, http: &ProviderHttp, token: &str) -> Result<Profile, CallError> {
        let url = &self.userinfo_url;
        match self.kind {
            Kind::Github => fetch::<profiles::Github>(http, url, token).await,
            Kind::Gitlab => fetch::<profiles::Gitlab>(http, url, token).await,
            Kind::Google => fetch::<profiles::Google>(http, url, token).await,
            Kind::Microsoft => fetch::<profiles::Microsoft>(http, url, token).await,
            Kind::Feishu => fetch::<profiles::Feishu>(http, url, token).await,
            Kind::Slack => fetch::<profiles::Slack>(http, url, token).await,
            Kind::Kakao => fetch::<profiles::Kakao>(http, url, token).await,
            Kind::Auth0 => fetch::<profiles::Auth0>(http, url, token).await,
            Kind::Okta => fetch::<profiles::Okta>(http, url, token).await,
            Kind::Doreamon => fetch::<profiles::Doreamon>(http, url, token).await,
        }
    }

    /// `{userinfo_url}{path}` (GitHub's `/user/...` lists).
    fn under_user(&self, path: &str) -> Option<Url> {
        Url::parse(&format!(
            "{}{path}",
            self.userinfo_url.as_str().trim_end_matches('/')
        ))
        .ok()
    }

    /// A JSON list the token may read; None when it cannot be read.
    async fn list<T: DeserializeOwned>(
        &self,
        http: &ProviderHttp,
        url: Url,
        token: &str,
    ) -> Option<Vec<T>> {
        match http.get_bearer::<Vec<T>>(&url, token).await {
            Ok(items) => Some(items),
            Err(e) => {
                tracing::warn!(provider = self.kind.as_str(), error = %e, "reading groups failed");
                None
            }
        }
    }

    /// The user's groups at the provider; None when they cannot be read
    /// (policies that need them then deny).
    pub async fn groups(&self, http: &ProviderHttp, token: &str) -> Option<Vec<String>> {
        match self.kind.descriptor().groups {
            GroupSource::GithubOrgsTeams => {
                let orgs = self
                    .list(http, self.under_user("/orgs?per_page=100")?, token)
                    .await?;
                let teams = self
                    .list(http, self.under_user("/teams?per_page=100")?, token)
                    .await?;
                Some(lists::github_groups(orgs, teams))
            }
            GroupSource::GitlabGroups => {
                let base = self.userinfo_url.as_str().trim_end_matches('/');
                let url = base.strip_suffix("/user").unwrap_or(base);
                let url =
                    Url::parse(&format!("{url}/groups?min_access_level=10&per_page=100")).ok()?;
                Some(lists::gitlab_groups(self.list(http, url, token).await?))
            }
            GroupSource::None => None,
        }
    }

    /// RFC 6749 §4.1.3, with the provider quirks: GitHub answers errors with
    /// HTTP 200, Slack puts the user token under `authed_user`.
    async fn standard_token(
        &self,
        http: &ProviderHttp,
        exchange: &CodeExchange<'_>,
    ) -> Result<String, CallError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", exchange.code),
            ("redirect_uri", exchange.redirect_uri),
            ("client_id", exchange.client_id),
            ("client_secret", exchange.client_secret),
        ];
        if let Some(v) = exchange.verifier {
            form.push(("code_verifier", v));
        }
        let body: TokenAnswer = http.post_form(&self.token_url, &form).await?;
        if let Some(err) = &body.error {
            return Err(CallError::provider(err.as_str()));
        }
        if self.kind == Kind::Slack {
            if !body.ok.is_true() {
                return Err(CallError::SlackNotOk);
            }
            return Ok(body.authed_user.or_default().access_token.into());
        }
        Ok(body.access_token.into())
    }

    /// Feishu: an app_access_token first, then the user token with it.
    async fn feishu_token(
        &self,
        http: &ProviderHttp,
        exchange: &CodeExchange<'_>,
    ) -> Result<String, CallError> {
        let app_url = self
            .app_token_url
            .as_ref()
            .expect("feishu has an app token endpoint");
        let app: FeishuAppToken = http
            .post_json(
                app_url,
                &serde_json::json!({"app_id": exchange.client_id, "app_secret": exchange.client_secret}),
                None,
            )
            .await?;
        profiles::feishu_ok(&app.code)?;
        if app.app_access_token.is_empty() {
            return Err(CallError::FeishuNoAppToken);
        }
        let user: FeishuUserToken = http
            .post_json(
                &self.token_url,
                &serde_json::json!({"grant_type": "authorization_code", "code": exchange.code}),
                Some(app.app_access_token.as_str()),
            )
            .await?;
        profiles::feishu_ok(&user.code)?;
        Ok(user.data.or_default().access_token.into())
    }

    async fn github_email(&self, http: &ProviderHttp, token: &str) -> String {
        let Some(emails_url) = self.under_user("/emails") else {
            return String::new();
        };
        match http.get_bearer(&emails_url, token).await {
            Ok(emails) => lists::github_verified_email(emails),
            Err(_) => String::new(),
        }
    }
}
