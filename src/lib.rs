//! ingress-authz: the authentication model of the `ingress` reverse proxy,
//! served to Envoy as an ext_authz v3 gRPC `Check` service.
//!
//! Envoy routes and proxies; for each request it asks [`service::CheckService`],
//! which matches host and path against the user's rules and answers allow,
//! 401/403/429/400, or a login redirect. One pass per check: route →
//! throttle gate → authenticate (an [`identity::Identity`] only a verified
//! credential builds) → authorize ([`policy::Policy`]) → pending work (keys,
//! session refresh, a password hash on the bounded pool) → response.
//!
//! # Layout
//!
//! The way down one check, then what serves it. Each module's first doc
//! line says what it owns.
//!
//! * [`cli`] — command-line arguments; [`run`] dispatches them (`main.rs`
//!   only picks the allocator and calls it).
//! * [`config`] — the YAML file: [`config::yaml`] (a tree with positions),
//!   `reader` (walking it, every problem collected), the schema walk
//!   (`walk`, `walk_authz`, `walk_auth`, `walk_methods`, `walk_login`,
//!   `walk_allow`, `walk_upstream`: unknown-key errors, providers and
//!   algorithms parsed once), `env` (`${VAR}` expansion),
//!   [`config::error`] (diagnostics with their YAML location) and the
//!   as-written [`config::spec`] types.
//! * [`engine`] — [`engine::Engine`]: built from a spec (`engine/build.rs`:
//!   load, validate, compile routes numbered by [`decision::RouteId`]) and
//!   deciding one request ([`engine::Engine::decide`]).
//! * [`matching`] — host patterns and normalisation (wildcards without
//!   regexes), path normalisation, path patterns (plain prefixes without
//!   regexes), the rule router and each route's auth (SPEC §4).
//! * [`request`] — the validated view of an Envoy `CheckRequest`: headers,
//!   cookies, [`request::Scheme`], whether it is a browser navigation.
//! * [`auth`] — the closed [`auth::Authenticator`] enum, one file each:
//!   `basic`, `bearer`, `jwt`, `oauth2`, `oidc/` (login mode, API mode,
//!   callback and refresh, the typed OpenID answers); [`auth::methods`] —
//!   a route's methods and which one a credential belongs to. Beside them:
//!   `providers/` (the provider table, endpoints, the HTTP client with its
//!   [`auth::providers::HttpError`], each provider's token, profile and
//!   group answers), `login_client` (sessions of oauth2/oidc, and
//!   `login_client/start.rs`: starting a login), `login_error`, `discovery`, `jwks`, `validation` (the one
//!   `jsonwebtoken::Validation` builder), `wire` (tolerant JSON field
//!   types), `pkce` (state, nonce, S256), `open_sessions`,
//!   `refresh_flights` and `cache` (what saves repeated work).
//! * [`identity`] — the proof type: who a verified credential names, with its
//!   verified email, groups and policy claims; [`policy`] — the compiled
//!   `allow:` block that judges it on every request.
//! * [`hashing`] — the bounded password-hash pool (429 `busy` when full);
//!   [`throttle`] — failed-authentication limits per route and client/user.
//! * [`decision`] — the leaf vocabulary (statuses, reasons, denials, the
//!   typed pending work, route ids); [`response`] turns a decision into a
//!   `CheckResponse` (the only place); [`negotiate`] picks JSON or HTML.
//! * [`service`] — the tonic `Authorization` service: runs pending work
//!   under the check's time budget; [`audit`] — one structured event per
//!   denial on the `audit` target.
//! * [`identity_headers`] — `auth.identity_headers` and `strip_credentials`:
//!   what each route tells the upstream, and forged copies removed.
//! * [`cookies`] — our cookies: names, `Set-Cookie`, reading, stripping them
//!   from what the upstream sees (`Domain` with `cookie_domain`); [`sso`] —
//!   the cookie domain, the login host and the return URLs it accepts; [`session`] — what sealed cookies carry
//!   ([`session::keys`]: AES-256-GCM sealing); [`connect`] —
//!   `X-Connect-Token`.
//! * [`login`] — the sidecar's `/oauth2/callback`, `/oauth2/logout` and the
//!   login host's `/oauth2/start` (`login/start.rs`), OpenID back-channel
//!   logout (`login/backchannel/`), and the error page (`login/error.rs`).
//! * [`store`] — the optional Redis store shared by replicas: the client
//!   and its feed, the local revocation set every check reads, server-side
//!   session records behind tickets, the cross-replica refresh lease and
//!   the shared throttle blocks; [`store::Runtime`] outlives reloads.
//! * [`state`] — what the running server shares: the swappable engine, its
//!   generation, metrics; [`reload`] — file watching and SIGHUP.
//! * [`server`] — binding, health, graceful shutdown; [`sidecar`] — the axum
//!   HTTP side (`/healthz`, `/readyz`, `/metrics`, `/oauth2/*`);
//!   [`metrics`] — Prometheus metrics; [`admin`] — the admin gRPC API
//!   (`proto/admin.proto`).
//! * [`envoy`] — Envoy resources generated from the compiled routes:
//!   `ingress-authz envoy` prints them as a bootstrap, and `serve` offers
//!   them over ADS ([`envoy::xds`]); checked routes carry their label,
//!   which [`engine::Engine::cross_check`] holds the decision to.
//! * [`explain`] — `ingress-authz explain` and the admin `Explain`;
//!   [`logging`] — log lines: JSON or text for `serve`, plain for the
//!   one-shot commands.
//! * [`secret`] — redacted, zeroized secret strings; [`clock`] — the one
//!   place that reads the time; [`memory`] — handing freed heap back after
//!   a config load.

