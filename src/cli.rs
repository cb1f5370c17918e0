//! Command line (SPEC §2).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ingress-authz",
    version,
    about = "Envoy ext_authz service with ingress-style auth rules"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config, then serve ext_authz gRPC and the HTTP sidecar.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// Overrides `authz.grpc_addr` (default 127.0.0.1:9001).
        #[arg(long)]
        grpc_addr: Option<SocketAddr>,
        /// Overrides `authz.http_addr` (default 127.0.0.1:9002).
        #[arg(long)]
        http_addr: Option<SocketAddr>,
        /// Overrides `authz.admin_addr` (default 127.0.0.1:9003; keep it on loopback).
        #[arg(long)]
        admin_addr: Option<SocketAddr>,
        /// Log lines as JSON or text (default: JSON when stderr is not a terminal).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Check a config: exit 0 when valid, 1 with every error otherwise.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print an Envoy bootstrap that routes by the config's rules, with the
    /// ext_authz check skipped on routes without auth. Notes on stderr.
    Envoy {
        #[arg(long, short)]
        config: PathBuf,
        /// ingress-authz's gRPC address as Envoy reaches it (host:port;
        /// default `authz.grpc_addr`).
        #[arg(long)]
        authz_addr: Option<crate::envoy::Endpoint>,
        /// The HTTP sidecar (`/oauth2/*`) as Envoy reaches it (default
        /// `authz.http_addr`).
        #[arg(long)]
        sidecar_addr: Option<crate::envoy::Endpoint>,
        /// Envoy's listener (default `authz.envoy.listen`, else 0.0.0.0:8000).
        #[arg(long)]
        listen: Option<crate::envoy::Endpoint>,
        /// Envoy's admin interface (keep it on loopback).
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin_addr: crate::envoy::Endpoint,
        /// A bootstrap that takes listener, routes and clusters from
        /// `ingress-authz serve --xds` (live updates on every reload).
        #[arg(long)]
        xds: bool,
        /// Where a service really is, e.g. `api-service:8080=127.0.0.1:18080`
        /// (`SERVICE` is `name:port` or `name`; `=http://HOST:PORT` also
        /// drops TLS; repeatable; static bootstraps only).
        #[arg(long = "upstream", value_name = "SERVICE=HOST:PORT")]
        upstreams: Vec<crate::envoy::UpstreamOverride>,
        /// Commented YAML, or JSON for tools.
        #[arg(long, value_enum, default_value = "yaml")]
        format: crate::envoy::Format,
    },
    /// Show which rule, path and auth apply to a URL, and the decision:
    /// exit 0 allow, 3 deny (a 4xx/5xx or a login redirect), 1 error.
    Explain {
        #[arg(long, short)]
        config: PathBuf,
        /// e.g. `http://example.com/admin?x=1`
        url: String,
        /// Request headers for the decision, e.g. -H 'Authorization: Basic ...'
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// The request's method.
        #[arg(long, short = 'X', default_value = "GET")]
        method: String,
        /// Fetch OpenID discovery and JWKS first, so oidc and JWKS routes
        /// decide as the running server would.
        #[arg(long)]
        online: bool,
    },
}

/// How `serve` writes its log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}
