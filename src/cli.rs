//! Command line (SPEC §2).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    },
    /// Check a config: exit 0 when valid, 1 with every error otherwise.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show which rule, path and auth apply to a URL, and the decision.
    Explain {
        #[arg(long, short)]
        config: PathBuf,
        /// e.g. `http://example.com/admin?x=1`
        url: String,
        /// Request headers for the decision, e.g. -H 'Authorization: Basic ...'
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
    },
}
