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

use super::Endpoint;
use super::guard::{Guard, HOST_LENGTH, HOST_SYNTAX};
use super::model::{Action, Check, ClusterSpec, HeaderGuard, HeaderTest, PathMatch, RouteSpec};
use super::routing::{Routing, ServiceKey, Target};
use crate::engine::Engine;
use crate::matching::path_pattern::PathPattern;
use crate::matching::{Route, RouteAuth};
use crate::response::CONNECT_HEADERS;

/// A path (before any `?query`) with none of the spellings the authorizer
/// reads differently from Envoy: `;` parameters, percent-encodings,
/// backslashes.
const PLAIN_PATH: &str = r"[^?;%\\]*(?:\?.*)?";

/// The routes and the services they reach.
pub struct RouteList {
    pub routes: Vec<RouteSpec>,
    pub clusters: Vec<ClusterSpec>,
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
        clusters: Vec::new(),
        notes: routing.unsupported.clone(),
        bypassed: 0,
    };
    list.notes
        .extend(guards.iter().filter_map(|g| g.note.clone()));
    let strip = stripped_headers(engine);
    let cookie_name = &engine.login.cookies.name;
    let mut services = Vec::new();
    // Whether every earlier guard covers its rule: only then can no request
    // of an earlier rule reach a later bypass.
    let mut earlier_cover = true;
    for slot in &slots {
        let target = routing
            .targets
            .get(&slot.route.label)
            .cloned()
            .unwrap_or_else(|| Target::Unsupported("no routing entry".into()));
        let (action, add_request, add_response) = action(&target, slot.path, &mut services);
        let open = matches!(slot.route.policy, RouteAuth::Open(_));
        let bypass = open
            && earlier_cover
            && slot.guard.is_none_or(|g| g.exact)
            && !matches!(target, Target::Unsupported(_));
        let checked = RouteSpec {
            name: slot.route.label.clone(),
            comment: None,
            path: path_match(slot.path),
            headers: guard_headers(slot.guard),
            action,
            check: Check::Labelled(slot.route.label.clone()),
            remove_request_headers: Vec::new(),
            add_request_headers: add_request,
            add_response_headers: add_response,
        };
        if bypass {
            let mut headers = checked.headers.clone();
            headers.extend(bypass_fence(slot.guard, cookie_name));
            list.routes.push(RouteSpec {
                name: format!("{} (bypass)", slot.route.label),
                comment: Some(
                    "No auth applies: no check for plain host names and paths without our\ncookies; anything else takes the checked route below.",
                ),
                headers,
                check: Check::Disabled,
                remove_request_headers: strip.clone(),
                ..checked.clone()
            });
            list.bypassed += 1;
        }
        list.routes.push(checked);
        if slot.path.is_none() {
            // A rule's catch-all ends its paths; the next rule starts.
            earlier_cover &= slot.guard.is_none_or(|g| g.covers);
        }
    }
    if router.fallback().is_none() {
        list.routes.push(RouteSpec {
            name: "no rule matches".into(),
            comment: Some(
                "No rule matched: 403, as the authorizer answers (its check still runs, so the\nanswer is its JSON or HTML page).",
            ),
            path: PathMatch::Prefix("/".into()),
            headers: Vec::new(),
            action: Action::Respond {
                status: 403,
                body: None,
            },
            check: Check::Plain,
            remove_request_headers: Vec::new(),
            add_request_headers: Vec::new(),
            add_response_headers: Vec::new(),
        });
    }
    services.sort();
    services.dedup();
    list.clusters = services.iter().map(service_cluster).collect();
    list
}

/// `/oauth2/` to the sidecar, on every host, without a check: it is where
/// an unauthenticated user logs in.
fn sidecar_route(cluster: &str) -> RouteSpec {
    RouteSpec {
        name: "oauth2 sidecar".into(),
        comment: Some("The login sidecar: where a user without a session signs in."),
        path: PathMatch::Prefix("/oauth2/".into()),
        headers: Vec::new(),
        action: Action::Forward {
            cluster: cluster.into(),
            regex_rewrite: None,
            auto_host_rewrite: false,
            timeout: None,
        },
        check: Check::Disabled,
        remove_request_headers: Vec::new(),
        add_request_headers: Vec::new(),
        add_response_headers: Vec::new(),
    }
}

