//! [`model`](super::model) → Envoy's v3 protos, for the ADS server: the
//! listener (routes by RDS), the route configuration and the service
//! clusters, as the static bootstrap writes them in YAML.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, DataSource, GrpcService,
    HeaderValue, HeaderValueOption, Http2ProtocolOptions, HttpProtocolOptions as CoreHttpOptions,
    SocketAddress, TransportSocket, address, config_source, data_source, grpc_service,
    header_value_option, http_protocol_options as core_http, socket_address, transport_socket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as LbHost, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, HeaderMatcher, RedirectAction, Route, RouteAction, RouteConfiguration,
    RouteMatch, VirtualHost, header_matcher, redirect_action, route, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    CheckSettings, ExtAuthz, ExtAuthzPerRoute, ext_authz, ext_authz_per_route,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager as hcm, http_filter,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, UpstreamTlsContext,
    common_tls_context, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher, string_matcher,
};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration};
use prost::{Message, Name};

use super::Endpoint;
use super::bootstrap::{AUTHZ_CLUSTER, CHECK_TIMEOUT, LISTENER, ROUTE_CONFIG};
use super::model::{Action, Check, ClusterSpec, HeaderTest, PathMatch, Resources, RouteSpec};
use super::render::{CA_BUNDLE, EXT_AUTHZ};

pub fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_string(),
        ..Default::default()
    }
}

fn socket(e: &Endpoint) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: e.host.clone(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(e.port))),
            ..Default::default()
        })),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

/// The listener; its routes come by RDS from the same server.
pub fn listener(listen: &Endpoint) -> Listener {
    let ext_authz = ExtAuthz {
        transport_api_version: ApiVersion::V3 as i32,
        services: Some(ext_authz::Services::GrpcService(GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                grpc_service::EnvoyGrpc {
                    cluster_name: AUTHZ_CLUSTER.into(),
                    ..Default::default()
                },
            )),
            timeout: Some(duration(CHECK_TIMEOUT)),
            ..Default::default()
        })),
        failure_mode_allow: false,
        status_on_error: Some(HttpStatus {
            code: StatusCode::ServiceUnavailable as i32,
        }),
        ..Default::default()
    };
    let manager = HttpConnectionManager {
        stat_prefix: "ingress".into(),
        codec_type: hcm::CodecType::Auto as i32,
        use_remote_address: Some(BoolValue { value: true }),
        normalize_path: Some(BoolValue { value: true }),
        merge_slashes: true,
        path_with_escaped_slashes_action: hcm::PathWithEscapedSlashesAction::UnescapeAndRedirect
            as i32,
        common_http_protocol_options: Some(CoreHttpOptions {
            headers_with_underscores_action: core_http::HeadersWithUnderscoresAction::DropHeader
                as i32,
            ..Default::default()
        }),
        route_specifier: Some(hcm::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: ROUTE_CONFIG.into(),
        })),
        http_filters: vec![
            HttpFilter {
                name: EXT_AUTHZ.into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(any(&ext_authz))),
                ..Default::default()
            },
            HttpFilter {
                name: "envoy.filters.http.router".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(
                    any(&Router::default()),
                )),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    Listener {
        name: LISTENER.into(),
        address: Some(socket(listen)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&manager))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn route_configuration(resources: &Resources) -> RouteConfiguration {
    RouteConfiguration {
        name: ROUTE_CONFIG.into(),
        virtual_hosts: vec![VirtualHost {
            name: "rules".into(),
            domains: vec!["*".into()],
            routes: resources
                .routes
                .iter()
                .map(|r| route(r, &resources.version))
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn headers_to_add(headers: &[(String, String)]) -> Vec<HeaderValueOption> {
    headers
        .iter()
        .map(|(k, v)| HeaderValueOption {
            header: Some(HeaderValue {
                key: k.clone(),
                value: v.clone(),
                ..Default::default()
            }),
            append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        })
        .collect()
}

fn route(r: &RouteSpec, version: &str) -> Route {
    let path_specifier = match &r.path {
        PathMatch::Prefix(p) => route_match::PathSpecifier::Prefix(p.clone()),
        PathMatch::Regex(re) => route_match::PathSpecifier::SafeRegex(regex(re)),
    };
    let headers = r
        .headers
        .iter()
        .map(|h| HeaderMatcher {
            name: h.name.into(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(match &h.test {
                        HeaderTest::Regex(r) => string_matcher::MatchPattern::SafeRegex(regex(r)),
                        HeaderTest::Contains(c) => {
                            string_matcher::MatchPattern::Contains(c.clone())
                        }
                    }),
                    ignore_case: false,
                },
            )),
            invert_match: h.invert,
            treat_missing_header_as_empty: h.invert,
        })
        .collect();
    let action = match &r.action {
        Action::Forward {
            cluster,
            regex_rewrite,
            auto_host_rewrite,
            timeout,
        } => route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.clone())),
            regex_rewrite: regex_rewrite
                .as_ref()
                .map(|(p, s)| RegexMatchAndSubstitute {
                    pattern: Some(regex(p)),
                    substitution: s.clone(),
                }),
            host_rewrite_specifier: auto_host_rewrite.then_some(
                route_action::HostRewriteSpecifier::AutoHostRewrite(BoolValue { value: true }),
            ),
            timeout: timeout.map(duration),
            ..Default::default()
        }),
        Action::Redirect {
            scheme,
            host,
            port,
            path,
            strip_query,
            permanent,
        } => route::Action::Redirect(RedirectAction {
            scheme_rewrite_specifier: Some(
                redirect_action::SchemeRewriteSpecifier::SchemeRedirect(scheme.clone()),
            ),
            host_redirect: host.clone(),
            port_redirect: port.map_or(0, u32::from),
            path_rewrite_specifier: Some(redirect_action::PathRewriteSpecifier::PathRedirect(
                path.clone(),
            )),
            strip_query: *strip_query,
            response_code: if *permanent {
                redirect_action::RedirectResponseCode::MovedPermanently as i32
            } else {
                redirect_action::RedirectResponseCode::Found as i32
            },
        }),
        Action::Respond { status, body } => route::Action::DirectResponse(DirectResponseAction {
            status: u32::from(*status),
            body: body.as_ref().map(|b| DataSource {
                specifier: Some(data_source::Specifier::InlineString(b.clone())),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let per_route = match &r.check {
        Check::Disabled => Some(ExtAuthzPerRoute {
            r#override: Some(ext_authz_per_route::Override::Disabled(true)),
        }),
        Check::Labelled(label) => Some(ExtAuthzPerRoute {
            r#override: Some(ext_authz_per_route::Override::CheckSettings(
                CheckSettings {
                    context_extensions: HashMap::from([
                        ("route".to_string(), label.clone()),
                        ("config".to_string(), version.to_string()),
                    ]),
                    ..Default::default()
                },
            )),
        }),
        Check::Plain => None,
    };
    Route {
        name: r.name.clone(),
        r#match: Some(RouteMatch {
            path_specifier: Some(path_specifier),
            headers,
            ..Default::default()
        }),
        action: Some(action),
        request_headers_to_add: headers_to_add(&r.add_request_headers),
        request_headers_to_remove: r.remove_request_headers.clone(),
        response_headers_to_add: headers_to_add(&r.add_response_headers),
        typed_per_filter_config: per_route
            .map(|p| HashMap::from([(EXT_AUTHZ.to_string(), any(&p))]))
            .unwrap_or_default(),
        ..Default::default()
    }
}

