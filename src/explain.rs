//! `explain`: which rule, path and auth a URL gets, and why.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::decision::Verdict;
use crate::engine::Engine;
use crate::matching::path::normalize;
use crate::matching::{Policy, Route, RouteMatch};
use crate::request::RequestView;

/// A human-readable account of how `url` is decided, with the given headers.
pub fn explain(engine: &Engine, url: &str, headers: &HashMap<String, String>) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL `{url}`: {e}"))?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(format!("URL `{url}` has no host")),
    };
    // `Url` resolves dot segments itself; explain the path as sent instead.
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let raw_path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let mut out = String::new();
    let _ = writeln!(out, "request:  GET {host}{raw_path}");
    let path = match normalize(raw_path) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "decision: deny 400 (bad_path: {e})");
            return Ok(out);
        }
    };
    let _ = writeln!(out, "path:     {path} (normalised)");
    match engine.find(&host, &path) {
        RouteMatch::NoRoute => {
            let _ = writeln!(out, "rule:     none matches host and there is no fallback");
        }
        RouteMatch::Fallback(route) => {
            let _ = writeln!(out, "rule:     no rule matches host; fallback applies");
            describe(&mut out, route);
        }
        RouteMatch::Rule { rule, path: p } => {
            let _ = writeln!(
                out,
                "rule:     {} (host `{}`, {})",
                rule.route.label,
                rule.host,
                rule.host_pattern.kind()
            );
            match p {
                Some(p) => {
                    let _ = writeln!(out, "path rule: {} (`{}` matches as a prefix)", p.route.label, p.pattern);
                    describe(&mut out, &p.route);
                }
                None => {
                    let _ = writeln!(out, "path rule: none matches; the rule's auth applies");
                    describe(&mut out, &rule.route);
                }
            }
        }
    }
    let req = RequestView {
        host: &host,
        path: raw_path,
        method: "GET",
        scheme: parsed.scheme(),
        headers,
        client: None,
    };
    let decision = engine.decide(&req);
    let _ = match &decision.verdict {
        Verdict::Allow { reason, .. } => writeln!(out, "decision: allow ({})", reason.code()),
        Verdict::Deny(d) => writeln!(
            out,
            "decision: deny {} ({}){}",
            d.status.code(),
            d.reason.code(),
            d.challenge
                .map(|c| format!(", WWW-Authenticate: {c}"))
                .unwrap_or_default()
        ),
    };
    Ok(out)
}

fn describe(out: &mut String, route: &Route) {
    let inherited = if route.inherited {
        " (inherited from the rule: the path has no auth of its own)"
    } else {
        ""
    };
    let _ = match &route.policy {
        Policy::Open(reason) => writeln!(out, "auth:     none: {}{inherited}", reason.describe()),
        Policy::Protected(a) => writeln!(out, "auth:     {}{inherited}", a.kind().as_str()),
    };
}
