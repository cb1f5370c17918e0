//! The HTTP client every provider call goes through (token, user, groups,
//! discovery, JWKS): a timeout, no redirects followed, the status checked,
//! the body bounded, and the answer deserialized straight into the
//! caller's type.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

/// Why a provider call failed. Never carries the URL (whose query may hold
/// a code) nor any part of the body (which may hold a token).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer (or no whole body) within the client's timeout.
    #[error("timed out")]
    Timeout,
    /// The provider answered with a status outside 2xx.
    #[error("HTTP {0}")]
    Status(u16),
    /// The body exceeded [`MAX_RESPONSE`].
    #[error("response larger than 1 MiB")]
    TooLarge,
    /// The body is not JSON, or not JSON of the shape the caller expects.
    #[error("response is not JSON of the expected shape")]
    NotJson,
    /// Connecting, sending or reading failed (the error has its URL removed).
    #[error("request failed: {0}")]
    Transport(#[source] reqwest::Error),
}

impl From<reqwest::Error> for HttpError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else {
            Self::Transport(e.without_url())
        }
    }
}

/// The HTTP client for provider calls.
#[derive(Clone, Debug)]
pub struct ProviderHttp {
    client: reqwest::Client,
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
        Self { client }
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
        let mut response = request.header("accept", "application/json").send().await?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(HttpError::Status(status.as_u16()));
        }
        serde_json::from_slice(&body).map_err(|_| HttpError::NotJson)
    }
}
