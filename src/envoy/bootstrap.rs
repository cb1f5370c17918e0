//! The static bootstrap around the routes: admin, runtime, the listener
//! with the HTTP connection manager we ship, the ext_authz filter and one
//! cluster per backend service plus ingress-authz's two.

use super::routes::{EXT_AUTHZ, RouteList};
use super::routing::{Protocol, ServiceKey};
use super::yaml::Yaml;
use super::{Endpoint, Options};

const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const EXT_AUTHZ_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
pub const AUTHZ_CLUSTER: &str = "ingress_authz";
pub const SIDECAR_CLUSTER: &str = "ingress_authz_http";

pub fn document(options: &Options, routes: &RouteList, header: &str) -> String {
    let clusters: Vec<Yaml> = [
        cluster(AUTHZ_CLUSTER, &options.authz, true, None),
        cluster(SIDECAR_CLUSTER, &options.sidecar, false, None),
    ]
    .into_iter()
    .chain(routes.services.iter().map(service_cluster))
    .collect();
    let doc = Yaml::map([(
        "admin",
        Yaml::map([("address", socket(&options.admin))]),
    )])
    .with_comment(
        "Host and path regexes of generated routes are longer than Envoy's default\nRE2 program-size limit (100) allows.",
        "layered_runtime",
        Yaml::map([(
            "layers",
            Yaml::List(vec![Yaml::map([
                ("name", Yaml::str("static")),
                (
                    "static_layer",
                    Yaml::map([
                        ("re2.max_program_size.error_level", Yaml::Int(100_000)),
                        ("re2.max_program_size.warn_level", Yaml::Int(100_000)),
                    ]),
                ),
            ])]),
        )]),
    )
    .with(
        "static_resources",
        Yaml::map([
            ("listeners", Yaml::List(vec![listener(options, routes)])),
            ("clusters", Yaml::List(clusters)),
        ]),
    );
    format!("{header}{}", doc.to_document())
}

pub fn socket(e: &Endpoint) -> Yaml {
    Yaml::map([(
        "socket_address",
        Yaml::map([
            ("address", Yaml::str(&e.host)),
            ("port_value", Yaml::Int(i64::from(e.port))),
        ]),
    )])
}

/// The listener and its HTTP connection manager (`envoy/envoy.yaml`'s
/// settings, with the generated routes).
pub fn listener(options: &Options, routes: &RouteList) -> Yaml {
    let route_config = Yaml::map([
        ("name", Yaml::str("ingress")),
        (
            "virtual_hosts",
            Yaml::List(vec![
                Yaml::map([("name", Yaml::str("rules")), ("domains", Yaml::List(vec![Yaml::str("*")]))])
                    .with_comment(
                        "One virtual host: Envoy picks virtual hosts by specificity, ingress picks\nrules in order. Each route's `:authority` guard is its rule's host.",
                        "routes",
                        Yaml::List(routes.routes.clone()),
                    ),
            ]),
        ),
    ]);
    let hcm = Yaml::map([
        ("@type", Yaml::str(HCM_TYPE)),
        ("stat_prefix", Yaml::str("ingress")),
        ("codec_type", Yaml::str("AUTO")),
    ])
    .with_comment(
        "Edge proxy: Envoy sets x-forwarded-for / x-forwarded-proto itself.",
        "use_remote_address",
        Yaml::Bool(true),
    )
    .with_comment(
        "Canonical paths before ext_authz and routing see them.",
        "normalize_path",
        Yaml::Bool(true),
    )
    .with("merge_slashes", Yaml::Bool(true))
    .with(
        "path_with_escaped_slashes_action",
        Yaml::str("UNESCAPE_AND_REDIRECT"),
    )
    .with_comment(
        "`X_Connect_Token` would reach CGI-style upstreams as X-Connect-Token.",
        "common_http_protocol_options",
        Yaml::map([("headers_with_underscores_action", Yaml::str("DROP_HEADER"))]),
    )
    .with("route_config", route_config)
    .with(
        "http_filters",
        Yaml::List(vec![
            Yaml::map([
                ("name", Yaml::str(EXT_AUTHZ)),
                (
                    "typed_config",
                    Yaml::map([
                        ("@type", Yaml::str(EXT_AUTHZ_TYPE)),
                        ("transport_api_version", Yaml::str("V3")),
                        (
                            "grpc_service",
                            Yaml::map([
                                (
                                    "envoy_grpc",
                                    Yaml::map([("cluster_name", Yaml::str(AUTHZ_CLUSTER))]),
                                ),
                                ("timeout", Yaml::str("0.5s")),
                            ]),
                        ),
                    ])
                    .with_comment(
                        "Fail closed: an authorizer that is down or slow means 503.",
                        "failure_mode_allow",
                        Yaml::Bool(false),
                    )
                    .with(
                        "status_on_error",
                        Yaml::map([("code", Yaml::str("ServiceUnavailable"))]),
                    ),
                ),
            ]),
            Yaml::map([
                ("name", Yaml::str("envoy.filters.http.router")),
                (
                    "typed_config",
                    Yaml::map([("@type", Yaml::str(ROUTER_TYPE))]),
                ),
            ]),
        ]),
    );
    Yaml::map([
        ("name", Yaml::str("ingress")),
        ("address", socket(&options.listen)),
        (
            "filter_chains",
            Yaml::List(vec![Yaml::map([(
                "filters",
                Yaml::List(vec![Yaml::map([
                    (
                        "name",
                        Yaml::str("envoy.filters.network.http_connection_manager"),
                    ),
                    ("typed_config", hcm),
                ])]),
            )])]),
        ),
    ])
}

