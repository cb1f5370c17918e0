//! `allow:` blocks (SPEC §13.1), their older aliases, named bearer tokens,
//! and the load-time checks that a policy can be evaluated: a condition a
//! type or provider cannot check is an error, never a silent pass or deny.

use super::error::Loc;
use super::reader::Walker;
use super::spec::{AllowSpec, MethodSpec};
use super::yaml::Node;
use crate::auth::providers::{EmailTrust, GroupSource, Kind, is_multi_tenant};
use crate::decision::Condition;
use crate::secret::Secret;

pub(super) fn allow_block(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> AllowSpec {
    let mut allow = AllowSpec::default();
    let Some(mut f) = w.fields(node, loc) else {
        return allow;
    };
    for condition in Condition::ALL {
        let Some((n, l)) = f.take(condition.key()) else {
            continue;
        };
        if condition == Condition::Claims {
            allow.claims = claims_map(w, n, &l);
        } else {
            let values: Vec<String> = w.string_list(n, &l).into_iter().map(|(s, _)| s).collect();
            if values.is_empty() {
                w.diags.error(
                    &l,
                    format!(
                        "`{}` is empty: it would deny everyone; remove it or list who may pass",
                        condition.key()
                    ),
                );
            }
            *list(&mut allow, condition) = values;
        }
        allow.locs.push((condition, l));
    }
    f.finish(w, &[]);
    allow
}

/// The `allow` of a method's own block (`bearer: {allow: ...}`), if any.
pub(super) fn method_allow(w: &mut Walker<'_>, f: &mut super::reader::Fields<'_>) -> AllowSpec {
    f.take("allow")
        .map(|(n, l)| allow_block(w, n, &l))
        .unwrap_or_default()
}

fn list(allow: &mut AllowSpec, c: Condition) -> &mut Vec<String> {
    match c {
        Condition::Users => &mut allow.users,
        Condition::Logins => &mut allow.logins,
        Condition::Emails => &mut allow.emails,
        Condition::Domains => &mut allow.domains,
        Condition::Groups => &mut allow.groups,
        Condition::Claims => unreachable!("claims are a map"),
    }
}

/// `{tenant: acme, scope: [read, admin]}`: name → any of the values.
pub(super) fn claims_map(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> Vec<(String, Vec<String>)> {
    let Some(mut fields) = w.fields(node, loc) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, n, l) in fields.take_all() {
        let values: Vec<String> = if matches!(n.value, super::yaml::Value::Seq(_)) {
            w.string_list(n, &l).into_iter().map(|(s, _)| s).collect()
        } else {
            w.string(n, &l).into_iter().collect()
        };
        if values.is_empty() {
            w.diags.error(&l, format!("claim `{name}` needs a value"));
            continue;
        }
        out.push((name.to_string(), values));
    }
    if out.is_empty() {
        w.diags.error(loc, "`claims` needs at least one claim");
    }
    fields.finish(w, &[]);
    out
}

/// `tokens: [plain-token, {name: ci, token: "..."}]`.
pub(super) fn bearer_tokens(
    w: &mut Walker<'_>,
    node: &Node,
    loc: &Loc,
) -> Vec<(Option<String>, Secret, Loc)> {
    let mut out = Vec::new();
    for (n, l) in w.seq(node, loc) {
        if !matches!(n.value, super::yaml::Value::Map(_)) {
            if let Some(t) = w.secret(n, &l) {
                out.push((None, t, l));
            }
            continue;
        }
        let Some(mut f) = w.fields(n, &l) else {
            continue;
        };
        let name = f.take("name").and_then(|(n, l)| w.non_empty(n, &l));
        let token = f.take("token").and_then(|(n, l)| w.secret(n, &l));
        if !f.has("name") && name.is_none() {
            w.diags.error(&l, "a named token needs `name`");
        }
        if !f.has("token") && token.is_none() {
            w.diags.error(&l, "a named token needs `token`");
        }
        f.finish(w, &[]);
        if let (Some(name), Some(token)) = (name, token) {
            out.push((Some(name), token, l));
        }
    }
    out
}

/// Moves `oauth2.allowed_emails`, `allowed_domains` and oidc `claims` into
/// `allow`; both spellings of one kind at once is an error.
pub(super) fn fold_aliases(w: &mut Walker<'_>, method: &MethodSpec, allow: &mut AllowSpec) {
    let (emails, domains, claims) = match method {
        MethodSpec::OAuth2(s) => (&s.allowed_emails, &s.allowed_domains, &None),
        MethodSpec::Oidc(s) => (&s.allowed_emails, &s.allowed_domains, &s.claims),
        _ => return,
    };
    let fold = |w: &mut Walker<'_>,
                allow: &mut AllowSpec,
                condition: Condition,
                alias: &str,
                loc: &Loc|
     -> bool {
        if allow.has(condition) {
            w.diags.error(
                loc,
                format!(
                    "`{alias}` and `allow.{}` both given; use `allow.{}` only",
                    condition.key(),
                    condition.key()
                ),
            );
            return false;
        }
        allow.locs.push((condition, loc.clone()));
        true
    };
    if let Some((values, loc)) = emails
        && fold(w, allow, Condition::Emails, "allowed_emails", loc)
    {
        allow.emails = values.clone();
    }
    if let Some((values, loc)) = domains
        && fold(w, allow, Condition::Domains, "allowed_domains", loc)
    {
        allow.domains = values.clone();
    }
    if let Some((values, loc)) = claims
        && fold(w, allow, Condition::Claims, "claims", loc)
    {
        allow.claims = values.clone();
    }
}

/// The conditions each type can evaluate.
fn supported(method: &MethodSpec) -> (&'static str, &'static [Condition]) {
    use Condition::*;
    match method {
        MethodSpec::Basic(_) => ("basic", &[Users]),
        MethodSpec::Bearer(_) => ("bearer", &[Users]),
        MethodSpec::Jwt(_) => ("jwt", &[Users, Emails, Domains, Groups, Claims]),
        MethodSpec::OAuth2(_) => ("oauth2", &[Users, Logins, Emails, Domains, Groups]),
        MethodSpec::Oidc(_) => ("oidc", &[Users, Emails, Domains, Groups, Claims]),
    }
}

/// The `allow` blocks that judge one method's identities: the auth's
/// (shared by every listed method) and the method's own.
pub(super) struct Allows<'a> {
    pub shared: &'a AllowSpec,
    /// True when `type` lists several methods (the shared block must suit
    /// each of them).
    pub several: bool,
}