fn path_match(path: Option<&PathPattern>) -> PathMatch {
    match path {
        None => PathMatch::Prefix("/".into()),
        Some(PathPattern::Prefix(p)) if p.is_empty() => PathMatch::Prefix("/".into()),
        Some(PathPattern::Prefix(p)) => PathMatch::Prefix(p.to_string()),
        // The authorizer's `^(?:p)` prefix match as an Envoy full match.
        Some(PathPattern::Regex(re)) => {
            let inner = re.as_str().strip_prefix('^').unwrap_or(re.as_str());
            PathMatch::Regex(format!("{inner}(?s:.*)"))
        }
    }
}

fn guard_headers(guard: Option<&Guard>) -> Vec<HeaderGuard> {
    guard
        .map(|g| {
            vec![HeaderGuard {
                name: ":authority",
                test: HeaderTest::Regex(g.regex.clone()),
                invert: false,
            }]
        })
        .unwrap_or_default()
}

/// A bypass takes only host names the authorizer accepts (implied by an
/// exact guard whose host the authorizer accepts), paths it reads as Envoy
/// does, and requests without our cookies (which the authorizer would take
/// out of the `Cookie` header; Envoy cannot). Every session and
/// login-state cookie name contains the configured name.
fn bypass_fence(guard: Option<&Guard>, cookie_name: &str) -> Vec<HeaderGuard> {
    let regex = |name, regex: &str| HeaderGuard {
        name,
        test: HeaderTest::Regex(regex.to_string()),
        invert: false,
    };
    let mut fence = Vec::new();
    if !guard.is_some_and(|g| g.implies_syntax) {
        fence.push(regex(":authority", HOST_SYNTAX));
        fence.push(regex(":authority", HOST_LENGTH));
    }
    fence.push(regex(":path", PLAIN_PATH));
    fence.push(HeaderGuard {
        name: "cookie",
        test: HeaderTest::Contains(cookie_name.to_string()),
        invert: true,
    });
    fence
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

type Headers = Vec<(String, String)>;

/// The route's action and header additions (request, response).
fn action(
    target: &Target,
    path: Option<&PathPattern>,
    services: &mut Vec<ServiceKey>,
) -> (Action, Headers, Headers) {
    match target {
        Target::Service(s) => {
            let Some(key) = &s.key else {
                return (
                    not_supported("a service without `name`"),
                    Vec::new(),
                    Vec::new(),
                );
            };
            services.push(key.clone());
            let regex_rewrite = if s.strip_prefix {
                let prefix = match path {
                    Some(PathPattern::Prefix(p)) => format!("^{}/*", regex::escape(p)),
                    Some(PathPattern::Regex(re)) => format!("{}/*", re.as_str()),
                    None => "^/+".to_string(),
                };
                Some((prefix, "/".to_string()))
            } else {
                s.rewrites.first().cloned()
            };
            let action = Action::Forward {
                cluster: key.cluster_name(),
                regex_rewrite,
                auto_host_rewrite: s.host_rewrite,
                timeout: s.timeout,
            };
            (
                action,
                s.request_headers.clone(),
                s.response_headers.clone(),
            )
        }
        Target::Redirect { url, permanent } => {
            let u = url::Url::parse(url).expect("checked when read");
            let path = match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            };
            let action = Action::Redirect {
                scheme: u.scheme().to_string(),
                host: u.host_str().unwrap_or_default().to_string(),
                port: u.port(),
                path,
                strip_query: u.query().is_none(),
                permanent: *permanent,
            };
            (action, Vec::new(), Vec::new())
        }
        Target::Static {
            status,
            headers,
            body,
        } => (
            Action::Respond {
                status: *status,
                body: Some(body.clone()),
            },
            Vec::new(),
            headers.clone(),
        ),
        Target::Unsupported(why) => (not_supported(why), Vec::new(), Vec::new()),
    }
}

fn not_supported(why: &str) -> Action {
    Action::Respond {
        status: 501,
        body: Some(format!(
            "not supported by the generated Envoy config: {why}\n"
        )),
    }
}

fn service_cluster(key: &ServiceKey) -> ClusterSpec {
    ClusterSpec {
        name: key.cluster_name(),
        endpoint: Endpoint {
            host: key.name.clone(),
            port: key.port,
        },
        h2: matches!(
            key.protocol,
            super::routing::Protocol::H2 | super::routing::Protocol::H2c
        ),
        tls: key.protocol.tls().then(|| key.name.clone()),
        comment: None,
    }
}
