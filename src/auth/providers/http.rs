//! The HTTP client every provider call goes through (token, user, groups,
//! discovery, JWKS): a timeout, no redirects followed, the status checked,
//! the body bounded, and the answer deserialized straight into the
//! caller's type.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

/// Why a provider call failed, with the cause an operator needs (refused,
/// DNS, TLS, timeout, status, not JSON). Never carries the URL (callers log
/// it through [`loggable`], which drops its query) nor any part of the body
/// (which may hold a token).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer (or no whole body) within the client's timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The provider answered with a status outside 2xx.
    #[error("HTTP {0}")]
    Status(u16),
    /// The body exceeded [`MAX_RESPONSE`].
    #[error("response larger than 1 MiB")]
    TooLarge,
    /// The body is not JSON, or not JSON of the shape the caller expects.
    #[error("response is {what} (content-type {content_type})")]
    NotJson {
        /// `not JSON` or `JSON of another shape`: never the parser's
        /// message, which quotes the body.
        what: &'static str,
        content_type: String,
    },
    /// Connecting, sending or reading failed: the causes, outermost first
    /// (`tcp connect error: Connection refused (os error 111)`), without
    /// the URL.
    #[error("request failed: {0}")]
    Transport(String),
}

impl HttpError {
    fn from_reqwest(e: reqwest::Error, timeout: Duration) -> Self {
        if e.is_timeout() {
            Self::Timeout(timeout)
        } else {
            Self::Transport(causes(&e.without_url()))
        }
    }
}

/// An error and its sources, outermost first, each text once (hyper and
/// reqwest repeat their inner error in their own message at times).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// A provider URL as logs may show it: issuer endpoints are public, but a
/// configured one may carry credentials in its userinfo or query.
pub fn loggable(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// The HTTP client for provider calls.
#[derive(Clone, Debug)]
pub struct ProviderHttp {
    client: reqwest::Client,
    timeout: Duration,
}

/// The largest provider answer read.
pub const MAX_RESPONSE: usize = 1 << 20;

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
        Self { client, timeout }
    }

    /// GET a JSON document (discovery, JWKS).
    pub async fn get_json<T: DeserializeOwned>(&self, url: &Url) -> Result<T, HttpError> {
        self.json(self.client.get(url.clone())).await
    }

    /// GET with a bearer token (userinfo, groups).
    pub async fn get_bearer<T: DeserializeOwned>(
        &self,
        url: &Url,
        token: &str,
    ) -> Result<T, HttpError> {
        self.json(self.client.get(url.clone()).bearer_auth(token))
            .await
    }

    /// POST a form (a token request).
    pub async fn post_form<T: DeserializeOwned>(
        &self,
        url: &Url,
        form: &[(&str, &str)],
    ) -> Result<T, HttpError> {
        self.json(self.client.post(url.clone()).form(form)).await
    }

    /// POST a JSON body, with a bearer token if given (Feishu's token calls).
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        body: &impl Serialize,
        bearer: Option<&str>,
    ) -> Result<T, HttpError> {
        let mut request = self.client.post(url.clone()).json(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        self.json(request).await
    }

    /// Sends, reads at most [`MAX_RESPONSE`], checks for 2xx and deserializes.
    async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, HttpError> {
        let failed = |e| HttpError::from_reqwest(e, self.timeout);
        let mut response = request
            .header("accept", "application/json")
            .send()
            .await
            .map_err(failed)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .chars()
            .take(100)
            .collect::<String>();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(HttpError::Status(status.as_u16()));
        }
        serde_json::from_slice(&body).map_err(|e| HttpError::NotJson {
            what: match e.classify() {
                serde_json::error::Category::Data => "JSON of another shape",
                _ => "not JSON",
            },
            content_type,
        })
    }
}