/// Errors for conditions that cannot be evaluated; the open-door warning
/// for public providers without any `allow`.
pub(super) fn check_allow(
    w: &mut Walker<'_>,
    method: &MethodSpec,
    allows: &Allows<'_>,
    auth_loc: &Loc,
    enabled: bool,
) {
    let (type_name, can) = supported(method);
    let list: Vec<&str> = can.iter().map(|c| c.key()).collect();
    let own = method.allow();
    for (condition, loc) in &allows.shared.locs {
        if !can.contains(condition) {
            let message = if allows.several {
                format!(
                    "type {type_name} (listed in `type`) cannot check `{}`; it can check: {}; a condition for some of the listed methods belongs in their own block (`<type>: {{allow: ...}}`)",
                    condition.key(),
                    list.join(", ")
                )
            } else {
                format!(
                    "type {type_name} cannot check `{}`; it can check: {}",
                    condition.key(),
                    list.join(", ")
                )
            };
            w.diags.error(loc, message);
        }
    }
    for (condition, loc) in &own.locs {
        if !can.contains(condition) {
            w.diags.error(
                loc,
                format!(
                    "type {type_name} cannot check `{}`; it can check: {}",
                    condition.key(),
                    list.join(", ")
                ),
            );
        }
    }
    let allow = allows.shared;
    let loc_of = |c: Condition| allow.loc_of(c).or_else(|| own.loc_of(c));
    let email_kinds = [Condition::Emails, Condition::Domains];
    let email_loc = email_kinds.iter().find_map(|c| loc_of(*c));
    let no_allow = allow.is_empty() && own.is_empty();
    match method {
        MethodSpec::OAuth2(s) => {
            let kind = s.provider;
            let d = kind.descriptor();
            if let Some(loc) = email_loc {
                match d.email_trust {
                    EmailTrust::None => w.diags.error(
                        loc,
                        format!(
                            "provider {} does not vouch for email addresses, so `emails`/`domains` cannot be checked; use `users` or `logins`",
                            d.name
                        ),
                    ),
                    EmailTrust::FixedTenant if is_multi_tenant(s.tenant.as_deref()) => {
                        w.diags.error(loc, microsoft_tenant_message());
                    }
                    _ => {}
                }
            }
            if let Some(loc) = loc_of(Condition::Groups)
                && d.groups == GroupSource::None
            {
                w.diags.error(
                    loc,
                    format!(
                        "provider {} has no group source in oauth2 mode; use `type: oidc` (its `groups` claim) for `allow.groups`",
                        d.name
                    ),
                );
            }
            let public = d.public
                && match kind {
                    Kind::Gitlab => s.base_url.is_none(),
                    Kind::Microsoft => is_multi_tenant(s.tenant.as_deref()),
                    _ => true,
                };
            if enabled && public && no_allow {
                w.diags.warn(
                    auth_loc,
                    format!(
                        "any {} account can sign in; add allow: (users, logins, emails, domains or groups) to say who may pass",
                        d.name
                    ),
                );
            }
        }
        MethodSpec::Oidc(s) => {
            let microsoft_common = s.provider == Some(Kind::Microsoft)
                && is_multi_tenant(s.tenant.as_deref())
                || s.issuer.as_ref().is_some_and(|u| {
                    u.host_str() == Some("login.microsoftonline.com")
                        && u.path_segments()
                            .and_then(|mut p| p.next())
                            .is_some_and(|t| is_multi_tenant(Some(t)) || t == "{tenantid}")
                });
            if let Some(loc) = email_loc
                && microsoft_common
            {
                w.diags.error(loc, microsoft_tenant_message());
            }
            if s.client_id.is_none() && s.audience.is_empty() {
                w.diags.error(
                    &s.loc,
                    "oidc without `client_id` (API mode) needs `audience`: without it any token the issuer minted for any client would pass",
                );
            }
            if enabled && s.client_id.is_some() && no_allow {
                let who = s
                    .provider
                    .map(|k| k.as_str().to_string())
                    .or_else(|| s.issuer.as_ref().map(|u| u.to_string()))
                    .unwrap_or_default();
                w.diags.warn(
                    auth_loc,
                    format!(
                        "any {who} account can sign in; add allow: (users, emails, domains, groups or claims) to say who may pass"
                    ),
                );
            }
        }
        _ => {}
    }
}

fn microsoft_tenant_message() -> &'static str {
    "with tenant `common`/`organizations`/`consumers` any Azure tenant can sign in and set any email, so `emails`/`domains` cannot be trusted; set a fixed `tenant` id, or use `type: oidc` with `allow.claims: {tid: <your tenant id>}`"
}
