//! `auth:` blocks → [`AuthSpec`]: the block itself and the basic, bearer
//! and jwt methods (oauth2 and oidc are [`super::walk_login`]'s). `${VAR}`
//! expansion applies to every string here.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::error::Loc;
use super::reader::{Fields, Walker};
use super::spec::*;
use super::yaml::Node;
use crate::decision::AuthKind;

pub const AUTH_TYPES: &[&str] = &["basic", "bearer", "jwt", "oauth2", "oidc"];
pub(super) fn auth_block(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> Option<AuthSpec> {
    let mut f = w.fields(node, loc)?;
    let enabled = f.take("enabled").and_then(|(n, l)| w.bool(n, &l));
    let type_given = f.has("type");
    let (kinds, listed) = match f.take("type") {
        Some((n, l)) => super::walk_methods::auth_types(w, n, &l),
        None => (Vec::new(), false),
    };
    if enabled == Some(true) && !type_given {
        w.diags.error(
            loc,
            "`enabled: true` needs a `type` (one of basic, bearer, jwt, oauth2, oidc)",
        );
    } else if !type_given && enabled != Some(false) && super::walk_methods::has_settings(node) {
        // Settings without a method would serve the route open.
        w.diags.error(
            loc,
            "`auth` has settings but no `type`, so it would authenticate no one: name the method (`type`: one of basic, bearer, jwt, oauth2, oidc), or write `enabled: false` to leave the route open",
        );
    }
    let report_only = f
        .take("report_only")
        .and_then(|(n, l)| w.bool(n, &l))
        .unwrap_or(false);
    let mut allow = f
        .take("allow")
        .map(|(n, l)| super::walk_allow::allow_block(w, n, &l))
        .unwrap_or_default();
    let mut methods = Vec::with_capacity(kinds.len());
    let mut session: Option<AuthKind> = None;
    for (kind, item) in &kinds {
        let method = match kind {
            AuthKind::Basic => basic(w, &mut f).map(MethodSpec::Basic),
            AuthKind::Bearer => bearer(w, &mut f).map(MethodSpec::Bearer),
            AuthKind::Jwt => jwt(w, &mut f).map(MethodSpec::Jwt),
            AuthKind::OAuth2 => super::walk_login::oauth2(w, &mut f).map(MethodSpec::OAuth2),
            AuthKind::Oidc => super::walk_login::oidc(w, &mut f).map(MethodSpec::Oidc),
        };
        let Some(method) = method else {
            continue;
        };
        if method.is_session() {
            if let Some(first) = session {
                w.diags.error(
                    item,
                    format!(
                        "`type` lists two login methods ({} and {}); a route has at most one (oauth2, or oidc with `client_id`)",
                        first.as_str(),
                        kind.as_str()
                    ),
                );
            }
            session = Some(*kind);
        }
        methods.push(method);
    }
    // Blocks of other types are tolerated (config kept) but have no effect.
    let mut unused = Vec::new();
    let own = |key: &str| {
        kinds
            .iter()
            .any(|(k, _)| k.as_str() == key || (key == "secret" && *k == AuthKind::Jwt))
    };
    for key in ["basic", "bearer", "jwt", "oauth2", "oidc", "secret"] {
        if own(key) {
            continue;
        }
        if let Some((_, l)) = f.take(key) {
            unused.push(l);
        }
    }
    for l in unused {
        let message = match kinds.as_slice() {
            [] => "ignored: has no effect without `type`".to_string(),
            [(t, _)] if !listed => format!("ignored: has no effect with type {}", t.as_str()),
            _ => "ignored: has no effect: its type is not listed in `type`".to_string(),
        };
        w.diags.warn(&l, message);
    }
    let identity_headers = super::walk_upstream::identity_headers(w, &mut f);
    f.finish(w, &[]);
    // One method: its older aliases (`allowed_emails`) are the auth's
    // `allow`, as they always were; with several, they stay the method's.
    let several = methods.len() > 1;
    for m in &mut methods {
        if several {
            let mut own = std::mem::take(m.allow_mut());
            super::walk_allow::fold_aliases(w, m, &mut own);
            *m.allow_mut() = own;
        } else {
            super::walk_allow::fold_aliases(w, m, &mut allow);
        }
    }
    let allows = super::walk_allow::Allows {
        shared: &allow,
        several,
    };
    for m in &methods {
        super::walk_allow::check_allow(w, m, &allows, loc, enabled != Some(false));
    }
    Some(AuthSpec {
        loc: loc.clone(),
        enabled,
        methods,
        allow,
        report_only,
        identity_headers,
    })
}

fn basic(w: &mut Walker<'_>, auth: &mut Fields<'_>) -> Option<BasicSpec> {
    let Some((node, loc)) = auth.take("basic") else {
        w.diags.error(
            &auth.loc,
            "type basic needs a `basic` block with `users` or `users_file`",
        );
        return None;
    };
    let mut f = w.fields(node, &loc)?;
    let mut users = Vec::new();
    if let Some((n, l)) = f.take("users") {
        for (un, ul) in w.seq(n, &l) {
            let Some(mut uf) = w.fields(un, &ul) else {
                continue;
            };
            let username = uf.take("username").and_then(|(n, l)| {
                let name = w.non_empty(n, &l)?;
                if name.contains(':') {
                    w.diags.error(&l, "username must not contain `:`");
                    return None;
                }
                Some(name)
            });
            let password = uf.take("password").and_then(|(n, l)| w.secret(n, &l));
            if username.is_none() && !uf.has("username") {
                w.diags.error(&ul, "user needs a `username`");
            }
            if password.is_none() && !uf.has("password") {
                w.diags.error(&ul, "user needs a `password`");
            }
            uf.finish(w, &[]);
            if let (Some(username), Some(password)) = (username, password) {
                users.push(BasicUserSpec {
                    username,
                    password,
                    loc: ul,
                });
            }
        }
    }
    let users_file = file_path(w, &mut f, "users_file");
    let allow = super::walk_allow::method_allow(w, &mut f);
    let realm = match f.take("realm") {
        Some((n, l)) => {
            let realm = w.non_empty(n, &l).unwrap_or_default();
            if realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
                w.diags.error(
                    &l,
                    "realm must not contain quotes, backslashes or control characters",
                );
            }
            realm
        }
        None => "Restricted".to_string(),
    };
    f.finish(w, &[]);
    Some(BasicSpec {
        loc,
        users,
        users_file,
        realm,
        allow,
    })
}

