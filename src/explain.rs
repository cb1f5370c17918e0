//! Why a request gets its decision: shared by `ingress-authz explain` and
//! the admin API's `Explain`.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::auth::Authenticator;
use crate::decision::{Pending, Reason, RouteId, Verdict};
use crate::engine::Engine;
use crate::matching::path::normalize;
use crate::matching::{Route, RouteAuth, RouteMatch};
use crate::request::RequestView;

/// A decision with the route that led to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Explanation {
    pub rule: String,
    pub path_rule: String,
    pub auth_type: String,
    pub allowed: bool,
    pub status: u16,
    pub reason: String,
    pub normalized_path: String,
    /// Human-readable account.
    pub text: String,
}

/// Whether the issuers' metadata and keys can be there: the running server
/// fetches them, the `explain` command only with `--online`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Whatever is cached is what the server has (the admin API, `--online`).
    Live,
    /// Nothing was fetched: a route that needs the provider says what it
    /// does without it instead of `idp_unavailable`.
    Offline,
}

/// The explanation the admin API gives: with the server's fetched metadata.
pub fn explain_request(engine: &Engine, req: &RequestView<'_>) -> Explanation {
    explain_with(engine, req, Fetched::Live)
}

pub fn explain_with(engine: &Engine, req: &RequestView<'_>, fetched: Fetched) -> Explanation {
    let mut ex = Explanation::default();
    let out = &mut ex.text;
    let _ = writeln!(out, "request:  {} {}{}", req.method, req.host, req.path);
    match normalize(req.path) {
        Err(e) => {
            let _ = writeln!(out, "path:     refused: {e}");
        }
        Ok(path) => {
            ex.normalized_path = path.to_string();
            let _ = writeln!(out, "path:     {path} (normalised)");
            match engine.find(req.host, &path) {
                RouteMatch::NoRoute => {
                    let _ = writeln!(
                        out,
                        "rule:     none matches the host and there is no fallback"
                    );
                }
                RouteMatch::Fallback(route) => {
                    ex.rule = route.label.clone();
                    let _ = writeln!(
                        out,
                        "rule:     no rule matches the host; the fallback applies"
                    );
                    describe(out, route);
                }
                RouteMatch::Rule { rule, path: p } => {
                    ex.rule = rule.route.label.clone();
                    let _ = writeln!(
                        out,
                        "rule:     {} (host `{}`, {})",
                        rule.route.label,
                        rule.host,
                        rule.host_pattern.kind()
                    );
                    match p {
                        Some(p) => {
                            ex.path_rule = p.route.label.clone();
                            let _ = writeln!(
                                out,
                                "path rule: {} (`{}` matches as a prefix)",
                                p.route.label, p.pattern
                            );
                            describe(out, &p.route);
                        }
                        None => {
                            let _ =
                                writeln!(out, "path rule: none matches; the rule's auth applies");
                            describe(out, &rule.route);
                        }
                    }
                }
            }
        }
    }
    // Offline, work on the provider's metadata is what the route would do
    // next; `decide_inline` would turn it into its fallback denial.
    if fetched == Fetched::Offline {
        let first = engine.decide(req);
        if let (
            Verdict::Pending {
                work: Pending::FetchKeys,
                ..
            },
            Some(route),
        ) = (&first.verdict, first.route)
        {
            ex.auth_type = first
                .kind
                .map(|k| k.as_str().to_string())
                .unwrap_or_default();
            offline(&mut ex, engine, route, req);
            return ex;
        }
    }
    let decision = engine.decide_inline(req);
    ex.auth_type = decision
        .kind
        .map(|k| k.as_str().to_string())
        .unwrap_or_default();
    // Of several methods, the one whose answer this is.
    if let (Some(kind), Some(p)) = (
        decision.kind,
        decision.route.and_then(|r| engine.protected(r)),
    ) && p.methods.len() > 1
    {
        let _ = writeln!(ex.text, "method:   {} decided", kind.as_str());
    }
    match &decision.verdict {
        Verdict::Allow {
            would_deny: Some((status, would)),
            ..
        } => {
            ex.allowed = true;
            ex.status = 200;
            ex.reason = Reason::ReportOnly.code().to_string();
            let _ = writeln!(
                ex.text,
                "decision: allow (report_only: would deny {} {})",
                status.code(),
                would.code()
            );
        }
        Verdict::Allow { reason, .. } => {
            ex.allowed = true;
            ex.status = 200;
            ex.reason = reason.code().to_string();
            let _ = writeln!(ex.text, "decision: allow ({})", reason.code());
        }
        Verdict::Deny(d) | Verdict::Pending { then: d, .. } => {
            ex.status = d.status.code();
            ex.reason = d.reason.code().to_string();
            let _ = writeln!(
                ex.text,
                "decision: deny {} ({}){}{}",
                d.status.code(),
                d.reason.code(),
                d.condition
                    .map(|c| format!(": the `{}` condition failed", c.key()))
                    .unwrap_or_default(),
                d.challenge
                    .map(|c| format!(", WWW-Authenticate: {c}"))
                    .unwrap_or_default()
            );
        }
    }
    ex
}

