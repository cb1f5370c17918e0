//! YAML tree → [`ConfigSpec`]: the schema of ingress's config plus `authz:`.

use super::error::Loc;
use super::reader::{Fields, Walker};
use super::spec::*;
use super::walk_auth::auth_block;
use super::walk_authz::authz;
use super::yaml::Node;

/// Top-level keys that are ingress's proxy features: Envoy's job here.
const IGNORED_TOP: &[&str] = &[
    "version",
    "port",
    "https",
    "cache",
    "waf",
    "rate_limit",
    "security",
    "healthcheck",
    "logging",
    "admin",
    "maintenance",
    "jobs",
    "scenario",
    "scenarios",
    "proxy",
    "enable_h2c",
    "error_pages",
    "error_page_expose_details",
    "services",
];
const IGNORED_RULE: &[&str] = &[
    "rate_limit",
    "waf",
    "security",
    "cache",
    "maintenance",
    "healthcheck",
    "name",
];
const IGNORED_PATH: &[&str] = &["rate_limit", "waf", "security", "cache", "maintenance"];
const IGNORED_BACKEND: &[&str] = &["cache"];
const IGNORED_SERVICE: &[&str] = &[
    "protocol",
    "mode",
    "strip_prefix",
    "request",
    "response",
    "health_check",
    "healthcheck",
    "host",
    "maintenance",
    "timeout",
    "type",
];

pub(super) fn config(w: &mut Walker<'_>, root: &Node) -> ConfigSpec {
    let mut spec = ConfigSpec::default();
    // The document's own position: a top-level error has a location too.
    let top_loc = Loc {
        path: String::new(),
        mark: root.mark,
    };
    let Some(mut top) = w.fields(root, &top_loc) else {
        return spec;
    };
    if let Some((node, loc)) = top.take("authz") {
        spec.authz = authz(w, node, &loc);
    }
    if let Some((node, loc)) = top.take("rules") {
        spec.rules = w
            .seq(node, &loc)
            .into_iter()
            .filter_map(|(n, l)| rule(w, n, l))
            .collect();
    }
    if let Some((node, loc)) = top.take("fallback") {
        spec.fallback = backend(w, node, &loc);
    }
    top.finish(w, IGNORED_TOP);
    super::walk_upstream::login_routes_within_domain(w, &spec);
    spec.files = std::mem::take(&mut w.files);
    spec
}

/// A string field every entry must have, with `${VAR}` expanded, and where
/// it is (the entry's location when it is missing, reported with
/// `missing`). `non_empty`: an empty value is an error too.
fn required_string(
    w: &mut Walker<'_>,
    f: &mut Fields<'_>,
    key: &'static str,
    loc: &Loc,
    missing: &str,
    non_empty: bool,
) -> (String, Loc) {
    let Some((n, l)) = f.take(key) else {
        w.diags.error(loc, missing);
        return (String::new(), loc.clone());
    };
    let value = if non_empty {
        w.non_empty(n, &l)
    } else {
        w.string(n, &l)
    };
    (value.unwrap_or_default(), l)
}

/// The entry's `backend`; without one (or an invalid one, reported), a
/// service backend without auth.
fn backend_or_service(w: &mut Walker<'_>, f: &mut Fields<'_>) -> BackendSpec {
    f.take("backend")
        .and_then(|(n, l)| backend(w, n, &l))
        .unwrap_or(BackendSpec {
            kind: BackendKind::Service,
            auth: None,
        })
}