fn bearer(w: &mut Walker<'_>, auth: &mut Fields<'_>) -> Option<BearerSpec> {
    let Some((node, loc)) = auth.take("bearer") else {
        w.diags.error(
            &auth.loc,
            "type bearer needs a `bearer` block with `tokens` or `tokens_file`",
        );
        return None;
    };
    let mut f = w.fields(node, &loc)?;
    let tokens = match f.take("tokens") {
        Some((n, l)) => super::walk_allow::bearer_tokens(w, n, &l),
        None => Vec::new(),
    };
    let tokens_file = file_path(w, &mut f, "tokens_file");
    let allow = super::walk_allow::method_allow(w, &mut f);
    if tokens.is_empty() && tokens_file.is_none() {
        w.diags.error(
            &loc,
            "bearer needs at least one token (`tokens` or `tokens_file`)",
        );
    }
    f.finish(w, &[]);
    Some(BearerSpec {
        loc,
        tokens,
        tokens_file,
        allow,
    })
}

fn file_path(
    w: &mut Walker<'_>,
    f: &mut Fields<'_>,
    key: &'static str,
) -> Option<(std::path::PathBuf, Loc)> {
    let (n, l) = f.take(key)?;
    let path = std::path::PathBuf::from(w.non_empty(n, &l)?);
    w.files.push(path.clone());
    Some((path, l))
}

