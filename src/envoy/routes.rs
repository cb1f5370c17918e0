//! The ordered route list: ingress's first match, written as Envoy routes
//! in config order under one `*` virtual host, each guarded by its rule's
//! `:authority` regex. Envoy orders virtual hosts by specificity, not by
//! position, so per-host virtual hosts would change which rule wins when
//! patterns overlap (`*.example.com` before `admin.example.com`).
//!
//! Every route the authorizer would allow without reading a credential
//! gets a bypass copy first (ext_authz off), fenced so that it only takes
//! requests whose every spelling the authorizer would read the same way;
//! everything else falls through to the checked copy.

use super::guard::{Guard, HOST_LENGTH, HOST_SYNTAX};
use super::routing::{Routing, ServiceKey, Target};
use super::yaml::Yaml;
use crate::engine::Engine;
use crate::matching::path_pattern::PathPattern;
use crate::matching::{Route, RouteAuth};
use crate::response::CONNECT_HEADERS;

pub const EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
const PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";
/// A path (before any `?query`) with none of the spellings the authorizer
/// reads differently from Envoy: `;` parameters, percent-encodings,
/// backslashes.
const PLAIN_PATH: &str = r"[^?;%\\]*(?:\?.*)?";

/// The routes and the services they reach.
pub struct RouteList {
    pub routes: Vec<Yaml>,
    pub services: Vec<ServiceKey>,
    /// Lines for stderr: what could not be mapped, or not proved.
    pub notes: Vec<String>,
    /// How many routes are bypassed.
    pub bypassed: usize,
}

/// One entry of the authorizer's order: a rule's path, its catch-all, or
/// the fallback.
struct Slot<'e> {
    route: &'e Route,
    path: Option<&'e PathPattern>,
    guard: Option<&'e Guard>,
}

pub fn build(engine: &Engine, routing: &Routing, sidecar_cluster: &str) -> RouteList {
    let router = engine.router();
    let guards: Vec<Guard> = router
        .rules()
        .iter()
        .map(|r| Guard::new(&r.host_pattern, &r.host))
        .collect();
    let mut slots = Vec::new();
    for (rule, guard) in router.rules().iter().zip(&guards) {
        for p in &rule.paths {
            slots.push(Slot {
                route: &p.route,
                path: Some(&p.matcher),
                guard: Some(guard),
            });
        }
        slots.push(Slot {
            route: &rule.route,
            path: None,
            guard: Some(guard),
        });
    }
    if let Some(fallback) = router.fallback() {
        slots.push(Slot {
            route: fallback,
            path: None,
            guard: None,
        });
    }
    let mut list = RouteList {
        routes: vec![sidecar_route(sidecar_cluster)],
        services: Vec::new(),
        notes: routing.unsupported.clone(),
        bypassed: 0,
    };
    for g in &guards {
        if let Some(note) = &g.note {
            list.notes.push(note.clone());
        }
    }
    let strip = stripped_headers(engine);
    let cookie_names = cookie_names(engine);
    // Whether every earlier guard covers its rule: only then can no request
    // of an earlier rule reach a later bypass.
    let mut earlier_cover = true;
    for slot in &slots {
        let target = routing
            .targets
            .get(&slot.route.label)
            .cloned()
            .unwrap_or_else(|| Target::Unsupported("no routing entry".into()));
        let action = action(&target, slot.path, &mut list);
        let open = matches!(slot.route.policy, RouteAuth::Open(_));
        let bypass = open
            && earlier_cover
            && slot.guard.is_none_or(|g| g.exact)
            && !matches!(target, Target::Unsupported(_));
        if bypass {
            let mut headers = guard_headers(slot.guard);
            headers.extend(bypass_fence(&cookie_names));
            let route = route_entry(
                slot,
                &format!("{} (bypass)", slot.route.label),
                headers,
                &action,
            )
            .with(
                "request_headers_to_remove",
                Yaml::List(strip.iter().map(Yaml::str).collect()),
            )
            .with(
                "typed_per_filter_config",
                Yaml::map([(
                    EXT_AUTHZ,
                    Yaml::map([
                        ("@type", Yaml::str(PER_ROUTE_TYPE)),
                        ("disabled", Yaml::Bool(true)),
                    ]),
                )]),
            );
            list.routes.push(route);
            list.bypassed += 1;
        }
        let checked = route_entry(slot, &slot.route.label, guard_headers(slot.guard), &action)
            .with(
                "typed_per_filter_config",
                Yaml::map([(
                    EXT_AUTHZ,
                    Yaml::map([
                        ("@type", Yaml::str(PER_ROUTE_TYPE)),
                        (
                            "check_settings",
                            Yaml::map([(
                                "context_extensions",
                                Yaml::map([("route", Yaml::str(&slot.route.label))]),
                            )]),
                        ),
                    ]),
                )]),
            );
        list.routes.push(checked);
        if slot.path.is_none() {
            // A rule's catch-all ends its paths; the next rule starts.
            earlier_cover &= slot.guard.is_none_or(|g| g.covers);
        }
    }
    if router.fallback().is_none() {
        list.routes.push(
            Yaml::map([
                ("name", Yaml::str("no rule matches")),
                ("match", Yaml::map([("prefix", Yaml::str("/"))])),
            ])
            .with_comment(
                "No rule matched: 403, as the authorizer answers (its check still runs, so the\nanswer is its JSON or HTML page).",
                "direct_response",
                Yaml::map([("status", Yaml::Int(403))]),
            ),
        );
    }
    list.services.sort();
    list.services.dedup();
    list
}

