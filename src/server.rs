//! `serve`: bind the gRPC, HTTP and admin ports and run until a shutdown
//! signal, reloading the config on change.

use crate::envoy::xds::AdsService;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::admin::{AdminService, proto::admin_server::AdminServer};
use crate::service::CheckService;
use crate::state::Shared;

pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:9001";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9002";
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9003";

/// Addresses to bind; flags win over the file.
pub struct Addrs {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

/// Why `serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A port could not be bound: which address, and what it was for.
    #[error("cannot listen on {addr} for {what} ({flag}): {error}")]
    Bind {
        addr: SocketAddr,
        /// `gRPC ext_authz`, `HTTP` or `admin API`.
        what: &'static str,
        /// Where the address comes from, so the message says what to change.
        flag: &'static str,
        error: std::io::Error,
    },
    /// The store could not be set up (its URL).
    #[error("authz.store: {0}")]
    Store(crate::store::StoreError),
    /// A server failed while running.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Connects the store the config names (in the background: a store down
/// at start is retried until it answers, and the server starts anyway).
fn attach_store(shared: &Arc<Shared>) -> Result<(), ServeError> {
    let engine = shared.engine();
    let Some(spec) = &engine.settings.store else {
        return Ok(());
    };
    let runtime = Arc::downgrade(&shared.runtime);
    let store = crate::store::Store::start(
        spec,
        shared.runtime.revocations.clone(),
        shared.runtime.throttle_blocks.clone(),
        shared.metrics.store.clone(),
        move || runtime.upgrade().map_or(24 * 3600, |r| r.max_life()),
    )
    .map_err(ServeError::Store)?;
    shared.runtime.attach(store);
    Ok(())
}

/// Binds `addr` for `what`, or says which one failed.
async fn bind(
    addr: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| ServeError::Bind {
            addr,
            what,
            flag,
            error,
        })
}

/// Serves until SIGINT/SIGTERM, then stops accepting and drains in-flight
/// requests. The config is already loaded and valid: nothing is bound
/// before it is known to be good.
pub async fn serve(shared: Arc<Shared>, addrs: Addrs) -> Result<(), ServeError> {
    attach_store(&shared)?;
    let grpc_listener = bind(
        addrs.grpc,
        "gRPC ext_authz",
        "--grpc-addr or authz.grpc_addr",
    )
    .await?;
    let http_listener = bind(addrs.http, "HTTP", "--http-addr or authz.http_addr").await?;
    let admin_listener = bind(
        addrs.admin,
        "the admin API",
        "--admin-addr or authz.admin_addr",
    )
    .await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AuthorizationServer<CheckService>>()
        .await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let grpc = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(AuthorizationServer::new(CheckService::new(shared.clone())))
        // Envoy's listener, routes and clusters (`ingress-authz envoy --xds`).
        .add_service(AggregatedDiscoveryServiceServer::new(AdsService::new(
            shared.clone(),
        )))
        .serve_with_incoming_shutdown(no_delay(grpc_listener), stopped(stop_rx.clone()));
    let token_source = shared.clone();
    let admin = tonic::transport::Server::builder()
        .add_service(AdminServer::with_interceptor(
            AdminService::new(shared.clone()),
            move |request| crate::admin::check_token(&token_source, request),
        ))
        .serve_with_incoming_shutdown(no_delay(admin_listener), stopped(stop_rx.clone()));
    let http = axum::serve(http_listener, crate::sidecar::router(shared.clone()))
        .with_graceful_shutdown(stopped(stop_rx));

    // File watches and signal handlers before the announcement: from then
    // on a change reloads and SIGTERM drains, even a moment after start.
    let reloader = crate::reload::Reloader::prepare(shared.clone());
    let shutdown = shutdown_signal();

    // The one line tests and scripts read to learn the bound ports.
    println!("listening grpc={grpc_addr} http={http_addr} admin={admin_addr}");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    tracing::info!(%grpc_addr, %http_addr, %admin_addr, "serving");

    let grpc_task = tokio::spawn(grpc);
    let admin_task = tokio::spawn(admin);
    let http_task = tokio::spawn(async move { http.await });
    let refresher = tokio::spawn(crate::state::keep_fresh(shared.clone()));
    let reloader = tokio::spawn(reloader.run());

    shutdown.await;
    tracing::info!("shutting down: draining in-flight requests");
    health_reporter
        .set_not_serving::<AuthorizationServer<CheckService>>()
        .await;
    drop(stop_tx);
    reloader.abort();
    refresher.abort();
    let (g, a, h) = tokio::join!(grpc_task, admin_task, http_task);
    g.map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    a.map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    h.map_err(std::io::Error::other)??;
    tracing::info!("stopped");
    Ok(())
}

/// Accepted connections with Nagle's algorithm off. A custom incoming
/// stream bypasses tonic's own `tcp_nodelay`, and without it small HTTP/2
/// frames wait for delayed ACKs (~40 ms tails).
fn no_delay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Resolves when the stop sender is dropped.
async fn stopped(mut rx: tokio::sync::watch::Receiver<()>) {
    while rx.changed().await.is_ok() {}
}

/// Installs the SIGINT/SIGTERM handlers now; the future resolves on either.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    }
}
