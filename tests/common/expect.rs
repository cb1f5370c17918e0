//! Assertions on what came back through Envoy.

use super::Response;

pub const BASIC_CHALLENGE: &str = r#"Basic realm="Restricted", charset="UTF-8""#;
pub const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;

/// A 401 from ingress-authz (not from the upstream), with its challenge and
/// the default JSON body.
#[track_caller]
pub fn assert_401(response: &Response, challenge: &str) {
    assert_eq!(response.status, 401, "body: {}", response.text());
    assert_eq!(response.header("www-authenticate"), Some(challenge));
    assert_eq!(
        response.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = response.json();
    assert_eq!(body["status"], 401);
    assert_eq!(body["error"], "Unauthorized");
    assert!(body["message"].is_string(), "{body}");
}

/// A 200 that the upstream itself produced.
#[track_caller]
pub fn assert_upstream_ok(response: &Response) {
    assert_eq!(response.status, 200, "body: {}", response.text());
    assert_eq!(response.json()["upstream"], true);
}
