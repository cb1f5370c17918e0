//! `auth:` blocks → [`AuthSpec`]. `${VAR}` expansion applies to every string here.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::error::Loc;
use super::reader::{Fields, Walker};
use super::spec::*;
use super::yaml::Node;
use crate::auth::providers::Kind;

pub const AUTH_TYPES: &[&str] = &["basic", "bearer", "jwt", "oauth2", "oidc"];
pub const OAUTH2_PROVIDERS: &[&str] = &[
    "github",
    "gitlab",
    "google",
    "microsoft",
    "feishu",
    "slack",
    "kakao",
    "auth0",
    "okta",
    "doreamon",
];
pub const OIDC_PROVIDERS: &[&str] = &["google", "microsoft", "auth0", "okta", "gitlab"];
const CONNECT_ALGORITHMS: &[&str] = &["hs256", "hs384", "hs512", "rs256", "es256", "eddsa"];
/// Fields of oidc's flat form (directly under `auth`, as the guide writes it).
const OIDC_FLAT: &[&str] = &[
    "claims",
    "groups_claim",
    "groups_ttl",
    "accept_id_tokens",
    "logout_at_provider",
    "provider",
    "issuer",
    "base_url",
    "tenant",
    "client_id",
    "client_secret",
    "redirect_url",
    "scopes",
    "audience",
    "allowed_emails",
    "allowed_domains",
    "connect",
];

