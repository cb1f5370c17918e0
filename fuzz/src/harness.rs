//! One check as the service runs it, through the crate's public API
//! (`Engine::decide`, `response::to_check_response`), and what a
//! well-formed answer is.

use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, HeaderValueOption, HttpResponse,
};
use ingress_authz::decision::{Decision, Reason, Status, Verdict};
use ingress_authz::engine::Engine;
use ingress_authz::negotiate::prefers_html;
use ingress_authz::request::RequestView;
use ingress_authz::response::to_check_response;

/// What one check came to.
pub struct Outcome {
    /// The route that decided (`rules[0].paths[1]`), if any.
    pub label: Option<String>,
    /// Some(reason) for an allow.
    pub allowed: Option<Reason>,
    pub response: CheckResponse,
}

/// The check as `service::CheckService::check_one` makes it, without its
/// network: a password hash is verified on this thread (the service's
/// pool does the same work), and any other pending work (keys, a session
/// refresh, a store read) gets the answer the service gives when that
/// work cannot be done in time.
pub fn check(engine: &Engine, check: &CheckRequest) -> Outcome {
    let Ok(req) = RequestView::try_from(check) else {
        let decision = Decision::unrouted(Status::BadRequest, Reason::BadRequest);
        return Outcome {
            label: None,
            allowed: None,
            response: to_check_response(&decision, || false),
        };
    };
    let mut decision = engine.decide_inline(&req);
    if let Verdict::Pending { then, .. } = decision.verdict {
        decision.verdict = Verdict::Deny(then);
        decision = engine.settle(decision, &req);
    }
    let envoy_route = check
        .attributes
        .as_ref()
        .and_then(|a| a.context_extensions.get("route"))
        .map(String::as_str);
    decision = engine.cross_check(decision, envoy_route);
    let response = to_check_response(&decision, || prefers_html(req.header("accept")));
    let allowed = match &decision.verdict {
        Verdict::Allow { reason, .. } => Some(*reason),
        _ => None,
    };
    Outcome {
        label: decision.label.map(str::to_string),
        allowed,
        response,
    }
}

fn key_value(h: &HeaderValueOption) -> (&str, &str) {
    let hv = h
        .header
        .as_ref()
        .expect("every header option has its header");
    (hv.key.as_str(), hv.value.as_str())
}

fn assert_header(key: &str, value: &str) {
    assert!(
        !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'),
        "header name {key:?} is not a lower-case token"
    );
    assert!(
        !value.contains(['\r', '\n', '\0']),
        "header {key} carries CR, LF or NUL: {value:?}"
    );
}

/// The answer is one Envoy can act on: an OK with headers to set and
/// remove, or a denial with a status, a body and its content type; gRPC
/// code and HTTP answer agree; no header is injected (CR/LF/NUL).
pub fn assert_well_formed(response: &CheckResponse, allowed: bool) {
    let code = response.status.as_ref().expect("a status").code;
    match response.http_response.as_ref().expect("an HTTP response") {
        HttpResponse::OkResponse(ok) => {
            assert!(allowed, "an OK response for a denial");
            assert_eq!(code, 0, "an OK response with gRPC code {code}");
            for h in &ok.headers {
                let (k, v) = key_value(h);
                assert_header(k, v);
                assert!(
                    !ok.headers_to_remove.iter().any(|r| r == k),
                    "{k} is both set and removed"
                );
            }
            for r in &ok.headers_to_remove {
                assert_header(r, "");
            }
            for connect in ingress_authz::response::CONNECT_HEADERS {
                let set = ok.headers.iter().any(|h| key_value(h).0 == connect);
                let removed = ok.headers_to_remove.iter().any(|r| r == connect);
                assert!(
                    set || removed,
                    "{connect} from the client may reach the upstream"
                );
            }
        }
        HttpResponse::DeniedResponse(denied) => {
            assert!(!allowed, "a denial for an allow");
            let status = denied.status.as_ref().expect("an HTTP status").code;
            let want_grpc = match status {
                302 | 401 => 16,
                400 => 3,
                403 => 7,
                429 => 8,
                503 => 14,
                other => panic!("unexpected HTTP status {other}"),
            };
            assert_eq!(code, want_grpc, "gRPC code for HTTP {status}");
            assert!(
                !response.status.as_ref().unwrap().message.is_empty(),
                "a denial names its reason"
            );
            assert!(!denied.body.is_empty(), "a denial has a body");
            let mut content_types = 0;
            let mut location = None;
            for h in &denied.headers {
                let (k, v) = key_value(h);
                assert_header(k, v);
                match k {
                    "content-type" => content_types += 1,
                    "location" => location = Some(v),
                    "retry-after" => {
                        assert!(v.parse::<u64>().is_ok_and(|s| s >= 1), "retry-after {v:?}")
                    }
                    _ => {}
                }
            }
            assert_eq!(content_types, 1, "one content-type");
            let content_type = denied
                .headers
                .iter()
                .map(key_value)
                .find(|(k, _)| *k == "content-type")
                .map(|(_, v)| v)
                .unwrap_or_default();
            if content_type.starts_with("application/json") {
                let body: serde_json::Value =
                    serde_json::from_str(&denied.body).expect("a JSON body parses");
                assert_eq!(body["status"], status, "the body's status");
            } else {
                assert!(content_type.starts_with("text/html"), "{content_type}");
            }
            if status == 302 {
                let location = location.expect("a redirect has a location");
                url::Url::parse(location).expect("the location is an absolute URL");
            }
        }
        HttpResponse::ErrorResponse(_) => {
            panic!("the service never answers with an error response")
        }
    }
}

/// Whether a cookie name is one of ours (session or login state, any prefix).
pub fn is_our_cookie(name: &str) -> bool {
    let name = name
        .strip_prefix("__Host-")
        .or_else(|| name.strip_prefix("__Secure-"))
        .unwrap_or(name);
    name == crate::fixture::COOKIE
        || name
            .strip_prefix(crate::fixture::COOKIE)
            .is_some_and(|r| r.starts_with("_login_"))
}

/// Names in a `Cookie` header, split as an upstream would (at `;`, the
/// name before `=`, trimmed).
pub fn cookie_names(header: &str) -> impl Iterator<Item = &str> {
    header
        .split(';')
        .filter_map(|pair| pair.split_once('=').map(|(n, _)| n.trim()))
}

/// On an allow, our cookies never reach the upstream: the header is
/// removed or replaced by one without them.
pub fn assert_our_cookies_stripped(
    request_cookie: Option<&str>,
    response: &CheckResponse,
) -> Result<(), String> {
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        return Ok(());
    };
    let Some(sent) = request_cookie else {
        return Ok(());
    };
    let forwarded = if ok.headers_to_remove.iter().any(|r| r == "cookie") {
        None
    } else {
        Some(
            ok.headers
                .iter()
                .map(key_value)
                .find(|(k, _)| *k == "cookie")
                .map_or(sent, |(_, v)| v),
        )
    };
    match forwarded.and_then(|f| cookie_names(f).find(|n| is_our_cookie(n))) {
        Some(name) => Err(format!(
            "our cookie `{name}` reaches the upstream (sent: {sent:?})"
        )),
        None => Ok(()),
    }
}
