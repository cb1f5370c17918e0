//! How a failed `/oauth2/callback` answers: the reasons, each with its
//! status, stable code and message, and the page (HTML for a browser, JSON
//! for an API client) with a retry link.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::LoginError;
use crate::session::same_host_path;

/// Why a callback failed. Each has a status, a stable reason code (metrics,
/// audit lines and the page) and what the user reads.
#[derive(Debug)]
pub(super) enum CallbackError {
    /// The login throttle of the route that asked is closed for this client.
    Throttled { retry_after: u64 },
    /// No login-state cookie matching `state`, or it expired.
    BadState,
    /// The route that asked is gone or no longer a login route.
    StaleLogin,
    /// The provider sent `error=` (the user cancelled, or it refused).
    Refused,
    /// No authorization code.
    MissingCode,
    /// The code exchange or the profile failed at the provider.
    Provider(LoginError),
    /// The route's policy refuses the identity.
    NotAllowed,
    /// `/oauth2/start` on a host that is not the login host (or none is configured).
    NotLoginHost,
    /// `/oauth2/start` with a return URL outside the cookie domain, or one
    /// the named route does not serve.
    BadReturn,
    /// OpenID discovery has not succeeded yet.
    IdpUnavailable,
    /// The session store did not answer: no session could be saved, or a
    /// logout could not reach every replica.
    StoreUnavailable,
    /// A logout could not reach the store: the session may still be valid
    /// on other replicas, so the user is asked to try again.
    LogoutUnavailable,
}

impl CallbackError {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Self::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadState | Self::StaleLogin | Self::MissingCode => StatusCode::BAD_REQUEST,
            Self::Refused => StatusCode::UNAUTHORIZED,
            Self::Provider(_) => StatusCode::BAD_GATEWAY,
            Self::NotAllowed => StatusCode::FORBIDDEN,
            Self::NotLoginHost => StatusCode::NOT_FOUND,
            Self::BadReturn => StatusCode::BAD_REQUEST,
            Self::IdpUnavailable | Self::StoreUnavailable | Self::LogoutUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The reason code, stable across releases.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::BadState => "bad_state",
            Self::StaleLogin => "stale_login",
            Self::Refused => "provider_error",
            Self::MissingCode => "missing_code",
            Self::Provider(error) => error.code(),
            Self::NotAllowed => "not_allowed",
            Self::NotLoginHost => "not_login_host",
            Self::BadReturn => "bad_return",
            Self::IdpUnavailable => "idp_unavailable",
            Self::StoreUnavailable | Self::LogoutUnavailable => "store_unavailable",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "Too many failed sign-ins; try again later.",
            Self::BadState => "This sign-in link is invalid or has expired.",
            Self::StaleLogin => "The site's configuration changed during sign-in.",
            Self::Refused => "The sign-in was cancelled or refused by the identity provider.",
            Self::MissingCode => "The identity provider sent no authorization code.",
            Self::Provider(_) => "The identity provider could not complete the sign-in.",
            Self::NotAllowed => {
                "Your account is not allowed to access this site. Sign in with another account to continue."
            }
            Self::NotLoginHost => "Sign-in does not start on this host.",
            Self::BadReturn => {
                "The address to return to after sign-in is not one this site serves."
            }
            Self::IdpUnavailable => "The identity provider is unavailable.",
            Self::StoreUnavailable => "The session store is unavailable; try again in a moment.",
            Self::LogoutUnavailable => {
                "Signing out could not reach every server: you may still be signed in. Try again in a moment."
            }
        }
    }
}

/// A failed callback as the browser (HTML) or an API client (JSON) sees it.
pub(super) struct ErrorPage<'a> {
    pub(super) error: &'a CallbackError,
    /// A same-host path (anything else becomes `/`), or an absolute URL
    /// the caller checked against the cookie domain.
    pub(super) retry: &'a str,
    pub(super) html: bool,
}

impl IntoResponse for ErrorPage<'_> {
    fn into_response(self) -> Response {
        let error = self.error;
        let heading = match error {
            CallbackError::LogoutUnavailable => "Sign-out failed",
            _ => "Sign-in failed",
        };
        let mut page = error_page(
            heading,
            error.status(),
            error.reason(),
            error.message(),
            self.retry,
            self.html,
        );
        if let CallbackError::Throttled { retry_after } = error {
            page.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        page
    }
}

fn error_page(
    heading: &str,
    status: StatusCode,
    reason: &str,
    message: &str,
    retry: &str,
    html: bool,
) -> Response {
    let retry = if is_absolute_http(retry) {
        retry
    } else {
        same_host_path(retry)
    };
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
         <body><h1>{heading}</h1><p>{message}</p><p><a href=\"{retry}\">Try again</a></p>\
         <p><small>{code} {title} ({reason})</small></p></body></html>\n"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// An absolute http(s) URL (a return URL under the cookie domain, checked
/// where it was accepted).
fn is_absolute_http(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
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