/// A route that needs its provider's metadata or keys, which `explain`
/// did not fetch: what it does without them. A login route asks for a
/// login whatever the provider says; a bearer token cannot be judged.
fn offline(ex: &mut Explanation, engine: &Engine, route: RouteId, req: &RequestView<'_>) {
    let login_mode = engine
        .protected(route)
        .and_then(|p| {
            p.methods
                .session()
                .map(|m| matches!(&m.authenticator, Authenticator::Oidc(_)))
        })
        .unwrap_or(false);
    let out = &mut ex.text;
    let (status, reason) = if login_mode && req.is_navigation() {
        (302, Reason::LoginRedirect)
    } else if login_mode {
        (401, Reason::LoginRequired)
    } else if req.authorization("bearer").is_none() {
        (401, Reason::MissingCredentials)
    } else {
        let _ = writeln!(
            out,
            "decision: unknown offline: the token is verified with the issuer's keys"
        );
        let _ = writeln!(out, "note:     {OFFLINE_NOTE}");
        return;
    };
    ex.status = status;
    ex.reason = reason.code().to_string();
    let to = if status == 302 {
        " to the provider's authorization endpoint"
    } else {
        ""
    };
    let _ = writeln!(out, "decision: deny {status} ({}){to}", reason.code());
    let _ = writeln!(out, "note:     {OFFLINE_NOTE}");
}

const OFFLINE_NOTE: &str = "provider metadata not fetched offline (--online fetches it)";

/// Why `explain` cannot take a URL.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// Not a URL at all.
    #[error("invalid URL `{url}`: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    /// A URL without a host (`file:///x`).
    #[error("URL `{0}` has no host")]
    NoHost(String),
}

/// Explains a GET of a URL (as the CLI takes it) with the given headers.
pub fn explain_url(
    engine: &Engine,
    url: &str,
    headers: &HashMap<String, String>,
) -> Result<Explanation, ExplainError> {
    explain_url_with(engine, "GET", url, headers, Fetched::Live)
}

/// Explains a request for a URL with the given method and headers.
pub fn explain_url_with(
    engine: &Engine,
    method: &str,
    url: &str,
    headers: &HashMap<String, String>,
    fetched: Fetched,
) -> Result<Explanation, ExplainError> {
    let parsed = url::Url::parse(url).map_err(|source| ExplainError::InvalidUrl {
        url: url.to_string(),
        source,
    })?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(ExplainError::NoHost(url.to_string())),
    };
    // `Url` resolves dot segments itself; explain the path as sent instead.
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let raw_path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let req = RequestView {
        host: &host,
        path: raw_path,
        method,
        scheme: parsed.scheme(),
        headers,
        client: None,
    };
    Ok(explain_with(engine, &req, fetched))
}

fn describe(out: &mut String, route: &Route) {
    let inherited = if route.inherited {
        " (inherited from the rule: the path has no auth of its own)"
    } else {
        ""
    };
    let _ = match &route.policy {
        RouteAuth::Open(reason) => {
            writeln!(out, "auth:     none: {}{inherited}", reason.describe())
        }
        RouteAuth::Protected(p) => {
            let _ = writeln!(out, "auth:     {}{inherited}", p.methods.describe());
            for m in p.methods.iter() {
                if let Some(allow) = &m.allow {
                    let _ = writeln!(
                        out,
                        "policy:   {} identities also: {}",
                        m.kind().as_str(),
                        allow.describe()
                    );
                }
            }
            match &p.allow {
                Some(allow) => writeln!(out, "policy:   {}", allow.describe()),
                None => writeln!(out, "policy:   none: any verified identity passes"),
            }
        }
    };
}
