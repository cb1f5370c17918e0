//! `authz:` → [`AuthzSpec`]: the service's own settings (addresses, the
//! session and its secrets, the login throttle, the admin token, ...).

use std::net::SocketAddr;

use super::error::Loc;
use super::reader::{Fields, Walker};
use super::spec::*;
use super::yaml::Node;

pub(super) fn authz(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> AuthzSpec {
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
    if let Some((n, l)) = f.take("store") {
        spec.store = super::walk_store::store(w, n, &l);
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
    if let Some((n, l)) = f.take("envoy")
        && let Some(mut e) = w.fields(n, &l)
    {
        spec.envoy_listen = socket_addr(w, &mut e, "listen");
        e.finish(w, &[]);
    }
    let domain = spec
        .session
        .as_ref()
        .and_then(|s| s.cookie_domain.as_deref());
    spec.login_host = super::walk_upstream::login_host(w, &mut f, domain);
    f.finish(w, &[]);
    if let Some(session) = &spec.session
        && session.store == SessionStore::Redis
        && spec.store.is_none()
    {
        w.diags.error(
            loc,
            "session.store: redis needs authz.store.redis (where the sessions live)",
        );
    }
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
    let store = match f.take("store") {
        Some((n, l)) => super::walk_store::session_store(w, n, &l),
        None => SessionStore::Cookie,
    };
    f.finish(w, &[]);
    Some(SessionSpec {
        secrets,
        cookie_name,
        max_age,
        cookie_domain,
        store,
    })
}

/// What is wrong with a short session secret: its length, never its value.
fn too_short(what: &str, len: usize) -> String {
    format!(
        "{what} is {len} bytes long; it must be at least 32 bytes (e.g. `openssl rand -hex 32`)"
    )
}
