//! What each rule, path and the fallback route *to*: the part of ingress's
//! schema that `serve` leaves to Envoy (service names and ports, protocol,
//! `strip_prefix`, rewrites, headers, timeouts, redirects, handlers), read
//! from the same YAML tree the config loader checked. Entries are keyed by
//! the label the engine gives the route (`rules[0].paths[1]`), so routing
//! and authorization speak of the same thing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::parse_duration;
use crate::config::yaml::{Node, Value};

/// How a cluster talks to its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Http,
    Https,
    /// HTTP/2 over TLS.
    H2,
    /// HTTP/2 without TLS (prior knowledge).
    H2c,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::H2 => "h2",
            Self::H2c => "h2c",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Self::Https | Self::H2)
    }

    fn default_port(self) -> u16 {
        if self.tls() { 443 } else { 80 }
    }
}

/// One backend service: a cluster of its own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

impl ServiceKey {
    /// The cluster's name: stable and readable (`api-service_8080`).
    pub fn cluster_name(&self) -> String {
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        match self.protocol {
            Protocol::Http => format!("{name}_{}", self.port),
            other => format!("{name}_{}_{}", self.port, other.as_str()),
        }
    }
}

/// A service backend and what Envoy does to requests on their way to it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceRoute {
    pub key: Option<ServiceKey>,
    pub strip_prefix: bool,
    /// `request.path.rewrites`: `(regex, replacement)` with `$1` captures.
    pub rewrites: Vec<(String, String)>,
    /// `request.host.rewrite: true`: the upstream sees its own name.
    pub host_rewrite: bool,
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    pub timeout: Option<Duration>,
}

/// Where a route sends a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Service(ServiceRoute),
    /// `redirect: {url, permanent}`.
    Redirect {
        url: String,
        permanent: bool,
    },
    /// `handler: {type: static_response}`.
    Static {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Something Envoy cannot do; answered 501 and listed on stderr.
    Unsupported(String),
}

/// Every route's target by label, and what could not be mapped.
#[derive(Debug, Default)]
pub struct Routing {
    pub targets: BTreeMap<String, Target>,
    /// `location: what` lines for stderr.
    pub unsupported: Vec<String>,
}

impl Routing {
    /// Reads the routing half of a parsed (and already validated) config.
    pub fn read(root: &Node) -> Self {
        let mut routing = Self::default();
        if let Some(rules) = get(root, "rules").and_then(seq) {
            for (i, rule) in rules.iter().enumerate() {
                let label = format!("rules[{i}]");
                let rule_target = routing.backend(get(rule, "backend"), &label, None);
                if let Some(paths) = get(rule, "paths").and_then(seq) {
                    for (j, path) in paths.iter().enumerate() {
                        let path_label = format!("{label}.paths[{j}]");
                        let target =
                            routing.backend(get(path, "backend"), &path_label, Some(&rule_target));
                        routing.targets.insert(path_label, target);
                    }
                }
                routing.targets.insert(label, rule_target);
            }
        }
        if let Some(fallback) = get(root, "fallback") {
            let target = routing.backend(Some(fallback), "fallback", None);
            routing.targets.insert("fallback".into(), target);
        }
        routing
    }

    fn unsupported(&mut self, at: &str, what: impl Into<String>) -> Target {
        let what = what.into();
        self.unsupported.push(format!("{at}: {what}"));
        Target::Unsupported(what)
    }

    /// A backend; a path without one routes as its rule does.
    fn backend(&mut self, node: Option<&Node>, label: &str, rule: Option<&Target>) -> Target {
        let Some(node) = node else {
            return match rule {
                Some(t) => t.clone(),
                None => Target::Service(ServiceRoute::default()),
            };
        };
        let declared = get(node, "type").and_then(text);
        let service = get(node, "service");
        let at = format!("{label}.backend");
        match declared {
            Some("redirect") => self.redirect(get(node, "redirect"), &at),
            Some("handler") => self.handler(get(node, "handler"), &at),
            _ if declared.is_none() && service.is_none() && get(node, "redirect").is_some() => {
                self.redirect(get(node, "redirect"), &at)
            }
            _ if declared.is_none() && service.is_none() && get(node, "handler").is_some() => {
                self.handler(get(node, "handler"), &at)
            }
            _ => match service {
                Some(s) => self.service(s, &format!("{at}.service")),
                None => Target::Service(ServiceRoute::default()),
            },
        }
    }

