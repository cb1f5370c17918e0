//! The protected application: an in-process axum server that records every
//! request it gets, so tests can assert what Envoy let through (and what it
//! did not).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Json;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query exactly as received.
    pub target: String,
    /// Names lower-cased, repeats kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Records = Arc<Mutex<Vec<Recorded>>>;

pub struct EchoUpstream {
    addr: SocketAddr,
    records: Records,
    server: JoinHandle<()>,
}

impl EchoUpstream {
    pub async fn start() -> Self {
        let records = Records::default();
        let app = Router::new().fallback(echo).with_state(records.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind echo upstream");
        let addr = listener.local_addr().expect("echo upstream address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("echo upstream");
        });
        Self {
            addr,
            records,
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.records.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.records.lock().unwrap().clear();
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn echo(
    State(records): State<Records>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let recorded = Recorded {
        method: method.to_string(),
        target: uri
            .path_and_query()
            .map_or_else(|| uri.to_string(), |pq| pq.to_string()),
        headers: headers
            .iter()
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_owned(), value)
            })
            .collect(),
        body: body.to_vec(),
    };
    let reply = json!({
        "upstream": true,
        "method": recorded.method,
        "target": recorded.target,
        "headers": recorded.headers,
        "body": String::from_utf8_lossy(&recorded.body),
    });
    records.lock().unwrap().push(recorded);
    Json(reply)
}