fn service_cluster(key: &ServiceKey) -> Yaml {
    let h2 = matches!(key.protocol, Protocol::H2 | Protocol::H2c);
    let tls = key.protocol.tls().then_some(key.name.as_str());
    cluster(
        &key.cluster_name(),
        &Endpoint {
            host: key.name.clone(),
            port: key.port,
        },
        h2,
        tls,
    )
}

/// A STRICT_DNS cluster of one endpoint; `h2`: HTTP/2 to it; `tls`: the server name to
/// verify against the system's CA bundle.
pub fn cluster(name: &str, endpoint: &Endpoint, h2: bool, tls: Option<&str>) -> Yaml {
    let mut c = Yaml::map([
        ("name", Yaml::str(name)),
        ("type", Yaml::str("STRICT_DNS")),
        ("connect_timeout", Yaml::str("5s")),
    ]);
    if h2 {
        c = c.with(
            "typed_extension_protocol_options",
            Yaml::map([(
                HTTP_OPTIONS,
                Yaml::map([
                    (
                        "@type",
                        Yaml::str(format!("type.googleapis.com/{HTTP_OPTIONS}")),
                    ),
                    (
                        "explicit_http_config",
                        Yaml::map([("http2_protocol_options", Yaml::map::<&str>([]))]),
                    ),
                ]),
            )]),
        );
    }
    c = c.with(
        "load_assignment",
        Yaml::map([
            ("cluster_name", Yaml::str(name)),
            (
                "endpoints",
                Yaml::List(vec![Yaml::map([(
                    "lb_endpoints",
                    Yaml::List(vec![Yaml::map([(
                        "endpoint",
                        Yaml::map([("address", socket(endpoint))]),
                    )])]),
                )])]),
            ),
        ]),
    );
    if let Some(server) = tls {
        c = c.with_comment(
            "TLS to the service, its certificate checked against the system's CA bundle.",
            "transport_socket",
            Yaml::map([
                ("name", Yaml::str("envoy.transport_sockets.tls")),
                (
                    "typed_config",
                    Yaml::map([
                        ("@type", Yaml::str(TLS_TYPE)),
                        ("sni", Yaml::str(server)),
                        (
                            "common_tls_context",
                            Yaml::map([(
                                "validation_context",
                                Yaml::map([
                                    (
                                        "trusted_ca",
                                        Yaml::map([(
                                            "filename",
                                            Yaml::str("/etc/ssl/certs/ca-certificates.crt"),
                                        )]),
                                    ),
                                    (
                                        "match_typed_subject_alt_names",
                                        Yaml::List(vec![Yaml::map([
                                            ("san_type", Yaml::str("DNS")),
                                            ("matcher", Yaml::map([("exact", Yaml::str(server))])),
                                        ])]),
                                    ),
                                ]),
                            )]),
                        ),
                    ]),
                ),
            ]),
        );
    }
    c
}
