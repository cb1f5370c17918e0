//! The sidecar's `/oauth2/callback` and `/oauth2/logout` (SPEC §6.2, §6.5);
//! OpenID back-channel logout (SPEC §13.3) is in `backchannel`.
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
use crate::cookies::CookieSettings;
use crate::engine::Engine;
use crate::matching::{Protected, RouteAuth};
use crate::request::Scheme;
use crate::session::{LoginState, Purpose, Session, same_host_path};
use crate::state::Shared;
use error::{CallbackError, ErrorPage};

mod backchannel;
mod error;
mod start;

pub use backchannel::{backchannel_logout, check_logout_token};
pub use start::start;

/// A completed sign-in.
struct SignedIn {
    set_cookie: String,
    /// Where the user was going.
    original: String,
    user: String,
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
    let cookies = &engine.login.cookies;
    let state = query.get("state");
    let login = state.and_then(|s| open_login_state(&engine, cookies, cookie_header, s));
    let html =
        crate::negotiate::prefers_html(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let retry = login.as_ref().map_or("/", |l| l.original.as_str());
    let route = login.as_ref().and_then(|l| engine.route_by_label(&l.route));
    let provider = route
        .and_then(login_client)
        .map(|(c, _)| c.provider.clone());
    let provider = provider.as_deref().unwrap_or("-");
    // Failed callbacks count towards the login throttle of the route that
    // asked, per client, as failed credentials do on `Check`.
    let client = client_address(&headers);
    let blocked = route.and_then(|r| engine.throttle.blocked(r.id, client.as_deref(), None));
    let result = match blocked {
        Some(retry_after) => Err(CallbackError::Throttled { retry_after }),
        None => complete(&shared, &engine, &query, login.as_ref(), provider).await,
    };
    let mut response = match result {
        Ok(done) => {
            shared.metrics.record_login(provider, "ok");
            tracing::info!(target: "audit", event = "login", provider = %provider, user = %done.user);
            let mut r = (StatusCode::FOUND, [(header::LOCATION, done.original)]).into_response();
            append_cookie(&mut r, &done.set_cookie);
            r
        }
        Err(error) => {
            if let (Some(route), None) = (route, blocked) {
                engine.throttle.fail(route.id, client.as_deref(), None);
                engine
                    .throttle
                    .share(route.id, client.as_deref(), None)
                    .await;
            }
            shared.metrics.record_login(provider, error.reason());
            tracing::warn!(target: "audit", event = "login_failed", provider = %provider, reason = error.reason(), status = error.status().as_u16());
            ErrorPage {
                error: &error,
                retry,
                html,
            }
            .into_response()
        }
    };
    for clear in state.iter().flat_map(|s| cookies.expire_login(s)) {
        append_cookie(&mut response, &clear);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn open_login_state(
    engine: &Engine,
    cookies: &CookieSettings,
    cookie_header: &str,
    state: &str,
) -> Option<LoginState> {
    let sealed = cookies.login_in(cookie_header, state)?;
    let login: LoginState = engine.login.keys.open_json(Purpose::LoginState, sealed)?;
    let same: bool = login
        .state
        .expose()
        .as_bytes()
        .ct_eq(state.as_bytes())
        .into();
    (same && login.expires > crate::clock::unix_secs()).then_some(login)
}

/// The login client of a route that logs users in, and its protection.
fn login_client(route: &crate::matching::Route) -> Option<(&LoginClient, &Protected)> {
    let RouteAuth::Protected(p) = &route.policy else {
        return None;
    };
    let client = match &p.methods.session()?.authenticator {
        Authenticator::OAuth2(o) => &o.client,
        Authenticator::Oidc(o) => o.client.as_ref()?,
        _ => return None,
    };
    Some((client, p))
}

async fn complete(
    shared: &Shared,
    engine: &Engine,
    query: &HashMap<String, String>,
    login: Option<&LoginState>,
    provider: &str,
) -> Result<SignedIn, CallbackError> {
    let login = login.ok_or(CallbackError::BadState)?;
    let (client, protected) = engine
        .route_by_label(&login.route)
        .and_then(login_client)
        .ok_or(CallbackError::StaleLogin)?;
    if query.contains_key("error") {
        return Err(CallbackError::Refused);
    }
    let code = query
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or(CallbackError::MissingCode)?;
    let started = crate::clock::now();
    let session_method = protected
        .methods
        .session()
        .ok_or(CallbackError::StaleLogin)?;
    let result = match &session_method.authenticator {
        Authenticator::OAuth2(o) => o
            .finish_login(&shared.http, code, login)
            .await
            .map(|(identity, attrs)| (identity, attrs, None, None)),
        Authenticator::Oidc(o) => o.finish_login(&shared.http, code, login).await,
        _ => return Err(CallbackError::StaleLogin),
    };
    shared
        .metrics
        .record_provider_call(provider, result.is_ok(), started.elapsed().as_secs_f64());
    let (identity, attrs, refresh, sid) = result.map_err(|error| {
        tracing::warn!(provider = %provider, reason = error.code(), error = %error, "login failed at the provider");
        CallbackError::Provider(error)
    })?;
    let user = identity.id.clone();
    let session = new_session(client, identity, attrs, refresh, sid);
    // The route that asked judges the new identity at once (every later
    // request is judged again by the route it reaches).
    let policies = [protected.allow.as_deref(), session_method.allow.as_deref()];
    let who = client.identity_of(session.clone());
    if let Some(condition) = policies
        .into_iter()
        .flatten()
        .find_map(|allow| allow.check(&who).err())
    {
        tracing::info!(target: "audit", event = "login_not_allowed", provider = %provider, user = %user, condition = condition.key());
        return Err(CallbackError::NotAllowed);
    }
    let scheme = Scheme::parse(login.redirect_uri.split(':').next().unwrap_or_default());
    let set_cookie = client
        .save_session(session, scheme, None)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "store: a new session could not be saved");
            CallbackError::StoreUnavailable
        })?
        .1;
    Ok(SignedIn {
        set_cookie,
        original: back_to(&engine.login.cookies, &login.original),
        user,
    })
}