/// `/oauth2/` to the sidecar, on every host, without a check: it is where
/// an unauthenticated user logs in.
fn sidecar_route(cluster: &str) -> Yaml {
    Yaml::map([
        ("name", Yaml::str("oauth2 sidecar")),
        ("match", Yaml::map([("prefix", Yaml::str("/oauth2/"))])),
        ("route", Yaml::map([("cluster", Yaml::str(cluster))])),
    ])
    .with(
        "typed_per_filter_config",
        Yaml::map([(
            EXT_AUTHZ,
            Yaml::map([
                ("@type", Yaml::str(PER_ROUTE_TYPE)),
                ("disabled", Yaml::Bool(true)),
            ]),
        )]),
    )
}

fn route_entry(slot: &Slot<'_>, name: &str, headers: Vec<Yaml>, action: &[(String, Yaml)]) -> Yaml {
    let mut matcher = match slot.path {
        None => Yaml::map([("prefix", Yaml::str("/"))]),
        Some(PathPattern::Prefix(p)) if p.is_empty() => Yaml::map([("prefix", Yaml::str("/"))]),
        Some(PathPattern::Prefix(p)) => Yaml::map([("prefix", Yaml::str(&**p))]),
        Some(PathPattern::Regex(re)) => Yaml::map([(
            "safe_regex",
            Yaml::map([("regex", Yaml::str(path_regex(re.as_str())))]),
        )]),
    };
    if !headers.is_empty() {
        matcher = matcher.with("headers", Yaml::List(headers));
    }
    let mut entry = Yaml::map([("name", Yaml::str(name)), ("match", matcher)]);
    for (k, v) in action {
        entry = entry.with(k.clone(), v.clone());
    }
    entry
}

/// The authorizer's `^(?:p)` prefix match as an Envoy full match.
fn path_regex(compiled: &str) -> String {
    // `compiled` is `^(?:p)`; Envoy matches the whole path.
    let inner = compiled.strip_prefix('^').unwrap_or(compiled);
    format!("{inner}(?s:.*)")
}

fn header_regex(name: &str, regex: &str) -> Yaml {
    Yaml::map([
        ("name", Yaml::str(name)),
        (
            "string_match",
            Yaml::map([("safe_regex", Yaml::map([("regex", Yaml::str(regex))]))]),
        ),
    ])
}

fn guard_headers(guard: Option<&Guard>) -> Vec<Yaml> {
    guard
        .map(|g| vec![header_regex(":authority", &g.regex)])
        .unwrap_or_default()
}

/// A bypass takes only host names the authorizer accepts, paths it reads
/// as Envoy does, and requests without our cookies (which the authorizer
/// would take out of the `Cookie` header; Envoy cannot).
fn bypass_fence(cookie_names: &[String]) -> Vec<Yaml> {
    let mut fence = vec![
        header_regex(":authority", HOST_SYNTAX),
        header_regex(":authority", HOST_LENGTH),
        header_regex(":path", PLAIN_PATH),
    ];
    if !cookie_names.is_empty() {
        let names: Vec<String> = cookie_names.iter().map(|n| regex::escape(n)).collect();
        fence.push(
            header_regex("cookie", &format!("(?s).*(?:{}).*", names.join("|")))
                .with("invert_match", Yaml::Bool(true))
                .with("treat_missing_header_as_empty", Yaml::Bool(true)),
        );
    }
    fence
}

