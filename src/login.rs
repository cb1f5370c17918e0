//! The sidecar's `/oauth2/callback` and `/oauth2/logout` (SPEC §6.2, §6.5).
//! Every failure is an error page (or JSON for API clients) with a retry
//! link and an audit line with a reason code — and never a session.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::auth::Authenticator;
use crate::auth::login_client::{LoginClient, Refresh};
use crate::auth::oauth2::{CookieSettings, cookie_value};
use crate::matching::RouteAuth;
use crate::session::{LoginState, Purpose, Session, same_host_path};
use crate::state::Shared;

/// Why a callback failed: status, reason code, and what the user reads.
struct Failure {
    status: StatusCode,
    reason: &'static str,
    message: &'static str,
    provider: String,
    retry_after: Option<u64>,
}

impl Failure {
    fn new(status: StatusCode, reason: &'static str, message: &'static str) -> Self {
        Self {
            status,
            reason,
            message,
            provider: "-".into(),
            retry_after: None,
        }
    }
}

/// The client as Envoy saw it: Envoy (with `use_remote_address`) appends
/// the peer it accepted to `x-forwarded-for`, so the last entry is the one
/// it vouches for; `x-envoy-external-address` when it sets that.
fn client_address(headers: &HeaderMap) -> Option<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    get("x-envoy-external-address")
        .or_else(|| get("x-forwarded-for").and_then(|x| x.rsplit(',').next()))
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
}

pub async fn callback(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let cookie_header = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let engine = shared.engine();
    let cookies = engine.login.cookies.clone();
    let login = query
        .get("state")
        .and_then(|state| open_login_state(&engine.login.keys, &cookies, cookie_header, state));
    // Under whichever name it was set (https: `__Host-`, path `/`).
    let clear_login = query.get("state").map(|s| {
        [
            expire_cookie(&cookies.login_cookie(s, false), "/oauth2/", false),
            expire_cookie(&cookies.login_cookie(s, true), "/", true),
        ]
    });
    let wants_html =
        crate::negotiate::prefers_html(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let retry = login
        .as_ref()
        .map_or_else(|| "/".to_string(), |l| l.original.clone());
    // Failed callbacks count towards the login throttle of the route that
    // asked, per client, as failed credentials do on `Check`.
    let route = login
        .as_ref()
        .and_then(|l| engine.route_by_label(&l.route))
        .map(|r| r.id);
    let client = client_address(&headers);
    let blocked = route.and_then(|r| engine.throttle.blocked(r, client.as_deref(), None));
    let result = match blocked {
        Some(wait) => Err(Failure {
            retry_after: Some(wait),
            ..Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "Too many failed sign-ins; try again later.",
            )
        }),
        None => complete(&shared, &engine, &query, login).await,
    };
    if let (Err(_), Some(route), None) = (&result, route, blocked) {
        engine.throttle.fail(route, client.as_deref(), None);
    }
    let mut response = match result {
        Ok((set_cookie, original, provider, user)) => {
            shared.metrics.record_login(&provider, "ok");
            tracing::info!(target: "audit", event = "login", provider = %provider, user = %user);
            let mut r = (StatusCode::FOUND, [(header::LOCATION, original)]).into_response();
            append_cookie(&mut r, &set_cookie);
            r
        }
        Err(f) => {
            shared.metrics.record_login(&f.provider, f.reason);
            tracing::warn!(target: "audit", event = "login_failed", provider = %f.provider, reason = f.reason, status = f.status.as_u16());
            let mut page = error_page(f.status, f.reason, f.message, &retry, wants_html);
            if let Some(wait) = f.retry_after
                && let Ok(v) = HeaderValue::from_str(&wait.to_string())
            {
                page.headers_mut().insert(header::RETRY_AFTER, v);
            }
            page
        }
    };
    for clear in clear_login.iter().flatten() {
        append_cookie(&mut response, clear);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn open_login_state(
    keys: &crate::session::SessionKeys,
    cookies: &CookieSettings,
    cookie_header: &str,
    state: &str,
) -> Option<LoginState> {
    // A login begun on https (or by a release before the prefix) on http.
    let sealed = cookie_value(cookie_header, &cookies.login_cookie(state, true))
        .or_else(|| cookie_value(cookie_header, &cookies.login_cookie(state, false)))?;
    let login: LoginState = keys.open_json(Purpose::LoginState, sealed)?;
    let same: bool = login.state.as_bytes().ct_eq(state.as_bytes()).into();
    (same && login.expires > crate::clock::unix_secs()).then_some(login)
}

type Completed = (String, String, String, String);

async fn complete(
    shared: &Shared,
    engine: &crate::engine::Engine,
    query: &HashMap<String, String>,
    login: Option<LoginState>,
) -> Result<Completed, Failure> {
    let Some(login) = login else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "bad_state",
            "This sign-in link is invalid or has expired.",
        ));
    };
    let protected = match engine.route_by_label(&login.route).map(|r| &r.policy) {
        Some(RouteAuth::Protected(p)) => p.as_ref(),
        _ => return Err(stale()),
    };
    let authenticator = &protected.authenticator;
    let (client, provider) = match authenticator {
        Authenticator::OAuth2(o) => (&o.client, o.provider.kind.as_str().to_string()),
        Authenticator::Oidc(o) => match &o.client {
            Some(c) => (c, c.provider.clone()),
            None => return Err(stale()),
        },
        _ => return Err(stale()),
    };
    let fail = |status, reason, message| Failure {
        provider: provider.clone(),
        ..Failure::new(status, reason, message)
    };
    if query.contains_key("error") {
        return Err(fail(
            StatusCode::UNAUTHORIZED,
            "provider_error",
            "The sign-in was cancelled or refused by the identity provider.",
        ));
    }
    let Some(code) = query.get("code").filter(|c| !c.is_empty()) else {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "missing_code",
            "The identity provider sent no authorization code.",
        ));
    };
    let started = crate::clock::now();
    let result = match authenticator {
        Authenticator::OAuth2(o) => o
            .finish_login(&shared.http, code, &login)
            .await
            .map(|(identity, attrs)| (identity, attrs, None))
            .map_err(|e| (e.code(), e.to_string())),
        Authenticator::Oidc(o) => o
            .finish_login(&shared.http, code, &login)
            .await
            .map_err(|e| (e.code(), e.to_string())),
        _ => return Err(stale()),
    };
    shared
        .metrics
        .record_provider_call(&provider, result.is_ok(), started.elapsed().as_secs_f64());
    let (identity, attrs, refresh) = match result {
        Ok(done) => done,
        Err((code, error)) => {
            tracing::warn!(provider = %provider, reason = code, error = %error, "login failed at the provider");
            return Err(fail(
                StatusCode::BAD_GATEWAY,
                code,
                "The identity provider could not complete the sign-in.",
            ));
        }
    };
    let user = identity.id.clone();
    let session = new_session(client, identity, attrs, refresh);
    // The route that asked judges the new identity at once (every later
    // request is judged again by the route it reaches).
    if let Some(allow) = &protected.allow
        && let Err(condition) = allow.check(&client.identity_of(session.clone()))
    {
        tracing::info!(target: "audit", event = "login_not_allowed", provider = %provider, user = %user, condition = condition.key());
        return Err(fail(
            StatusCode::FORBIDDEN,
            "not_allowed",
            "Your account is not allowed to access this site. Sign in with another account to continue.",
        ));
    }
    let set_cookie = client
        .seal_session(session, login.redirect_uri.starts_with("https:"))
        .1;
    Ok((set_cookie, login.original, provider, user))
}