    fn redirect(&mut self, node: Option<&Node>, at: &str) -> Target {
        let at = format!("{at}.redirect");
        let Some(url) = node.and_then(|n| get(n, "url")).and_then(text) else {
            return self.unsupported(&at, "a redirect without `url`");
        };
        if url.contains('$') {
            return self.unsupported(
                &format!("{at}.url"),
                format!("`{url}` takes captures ($1, ${{path.1}}): Envoy redirects are static"),
            );
        }
        let Ok(parsed) = url::Url::parse(url) else {
            return self.unsupported(
                &format!("{at}.url"),
                format!("`{url}` is not an absolute URL"),
            );
        };
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return self.unsupported(
                &format!("{at}.url"),
                format!("`{url}` is not an http(s) URL"),
            );
        }
        let permanent = node
            .and_then(|n| get(n, "permanent"))
            .and_then(text)
            .is_some_and(|t| t == "true");
        Target::Redirect {
            url: url.to_string(),
            permanent,
        }
    }

    fn handler(&mut self, node: Option<&Node>, at: &str) -> Target {
        let at = format!("{at}.handler");
        let kind = node
            .and_then(|n| get(n, "type"))
            .and_then(text)
            .unwrap_or("static_response");
        if kind != "static_response" {
            return self.unsupported(
                &format!("{at}.type"),
                format!("handler `{kind}` (only static_response maps to an Envoy direct response)"),
            );
        }
        let status = node
            .and_then(|n| get(n, "status_code"))
            .and_then(text)
            .map_or(Some(200), |t| {
                t.parse::<u16>().ok().filter(|s| (200..=599).contains(s))
            });
        let Some(status) = status else {
            return self.unsupported(&format!("{at}.status_code"), "not a status from 200 to 599");
        };
        let headers = node
            .and_then(|n| get(n, "headers"))
            .map(pairs)
            .unwrap_or_default();
        let body = node
            .and_then(|n| get(n, "body"))
            .and_then(text)
            .unwrap_or("")
            .to_string();
        Target::Static {
            status,
            headers,
            body,
        }
    }

    fn service(&mut self, node: &Node, at: &str) -> Target {
        let mut route = ServiceRoute::default();
        let protocol = match get(node, "protocol").and_then(text) {
            None | Some("http") => Protocol::Http,
            Some("https") => Protocol::Https,
            Some("h2") => Protocol::H2,
            Some("h2c") => Protocol::H2c,
            Some(other) => {
                return self.unsupported(&format!("{at}.protocol"), format!("protocol `{other}`"));
            }
        };
        if let Some(name) = get(node, "name").and_then(text) {
            if name.contains("${") || name.contains('$') {
                return self.unsupported(
                    &format!("{at}.name"),
                    format!("`{name}` is a template: Envoy clusters are fixed"),
                );
            }
            let port = match get(node, "port").and_then(text) {
                None => protocol.default_port(),
                Some(p) => match p.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => return self.unsupported(&format!("{at}.port"), format!("port `{p}`")),
                },
            };
            route.key = Some(ServiceKey {
                name: name.to_string(),
                port,
                protocol,
            });
        }
        route.strip_prefix = get(node, "strip_prefix").and_then(text) == Some("true");
        if let Some(request) = get(node, "request") {
            route.host_rewrite = get(request, "host")
                .and_then(|h| get(h, "rewrite"))
                .and_then(text)
                == Some("true");
            route.request_headers = get(request, "headers").map(pairs).unwrap_or_default();
            if let Some(rewrites) = get(request, "path")
                .and_then(|p| get(p, "rewrites"))
                .and_then(seq)
            {
                for r in rewrites.iter().filter_map(text) {
                    match split_rewrite(r) {
                        Some(pair) => route.rewrites.push(pair),
                        None => {
                            self.unsupported(
                                &format!("{at}.request.path.rewrites"),
                                format!("`{r}` is not `regex:replacement`"),
                            );
                        }
                    }
                }
            }
            for key in keys(request) {
                if !matches!(key, "host" | "headers" | "path") {
                    self.unsupported(&format!("{at}.request.{key}"), "not mapped to Envoy");
                }
            }
        }
        if let Some(response) = get(node, "response") {
            route.response_headers = get(response, "headers").map(pairs).unwrap_or_default();
            for key in keys(response) {
                if key != "headers" {
                    self.unsupported(&format!("{at}.response.{key}"), "not mapped to Envoy");
                }
            }
        }
        for (headers, part) in [
            (&mut route.request_headers, "request"),
            (&mut route.response_headers, "response"),
        ] {
            headers.retain(|(name, _)| {
                // Envoy refuses to set pseudo-headers and Host this way.
                let ok = !name.starts_with(':') && !name.eq_ignore_ascii_case("host");
                if !ok {
                    self.unsupported.push(format!(
                        "{at}.{part}.headers.{name}: pseudo-headers and Host cannot be set; left out"
                    ));
                }
                ok
            });
        }
        if route.strip_prefix && !route.rewrites.is_empty() {
            self.unsupported(
                &format!("{at}.request.path.rewrites"),
                "rewrites beside strip_prefix: only strip_prefix is applied",
            );
            route.rewrites.clear();
        }
        if route.rewrites.len() > 1 {
            self.unsupported(
                &format!("{at}.request.path.rewrites"),
                "more than one rewrite: Envoy applies one per route, the first is used",
            );
            route.rewrites.truncate(1);
        }
        if let Some(t) = get(node, "timeout").and_then(text) {
            match parse_duration(t) {
                Some(d) if !d.is_zero() => route.timeout = Some(d),
                _ => {
                    self.unsupported(&format!("{at}.timeout"), format!("timeout `{t}`"));
                }
            }
        }
        for key in keys(node) {
            if matches!(key, "health_check" | "healthcheck" | "maintenance") {
                self.unsupported(&format!("{at}.{key}"), "not mapped to Envoy");
            }
        }
        Target::Service(route)
    }
}