/// Where a finished login goes: a same-host path, or for a login begun at
/// the login host an absolute URL under the cookie domain (checked when it
/// began, and again here); anything else `/`.
fn back_to(cookies: &CookieSettings, original: &str) -> String {
    if original.starts_with('/') {
        return same_host_path(original).to_string();
    }
    cookies
        .domain
        .as_deref()
        .and_then(|domain| crate::sso::return_url(original, domain))
        .map_or_else(|| "/".to_string(), |u| u.to_string())
}

/// A new session of `client`.
fn new_session(
    client: &LoginClient,
    identity: crate::session::Identity,
    attrs: crate::session::Attributes,
    tokens: Option<Refresh>,
    sid: Option<String>,
) -> Session {
    let issued = crate::clock::unix_secs();
    let expires = issued + client.cookies.max_age;
    let (refresh, renew_at) = match tokens {
        Some(r) => (Some(r.token), (issued + r.renew_in).min(expires)),
        None => (None, 0),
    };
    Session {
        id: crate::session::new_session_id(),
        sid,
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

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Ends the session for every replica (a revocation; with server-side
/// sessions the record goes too), clears the cookie and returns to `rd`
/// (same host only) or `/`. When the store does not answer, the session
/// stays as it was and the page says so, with a link to try again.
pub async fn logout(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let engine = shared.engine();
    let target = same_host_path(query.get("rd").map_or("/", String::as_str)).to_string();
    let html =
        crate::negotiate::prefers_html(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let session = match end_session(&shared, &engine, &headers).await {
        Ok(session) => session,
        Err(error) => {
            tracing::warn!(target: "audit", event = "logout_failed", reason = error.reason());
            return ErrorPage {
                error: &error,
                retry: "/oauth2/logout",
                html,
            }
            .into_response();
        }
    };
    let at_provider = session
        .as_ref()
        .and_then(|s| provider_logout(&engine, &headers, s, &target));
    tracing::info!(target: "audit", event = "logout", at_provider = at_provider.is_some(), user = session.as_ref().map_or("-", |s| s.identity.id.as_str()));
    let location = at_provider.unwrap_or(target);
    let mut r = (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    for expire in engine.login.cookies.expire_session() {
        append_cookie(&mut r, &expire);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The request's session, revoked on every replica (its server-side record
/// deleted). Ok(None): there was none to end.
async fn end_session(
    shared: &Shared,
    engine: &Engine,
    headers: &HeaderMap,
) -> Result<Option<Session>, CallbackError> {
    let cookie_header = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Either cookie name: logout ends whichever session the browser holds.
    let Some((value, _)) = engine
        .login
        .cookies
        .session_in(cookie_header, Scheme::Https)
    else {
        return Ok(None);
    };
    let store_down = |e: crate::store::StoreError| {
        tracing::warn!(error = %e, "store: a logout could not reach the store");
        CallbackError::LogoutUnavailable
    };
    let ticket = crate::store::records::Ticket::parse(value);
    let session = match (&ticket, shared.runtime.store()) {
        (Some(ticket), Some(store)) => store.load_session(ticket).await.map_err(store_down)?,
        (Some(_), None) => None,
        (None, _) => engine.login.keys.open_json(Purpose::Session, value),
    };
    let Some(session) = session else {
        return Ok(None);
    };
    let revocation = if session.id.is_empty() {
        // A cookie of a release without session ids: its user's sessions
        // up to now end.
        crate::store::Revocation::User {
            provider: session.provider.clone(),
            user: session.identity.id.clone(),
            before: crate::clock::unix_secs(),
        }
    } else {
        crate::store::Revocation::Session {
            id: session.id.clone(),
            until: session.expires,
        }
    };
    shared
        .runtime
        .revoke(revocation)
        .await
        .map_err(store_down)?;
    if let (Some(ticket), Some(store)) = (&ticket, shared.runtime.store()) {
        store
            .delete_session(ticket.id())
            .await
            .map_err(store_down)?;
    }
    Ok(Some(session))
}

/// RP-initiated logout: when the session came from an oidc route with
/// `logout_at_provider: true` whose provider has an `end_session_endpoint`,
/// the browser goes there and comes back to `target` on this host.
fn provider_logout(
    engine: &Engine,
    headers: &HeaderMap,
    session: &Session,
    target: &str,
) -> Option<String> {
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let cookies = &engine.login.cookies;
    let oidc = engine.oidc_routes().find(|o| {
        o.logout_at_provider
            && o.client
                .as_ref()
                .is_some_and(|c| c.provider == session.provider && c.client_id == session.client_id)
    })?;
    let meta = oidc.discovery.metadata()?;
    let mut end = meta.end_session_endpoint.clone()?;
    let host = header(header::HOST)?;
    let scheme = Scheme::of(
        header(header::HeaderName::from_static("x-forwarded-proto")),
        cookies.trust_forwarded_proto,
        "http",
    );
    end.query_pairs_mut()
        .append_pair("client_id", &session.client_id)
        .append_pair(
            "post_logout_redirect_uri",
            &format!("{}://{host}{target}", scheme.as_str()),
        );
    Some(end.to_string())
}
