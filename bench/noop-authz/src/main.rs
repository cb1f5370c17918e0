//! No-op ext_authz v3 server: the floor of the ext_authz design.
//!
//! It does what every authorizer must do and nothing more: tonic decodes the
//! `CheckRequest`, the handler reads one header and answers OK. Whatever a
//! real authorizer costs beyond this is its decision logic.
//!
//! ```text
//! noop-authz [--addr 127.0.0.1:0] [--dump-first FILE]
//! ```
//!
//! Prints `listening grpc=ADDR` once bound (like ingress-authz). With
//! `--dump-first FILE` it also writes the first CheckRequest it receives,
//! gRPC-framed (5-byte prefix + protobuf), to FILE: the body for direct
//! `h2load` runs, exactly as Envoy sends it.

use std::hint::black_box;
use std::sync::Mutex;

use envoy_types::ext_authz::v3::CheckRequestExt;
use envoy_types::ext_authz::v3::CheckResponseExt;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse,
};
use prost::Message;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

struct Noop {
    /// Where to write the first request, taken (set to None) once written.
    dump: Option<Mutex<Option<String>>>,
}

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let check = request.into_inner();
        // The one header lookup every authorizer does.
        let authorization = check
            .get_client_headers()
            .and_then(|h| h.get("authorization"))
            .is_some();
        black_box(authorization);
        if let Some(dump) = &self.dump {
            dump_once(dump, &check);
        }
        Ok(Response::new(CheckResponse::with_status(Status::ok(""))))
    }
}

fn dump_once(dump: &Mutex<Option<String>>, check: &CheckRequest) {
    let Some(path) = dump.lock().expect("not poisoned").take() else {
        return;
    };
    let message = check.encode_to_vec();
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0); // not compressed
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    if let Err(e) = std::fs::write(&path, framed) {
        eprintln!("noop-authz: cannot write {path}: {e}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:0".to_string();
    let mut dump = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs a value")?,
            "--dump-first" => dump = Some(args.next().ok_or("--dump-first needs a file")?),
            _ => {
                return Err(format!(
                    "unknown argument {arg}; usage: noop-authz [--addr ADDR] [--dump-first FILE]"
                )
                .into());
            }
        }
    }
    // `Server::tcp_nodelay` does not apply to `serve_with_incoming`: the
    // incoming stream sets TCP_NODELAY itself. Without it, two responses on
    // one HTTP/2 connection wait on Nagle and the peer's delayed ACK.
    let incoming = TcpIncoming::bind(addr.parse()?)?.with_nodelay(Some(true));
    println!("listening grpc={}", incoming.local_addr()?);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let service = Noop {
        dump: dump.map(|d| Mutex::new(Some(d))),
    };
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(service))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
