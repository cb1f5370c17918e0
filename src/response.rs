//! Decision → Envoy `CheckResponse`: the one place a decision becomes wire data.

use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::google::rpc;

use crate::auth::Denial;
use crate::decision::{Decision, Status, Verdict};

/// Identity headers only we may set: removed from every allowed request.
pub const CONNECT_HEADERS: [&str; 2] = ["x-connect-token", "x-connect-timestamp"];

const GRPC_OK: i32 = 0;
const GRPC_PERMISSION_DENIED: i32 = 7;
const GRPC_UNAUTHENTICATED: i32 = 16;
const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_UNAVAILABLE: i32 = 14;
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;

const JSON: &str = "application/json; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// Title and message per status, chosen so a denial never says which part
/// of a credential was wrong.
fn wording(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Found => ("Found", "Redirecting to sign in."),
        Status::BadRequest => ("Bad Request", "The request path is not valid."),
        Status::Unauthorized => (
            "Unauthorized",
            "Authentication is required to access this resource.",
        ),
        Status::Forbidden => ("Forbidden", "Access to this resource is not allowed."),
        Status::TooManyRequests => ("Too Many Requests", "Too many requests; try again later."),
        Status::ServiceUnavailable => (
            "Service Unavailable",
            "The identity provider is unavailable.",
        ),
    }
}

/// What a `not_allowed` denial says: the identity is known, the route
/// refuses it.
const NOT_ALLOWED: &str = "Your account is not allowed to access this resource.";

fn words(denial: &Denial<'_>) -> (&'static str, &'static str) {
    let (error, message) = wording(denial.status);
    match denial.reason {
        crate::decision::Reason::NotAllowed => (error, NOT_ALLOWED),
        crate::decision::Reason::BadHost => (error, "The request host is not valid."),
        crate::decision::Reason::StoreUnavailable => (
            error,
            "The session store is unavailable; try again in a moment.",
        ),
        _ => (error, message),
    }
}

fn json_body(denial: &Denial<'_>) -> String {
    let (error, message) = words(denial);
    let status = denial.status.code();
    serde_json::json!({ "status": status, "error": error, "message": message }).to_string()
}

fn html_body(denial: &Denial<'_>) -> String {
    let (error, message) = words(denial);
    let code = denial.status.code();
    // Never a redirect for a refused identity (that would loop through the
    // provider): a page, with a way to sign in as someone else.
    let switch = if denial.switch_account {
        "<p><a href=\"/oauth2/logout\">Sign in with another account</a></p>"
    } else {
        ""
    };
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{code} {error}</title></head>\
         <body><h1>{code} {error}</h1><p>{message}</p>{switch}</body></html>\n"
    )
}

fn header(key: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value: value.to_string(),
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: action.into(),
        keep_empty_value: false,
    }
}

/// `wants_html` is asked only for a denial (an allow has no body).
pub fn to_check_response(
    decision: &Decision<'_>,
    wants_html: impl FnOnce() -> bool,
) -> CheckResponse {
    match &decision.verdict {
        Verdict::Allow {
            upstream, remove, ..
        } => allow(upstream, remove),
        Verdict::Deny(denial) | Verdict::Pending { then: denial, .. } => deny(denial, wants_html()),
    }
}

/// Client copies of the connect headers are always removed; when we set
/// them ourselves, overwriting replaces any client copy instead (removal
/// would run after the set and drop ours).
fn allow(upstream: &[(&str, String)], remove: &[&str]) -> CheckResponse {
    let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd;
    let headers = upstream
        .iter()
        .map(|(k, v)| header(k, v, overwrite))
        .collect();
    let mut headers_to_remove: Vec<String> = Vec::new();
    for h in CONNECT_HEADERS.iter().chain(remove) {
        if !upstream.iter().any(|(k, _)| k == h) && !headers_to_remove.iter().any(|r| r == h) {
            headers_to_remove.push(h.to_string());
        }
    }
    CheckResponse {
        status: Some(rpc::Status {
            code: GRPC_OK,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn deny(denial: &Denial<'_>, wants_html: bool) -> CheckResponse {
    // SPEC §6: a request that is not a navigation gets JSON when it needs
    // to log in, whatever its Accept says (it is a script, not a page).
    let html = wants_html && denial.reason != crate::decision::Reason::LoginRequired;
    let (content_type, body) = if html {
        (HTML, html_body(denial))
    } else {
        (JSON, json_body(denial))
    };
    let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd;
    let mut headers = vec![
        header("content-type", content_type, overwrite),
        header("cache-control", "no-store", overwrite),
    ];
    if let Some(seconds) = denial.retry_after {
        headers.push(header("retry-after", &seconds.to_string(), overwrite));
    }
    if let Some(challenge) = denial.challenge {
        headers.push(header("www-authenticate", challenge, overwrite));
    }
    if let Some(redirect) = &denial.redirect {
        headers.push(header("location", &redirect.location, overwrite));
        // A redirect to the login host sets nothing here: the login host
        // sets its own login state.
        if !redirect.set_cookie.is_empty() {
            headers.push(header(
                "set-cookie",
                &redirect.set_cookie,
                HeaderAppendAction::AppendIfExistsOrAdd,
            ));
        }
    }
    let grpc_code = match denial.status {
        Status::Found => GRPC_UNAUTHENTICATED,
        Status::Unauthorized => GRPC_UNAUTHENTICATED,
        Status::Forbidden => GRPC_PERMISSION_DENIED,
        Status::BadRequest => GRPC_INVALID_ARGUMENT,
        Status::TooManyRequests => GRPC_RESOURCE_EXHAUSTED,
        Status::ServiceUnavailable => GRPC_UNAVAILABLE,
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: grpc_code,
            message: denial.reason.code().to_string(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(denial.status.code()),
            }),
            headers,
            body,
        })),
        ..Default::default()
    }
}

