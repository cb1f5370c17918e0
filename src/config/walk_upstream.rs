//! What the upstream sees and where sessions reach: `auth.identity_headers`
//! and `auth.strip_credentials` → [`IdentityHeadersSpec`], and the single
//! sign-on keys `authz.session.cookie_domain` and `authz.login_host`.

use super::reader::{Fields, Walker};
use super::spec::{ConfigSpec, HostType, IdentityHeadersSpec, MethodSpec};
use crate::identity_headers::check_name;

/// Reads `identity_headers` and `strip_credentials` from an `auth` block.
pub(super) fn identity_headers(w: &mut Walker<'_>, auth: &mut Fields<'_>) -> IdentityHeadersSpec {
    let mut spec = IdentityHeadersSpec::default();
    if let Some((n, l)) = auth.take("strip_credentials") {
        spec.strip_credentials = w.bool(n, &l).unwrap_or(false);
    }
    let Some((node, loc)) = auth.take("identity_headers") else {
        return spec;
    };
    let Some(mut f) = w.fields(node, &loc) else {
        return spec;
    };
    let name = |w: &mut Walker<'_>, f: &mut Fields<'_>, key: &'static str| {
        let (n, l) = f.take(key)?;
        let raw = w.non_empty(n, &l)?;
        match check_name(raw.trim()) {
            Ok(lower) => Some((lower, l)),
            Err(message) => {
                w.diags.error(&l, message);
                None
            }
        }
    };
    spec.user = name(w, &mut f, "user");
    spec.email = name(w, &mut f, "email");
    spec.groups = name(w, &mut f, "groups");
    f.finish(w, &[]);
    // One name for two facts would send whichever came last.
    let given: Vec<&(String, _)> = [&spec.user, &spec.email, &spec.groups]
        .into_iter()
        .flatten()
        .collect();
    for (i, (name, l)) in given.iter().enumerate() {
        if given[..i].iter().any(|(other, _)| other == name) {
            w.diags.error(
                l,
                format!("`{name}` is already used for another identity header"),
            );
        }
    }
    spec
}

/// `session.cookie_domain`: a domain of at least two labels, a leading dot
/// ignored (`.example.com` is `example.com`), lower-cased.
pub(super) fn cookie_domain(w: &mut Walker<'_>, session: &mut Fields<'_>) -> Option<String> {
    let (n, l) = session.take("cookie_domain")?;
    let raw = w.non_empty(n, &l)?;
    match crate::sso::parse_domain(&raw) {
        Ok(domain) => Some(domain),
        Err(message) => {
            w.diags.error(&l, message);
            None
        }
    }
}

/// `authz.login_host`: a host inside the session's cookie domain.
pub(super) fn login_host(
    w: &mut Walker<'_>,
    authz: &mut Fields<'_>,
    cookie_domain: Option<&str>,
) -> Option<String> {
    let (n, l) = authz.take("login_host")?;
    let raw = w.non_empty(n, &l)?;
    let host = match crate::sso::parse_host(&raw) {
        Ok(host) => host,
        Err(message) => {
            w.diags.error(&l, message);
            return None;
        }
    };
    let Some(domain) = cookie_domain else {
        w.diags.error(
            &l,
            "login_host needs `authz.session.cookie_domain` (the session must reach the hosts that log in there)",
        );
        return None;
    };
    if !crate::sso::within(&host, domain) {
        w.diags.error(
            &l,
            format!("login_host `{host}` is not inside the cookie domain `{domain}`"),
        );
        return None;
    }
    Some(host)
}

/// With a cookie domain, every session cookie carries it, and a browser
/// drops one set by a host outside it: a login route there could never
/// keep a session. An error at the rule's host, for hosts that are surely
/// outside (exact names and `*.` wildcards; a regex cannot be judged).
pub(super) fn login_routes_within_domain(w: &mut Walker<'_>, spec: &ConfigSpec) {
    let Some(domain) = spec
        .authz
        .session
        .as_ref()
        .and_then(|s| s.cookie_domain.as_deref())
    else {
        return;
    };
    for rule in &spec.rules {
        let logs_in = std::iter::once(&rule.backend)
            .chain(rule.paths.iter().map(|p| &p.backend))
            .filter_map(|b| b.auth.as_ref())
            .flat_map(|a| &a.methods)
            .any(is_login);
        let host = rule.host.to_ascii_lowercase();
        let host = host.split(':').next().unwrap_or_default();
        let name = match rule.host_type {
            HostType::Regex => None,
            _ if host.contains(['^', '$', '(', '[', '\\', '|', '+', '?']) => None,
            _ => Some(host.strip_prefix("*.").unwrap_or(host)),
        };
        if logs_in && name.is_some_and(|n| !crate::sso::within(n, domain)) {
            w.diags.error(
                &rule.host_loc,
                format!(
                    "`{}` logs users in but is outside session.cookie_domain `{domain}`: its browsers would drop the session cookie",
                    rule.host
                ),
            );
        }
    }
}

fn is_login(method: &MethodSpec) -> bool {
    match method {
        MethodSpec::OAuth2(_) => true,
        MethodSpec::Oidc(o) => o.client_id.is_some(),
        _ => false,
    }
}
