//! The parts of Envoy's `CheckRequest` that decisions use, validated once.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::CheckRequest;

/// A borrowed view of the HTTP request inside a `CheckRequest`.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// `:authority`, as sent (port and case not yet normalised).
    pub host: &'a str,
    /// Path with query, as sent.
    pub path: &'a str,
    pub method: &'a str,
    pub scheme: &'a str,
    /// Lower-cased header names (Envoy's contract).
    pub headers: &'a HashMap<String, String>,
    /// The downstream client address, for audit lines.
    pub client: Option<&'a str>,
}

/// Why a `CheckRequest` could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("CheckRequest has no attributes.request.http")]
    MissingHttp,
}

impl<'a> TryFrom<&'a CheckRequest> for RequestView<'a> {
    type Error = RequestError;

    fn try_from(check: &'a CheckRequest) -> Result<Self, Self::Error> {
        let attributes = check.attributes.as_ref().ok_or(RequestError::MissingHttp)?;
        let http = attributes
            .request
            .as_ref()
            .and_then(|r| r.http.as_ref())
            .ok_or(RequestError::MissingHttp)?;
        let client = attributes
            .source
            .as_ref()
            .and_then(|s| s.address.as_ref())
            .and_then(|a| match &a.address {
                Some(
                    envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(sa),
                ) => Some(sa.address.as_str()),
                _ => None,
            });
        Ok(RequestView {
            host: &http.host,
            path: &http.path,
            method: &http.method,
            scheme: &http.scheme,
            headers: &http.headers,
            client,
        })
    }
}

impl<'a> RequestView<'a> {
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The credentials of `Authorization: <scheme> <credentials>` when the
    /// scheme matches case-insensitively (RFC 7235); None otherwise.
    pub fn authorization(&self, scheme: &str) -> Option<&'a str> {
        parse_authorization(self.header("authorization")?, scheme)
    }
}

pub fn parse_authorization<'v>(value: &'v str, scheme: &str) -> Option<&'v str> {
    let value = value.trim_start();
    let (given, rest) = value.split_once([' ', '\t'])?;
    if !given.eq_ignore_ascii_case(scheme) {
        return None;
    }
    let credentials = rest.trim();
    // Several Authorization headers arrive joined by `,`: ambiguous, refuse.
    if credentials.is_empty() || credentials.contains([',', ' ', '\t']) {
        return None;
    }
    Some(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_parsing_table() {
        let cases = [
            ("Basic abc", "basic", Some("abc")),
            ("basic abc", "basic", Some("abc")),
            ("BASIC   abc  ", "basic", Some("abc")),
            ("Bearer tok", "basic", None),
            ("Basic", "basic", None),
            ("Basic ", "basic", None),
            ("Basicabc", "basic", None),
            ("Bearer a, Bearer b", "bearer", None),
            ("Bearer a b", "bearer", None),
            ("Bearer\ttok", "bearer", Some("tok")),
            ("", "bearer", None),
        ];
        for (value, scheme, want) in cases {
            assert_eq!(parse_authorization(value, scheme), want, "{value:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn header_parsing_never_panics(v in "\\PC*", s in "[a-zA-Z]{0,8}") {
            if let Some(c) = parse_authorization(&v, &s) {
                proptest::prop_assert!(!c.is_empty() && !c.contains(' '));
            }
        }
    }
}