/// Adds a `Set-Cookie` for the client (a refreshed or ended session) to an
/// allow (as a response header) or a denial.
pub fn add_set_cookie(response: &mut CheckResponse, cookie: &str) {
    let h = header(
        "set-cookie",
        cookie,
        HeaderAppendAction::AppendIfExistsOrAdd,
    );
    match &mut response.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok.response_headers_to_add.push(h),
        Some(HttpResponse::DeniedResponse(denied)) => denied.headers.push(h),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Reason;

    #[test]
    fn json_denial_has_the_spec_body() {
        let body: serde_json::Value = serde_json::from_str(&json_body(&Denial::status(
            Status::Unauthorized,
            Reason::MissingCredentials,
        )))
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status":401,"error":"Unauthorized","message":"Authentication is required to access this resource."})
        );
    }

    #[test]
    fn a_refused_login_identity_gets_a_page_to_switch_account() {
        let d = Denial::not_allowed(
            crate::decision::Condition::Groups,
            crate::decision::AuthKind::Oidc,
        );
        let Some(HttpResponse::DeniedResponse(denied)) = deny(&d, true).http_response else {
            panic!("not denied")
        };
        assert_eq!(denied.status.unwrap().code, 403);
        assert!(
            denied.body.contains("href=\"/oauth2/logout\""),
            "{}",
            denied.body
        );
        assert!(
            !denied
                .headers
                .iter()
                .any(|h| h.header.as_ref().unwrap().key == "location")
        );
        let basic = Denial::not_allowed(
            crate::decision::Condition::Users,
            crate::decision::AuthKind::Basic,
        );
        let Some(HttpResponse::DeniedResponse(denied)) = deny(&basic, true).http_response else {
            panic!("not denied")
        };
        assert!(!denied.body.contains("/oauth2/logout"));
    }

    #[test]
    fn denial_carries_status_challenge_and_type() {
        let d = Denial {
            status: Status::Unauthorized,
            reason: Reason::MissingCredentials,
            challenge: Some("Basic realm=\"R\", charset=\"UTF-8\""),
            redirect: None,
            condition: None,
            switch_account: false,
            retry_after: None,
        };
        let resp = deny(&d, true);
        let Some(HttpResponse::DeniedResponse(denied)) = resp.http_response else {
            panic!("not denied")
        };
        assert_eq!(denied.status.unwrap().code, 401);
        let get = |k: &str| {
            denied
                .headers
                .iter()
                .find(|h| h.header.as_ref().unwrap().key == k)
                .map(|h| h.header.as_ref().unwrap().value.clone())
        };
        assert_eq!(
            get("www-authenticate").unwrap(),
            "Basic realm=\"R\", charset=\"UTF-8\""
        );
        assert_eq!(get("content-type").unwrap(), HTML);
        assert!(denied.body.contains("401 Unauthorized"));
        assert_eq!(resp.status.unwrap().code, GRPC_UNAUTHENTICATED);
    }

    #[test]
    fn allow_strips_connect_headers() {
        let Some(HttpResponse::OkResponse(ok)) = allow(&[], &[]).http_response else {
            panic!("not ok")
        };
        assert_eq!(
            ok.headers_to_remove,
            ["x-connect-token", "x-connect-timestamp"]
        );
        let set = [
            ("x-connect-token", "t".to_string()),
            ("x-connect-timestamp", "1".to_string()),
        ];
        let Some(HttpResponse::OkResponse(ok)) = allow(&set, &["cookie"]).http_response else {
            panic!("not ok")
        };
        assert_eq!(ok.headers_to_remove, ["cookie"]);
        assert_eq!(ok.headers.len(), 2);
    }
}
