//! `/oauth2/start` on the login host (`authz.login_host`): a login that a
//! host under the cookie domain sent here begins at the provider with the
//! login host's one registered callback, and returns to that host.
//!
//! What the query says is never trusted to widen access: the return URL
//! must be under the cookie domain (no open redirect), and the route it
//! names must be the very route this config gives that URL — it only picks
//! which provider signs the user in, and every later request is judged by
//! the route it reaches.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{CallbackError, ErrorPage};
use crate::auth::AuthResult;
use crate::decision::{Pending, Redirect};
use crate::engine::Engine;
use crate::matching::RouteAuth;
use crate::request::RequestView;
use crate::state::Shared;

pub async fn start(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let engine = shared.engine();
    let html =
        crate::negotiate::prefers_html(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let mut response = match begin(&engine, &query, &headers) {
        Ok(redirect) => {
            let mut r =
                (StatusCode::FOUND, [(header::LOCATION, redirect.location)]).into_response();
            if let Ok(v) = HeaderValue::from_str(&redirect.set_cookie) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(error) => {
            tracing::warn!(target: "audit", event = "login_failed", reason = error.reason(), status = error.status().as_u16());
            ErrorPage {
                error: &error,
                retry: "/",
                html,
            }
            .into_response()
        }
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The redirect to the provider and the login-state cookie, or why not.
fn begin(
    engine: &Engine,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Redirect, CallbackError> {
    let cookies = &engine.login.cookies;
    let (Some(domain), Some(login_host)) = (&cookies.domain, &cookies.login_host) else {
        return Err(CallbackError::NotLoginHost);
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if *crate::matching::host::normalize_host(host) != **login_host {
        return Err(CallbackError::NotLoginHost);
    }
    let return_to = query
        .get("rd")
        .and_then(|rd| crate::sso::return_url(rd, domain))
        .ok_or(CallbackError::BadReturn)?;
    let label = query.get("route").ok_or(CallbackError::BadReturn)?;
    let route = engine
        .route_by_label(label)
        .ok_or(CallbackError::StaleLogin)?;
    let RouteAuth::Protected(protected) = &route.policy else {
        return Err(CallbackError::StaleLogin);
    };
    // The named route must be the one the return URL reaches.
    let target = &return_to[url::Position::BeforePath..];
    let path = crate::matching::path::normalize(target).map_err(|_| CallbackError::BadReturn)?;
    let reached = engine
        .find(return_to.host_str().unwrap_or_default(), &path)
        .route()
        .map(|r| r.id);
    if reached != Some(route.id) {
        return Err(CallbackError::BadReturn);
    }
    // The login begins as a navigation on the login host would: its
    // scheme, its callback, its host-only login-state cookie.
    let mut seen = HashMap::from([("sec-fetch-mode".to_string(), "navigate".to_string())]);
    if let Some(proto) = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        seen.insert("x-forwarded-proto".into(), proto.to_string());
    }
    let req = RequestView {
        host,
        path: crate::sso::START_PATH,
        method: "GET",
        scheme: "http",
        headers: &seen,
        client: None,
    };
    let Some(login) = protected.methods.session() else {
        return Err(CallbackError::StaleLogin);
    };
    match login
        .authenticator
        .login_returning(&req, label, return_to.as_str())
    {
        AuthResult::Deny(denial) => denial.redirect.ok_or(CallbackError::StaleLogin),
        AuthResult::Pending {
            work: Pending::FetchKeys,
            ..
        } => Err(CallbackError::IdpUnavailable),
        _ => Err(CallbackError::StaleLogin),
    }
}