#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connect;
pub mod cookies;
pub mod decision;
pub mod engine;
pub mod envoy;
pub mod explain;
pub mod hashing;
pub mod identity;
pub mod identity_headers;
pub mod logging;
pub mod login;
pub mod matching;
pub mod memory;
pub mod metrics;
pub mod negotiate;
pub mod policy;
pub mod reload;
pub mod request;
pub mod response;
pub mod secret;
pub mod server;
pub mod service;
pub mod session;
pub mod sidecar;
pub mod sso;
pub mod state;
pub mod store;
pub mod throttle;

use std::collections::HashMap;
use std::process::ExitCode;

use cli::{Cli, Command};
use engine::Engine;

/// Runs one command; the exit code is the result.
pub fn run(cli: Cli) -> ExitCode {
    let code = run_command(cli);
    // `serve`'s log lines still queued (an early exit: a bad address, ...).
    logging::flush(std::time::Duration::from_secs(2));
    code
}

fn run_command(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Validate { config } => {
            logging::init_plain();
            let Some(engine) = load_or_report(&config) else {
                return ExitCode::FAILURE;
            };
            print_warnings(&engine);
            println!("{}: valid", config.display());
            ExitCode::SUCCESS
        }
        Command::Explain {
            config,
            url,
            headers,
            method,
            online,
        } => {
            logging::init_plain();
            let Some(engine) = load_or_report(&config) else {
                return ExitCode::FAILURE;
            };
            explain_command(&engine, &url, &headers, &method, online)
        }
        Command::Envoy {
            config,
            authz_addr,
            sidecar_addr,
            listen,
            admin_addr,
            xds,
            format,
            upstreams,
        } => {
            logging::init_plain();
            // One read: the routes and the rules come from the same text.
            let Some((engine, text)) = Engine::load_with_text(&config, &std::sync::Arc::default())
                .map_err(|e| eprintln!("{e}"))
                .ok()
            else {
                return ExitCode::FAILURE;
            };
            print_warnings(&engine);
            let root = match config::yaml::parse(&text) {
                Ok(root) => root,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::FAILURE;
                }
            };
            let settings = &engine.settings;
            let options = envoy::Options {
                listen: listen.unwrap_or_else(|| envoy::listen_address(settings)),
                admin: admin_addr,
                authz: authz_addr
                    .or_else(|| settings.grpc_addr.map(Into::into))
                    .unwrap_or_else(|| server::DEFAULT_GRPC_ADDR.parse().expect("valid default")),
                sidecar: sidecar_addr
                    .or_else(|| settings.http_addr.map(Into::into))
                    .unwrap_or_else(|| server::DEFAULT_HTTP_ADDR.parse().expect("valid default")),
            };
            let source = config.display().to_string();
            if xds && !upstreams.is_empty() {
                eprintln!(
                    "--upstream applies to static bootstraps only (over xDS the clusters come from serve)"
                );
                return ExitCode::FAILURE;
            }
            let resources = envoy::resources_with(&engine, &root, &upstreams);
            if xds {
                print!("{}", envoy::xds_bootstrap(&options, &source, format));
            } else {
                print!(
                    "{}",
                    envoy::static_bootstrap(&resources, &options, &source, format)
                );
            }
            for note in &resources.notes {
                eprintln!("note: {note}");
            }
            eprintln!(
                "{source}: version {}, {} routes ({} bypass the check), {} service clusters",
                resources.version,
                resources.routes.len(),
                resources.bypassed,
                resources.clusters.len()
            );
            ExitCode::SUCCESS
        }
        Command::Serve {
            config,
            grpc_addr,
            http_addr,
            admin_addr,
            log_format,
        } => {
            logging::init_serve(log_format);
            // The revocations and store outlive reloads: every engine
            // built from now on shares them.
            let store_runtime = std::sync::Arc::new(store::Runtime::default());
            let Some((engine, text)) = Engine::load_with_text(&config, &store_runtime)
                .map_err(|e| eprintln!("{e}"))
                .ok()
            else {
                return ExitCode::FAILURE;
            };
            // Before the runtime starts: loading freed several times the
            // engine's size, which need not stay resident.
            memory::release_free_heap();
            for w in &engine.warnings {
                tracing::warn!(location = %w.loc, "{}", w.message);
            }
            let kinds = engine::kinds_in_use(&engine);
            if (kinds.contains(&auth::AuthKind::OAuth2) || kinds.contains(&auth::AuthKind::Oidc))
                && engine.login.keys.ephemeral
            {
                tracing::warn!(
                    "no authz.session.secret: sessions use a random key, so they end at restart and are not shared between replicas"
                );
            }
            let addrs = server::Addrs {
                grpc: grpc_addr
                    .or(engine.settings.grpc_addr)
                    .unwrap_or_else(|| server::DEFAULT_GRPC_ADDR.parse().expect("valid default")),
                http: http_addr
                    .or(engine.settings.http_addr)
                    .unwrap_or_else(|| server::DEFAULT_HTTP_ADDR.parse().expect("valid default")),
                admin: admin_addr
                    .or(engine.settings.admin_addr)
                    .unwrap_or_else(|| server::DEFAULT_ADMIN_ADDR.parse().expect("valid default")),
            };
            // The admin API reloads configs and explains decisions: off
            // loopback it needs a token, or anyone who reaches the port could.
            if !addrs.admin.ip().is_loopback() && engine.settings.admin_token.is_none() {
                eprintln!(
                    "ingress-authz: admin address {} is not loopback: set authz.admin_token (at least 32 bytes, e.g. ${{ADMIN_TOKEN}}) or keep authz.admin_addr on 127.0.0.1",
                    addrs.admin
                );
                return ExitCode::FAILURE;
            }
            let shared = state::Shared::new(engine, config, &text, store_runtime);
            // A large config's text need not stay resident.
            drop(text);
            memory::release_free_heap();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let served = runtime.block_on(server::serve(shared, addrs));
            // The last lines (the drain, a shutdown error) before exiting.
            logging::flush(std::time::Duration::from_secs(2));
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // One plain line, like a config error: it names the
                    // address and what it is for.
                    eprintln!("ingress-authz: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `explain`'s exit codes: scripts tell an allow from a deny without
/// parsing the text.
const EXPLAIN_DENY: u8 = 3;

/// `explain`: the account on stdout; exit 0 allow, 3 deny (any 4xx/5xx or
/// a login redirect), 1 when it cannot tell (a bad URL, a token offline).
fn explain_command(
    engine: &Engine,
    url: &str,
    headers: &[String],
    method: &str,
    online: bool,
) -> ExitCode {
    let mut parsed = HashMap::new();
    for h in headers {
        let Some((k, v)) = h.split_once(':') else {
            eprintln!("ingress-authz: header `{h}` is not `Name: value`");
            return ExitCode::FAILURE;
        };
        parsed.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let fetched = if online {
        if let Err(e) = fetch_providers(engine) {
            eprintln!("ingress-authz: {e}");
            return ExitCode::FAILURE;
        }
        explain::Fetched::Live
    } else {
        explain::Fetched::Offline
    };
    let method = method.to_ascii_uppercase();
    match explain::explain_url_with(engine, &method, url, &parsed, fetched) {
        Ok(ex) => {
            print!("{}", ex.text);
            match (ex.allowed, ex.status) {
                (true, _) => ExitCode::SUCCESS,
                (false, 0) => ExitCode::FAILURE,
                (false, _) => ExitCode::from(EXPLAIN_DENY),
            }
        }
        Err(e) => {
            eprintln!("ingress-authz: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `explain --online`: discovery and key sets fetched once, as `serve`
/// does at start (a failure is logged and the route then says 503).
fn fetch_providers(engine: &Engine) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let http = auth::providers::ProviderHttp::default();
    runtime.block_on(async {
        for fetcher in engine.fetchers() {
            fetcher.run(&http).await;
        }
    });
    Ok(())
}

/// The compiled config, or None with every error printed.
fn load_or_report(config: &std::path::Path) -> Option<Engine> {
    Engine::load(config).map_err(|e| eprintln!("{e}")).ok()
}

fn print_warnings(engine: &Engine) {
    for w in &engine.warnings {
        eprintln!("warning: {w}");
    }
}
