//! `auth.type` → the methods it lists (`type: [oidc, bearer]`): names,
//! repeats and the list's own errors; and the rules that keep an `auth`
//! block from opening a route by omission (settings without `type`, an
//! empty block on a path under an authenticated rule).

use super::error::Loc;
use super::reader::Walker;
use super::spec::{AuthSpec, BackendKind, PathSpec};
use super::walk_auth::AUTH_TYPES;
use super::yaml::{Node, Value};
use crate::decision::AuthKind;

/// The kinds `type` names, in [`AUTH_TYPES`]' order.
const AUTH_KINDS: [AuthKind; 5] = [
    AuthKind::Basic,
    AuthKind::Bearer,
    AuthKind::Jwt,
    AuthKind::OAuth2,
    AuthKind::Oidc,
];

/// Whether an `auth` block holds anything but `enabled`.
pub(super) fn has_settings(node: &Node) -> bool {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .any(|(k, _)| !matches!(&k.value, Value::Scalar { text, .. } if text == "enabled")),
        _ => false,
    }
}

/// `type: oidc` or `type: [oidc, bearer]`: the kinds with their locations,
/// and whether it was a list. Unknown names and repeats are errors at their
/// item.
pub(super) fn auth_types(
    w: &mut Walker<'_>,
    node: &Node,
    loc: &Loc,
) -> (Vec<(AuthKind, Loc)>, bool) {
    let listed = matches!(node.value, Value::Seq(_));
    let items = if listed {
        w.seq(node, loc)
    } else {
        vec![(node, loc.clone())]
    };
    if listed && items.is_empty() {
        w.diags.error(
            loc,
            format!(
                "`type` is an empty list; name one or more of {}",
                AUTH_TYPES.join(", ")
            ),
        );
    }
    let mut kinds: Vec<(AuthKind, Loc)> = Vec::with_capacity(items.len());
    for (n, l) in items {
        let Some(t) = w.string(n, &l) else {
            continue;
        };
        let Some(kind) = AUTH_KINDS.into_iter().find(|k| k.as_str() == t) else {
            w.diags.error(
                &l,
                format!(
                    "unknown auth type \"{t}\"; expected one of {}",
                    AUTH_TYPES.join(", ")
                ),
            );
            continue;
        };
        if kinds.iter().any(|(k, _)| *k == kind) {
            w.diags.error(
                &l,
                format!("`type` lists {t} twice; each method appears once"),
            );
            continue;
        }
        kinds.push((kind, l));
    }
    (kinds, listed)
}

/// `auth: {}` on a path under an authenticated rule: a path with an `auth`
/// block of its own does not inherit the rule's, so the empty block opens it.
pub(super) fn warn_empty_auth(w: &mut Walker<'_>, paths: &[PathSpec]) {
    let empty = |a: &AuthSpec| {
        a.enabled.is_none() && a.methods.is_empty() && a.allow.is_empty() && !a.report_only
    };
    for p in paths {
        if p.backend.kind == BackendKind::Service
            && let Some(a) = p.backend.auth.as_ref().filter(|a| empty(a))
        {
            w.diags.warn(
                &a.loc,
                "an empty `auth` opens this path: a path with its own `auth` does not inherit the rule's; remove it to inherit the rule's auth, or write `enabled: false` to say the path is public",
            );
        }
    }
}