/// `^/old/(.*):/new/$1` → (`^/old/(.*)`, `/new/\1`): the last `:` that is
/// followed by a `/` or `$` starts the replacement.
fn split_rewrite(r: &str) -> Option<(String, String)> {
    let at = r
        .match_indices(':')
        .map(|(i, _)| i)
        .rev()
        .find(|&i| r[i + 1..].starts_with(['/', '$']) || r[i + 1..].is_empty())?;
    let (pattern, replacement) = (&r[..at], &r[at + 1..]);
    regex::Regex::new(pattern).ok()?;
    // RE2's substitution writes captures as \1, ingress's as $1.
    let mut out = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => out.push('\\'),
            // A literal backslash stays one in RE2's substitution.
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    Some((pattern.to_string(), out))
}

pub(super) fn get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| text(k) == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn keys(node: &Node) -> impl Iterator<Item = &str> {
    let entries = match &node.value {
        Value::Map(entries) => entries.as_slice(),
        _ => &[],
    };
    entries.iter().filter_map(|(k, _)| text(k))
}

fn seq(node: &Node) -> Option<&[Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        _ => None,
    }
}

pub(super) fn text(node: &Node) -> Option<&str> {
    match &node.value {
        Value::Scalar { text, .. } if !node.is_null() => Some(text),
        _ => None,
    }
}

fn pairs(node: &Node) -> Vec<(String, String)> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .filter_map(|(k, v)| Some((text(k)?.to_string(), text(v).unwrap_or("").to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> Routing {
        Routing::read(&crate::config::yaml::parse(yaml).unwrap())
    }

    #[test]
    fn services_paths_and_fallback_by_label() {
        let r = read(
            "rules:\n  - host: a\n    backend: {service: {name: web, port: 8080}}\n    paths:\n      - path: /api\n        backend: {service: {name: api, protocol: https, strip_prefix: true}}\n      - path: /same\nfallback:\n  redirect: {url: 'https://x.example/', permanent: true}\n",
        );
        let Target::Service(web) = &r.targets["rules[0]"] else {
            panic!()
        };
        assert_eq!(web.key.as_ref().unwrap().cluster_name(), "web_8080");
        let Target::Service(api) = &r.targets["rules[0].paths[0]"] else {
            panic!()
        };
        assert_eq!(api.key.as_ref().unwrap().port, 443);
        assert!(api.strip_prefix);
        assert_eq!(r.targets["rules[0].paths[1]"], r.targets["rules[0]"]);
        assert!(matches!(
            &r.targets["fallback"],
            Target::Redirect {
                permanent: true,
                ..
            }
        ));
        assert!(r.unsupported.is_empty(), "{:?}", r.unsupported);
    }

    #[test]
    fn what_envoy_cannot_do_is_listed() {
        let r = read(
            "rules:\n  - host: a\n    backend: {service: {name: '${host.1}'}}\n  - host: b\n    backend: {redirect: {url: 'https://$1.x/'}}\n  - host: c\n    backend: {handler: {type: script}}\n",
        );
        assert_eq!(r.unsupported.len(), 3, "{:?}", r.unsupported);
        assert!(r.unsupported[0].starts_with("rules[0].backend.service.name:"));
        assert!(
            r.targets
                .values()
                .all(|t| matches!(t, Target::Unsupported(_)))
        );
    }

    #[test]
    fn rewrites_become_re2_substitutions() {
        assert_eq!(
            split_rewrite("^/ip3/(.*):/$1"),
            Some(("^/ip3/(.*)".into(), "/\\1".into()))
        );
        assert_eq!(
            split_rewrite("^/ip2:/ip"),
            Some(("^/ip2".into(), "/ip".into()))
        );
        assert_eq!(split_rewrite("nocolon"), None);
    }
}