pub fn cluster(c: &ClusterSpec) -> Cluster {
    let mut options = HashMap::new();
    if c.h2 {
        let http2 = HttpProtocolOptions {
            upstream_protocol_options: Some(
                http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                    http_protocol_options::ExplicitHttpConfig {
                        protocol_config: Some(
                            http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                                Http2ProtocolOptions::default(),
                            ),
                        ),
                    },
                ),
            ),
            ..Default::default()
        };
        options.insert(HttpProtocolOptions::full_name(), any(&http2));
    }
    let transport_socket = c.tls.as_ref().map(|server| {
        let tls = UpstreamTlsContext {
            sni: server.clone(),
            common_tls_context: Some(CommonTlsContext {
                validation_context_type: Some(
                    common_tls_context::ValidationContextType::ValidationContext(
                        CertificateValidationContext {
                            trusted_ca: Some(DataSource {
                                specifier: Some(data_source::Specifier::Filename(CA_BUNDLE.into())),
                                ..Default::default()
                            }),
                            match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                                san_type: subject_alt_name_matcher::SanType::Dns as i32,
                                matcher: Some(StringMatcher {
                                    match_pattern: Some(string_matcher::MatchPattern::Exact(
                                        server.clone(),
                                    )),
                                    ignore_case: false,
                                }),
                                ..Default::default()
                            }],
                            ..Default::default()
                        },
                    ),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any(&tls))),
        }
    });
    Cluster {
        name: c.name.clone(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32,
        )),
        connect_timeout: Some(duration(std::time::Duration::from_secs(5))),
        typed_extension_protocol_options: options,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: c.name.clone(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(LbHost {
                        address: Some(socket(&c.endpoint)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        transport_socket,
        ..Default::default()
    }
}
