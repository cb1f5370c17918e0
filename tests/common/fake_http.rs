//! The scaffolding of the harness's in-process HTTP servers (the fake OAuth2
//! providers, the fake OpenID provider, the echo upstream): an axum server on
//! a loopback listener, aborted on drop; the server's state behind a Mutex;
//! every request recorded as a [`Call`] before it is handled; JSON answers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::client::{self, Request, header_value};

/// A server's state, as its handlers get it.
pub type Shared<S> = Arc<Mutex<S>>;

/// A loopback listener on `port` (0: an ephemeral one) for the server `what`.
pub async fn listen(port: u16, what: &str) -> TcpListener {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("bind {what} on port {port}: {e}"))
}

/// A running server with state `S`.
pub struct FakeHttp<S> {
    addr: SocketAddr,
    state: Shared<S>,
    calls: Shared<Vec<Call>>,
    server: JoinHandle<()>,
}

impl<S: Send + 'static> FakeHttp<S> {
    /// Serves every request on `listener` with `handler`, after recording it.
    pub fn serve<H, F>(listener: TcpListener, state: S, handler: H) -> Self
    where
        H: Fn(Shared<S>, Call) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response> + Send + 'static,
    {
        let addr = listener.local_addr().expect("server address");
        let state = Arc::new(Mutex::new(state));
        let calls = Shared::<Vec<Call>>::default();
        let app = {
            let (state, calls) = (state.clone(), calls.clone());
            Router::new().fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let call = Call::new(&method, &uri, &headers, &body);
                    calls.lock().unwrap().push(call.clone());
                    handler(state.clone(), call)
                },
            )
        };
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .unwrap_or_else(|e| panic!("server on {addr}: {e}"));
        });
        Self {
            addr,
            state,
            calls,
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `request` to the server directly (not through Envoy).
    pub async fn send(&self, request: Request) -> client::Response {
        client::send(self.addr, &request)
            .await
            .unwrap_or_else(|e| panic!("{request:?} to {}: {e}", self.addr))
    }

    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap()
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn clear_calls(&self) {
        self.calls.lock().unwrap().clear();
    }
}

impl<S> Drop for FakeHttp<S> {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One request a server received.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// Path and query exactly as received.
    pub target: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Names lower-cased, repeats kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Call {
    fn new(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Self {
        Self {
            method: method.to_string(),
            path: uri.path().to_owned(),
            target: uri
                .path_and_query()
                .map_or_else(|| uri.to_string(), |pq| pq.to_string()),
            query: uri
                .query()
                .map(|q| form_pairs(q.as_bytes()))
                .unwrap_or_default(),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (n.as_str().to_owned(), value)
                })
                .collect(),
            body: body.to_vec(),
        }
    }

    /// The path of [`Call::target`].
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        lookup(&self.query, name)
    }

    /// The body as `application/x-www-form-urlencoded` pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        form_pairs(&self.body)
    }

    pub fn form_param(&self, name: &str) -> Option<String> {
        lookup(&self.form(), name).map(str::to_owned)
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The token of an `Authorization: Bearer` header (scheme
    /// case-insensitive).
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }

    /// `client_id:client_secret` from an `Authorization: Basic` header.
    pub fn basic_credentials(&self) -> Option<(String, String)> {
        let value = self.header("authorization")?;
        let (scheme, encoded) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let unescape = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        Some((unescape(id), unescape(secret)))
    }
}

fn form_pairs(encoded: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(encoded)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The value of the first pair named `name`.
pub fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `body` as JSON, with `content_type`.
pub fn json_response(status: StatusCode, content_type: &'static str, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        body.to_string(),
    )
        .into_response()
}

/// A 500 with an HTML body.
pub fn server_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html")],
        "<html><body><h1>500 Internal Server Error</h1></body></html>",
    )
        .into_response()
}

/// RFC 7636 S256: BASE64URL(SHA256(verifier)), no padding.
pub fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}
