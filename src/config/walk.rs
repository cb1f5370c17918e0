//! YAML tree → [`ConfigSpec`]: the schema of ingress's config plus `authz:`.

use std::net::SocketAddr;

use super::error::Loc;
use super::reader::{Fields, Walker};
use super::spec::*;
use super::walk_auth::auth_block;
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
    let Some(mut top) = w.fields(root, &Loc::default()) else {
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
    spec.files = std::mem::take(&mut w.files);
    spec
}

fn authz(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> AuthzSpec {
    let mut spec = AuthzSpec::default();
    let Some(mut f) = w.fields(node, loc) else {
        return spec;
    };
    spec.grpc_addr = socket_addr(w, &mut f, "grpc_addr");
    spec.http_addr = socket_addr(w, &mut f, "http_addr");
    spec.admin_addr = socket_addr(w, &mut f, "admin_addr");
    if let Some((n, l)) = f.take("trust_forwarded_proto") {
        spec.trust_forwarded_proto = w.bool(n, &l).unwrap_or(true);
    }
    if let Some((n, l)) = f.take("session") {
        spec.session = session(w, n, &l);
    }
    if let Some((n, l)) = f.take("hash_concurrency") {
        match w.string(n, &l).map(|s| s.parse::<usize>()) {
            Some(Ok(c)) if (1..=256).contains(&c) => spec.hash_concurrency = Some(c),
            Some(_) => w
                .diags
                .error(&l, "hash_concurrency must be a whole number from 1 to 256"),
            None => {}
        }
    }
    if let Some((n, l)) = f.take("login_throttle") {
        spec.login_throttle = login_throttle(w, n, &l);
    }
    if let Some((n, l)) = f.take("admin_token")
        && let Some(token) = w.secret(n, &l)
    {
        if token.expose().len() < 32 {
            w.diags.error(
                &l,
                "admin_token must be at least 32 bytes (e.g. `openssl rand -hex 32`)",
            );
        }
        spec.admin_token = Some((token, l));
    }
    let domain = spec
        .session
        .as_ref()
        .and_then(|s| s.cookie_domain.as_deref());
    spec.login_host = super::walk_upstream::login_host(w, &mut f, domain);
    f.finish(w, &[]);
    spec
}

fn login_throttle(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> crate::throttle::ThrottleSettings {
    let mut t = crate::throttle::ThrottleSettings::default();
    let Some(mut f) = w.fields(node, loc) else {
        return t;
    };
    let count = |w: &mut Walker<'_>, f: &mut Fields<'_>, key: &'static str| {
        let (n, l) = f.take(key)?;
        match w.string(n, &l).map(|s| s.parse::<u32>()) {
            Some(Ok(c)) if c >= 1 => Some(c),
            Some(_) => {
                w.diags
                    .error(&l, format!("{key} must be a whole number of at least 1"));
                None
            }
            None => None,
        }
    };
    if let Some(max) = count(w, &mut f, "max_failures") {
        t.max_failures = max;
    }
    if let Some(max) = count(w, &mut f, "max_failures_per_user") {
        t.max_failures_per_user = Some(max);
    }
    if let Some((n, l)) = f.take("window") {
        match w.duration(n, &l) {
            Some(d) if !d.is_zero() => t.window = d,
            Some(_) => w.diags.error(&l, "window must be more than 0"),
            None => {}
        }
    }
    if let Some((n, l)) = f.take("enabled") {
        t.enabled = w.bool(n, &l).unwrap_or(true);
    }
    if let Some((n, l)) = f.take("per_user")
        && w.bool(n, &l) == Some(false)
    {
        t.max_failures_per_user = None;
    }
    f.finish(w, &[]);
    t
}

fn socket_addr(w: &mut Walker<'_>, f: &mut Fields<'_>, key: &'static str) -> Option<SocketAddr> {
    let (n, l) = f.take(key)?;
    let s = w.string(n, &l)?;
    match s.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            w.diags
                .error(&l, format!("invalid address `{s}`; expected IP:PORT"));
            None
        }
    }
}

fn session(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> Option<SessionSpec> {
    let mut f = w.fields(node, loc)?;
    let mut secrets = Vec::new();
    // A secret that is there but unusable (short, an unset `${VAR}`, an
    // unreadable file) is reported where it is, not as a missing key.
    let reported = w.diags.errors.len();
    if let Some((n, l)) = f.take("secret") {
        for (s, sl) in w.string_list(n, &l) {
            if s.len() < 32 {
                w.diags.error(&sl, too_short("the session secret", s.len()));
            } else {
                secrets.push(crate::secret::Secret::new(s));
            }
        }
    }
    if let Some((n, l)) = f.take("secret_file")
        && let Some(path) = w.non_empty(n, &l)
    {
        w.files.push(path.clone().into());
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines().map(str::trim).filter(|s| !s.is_empty()) {
                    if line.len() < 32 {
                        w.diags
                            .error(&l, too_short("a session secret in the file", line.len()));
                    } else {
                        secrets.push(crate::secret::Secret::new(line.to_string()));
                    }
                }
            }
            Err(e) => w.diags.error(&l, format!("cannot read `{path}`: {e}")),
        }
    }
    if secrets.is_empty() && w.diags.errors.len() == reported {
        w.diags
            .error(&f.loc, "session needs `secret` or `secret_file`");
    }
    let cookie_name = match f.take("cookie_name") {
        Some((n, l)) => w.non_empty(n, &l).unwrap_or_default(),
        None => "ingress_authz".to_string(),
    };
    if !cookie_name.is_empty()
        && !cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        w.diags.error(
            &f.loc,
            "session.cookie_name may contain only letters, digits, `_` and `-`",
        );
    }
    let max_age = match f.take("max_age") {
        Some((n, l)) => w.duration(n, &l).unwrap_or_default(),
        None => std::time::Duration::from_secs(24 * 3600),
    };
    let cookie_domain = super::walk_upstream::cookie_domain(w, &mut f);
    f.finish(w, &[]);
    Some(SessionSpec {
        secrets,
        cookie_name,
        max_age,
        cookie_domain,
    })
}

/// What is wrong with a short session secret: its length, never its value.
fn too_short(what: &str, len: usize) -> String {
    format!(
        "{what} is {len} bytes long; it must be at least 32 bytes (e.g. `openssl rand -hex 32`)"
    )
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
