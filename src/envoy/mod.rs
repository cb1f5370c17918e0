//! Envoy resources generated from the compiled routes (SPEC §13.4):
//! `ingress-authz envoy` prints them as a static bootstrap.
//!
//! * [`routing`] — what each rule, path and the fallback route to (the
//!   part of the config `serve` leaves to Envoy);
//! * [`guard`] — `:authority` regexes and what is proved about them;
//! * [`routes`] — the ordered route list with its bypass copies, as the
//!   plain types of [`model`];
//! * [`render`] and [`bootstrap`] — those as a commented static bootstrap
//!   ([`yaml`] writes it), or the small bootstrap of xDS mode;
//! * [`proto`] — the same resources as Envoy's protos, and [`xds`] — the
//!   ADS server that `serve` runs on its gRPC port.

pub mod bootstrap;
pub mod guard;
pub mod model;
pub mod proto;
pub mod render;
pub mod routes;
pub mod routing;
pub mod xds;
pub mod yaml;

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::config::yaml::Node;
use crate::engine::Engine;

/// `host:port`, where the host may be a DNS name (`ingress-authz:9001`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` is not host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // 0 is allowed: Envoy then picks a free port (tests read it back).
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("`{s}`: the port is not 0 to 65535"))?;
        if host.is_empty() {
            return Err(format!("`{s}` has no host"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_overrides_parse() {
        let o: UpstreamOverride = "api-service:8080=127.0.0.1:18080".parse().unwrap();
        assert_eq!(
            (o.name.as_str(), o.port, o.to.port, o.plain),
            ("api-service", Some(8080), 18080, false)
        );
        let o: UpstreamOverride = "httpbin.org=http://127.0.0.1:1".parse().unwrap();
        assert_eq!(
            (o.port, o.plain, o.to.host.as_str()),
            (None, true, "127.0.0.1")
        );
        for bad in ["nothing", "=127.0.0.1:1", "a:x=127.0.0.1:1", "a=127.0.0.1"] {
            assert!(bad.parse::<UpstreamOverride>().is_err(), "{bad}");
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl From<std::net::SocketAddr> for Endpoint {
    fn from(a: std::net::SocketAddr) -> Self {
        Self {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }
}

/// The generated listener's address: `authz.envoy.listen`, else
/// `0.0.0.0:8000`.
pub fn listen_address(settings: &crate::config::spec::AuthzSpec) -> Endpoint {
    settings.envoy_listen.map_or_else(
        || Endpoint {
            host: "0.0.0.0".into(),
            port: 8000,
        },
        Into::into,
    )
}

/// Where the generated Envoy listens and finds ingress-authz.
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: Endpoint,
    pub admin: Endpoint,
    pub authz: Endpoint,
    pub sidecar: Endpoint,
}

/// `--upstream SERVICE=HOST:PORT`: where a service's cluster really is
/// (`SERVICE` is `name:port` or `name`), e.g. a name only DNS elsewhere
/// knows, pointed at a local address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamOverride {
    pub name: String,
    pub port: Option<u16>,
    pub to: Endpoint,
    /// `SERVICE=http://HOST:PORT`: plain HTTP/1.1 there, whatever the
    /// service's protocol (a local stand-in for a TLS service).
    pub plain: bool,
}

impl FromStr for UpstreamOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (service, to) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not SERVICE=HOST:PORT"))?;
        let (name, port) = match service.rsplit_once(':') {
            Some((name, port)) => (
                name,
                Some(
                    port.parse::<u16>()
                        .map_err(|_| format!("`{service}`: the port is not 1 to 65535"))?,
                ),
            ),
            None => (service, None),
        };
        if name.is_empty() {
            return Err(format!("`{s}` names no service"));
        }
        let (plain, to) = match to.strip_prefix("http://") {
            Some(rest) => (true, rest),
            None => (false, to),
        };
        Ok(Self {
            name: name.to_string(),
            port,
            to: to.parse()?,
            plain,
        })
    }
}

/// The resources of a loaded config; `root` is the same file's YAML tree.
pub fn resources(engine: &Engine, root: &Node) -> model::Resources {
    resources_with(engine, root, &[])
}

/// As [`resources`], with service clusters moved by `overrides`.
pub fn resources_with(
    engine: &Engine,
    root: &Node,
    overrides: &[UpstreamOverride],
) -> model::Resources {
    let routing = routing::Routing::read(root);
    let mut list = routes::build(engine, &routing, bootstrap::SIDECAR_CLUSTER);
    for cluster in &mut list.clusters {
        let found = overrides.iter().find(|o| {
            o.name == cluster.endpoint.host && o.port.is_none_or(|p| p == cluster.endpoint.port)
        });
        if let Some(o) = found {
            cluster.endpoint = o.to.clone();
            if o.plain {
                cluster.tls = None;
                cluster.h2 = false;
            }
        }
    }
    // The version is a hash of the resources as rendered without it: the
    // same config gives the same version on every replica.
    let mut hasher = Sha256::new();
    for r in &list.routes {
        hasher.update(render::route(r, None).to_document());
    }
    for c in &list.clusters {
        hasher.update(render::cluster(c).to_document());
    }
    let version = hex::encode(&hasher.finalize()[..8]);
    model::Resources {
        routes: list.routes,
        clusters: list.clusters,
        version,
        notes: list.notes,
        bypassed: list.bypassed,
    }
}

const STATIC_HEADER: &str = "# Routes keep ingress's first match: one virtual host, routes in config\n# order, each guarded by its rule's host. A route named `... (bypass)` skips\n# the ext_authz check where ingress-authz would allow without reading a\n# credential; it takes only plain host names and paths and requests\n# without our cookies, and strips the headers ingress-authz would strip.\n\n";

/// How a bootstrap is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Commented YAML.
    Yaml,
    /// JSON without comments (for tools; Envoy reads it too).
    Json,
}

fn print(tree: &yaml::Yaml, header: &str, format: Format) -> String {
    match format {
        Format::Yaml => format!("{header}{}", tree.to_document()),
        Format::Json => {
            let mut out = serde_json::to_string_pretty(&tree.to_json()).expect("JSON of a tree");
            out.push('\n');
            out
        }
    }
}

/// The static bootstrap of a config.
pub fn static_bootstrap(
    resources: &model::Resources,
    options: &Options,
    source: &str,
    format: Format,
) -> String {
    let header = format!(
        "# Generated by `ingress-authz envoy` from {source} (version {}): regenerate,\n# do not edit.\n#\n{STATIC_HEADER}",
        resources.version
    );
    print(&bootstrap::static_tree(options, resources), &header, format)
}

/// The bootstrap of xDS mode: listener, routes and clusters come from
/// `ingress-authz serve` at `options.authz`.
pub fn xds_bootstrap(options: &Options, source: &str, format: Format) -> String {
    let header = format!(
        "# Generated by `ingress-authz envoy --xds` from {source}: Envoy takes its\n# listener, routes and clusters from ingress-authz's ADS server at {}\n# and follows every reload. Until it answers there is no listener.\n\n",
        options.authz
    );
    print(
        &bootstrap::xds_tree(options, "ingress-authz-envoy"),
        &header,
        format,
    )
}