fn rule(w: &mut Walker<'_>, node: &Node, loc: Loc) -> Option<RuleSpec> {
    let mut f = w.fields(node, &loc)?;
    let (host, host_loc) = required_string(w, &mut f, "host", &loc, "rule needs a `host`", true);
    let host_type = match f.take("host_type") {
        Some((n, l)) => match w.string(n, &l).as_deref() {
            Some("auto" | "") => HostType::Auto,
            Some("exact") => HostType::Exact,
            Some("wildcard") => HostType::Wildcard,
            Some("regex") => HostType::Regex,
            Some(other) => {
                w.diags.error(
                    &l,
                    format!("unknown host_type \"{other}\"; expected one of auto, exact, wildcard, regex"),
                );
                HostType::Auto
            }
            None => HostType::Auto,
        },
        None => HostType::Auto,
    };
    let backend_spec = backend_or_service(w, &mut f);
    let paths = match f.take("paths") {
        Some((n, l)) => w
            .seq(n, &l)
            .into_iter()
            .filter_map(|(pn, pl)| path(w, pn, pl))
            .collect(),
        None => Vec::new(),
    };
    f.finish(w, IGNORED_RULE);
    warn_open_prefixes(w, &backend_spec, &paths);
    Some(RuleSpec {
        loc,
        host,
        host_loc,
        host_type,
        backend: backend_spec,
        paths,
    })
}

/// Whether a backend demands credentials.
fn authenticates(backend: &BackendSpec) -> bool {
    backend.kind == BackendKind::Service
        && backend
            .auth
            .as_ref()
            .is_some_and(|a| a.enabled != Some(false) && !a.methods.is_empty())
}

/// Path rules match as prefixes: an open `/public` under an authenticated
/// rule also opens `/public-internal` and `/publicity`.
fn warn_open_prefixes(w: &mut Walker<'_>, rule: &BackendSpec, paths: &[PathSpec]) {
    if !authenticates(rule) {
        return;
    }
    super::walk_methods::warn_empty_auth(w, paths);
    for p in paths {
        let open = match &p.backend.auth {
            None => p.backend.kind != BackendKind::Service,
            Some(_) => !authenticates(&p.backend),
        };
        if open && !p.path.ends_with('/') && !p.path.ends_with('$') {
            w.diags.warn(
                &p.path_loc,
                format!(
                    "`{}` is an open prefix under an authenticated rule: it also opens `{}-internal` and `{}x`; end it with `/` or `$`",
                    p.path, p.path, p.path
                ),
            );
        }
    }
}

fn path(w: &mut Walker<'_>, node: &Node, loc: Loc) -> Option<PathSpec> {
    let mut f = w.fields(node, &loc)?;
    let (path, path_loc) =
        required_string(w, &mut f, "path", &loc, "path entry needs a `path`", false);
    let backend_spec = backend_or_service(w, &mut f);
    f.finish(w, IGNORED_PATH);
    Some(PathSpec {
        loc,
        path,
        path_loc,
        backend: backend_spec,
    })
}

/// A rule's, path's or the fallback's `backend`.
fn backend(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> Option<BackendSpec> {
    let mut f = w.fields(node, loc)?;
    let declared = f.take("type").and_then(|(n, l)| w.raw_string(n, &l));
    let has_redirect = f.take("redirect").is_some();
    let has_handler = f.take("handler").is_some();
    let service = f.take("service");
    let kind = match declared.as_deref() {
        Some("redirect") => BackendKind::Redirect,
        Some("handler") => BackendKind::Handler,
        Some(_) => BackendKind::Service,
        None if service.is_none() && has_redirect => BackendKind::Redirect,
        None if service.is_none() && has_handler => BackendKind::Handler,
        None => BackendKind::Service,
    };
    let auth = match service {
        Some((n, l)) => self::service(w, n, &l),
        None => None,
    };
    if kind != BackendKind::Service
        && let Some(a) = &auth
    {
        w.diags.warn(
            &a.loc,
            "ignored: a redirect or handler backend carries no auth (as in ingress)",
        );
    }
    f.finish(w, IGNORED_BACKEND);
    Some(BackendSpec { kind, auth })
}

/// A `service` block; returns its `auth`, the only part we use.
fn service(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> Option<AuthSpec> {
    let mut f = w.fields(node, loc)?;
    // Names and ports are Envoy's business, but they are part of the schema.
    f.take("name");
    f.take("port");
    let auth = f.take("auth").and_then(|(n, l)| auth_block(w, n, &l));
    f.finish(w, IGNORED_SERVICE);
    auth
}
