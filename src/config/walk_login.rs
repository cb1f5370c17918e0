//! `oauth2:` and `oidc:` blocks → [`OAuth2Spec`] / [`OidcSpec`]: providers
//! parsed into [`Kind`], endpoints, scopes, and `connect:`.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::error::Loc;
use super::reader::{Fields, Walker};
use super::spec::*;
use super::walk_auth::{jwt_algorithm, url};
use super::yaml::Node;
use crate::auth::providers::Kind;

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
    "accept_bearer",
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

pub(super) fn oauth2(w: &mut Walker<'_>, auth: &mut Fields<'_>) -> Option<OAuth2Spec> {
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
    let allow = super::walk_allow::method_allow(w, &mut f);
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
        allow,
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

pub(super) fn oidc(w: &mut Walker<'_>, auth: &mut Fields<'_>) -> Option<OidcSpec> {
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
        let allow = super::walk_allow::method_allow(w, &mut f);
        let spec = oidc_fields(w, &mut f).map(|s| OidcSpec { allow, ..s });
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
        accept_bearer: f
            .take("accept_bearer")
            .and_then(|(n, l)| w.bool(n, &l))
            .unwrap_or(false),
        allow: AllowSpec::default(),
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