fn jwt(w: &mut Walker<'_>, auth: &mut Fields<'_>) -> Option<JwtSpec> {
    let mut keys = Vec::new();
    // The guide's form: `auth.secret`.
    if let Some((n, l)) = auth.take("secret")
        && let Some(s) = w.secret(n, &l)
    {
        keys.push((JwtKeySpec::Secret(s), l));
    }
    let mut spec = JwtSpec {
        loc: auth.loc.clone(),
        key: None,
        algorithms: None,
        issuer: None,
        audience: Vec::new(),
        leeway: Duration::from_secs(30),
        require_exp: true,
        groups_claim: "groups".into(),
        allow: AllowSpec::default(),
    };
    if let Some((node, loc)) = auth.take("jwt") {
        spec.loc = loc.clone();
        if let Some(mut f) = w.fields(node, &loc) {
            if let Some((n, l)) = f.take("secret")
                && let Some(s) = w.secret(n, &l)
            {
                keys.push((JwtKeySpec::Secret(s), l));
            }
            if let Some((n, l)) = f.take("public_key")
                && let Some(s) = w.non_empty(n, &l)
            {
                keys.push((JwtKeySpec::PublicKeyPem(s), l));
            }
            if let Some((n, l)) = f.take("jwks_url")
                && let Some(u) = url(w, n, &l)
            {
                keys.push((JwtKeySpec::JwksUrl(u), l));
            }
            if let Some((n, l)) = f.take("algorithms") {
                spec.algorithms = jwt_algorithms(w, n, l);
            }
            spec.issuer = f.take("issuer").and_then(|(n, l)| w.non_empty(n, &l));
            if let Some((n, l)) = f.take("audience") {
                spec.audience = w.string_list(n, &l).into_iter().map(|(s, _)| s).collect();
            }
            if let Some((n, l)) = f.take("leeway") {
                spec.leeway = w.duration(n, &l).unwrap_or(spec.leeway);
            }
            if let Some((n, l)) = f.take("require_exp") {
                spec.require_exp = w.bool(n, &l).unwrap_or(true);
            }
            if let Some(claim) = f.take("groups_claim").and_then(|(n, l)| w.non_empty(n, &l)) {
                spec.groups_claim = claim;
            }
            spec.allow = super::walk_allow::method_allow(w, &mut f);
            f.finish(w, &[]);
        }
    }
    match keys.len() {
        0 => w.diags.error(&spec.loc, JWT_NEEDS_KEY),
        1 => spec.key = keys.pop(),
        _ => {
            // The config is invalid already; the first key keeps the
            // build from reporting a missing one as well.
            spec.key = Some(keys.remove(0));
            for (_, l) in &keys {
                w.diags
                    .error(l, "jwt takes exactly one key: `secret`, `jwt.secret`, `jwt.public_key` or `jwt.jwks_url`");
            }
        }
    }
    Some(spec)
}

/// A JWT algorithm name, any case (`rs256`, `EdDSA`).
pub(super) fn jwt_algorithm(name: &str) -> Option<Algorithm> {
    name.to_ascii_uppercase()
        .replace("EDDSA", "EdDSA")
        .parse()
        .ok()
}

/// `jwt.algorithms`; None (and an error) if one is unknown.
fn jwt_algorithms(w: &mut Walker<'_>, node: &Node, loc: Loc) -> Option<(Vec<Algorithm>, Loc)> {
    let mut algorithms = Vec::new();
    let mut known = true;
    for (name, _) in w.string_list(node, &loc) {
        match jwt_algorithm(&name) {
            Some(alg) => algorithms.push(alg),
            None => {
                w.diags
                    .error(&loc, format!("unknown JWT algorithm `{name}`"));
                known = false;
            }
        }
    }
    known.then_some((algorithms, loc))
}

pub(super) fn url(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> Option<url::Url> {
    let s = w.non_empty(node, loc)?;
    match url::Url::parse(&s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        _ => {
            w.diags.error(
                loc,
                format!("invalid URL `{s}`; expected an absolute http(s) URL"),
            );
            None
        }
    }
}
