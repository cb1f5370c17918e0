//! Audit events on the `audit` tracing target (route them separately with
//! `RUST_LOG` / a subscriber filter). One event per denial; allows at debug.
//! Never a secret, token or password: only route, type, reason and who.

use crate::decision::{Decision, Verdict};
use crate::request::{RequestError, RequestView};

pub fn check(req: &RequestView<'_>, decision: &Decision<'_>) {
    let route = decision.label.unwrap_or("-");
    let kind = decision.kind.map_or("-", |k| k.as_str());
    // The query may carry tokens: never logged.
    let path = crate::matching::path::strip_query(req.path);
    match &decision.verdict {
        Verdict::Deny(denial) | Verdict::Pending { then: denial, .. } => tracing::info!(
            target: "audit",
            event = "denied",
            status = denial.status.code(),
            reason = denial.reason.code(),
            condition = denial.condition.map_or("-", |c| c.key()),
            rule = route,
            auth = kind,
            host = req.host,
            path,
            method = req.method,
            client = req.client.unwrap_or("-"),
        ),
        Verdict::Allow { reason, user, .. } => tracing::debug!(
            target: "audit",
            event = "allowed",
            reason = reason.code(),
            rule = route,
            auth = kind,
            host = req.host,
            path,
            method = req.method,
            client = req.client.unwrap_or("-"),
            user = user.as_deref().unwrap_or("-"),
        ),
    }
}

pub fn malformed(error: &RequestError) {
    tracing::warn!(target: "audit", event = "denied", status = 400, reason = "bad_request", error = %error);
}
