//! The bootstraps around the resources: admin, runtime, the listener with
//! the HTTP connection manager we ship, the ext_authz filter, and
//! ingress-authz's two clusters. Static: everything inline. xDS: only
//! ingress-authz's clusters, the rest from its ADS server.

use super::model::{ClusterSpec, Resources};
use super::render::{self, EXT_AUTHZ};
use super::yaml::Yaml;
use super::{Endpoint, Options};

pub const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub const EXT_AUTHZ_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
pub const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
pub const AUTHZ_CLUSTER: &str = "ingress_authz";
pub const SIDECAR_CLUSTER: &str = "ingress_authz_http";
pub const LISTENER: &str = "ingress";
pub const ROUTE_CONFIG: &str = "ingress";
/// The ext_authz check's time budget (the authorizer answers within it).
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// ingress-authz's own clusters: the gRPC service (also the ADS server)
/// and the HTTP sidecar.
pub fn own_clusters(options: &Options) -> Vec<ClusterSpec> {
    vec![
        ClusterSpec {
            name: AUTHZ_CLUSTER.into(),
            endpoint: options.authz.clone(),
            h2: true,
            tls: None,
            comment: Some("ingress-authz's gRPC port: ext_authz checks (and ADS, with --xds)."),
        },
        ClusterSpec {
            name: SIDECAR_CLUSTER.into(),
            endpoint: options.sidecar.clone(),
            h2: false,
            tls: None,
            comment: Some("ingress-authz's HTTP sidecar: /oauth2/*."),
        },
    ]
}

fn admin_and_runtime(options: &Options) -> Yaml {
    Yaml::map([("admin", Yaml::map([("address", socket(&options.admin))]))]).with_comment(
        "Generated host and path regexes are larger than Envoy's default RE2\nprogram-size limit (100) allows.",
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
}

/// Everything inline.
pub fn static_tree(options: &Options, resources: &Resources) -> Yaml {
    let routes: Vec<Yaml> = resources
        .routes
        .iter()
        .map(|r| render::route(r, Some(&resources.version)))
        .collect();
    let route_config = Yaml::map([
        ("name", Yaml::str(ROUTE_CONFIG)),
        (
            "virtual_hosts",
            Yaml::List(vec![virtual_host(Yaml::List(routes))]),
        ),
    ]);
    let clusters = own_clusters(options)
        .iter()
        .chain(&resources.clusters)
        .map(render::cluster)
        .collect();
    admin_and_runtime(options).with(
        "static_resources",
        Yaml::map([
            (
                "listeners",
                Yaml::List(vec![listener(
                    &options.listen,
                    "route_config",
                    route_config,
                )]),
            ),
            ("clusters", Yaml::List(clusters)),
        ]),
    )
}

/// Listener, routes and service clusters from ingress-authz's ADS server.
/// Until it answers, Envoy has no listener: nothing is served unchecked.
pub fn xds_tree(options: &Options, node_id: &str) -> Yaml {
    let ads = || {
        Yaml::map([
            ("ads", Yaml::map::<&str>([])),
            ("resource_api_version", Yaml::str("V3")),
        ])
    };
    let clusters = own_clusters(options).iter().map(render::cluster).collect();
    admin_and_runtime(options)
        .with(
            "node",
            Yaml::map([
                ("id", Yaml::str(node_id)),
                ("cluster", Yaml::str("ingress")),
            ]),
        )
        .with(
            "dynamic_resources",
            Yaml::map([
                (
                    "ads_config",
                    Yaml::map([
                        ("api_type", Yaml::str("GRPC")),
                        ("transport_api_version", Yaml::str("V3")),
                        (
                            "grpc_services",
                            Yaml::List(vec![Yaml::map([(
                                "envoy_grpc",
                                Yaml::map([("cluster_name", Yaml::str(AUTHZ_CLUSTER))]),
                            )])]),
                        ),
                    ]),
                ),
                ("lds_config", ads()),
                ("cds_config", ads()),
            ]),
        )
        .with(
            "static_resources",
            Yaml::map([("clusters", Yaml::List(clusters))]),
        )
}

pub fn virtual_host(routes: Yaml) -> Yaml {
    Yaml::map([
        ("name", Yaml::str("rules")),
        ("domains", Yaml::List(vec![Yaml::str("*")])),
    ])
    .with_comment(
        "One virtual host: Envoy picks virtual hosts by specificity, ingress picks\nrules in order. Each route's `:authority` guard is its rule's host.",
        "routes",
        routes,
    )
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
/// settings); `routes_key` is `route_config` (inline) or `rds`.
pub fn listener(listen: &Endpoint, routes_key: &str, routes: Yaml) -> Yaml {
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
    .with(routes_key, routes)
    .with(
        "http_filters",
        Yaml::List(vec![ext_authz_filter(), router_filter()]),
    );
    Yaml::map([
        ("name", Yaml::str(LISTENER)),
        ("address", socket(listen)),
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

fn ext_authz_filter() -> Yaml {
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
                        (
                            "timeout",
                            Yaml::str(format!("{}s", CHECK_TIMEOUT.as_secs_f64())),
                        ),
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
    ])
}

fn router_filter() -> Yaml {
    Yaml::map([
        ("name", Yaml::str("envoy.filters.http.router")),
        (
            "typed_config",
            Yaml::map([("@type", Yaml::str(ROUTER_TYPE))]),
        ),
    ])
}
