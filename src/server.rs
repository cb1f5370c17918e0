//! `serve`: bind the gRPC and HTTP ports and run until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::net::TcpListener;

use crate::engine::Engine;
use crate::service::CheckService;

pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:9001";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9002";

/// Addresses to bind; flags win over the file.
pub struct Addrs {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

/// Serves until SIGINT/SIGTERM. The engine is already loaded and valid:
/// nothing is bound before the config is known to be good.
pub async fn serve(engine: Engine, addrs: Addrs) -> std::io::Result<()> {
    let engine = Arc::new(ArcSwap::from_pointee(engine));
    let grpc_listener = TcpListener::bind(addrs.grpc).await?;
    let http_listener = TcpListener::bind(addrs.http).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AuthorizationServer<CheckService>>()
        .await;

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());

    let grpc = tonic::transport::Server::builder()
        .http2_adaptive_window(Some(true))
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(AuthorizationServer::new(CheckService::new(engine.clone())))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
            wait_for(stop_rx.clone()),
        );
    let http = axum::serve(http_listener, crate::sidecar::router())
        .with_graceful_shutdown(wait_for(stop_rx));

    // The one line tests and scripts read to learn the bound ports.
    println!("listening grpc={grpc_addr} http={http_addr}");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    tracing::info!(%grpc_addr, %http_addr, "serving");

    let grpc_task = tokio::spawn(grpc);
    let http_task = tokio::spawn(async move { http.await });
    shutdown.await;
    tracing::info!("shutting down: draining in-flight checks");
    drop(stop_tx);
    let (g, h) = tokio::join!(grpc_task, http_task);
    g.map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    h.map_err(std::io::Error::other)??;
    Ok(())
}

async fn wait_for(mut rx: tokio::sync::watch::Receiver<()>) {
    // Resolves when the sender is dropped.
    while rx.changed().await.is_ok() {}
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