pub(super) fn auth_block(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> Option<AuthSpec> {
    let mut f = w.fields(node, loc)?;
    let enabled = f.take("enabled").and_then(|(n, l)| w.bool(n, &l));
    let type_name = f.take("type").and_then(|(n, l)| {
        let t = w.string(n, &l)?;
        if AUTH_TYPES.contains(&t.as_str()) {
            Some(t)
        } else {
            w.diags.error(
                &l,
                format!(
                    "unknown auth type \"{t}\"; expected one of {}",
                    AUTH_TYPES.join(", ")
                ),
            );
            None
        }
    });
    let type_given = f.has("type");
    if enabled == Some(true) && !type_given {
        w.diags.error(
            loc,
            "`enabled: true` needs a `type` (one of basic, bearer, jwt, oauth2, oidc)",
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
    let method = match type_name.as_deref() {
        Some("basic") => basic(w, &mut f).map(MethodSpec::Basic),
        Some("bearer") => bearer(w, &mut f).map(MethodSpec::Bearer),
        Some("jwt") => jwt(w, &mut f).map(MethodSpec::Jwt),
        Some("oauth2") => oauth2(w, &mut f).map(MethodSpec::OAuth2),
        Some("oidc") => oidc(w, &mut f).map(MethodSpec::Oidc),
        _ => None,
    };
    // Blocks of other types are tolerated (config kept) but have no effect.
    let mut unused = Vec::new();
    let own = |key: &str| {
        Some(key) == type_name.as_deref()
            || (key == "secret" && type_name.as_deref() == Some("jwt"))
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
        let message = match type_name.as_deref() {
            Some(t) => format!("ignored: has no effect with type {t}"),
            None => "ignored: has no effect without `type`".to_string(),
        };
        w.diags.warn(&l, message);
    }
    f.finish(w, &[]);
    if let Some(m) = &method {
        super::walk_allow::fold_aliases(w, m, &mut allow);
        super::walk_allow::check_allow(w, m, &allow, loc, enabled != Some(false));
    }
    Some(AuthSpec {
        loc: loc.clone(),
        enabled,
        method,
        allow,
        report_only,
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
            f.finish(w, &[]);
        }
    }
    match keys.len() {
        0 => w.diags.error(
            &spec.loc,
            "jwt needs a key: `secret`, `jwt.secret`, `jwt.public_key` or `jwt.jwks_url`",
        ),
        1 => spec.key = keys.pop(),
        _ => {
            for (_, l) in &keys[1..] {
                w.diags
                    .error(l, "jwt takes exactly one key: `secret`, `jwt.secret`, `jwt.public_key` or `jwt.jwks_url`");
            }
        }
    }
    Some(spec)
}

/// A JWT algorithm name, any case (`rs256`, `EdDSA`).
fn jwt_algorithm(name: &str) -> Option<Algorithm> {
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

fn url(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> Option<url::Url> {
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

fn opt_url(w: &mut Walker<'_>, f: &mut Fields<'_>, key: &'static str) -> Option<url::Url> {
    let (n, l) = f.take(key)?;
    url(w, n, &l)
}

fn redirect_url(w: &mut Walker<'_>, f: &mut Fields<'_>) -> Option<url::Url> {
    let (n, l) = f.take("redirect_url")?;
    let u = url(w, n, &l)?;
    if u.path() != "/oauth2/callback" {
        w.diags.error(
            &l,
            format!(
                "redirect_url path must be /oauth2/callback (the fixed callback route), found `{}`",
                u.path()
            ),
        );
        return None;
    }
    Some(u)
}

fn strings(w: &mut Walker<'_>, f: &mut Fields<'_>, key: &'static str) -> Option<Vec<String>> {
    let (n, l) = f.take(key)?;
    Some(w.string_list(n, &l).into_iter().map(|(s, _)| s).collect())
}

fn oauth2(w: &mut Walker<'_>, auth: &mut Fields<'_>) -> Option<OAuth2Spec> {
    let Some((node, loc)) = auth.take("oauth2") else {
        w.diags.error(
            &auth.loc,
            "type oauth2 needs an `oauth2` block with `provider`, `client_id` and `client_secret`",
        );
        return None;
    };
    let mut f = w.fields(node, &loc)?;
    let provider = f.take("provider").and_then(|(n, l)| {
        let p = w.string(n, &l)?;
        if let Some(kind) = Kind::parse(&p).filter(|_| OAUTH2_PROVIDERS.contains(&p.as_str())) {
            Some(kind)
        } else {
            w.diags.error(
                &l,
                format!(
                    "unknown oauth2 provider \"{p}\"; expected one of {}",
                    OAUTH2_PROVIDERS.join(", ")
                ),
            );
            None
        }
    });
    let client_id = f.take("client_id").and_then(|(n, l)| w.non_empty(n, &l));
    let client_secret = f.take("client_secret").and_then(|(n, l)| w.secret(n, &l));
    for (key, missing) in [
        ("provider", !f.has("provider")),
        ("client_id", !f.has("client_id")),
        ("client_secret", !f.has("client_secret")),
    ] {
        if missing {
            w.diags.error(&loc, format!("oauth2 needs `{key}`"));
        }
    }
    let scopes = strings(w, &mut f, "scopes");
    let redirect_url = redirect_url(w, &mut f);
    let base_url = opt_url(w, &mut f, "base_url");
    let tenant = f.take("tenant").and_then(|(n, l)| w.non_empty(n, &l));
    let auth_url = opt_url(w, &mut f, "auth_url");
    let token_url = opt_url(w, &mut f, "token_url");
    let userinfo_url = opt_url(w, &mut f, "userinfo_url");
    let allowed_emails = located_strings(w, &mut f, "allowed_emails");
    let allowed_domains = located_strings(w, &mut f, "allowed_domains");
    let connect = f.take("connect").and_then(|(n, l)| connect(w, n, &l));
    let groups_ttl = groups_ttl(w, &mut f);
    if matches!(provider, Some(Kind::Auth0 | Kind::Okta))
        && base_url.is_none()
        && (auth_url.is_none() || token_url.is_none() || userinfo_url.is_none())
    {
        w.diags.error(
            &loc,
            format!(
                "provider {} needs `base_url` (your tenant's URL, e.g. https://example.auth0.com)",
                provider.map_or("", Kind::as_str)
            ),
        );
    }
    f.finish(w, &[]);
    Some(OAuth2Spec {
        loc,
        provider: provider?,
        client_id: client_id?,
        client_secret: client_secret?,
        scopes,
        redirect_url,
        base_url,
        tenant,
        auth_url,
        token_url,
        userinfo_url,
        allowed_emails,
        allowed_domains,
        connect,
        groups_ttl,
    })
}

/// `groups_ttl`, default 5 minutes.
fn groups_ttl(w: &mut Walker<'_>, f: &mut Fields<'_>) -> Duration {
    const DEFAULT: Duration = Duration::from_secs(300);
    match f.take("groups_ttl") {
        Some((n, l)) => match w.duration(n, &l) {
            Some(d) if d.is_zero() => {
                w.diags.error(&l, "groups_ttl must be more than 0");
                DEFAULT
            }
            Some(d) => d,
            None => DEFAULT,
        },
        None => DEFAULT,
    }
}

fn located_strings(
    w: &mut Walker<'_>,
    f: &mut Fields<'_>,
    key: &'static str,
) -> Option<(Vec<String>, Loc)> {
    let (n, l) = f.take(key)?;
    let items = w.string_list(n, &l).into_iter().map(|(s, _)| s).collect();
    Some((items, l))
}

fn connect(w: &mut Walker<'_>, node: &Node, loc: &Loc) -> Option<ConnectSpec> {
    let mut f = w.fields(node, loc)?;
    let enabled = f
        .take("enabled")
        .and_then(|(n, l)| w.bool(n, &l))
        .unwrap_or(false);
    let mut spec = ConnectSpec {
        loc: loc.clone(),
        enabled,
        secret: None,
        algorithm: Algorithm::HS256,
        expires_in: Duration::from_secs(300),
        audience: None,
    };
    if let Some((n, l)) = f.take("jwt")
        && let Some(mut jf) = w.fields(n, &l)
    {
        spec.secret = jf.take("secret").and_then(|(n, l)| w.secret(n, &l));
        if let Some((n, l)) = jf.take("algorithm") {
            let alg = w.string(n, &l).unwrap_or_default().to_ascii_lowercase();
            if let Some(a) =
                jwt_algorithm(&alg).filter(|_| CONNECT_ALGORITHMS.contains(&alg.as_str()))
            {
                spec.algorithm = a;
            } else {
                w.diags.error(
                    &l,
                    format!(
                        "unknown connect algorithm \"{alg}\"; expected one of {}",
                        CONNECT_ALGORITHMS.join(", ")
                    ),
                );
            }
        }
        if let Some((n, l)) = jf.take("expires_in") {
            spec.expires_in = w.duration(n, &l).unwrap_or(spec.expires_in);
        }
        spec.audience = jf.take("audience").and_then(|(n, l)| w.non_empty(n, &l));
        jf.finish(w, &[]);
    }
    if spec.enabled && spec.secret.is_none() {
        w.diags.error(
            loc,
            "connect.enabled needs `jwt.secret` (a shared secret or a PEM private key)",
        );
    }
    // The signing key must suit its algorithm (checked at load, not per request).
    if let Some(secret) = &spec.secret
        && crate::connect::signing_key(spec.algorithm, secret.expose().as_bytes()).is_err()
    {
        let name = format!("{:?}", spec.algorithm).to_ascii_lowercase();
        w.diags.error(
            loc,
            format!(
                "connect algorithm {name} needs a PEM private key of that kind in `jwt.secret`"
            ),
        );
    }
    f.finish(w, &[]);
    Some(spec)
}

fn oidc(w: &mut Walker<'_>, auth: &mut Fields<'_>) -> Option<OidcSpec> {
    let flat_keys: Vec<&str> = OIDC_FLAT.iter().copied().filter(|k| auth.has(k)).collect();
    if let Some((node, loc)) = auth.take("oidc") {
        if !flat_keys.is_empty() {
            w.diags.error(
                &auth.loc,
                format!(
                    "oidc settings given both under `auth` ({}) and in `auth.oidc`; use one form",
                    flat_keys.join(", ")
                ),
            );
        }
        let mut f = w.fields(node, &loc)?;
        let spec = oidc_fields(w, &mut f);
        f.finish(w, &[]);
        spec
    } else {
        oidc_fields(w, auth)
    }
}

fn oidc_fields(w: &mut Walker<'_>, f: &mut Fields<'_>) -> Option<OidcSpec> {
    let provider = f.take("provider").and_then(|(n, l)| {
        let p = w.string(n, &l)?;
        if let Some(kind) = Kind::parse(&p).filter(|_| OIDC_PROVIDERS.contains(&p.as_str())) {
            Some(kind)
        } else {
            w.diags.error(
                &l,
                format!(
                    "unknown oidc provider \"{p}\"; expected one of {} (or set `issuer`)",
                    OIDC_PROVIDERS.join(", ")
                ),
            );
            None
        }
    });
    let issuer = opt_url(w, f, "issuer");
    let spec = OidcSpec {
        loc: f.loc.clone(),
        base_url: opt_url(w, f, "base_url"),
        tenant: f.take("tenant").and_then(|(n, l)| w.non_empty(n, &l)),
        client_id: f.take("client_id").and_then(|(n, l)| w.non_empty(n, &l)),
        client_secret: f.take("client_secret").and_then(|(n, l)| w.secret(n, &l)),
        redirect_url: redirect_url(w, f),
        scopes: strings(w, f, "scopes").unwrap_or_default(),
        audience: strings(w, f, "audience").unwrap_or_default(),
        allowed_emails: located_strings(w, f, "allowed_emails"),
        allowed_domains: located_strings(w, f, "allowed_domains"),
        connect: f.take("connect").and_then(|(n, l)| connect(w, n, &l)),
        claims: f
            .take("claims")
            .map(|(n, l)| (super::walk_allow::claims_map(w, n, &l), l)),
        groups_claim: f
            .take("groups_claim")
            .and_then(|(n, l)| w.non_empty(n, &l))
            .unwrap_or_else(|| "groups".into()),
        groups_ttl: groups_ttl(w, f),
        accept_id_tokens: f
            .take("accept_id_tokens")
            .and_then(|(n, l)| w.bool(n, &l))
            .unwrap_or(false),
        logout_at_provider: f
            .take("logout_at_provider")
            .and_then(|(n, l)| w.bool(n, &l))
            .unwrap_or(false),
        provider,
        issuer,
    };
    match (&spec.provider, &spec.issuer) {
        (None, None) if !f.has("provider") => w.diags.error(
            &spec.loc,
            "oidc needs `provider` (a known OpenID provider) or `issuer`",
        ),
        (Some(_), Some(_)) => w
            .diags
            .error(&spec.loc, "oidc takes `provider` or `issuer`, not both"),
        _ => {}
    }
    if matches!(spec.provider, Some(Kind::Auth0 | Kind::Okta)) && spec.base_url.is_none() {
        w.diags
            .error(&spec.loc, "oidc provider auth0/okta needs `base_url`");
    }
    Some(spec)
}