/// Our cookies' base name: every session and login-state cookie contains it.
fn cookie_names(engine: &Engine) -> Vec<String> {
    vec![engine.login.cookies.name.clone()]
}

/// What the authorizer removes from every allowed request.
fn stripped_headers(engine: &Engine) -> Vec<String> {
    let mut names: Vec<String> = CONNECT_HEADERS.iter().map(|h| (*h).to_string()).collect();
    for n in engine.identity_headers.names() {
        if !names.iter().any(|m| m == n) {
            names.push(n.to_string());
        }
    }
    names
}

/// The route's action keys (`route`, `redirect` or `direct_response`, and
/// header edits).
fn action(
    target: &Target,
    path: Option<&PathPattern>,
    list: &mut RouteList,
) -> Vec<(String, Yaml)> {
    let mut out = Vec::new();
    match target {
        Target::Service(s) => {
            let Some(key) = &s.key else {
                out.push((
                    "direct_response".into(),
                    not_supported("a service without `name`"),
                ));
                return out;
            };
            list.services.push(key.clone());
            let mut route = Yaml::map([("cluster", Yaml::str(key.cluster_name()))]);
            if s.strip_prefix {
                let prefix = match path {
                    Some(PathPattern::Prefix(p)) => format!("^{}/*", regex::escape(p)),
                    Some(PathPattern::Regex(re)) => format!("{}/*", re.as_str()),
                    None => "^/+".to_string(),
                };
                route = route.with("regex_rewrite", rewrite(&prefix, "/"));
            } else if let Some((pattern, replacement)) = s.rewrites.first() {
                route = route.with("regex_rewrite", rewrite(pattern, replacement));
            }
            if s.host_rewrite {
                route = route.with("auto_host_rewrite", Yaml::Bool(true));
            }
            if let Some(t) = s.timeout {
                route = route.with("timeout", Yaml::str(format!("{}s", t.as_secs_f64())));
            }
            out.push(("route".into(), route));
            if !s.request_headers.is_empty() {
                out.push((
                    "request_headers_to_add".into(),
                    header_values(&s.request_headers),
                ));
            }
            if !s.response_headers.is_empty() {
                out.push((
                    "response_headers_to_add".into(),
                    header_values(&s.response_headers),
                ));
            }
        }
        Target::Redirect { url, permanent } => {
            let u = url::Url::parse(url).expect("checked when read");
            let mut r = Yaml::map([
                ("scheme_redirect", Yaml::str(u.scheme())),
                ("host_redirect", Yaml::str(u.host_str().unwrap_or_default())),
            ]);
            if let Some(port) = u.port() {
                r = r.with("port_redirect", Yaml::Int(i64::from(port)));
            }
            let mut path = u.path().to_string();
            if let Some(q) = u.query() {
                path = format!("{path}?{q}");
            }
            r = r
                .with("path_redirect", Yaml::str(path))
                .with("strip_query", Yaml::Bool(u.query().is_none()));
            let code = if *permanent {
                "MOVED_PERMANENTLY"
            } else {
                "FOUND"
            };
            r = r.with("response_code", Yaml::str(code));
            out.push(("redirect".into(), r));
        }
        Target::Static {
            status,
            headers,
            body,
        } => {
            out.push((
                "direct_response".into(),
                Yaml::map([
                    ("status", Yaml::Int(i64::from(*status))),
                    ("body", Yaml::map([("inline_string", Yaml::str(body))])),
                ]),
            ));
            if !headers.is_empty() {
                out.push(("response_headers_to_add".into(), header_values(headers)));
            }
        }
        Target::Unsupported(why) => {
            out.push(("direct_response".into(), not_supported(why)));
        }
    }
    out
}

fn not_supported(why: &str) -> Yaml {
    Yaml::map([
        ("status", Yaml::Int(501)),
        (
            "body",
            Yaml::map([(
                "inline_string",
                Yaml::str(format!(
                    "not supported by the generated Envoy config: {why}\n"
                )),
            )]),
        ),
    ])
}

fn rewrite(pattern: &str, substitution: &str) -> Yaml {
    Yaml::map([
        ("pattern", Yaml::map([("regex", Yaml::str(pattern))])),
        ("substitution", Yaml::str(substitution)),
    ])
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
