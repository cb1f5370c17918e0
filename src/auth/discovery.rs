//! OpenID Provider discovery (`/.well-known/openid-configuration`), cached
//! and refreshed. A provider that is down at start is not fatal: its routes
//! answer 503 and discovery is retried with exponential backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde::Deserialize;
use url::Url;

use super::jwks::Jwks;
use super::providers::{HttpError, ProviderHttp, loggable};
use super::wire::Lenient;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Metadata is fetched again after this long (keys rotate via the JWKS).
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// The endpoints a login and token checks need.
#[derive(Debug)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub userinfo_endpoint: Option<Url>,
    pub end_session_endpoint: Option<Url>,
    pub jwks: Arc<Jwks>,
    fetched: Instant,
}

struct Attempts {
    next_allowed: Option<Instant>,
    backoff: Duration,
}

pub struct Discovery {
    /// As configured, without a trailing slash.
    issuer: String,
    meta: ArcSwapOption<Metadata>,
    attempts: tokio::sync::Mutex<Attempts>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A fetch failed recently; the next waits for its backoff.
    #[error("identity provider unavailable (waiting to retry)")]
    Backoff,
    /// The configured issuer does not make a discovery URL.
    #[error("invalid issuer: {0}")]
    InvalidIssuer(#[source] url::ParseError),
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The document is another issuer's.
    #[error("discovery document names issuer `{found}`, expected `{expected}`")]
    OtherIssuer { found: String, expected: String },
    /// A required endpoint is absent.
    #[error("discovery has no `{0}`")]
    Missing(&'static str),
    /// An endpoint that is not an http(s) URL.
    #[error("discovery `{0}` is not an http(s) URL")]
    NotHttp(&'static str),
}

/// The part of an OpenID Provider Metadata document we use.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Document {
    issuer: Lenient<String>,
    authorization_endpoint: Lenient<String>,
    token_endpoint: Lenient<String>,
    userinfo_endpoint: Lenient<String>,
    end_session_endpoint: Lenient<String>,
    jwks_uri: Lenient<String>,
}

/// An endpoint of the document: absent is None, present must be http(s).
fn endpoint(value: &Lenient<String>, key: &'static str) -> Result<Option<Url>, DiscoveryError> {
    match value.get() {
        None => Ok(None),
        Some(s) => Url::parse(s)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .map(Some)
            .ok_or(DiscoveryError::NotHttp(key)),
    }
}

fn required(value: &Lenient<String>, key: &'static str) -> Result<Url, DiscoveryError> {
    endpoint(value, key)?.ok_or(DiscoveryError::Missing(key))
}

impl Discovery {
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_string(),
            meta: ArcSwapOption::empty(),
            attempts: tokio::sync::Mutex::new(Attempts {
                next_allowed: None,
                backoff: FIRST_BACKOFF,
            }),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The metadata, if discovery has succeeded.
    pub fn metadata(&self) -> Option<Arc<Metadata>> {
        self.meta.load_full()
    }

    /// True when there is nothing to do until `refresh` is due.
    pub fn is_fresh(&self) -> bool {
        self.meta
            .load()
            .as_ref()
            .is_some_and(|m| m.fetched.elapsed() < MAX_AGE)
    }

    /// Fetches the metadata unless it is fresh or the backoff after a failure
    /// has not passed. Concurrent callers wait for one fetch.
    pub async fn refresh(&self, http: &ProviderHttp) -> Result<(), DiscoveryError> {
        let mut attempts = self.attempts.lock().await;
        if self.is_fresh() {
            return Ok(());
        }
        if attempts
            .next_allowed
            .is_some_and(|t| crate::clock::now() < t)
        {
            return Err(DiscoveryError::Backoff);
        }
        match self.fetch(http).await {
            Ok(meta) => {
                let jwks = meta.jwks.clone();
                // Published before the keys are fetched: a login redirect
                // needs no keys, and a hanging jwks_uri must not hold it up.
                self.meta.store(Some(Arc::new(meta)));
                let _ = jwks.refresh(http).await;
                attempts.next_allowed = None;
                attempts.backoff = FIRST_BACKOFF;
                tracing::info!(issuer = %self.issuer, "OpenID discovery succeeded");
                Ok(())
            }
            Err(e) => {
                attempts.next_allowed = Some(crate::clock::now() + attempts.backoff);
                let url = self
                    .document_url()
                    .map(|u| loggable(&u))
                    .unwrap_or_default();
                tracing::warn!(url = %url, error = %e, retry_in = ?attempts.backoff, "OpenID discovery failed");
                attempts.backoff = (attempts.backoff * 2).min(MAX_BACKOFF);
                Err(e)
            }
        }
    }

    /// When the next attempt may run (for the background refresher).
    pub async fn next_attempt_in(&self) -> Duration {
        let attempts = self.attempts.lock().await;
        match (self.metadata(), attempts.next_allowed) {
            (Some(m), _) => MAX_AGE.saturating_sub(m.fetched.elapsed()),
            (None, Some(t)) => t.saturating_duration_since(crate::clock::now()),
            (None, None) => Duration::ZERO,
        }
    }

    /// `{issuer}/.well-known/openid-configuration`.
    fn document_url(&self) -> Result<Url, DiscoveryError> {
        Url::parse(&format!("{}/.well-known/openid-configuration", self.issuer))
            .map_err(DiscoveryError::InvalidIssuer)
    }

    async fn fetch(&self, http: &ProviderHttp) -> Result<Metadata, DiscoveryError> {
        let doc: Document = http.get_json(&self.document_url()?).await?;
        let issuer = doc.issuer.text().to_string();
        // Microsoft's multi-tenant endpoints (common, organizations,
        // consumers) publish a template; tokens carry the tenant's own issuer.
        let template = issuer.contains("{tenantid}")
            && self
                .issuer
                .starts_with("https://login.microsoftonline.com/");
        if issuer.trim_end_matches('/') != self.issuer && !template {
            return Err(DiscoveryError::OtherIssuer {
                found: issuer,
                expected: self.issuer.clone(),
            });
        }
        let existing_jwks = self.metadata().map(|m| m.jwks.clone());
        let jwks_uri = required(&doc.jwks_uri, "jwks_uri")?;
        // Keep the key cache (and its rate window) across metadata refreshes.
        let jwks = match existing_jwks {
            Some(j) if j.url() == &jwks_uri => j,
            _ => Arc::new(Jwks::new(jwks_uri)),
        };
        Ok(Metadata {
            issuer,
            authorization_endpoint: required(
                &doc.authorization_endpoint,
                "authorization_endpoint",
            )?,
            token_endpoint: required(&doc.token_endpoint, "token_endpoint")?,
            userinfo_endpoint: endpoint(&doc.userinfo_endpoint, "userinfo_endpoint")?,
            end_session_endpoint: endpoint(&doc.end_session_endpoint, "end_session_endpoint")?,
            jwks,
            fetched: crate::clock::now(),
        })
    }
}
