//! Audit events on the `audit` tracing target (route them separately with
//! `RUST_LOG` / a subscriber filter). One event per denial; allows at debug.
//! Never a secret, token or password: only route, type, reason and who.

use crate::decision::{Decision, Verdict};
use crate::request::{RequestError, RequestView};

/// At most this much of a client-sent host or path goes into a log line:
/// a 30 KB `Host` must not become a 30 KB log line per request.
const MAX_LOGGED: usize = 256;

fn bounded(s: &str) -> &str {
    if s.len() <= MAX_LOGGED {
        return s;
    }
    let cut = (0..=MAX_LOGGED)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    &s[..cut]
}

pub fn check(req: &RequestView<'_>, decision: &Decision<'_>) {
    let req = &RequestView {
        host: bounded(req.host),
        path: bounded(req.path),
        ..*req
    };
    let route = decision.label.unwrap_or("-");
    let kind = decision.kind.map_or("-", |k| k.as_str());
    // The query may carry tokens: never logged.
    let path = crate::matching::path::strip_query(req.path);
    // A denial, or what a report-only route would have denied.
    let denied = match &decision.verdict {
        Verdict::Deny(d) | Verdict::Pending { then: d, .. } => {
            Some(("denied", d.status, d.reason, d.condition))
        }
        Verdict::Allow {
            would_deny: Some((status, reason)),
            ..
        } => Some(("would_deny", *status, *reason, None)),
        Verdict::Allow { .. } => None,
    };
    if let Some((event, status, reason, condition)) = denied {
        tracing::info!(
            target: "audit",
            event,
            status = status.code(),
            reason = reason.code(),
            condition = condition.map_or("-", |c| c.key()),
            rule = route,
            auth = kind,
            host = req.host,
            path,
            method = req.method,
            client = req.client.unwrap_or("-"),
        );
    } else if let Verdict::Allow { reason, user, .. } = &decision.verdict {
        tracing::debug!(
            target: "audit",
            event = "allowed",
            reason = reason.code(),
            rule = route,
            auth = kind,
            host = req.host,
            path,
            method = req.method,
            client = req.client.unwrap_or("-"),
            user = user.as_ref().and_then(|u| u.user()).unwrap_or("-"),
        );
    }
}

pub fn malformed(error: &RequestError) {
    tracing::warn!(target: "audit", event = "denied", status = 400, reason = "bad_request", error = %error);
}
