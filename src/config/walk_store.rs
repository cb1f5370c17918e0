//! `authz.store` → [`StoreSpec`] (SPEC §13.3): the optional Redis store
//! shared by every replica, and `authz.session.store`.

use std::time::Duration;

use super::error::Loc;
use super::reader::Walker;
use super::spec::{SessionStore, StoreSpec};
use super::yaml::Node;
use crate::secret::Secret;

/// Every store call gives up after this long unless `timeout` says otherwise:
/// well inside Envoy's 0.5 s ext_authz budget.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);

pub(super) fn store(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> Option<StoreSpec> {
    let mut f = w.fields(node, loc)?;
    let Some((n, l)) = f.take("redis") else {
        w.diags
            .error(&f.loc, "store needs `redis` (the only store there is)");
        f.finish(w, &[]);
        return None;
    };
    f.finish(w, &[]);
    let mut r = w.fields(n, &l)?;
    let url = match r.take("url") {
        Some((n, l)) => w.secret(n, &l).and_then(|url| redis_url(w, url, &l)),
        None => {
            w.diags.error(&r.loc, "store.redis needs `url`");
            None
        }
    };
    let key_prefix = match r.take("key_prefix") {
        Some((n, l)) => {
            let prefix = w.string(n, &l).unwrap_or_default();
            if prefix
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                w.diags.error(
                    &l,
                    "key_prefix may not contain spaces or control characters",
                );
            }
            prefix
        }
        None => "ingress-authz:".to_string(),
    };
    let timeout = match r.take("timeout") {
        Some((n, l)) => match w.duration(n, &l) {
            Some(d) if !d.is_zero() && d <= Duration::from_secs(5) => d,
            Some(_) => {
                w.diags
                    .error(&l, "timeout must be more than 0 and at most 5s");
                DEFAULT_TIMEOUT
            }
            None => DEFAULT_TIMEOUT,
        },
        None => DEFAULT_TIMEOUT,
    };
    r.finish(w, &[]);
    Some(StoreSpec {
        url: url?,
        key_prefix,
        timeout,
        loc: l,
    })
}

/// A `redis://`, `rediss://` (TLS) or `redis+unix://` URL the client
/// accepts. The message names the problem, never the URL (it may hold a
/// password).
fn redis_url(w: &mut Walker<'_>, url: Secret, loc: &Loc) -> Option<Secret> {
    let scheme = url.expose().split_once("://").map(|(s, _)| s);
    if !matches!(scheme, Some("redis" | "rediss" | "redis+unix" | "unix")) {
        w.diags.error(
            loc,
            "url must start with redis://, rediss:// (TLS) or redis+unix://",
        );
        return None;
    }
    match redis::Client::open(url.expose()) {
        Ok(_) => Some(url),
        Err(e) => {
            w.diags
                .error(loc, format!("url is not a Redis URL: {}", e.kind_name()));
            None
        }
    }
}

/// `session.store`: where a session lives.
pub(super) fn session_store(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> SessionStore {
    match w.string(node, loc).as_deref() {
        Some("cookie") | None => SessionStore::Cookie,
        Some("redis") => SessionStore::Redis,
        Some(other) => {
            w.diags.error(
                loc,
                format!("session.store must be `cookie` or `redis`, not `{other}`"),
            );
            SessionStore::Cookie
        }
    }
}

/// A short name for a client error kind (no URL, no password).
trait KindName {
    fn kind_name(&self) -> &'static str;
}

impl KindName for redis::RedisError {
    fn kind_name(&self) -> &'static str {
        match self.kind() {
            redis::ErrorKind::InvalidClientConfig => "invalid client configuration",
            _ => "unsupported form",
        }
    }
}