fn stale() -> Failure {
    Failure::new(
        StatusCode::BAD_REQUEST,
        "stale_login",
        "The site's configuration changed during sign-in.",
    )
}

/// A new session of `client`.
fn new_session(
    client: &LoginClient,
    identity: crate::session::Identity,
    attrs: crate::session::Attributes,
    tokens: Option<Refresh>,
) -> Session {
    let issued = crate::clock::unix_secs();
    let expires = issued + client.cookies.max_age;
    let (refresh, renew_at) = match tokens {
        Some(r) => (Some(r.token), (issued + r.renew_in).min(expires)),
        None => (None, 0),
    };
    Session {
        identity,
        provider: client.provider.clone(),
        client_id: client.client_id.clone(),
        issued,
        expires,
        refresh,
        renew_at,
        attrs,
    }
}

fn expire_cookie(name: &str, path: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Lax{secure}")
}

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn error_page(
    status: StatusCode,
    reason: &str,
    message: &str,
    retry: &str,
    html: bool,
) -> Response {
    let retry = same_host_path(retry);
    if !html {
        let body = serde_json::json!({
            "status": status.as_u16(),
            "error": status.canonical_reason().unwrap_or("Error"),
            "reason": reason,
            "message": message,
            "retry": retry,
        });
        return (
            status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body.to_string(),
        )
            .into_response();
    }
    let code = status.as_u16();
    let title = status.canonical_reason().unwrap_or("Error");
    let retry = html_escape(retry);
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{code} {title}</title></head>\
         <body><h1>Sign-in failed</h1><p>{message}</p><p><a href=\"{retry}\">Try again</a></p>\
         <p><small>{code} {title} ({reason})</small></p></body></html>\n"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Clears the session and returns to `rd` (same host only) or `/`.
pub async fn logout(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let engine = shared.engine();
    let target = same_host_path(query.get("rd").map_or("/", String::as_str)).to_string();
    let at_provider = provider_logout(&engine, &headers, &target);
    tracing::info!(target: "audit", event = "logout", at_provider = at_provider.is_some());
    let location = at_provider.unwrap_or(target);
    let mut r = (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    for expire in engine.login.cookies.expire_session() {
        append_cookie(&mut r, &expire);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// RP-initiated logout: when the session came from an oidc route with
/// `logout_at_provider: true` whose provider has an `end_session_endpoint`,
/// the browser goes there and comes back to `target` on this host.
fn provider_logout(
    engine: &crate::engine::Engine,
    headers: &HeaderMap,
    target: &str,
) -> Option<String> {
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let cookies = &engine.login.cookies;
    let cookie = cookie_value(header(header::COOKIE)?, &cookies.session_name(true))
        .or_else(|| cookie_value(header(header::COOKIE)?, &cookies.name))?;
    let session: Session = engine.login.keys.open_json(Purpose::Session, cookie)?;
    let oidc = engine.oidc_routes().find(|o| {
        o.logout_at_provider
            && o.client
                .as_ref()
                .is_some_and(|c| c.provider == session.provider && c.client_id == session.client_id)
    })?;
    let meta = oidc.discovery.metadata()?;
    let mut end = meta.end_session_endpoint.clone()?;
    let host = header(header::HOST)?;
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok());
    let scheme = match forwarded {
        Some(p)
            if engine.login.cookies.trust_forwarded_proto && p.eq_ignore_ascii_case("https") =>
        {
            "https"
        }
        _ => "http",
    };
    end.query_pairs_mut()
        .append_pair("client_id", &session.client_id)
        .append_pair(
            "post_logout_redirect_uri",
            &format!("{scheme}://{host}{target}"),
        );
    Some(end.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("/a?b=<x>&c=\"'"),
            "/a?b=&lt;x&gt;&amp;c=&quot;&#39;"
        );
    }
}
