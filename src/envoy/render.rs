//! [`model`](super::model) → the YAML of a static bootstrap.

use super::bootstrap::socket;
use super::model::{Action, Check, ClusterSpec, HeaderTest, PathMatch, RouteSpec};
use super::yaml::Yaml;

pub const EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
pub const PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";
const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// Debian's (and most distributions') CA bundle.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// One route; `version` goes into its `context_extensions` (None: to
/// compute the version itself from the rendering).
pub fn route(r: &RouteSpec, version: Option<&str>) -> Yaml {
    let mut matcher = match &r.path {
        PathMatch::Prefix(p) => Yaml::map([("prefix", Yaml::str(p))]),
        PathMatch::Regex(re) => Yaml::map([("safe_regex", Yaml::map([("regex", Yaml::str(re))]))]),
    };
    if !r.headers.is_empty() {
        let headers = r
            .headers
            .iter()
            .map(|h| {
                let test = match &h.test {
                    HeaderTest::Regex(r) => {
                        Yaml::map([("safe_regex", Yaml::map([("regex", Yaml::str(r))]))])
                    }
                    HeaderTest::Contains(c) => Yaml::map([("contains", Yaml::str(c))]),
                };
                let mut m = Yaml::map([("name", Yaml::str(h.name)), ("string_match", test)]);
                if h.invert {
                    m = m
                        .with("invert_match", Yaml::Bool(true))
                        .with("treat_missing_header_as_empty", Yaml::Bool(true));
                }
                m
            })
            .collect();
        matcher = matcher.with("headers", Yaml::List(headers));
    }
    let mut entry = Yaml::map([("name", Yaml::str(&r.name))]);
    entry = match r.comment {
        Some(c) => entry.with_comment(c, "match", matcher),
        None => entry.with("match", matcher),
    };
    entry = match &r.action {
        Action::Forward {
            cluster,
            regex_rewrite,
            auto_host_rewrite,
            timeout,
        } => {
            let mut a = Yaml::map([("cluster", Yaml::str(cluster))]);
            if let Some((pattern, substitution)) = regex_rewrite {
                a = a.with(
                    "regex_rewrite",
                    Yaml::map([
                        ("pattern", Yaml::map([("regex", Yaml::str(pattern))])),
                        ("substitution", Yaml::str(substitution)),
                    ]),
                );
            }
            if *auto_host_rewrite {
                a = a.with("auto_host_rewrite", Yaml::Bool(true));
            }
            if let Some(t) = timeout {
                a = a.with("timeout", Yaml::str(format!("{}s", t.as_secs_f64())));
            }
            entry.with("route", a)
        }
        Action::Redirect {
            scheme,
            host,
            port,
            path,
            strip_query,
            permanent,
        } => {
            let mut a = Yaml::map([
                ("scheme_redirect", Yaml::str(scheme)),
                ("host_redirect", Yaml::str(host)),
            ]);
            if let Some(p) = port {
                a = a.with("port_redirect", Yaml::Int(i64::from(*p)));
            }
            a = a
                .with("path_redirect", Yaml::str(path))
                .with("strip_query", Yaml::Bool(*strip_query))
                .with(
                    "response_code",
                    Yaml::str(if *permanent {
                        "MOVED_PERMANENTLY"
                    } else {
                        "FOUND"
                    }),
                );
            entry.with("redirect", a)
        }
        Action::Respond { status, body } => {
            let mut a = Yaml::map([("status", Yaml::Int(i64::from(*status)))]);
            if let Some(b) = body {
                a = a.with("body", Yaml::map([("inline_string", Yaml::str(b))]));
            }
            entry.with("direct_response", a)
        }
    };
    if !r.add_request_headers.is_empty() {
        entry = entry.with(
            "request_headers_to_add",
            header_values(&r.add_request_headers),
        );
    }
    if !r.remove_request_headers.is_empty() {
        entry = entry.with(
            "request_headers_to_remove",
            Yaml::List(r.remove_request_headers.iter().map(Yaml::str).collect()),
        );
    }
    if !r.add_response_headers.is_empty() {
        entry = entry.with(
            "response_headers_to_add",
            header_values(&r.add_response_headers),
        );
    }
    let per_route = match &r.check {
        Check::Disabled => Some(Yaml::map([
            ("@type", Yaml::str(PER_ROUTE_TYPE)),
            ("disabled", Yaml::Bool(true)),
        ])),
        Check::Labelled(label) => {
            let mut ctx = Yaml::map([("route", Yaml::str(label))]);
            if let Some(v) = version {
                ctx = ctx.with("config", Yaml::str(v));
            }
            Some(Yaml::map([
                ("@type", Yaml::str(PER_ROUTE_TYPE)),
                ("check_settings", Yaml::map([("context_extensions", ctx)])),
            ]))
        }
        Check::Plain => None,
    };
    if let Some(p) = per_route {
        entry = entry.with("typed_per_filter_config", Yaml::map([(EXT_AUTHZ, p)]));
    }
    entry
}

fn header_values(headers: &[(String, String)]) -> Yaml {
    Yaml::List(
        headers
            .iter()
            .map(|(k, v)| {
                Yaml::map([
                    (
                        "header",
                        Yaml::map([("key", Yaml::str(k)), ("value", Yaml::str(v))]),
                    ),
                    ("append_action", Yaml::str("OVERWRITE_IF_EXISTS_OR_ADD")),
                ])
            })
            .collect(),
    )
}

/// A STRICT_DNS cluster of one endpoint.
pub fn cluster(c: &ClusterSpec) -> Yaml {
    let mut y = Yaml::map([("name", Yaml::str(&c.name))]);
    y = match c.comment {
        Some(comment) => y.with_comment(comment, "type", Yaml::str("STRICT_DNS")),
        None => y.with("type", Yaml::str("STRICT_DNS")),
    };
    y = y.with("connect_timeout", Yaml::str("5s"));
    if c.h2 {
        y = y.with(
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
    y = y.with(
        "load_assignment",
        Yaml::map([
            ("cluster_name", Yaml::str(&c.name)),
            (
                "endpoints",
                Yaml::List(vec![Yaml::map([(
                    "lb_endpoints",
                    Yaml::List(vec![Yaml::map([(
                        "endpoint",
                        Yaml::map([("address", socket(&c.endpoint))]),
                    )])]),
                )])]),
            ),
        ]),
    );
    if let Some(server) = &c.tls {
        y = y.with_comment(
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
                                        Yaml::map([("filename", Yaml::str(CA_BUNDLE))]),
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
    y
}
