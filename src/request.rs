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

/// The scheme the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// `https` (any case) is https; anything else is http.
    pub fn parse(s: &str) -> Self {
        if s.trim().eq_ignore_ascii_case("https") {
            Self::Https
        } else {
            Self::Http
        }
    }

    /// Whether cookies set on it are `Secure` (and `__Host-` prefixed).
    pub fn is_secure(self) -> bool {
        self == Self::Https
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    /// `x-forwarded-proto` (its first entry) when trusted (Envoy sets it),
    /// else the scheme the request came with.
    pub fn of(forwarded_proto: Option<&str>, trusted: bool, own: &str) -> Self {
        match forwarded_proto.filter(|_| trusted) {
            Some(p) => Self::parse(p.split(',').next().unwrap_or_default()),
            None => Self::parse(own),
        }
    }
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

    /// The value of cookie `name`, if the request carries it.
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        crate::cookies::value(self.header("cookie")?, name)
    }

    /// The scheme the client used: `x-forwarded-proto` when trusted (Envoy
    /// sets it), else the CheckRequest's own.
    pub fn scheme(&self, trust_forwarded_proto: bool) -> Scheme {
        Scheme::of(
            self.header("x-forwarded-proto"),
            trust_forwarded_proto,
            self.scheme,
        )
    }

    /// SPEC §6.1: `Sec-Fetch-Mode: navigate`; without Sec-Fetch headers, a
    /// GET/HEAD whose Accept lists `text/html` explicitly.
    pub fn is_navigation(&self) -> bool {
        if let Some(mode) = self.header("sec-fetch-mode") {
            return mode.trim().eq_ignore_ascii_case("navigate");
        }
        (self.method.eq_ignore_ascii_case("GET") || self.method.eq_ignore_ascii_case("HEAD"))
            && self.header("accept").is_some_and(|a| {
                a.split(',')
                    .map(|m| m.split(';').next().unwrap_or_default().trim())
                    .any(|m| m.eq_ignore_ascii_case("text/html"))
            })
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
    use std::collections::HashMap;

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

    fn view<'a>(method: &'a str, headers: &'a HashMap<String, String>) -> RequestView<'a> {
        RequestView {
            host: "a.com",
            path: "/",
            method,
            scheme: "http",
            headers,
            client: None,
        }
    }

    #[test]
    fn navigation_table() {
        let h = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let cases = [
            ("GET", h(&[("sec-fetch-mode", "navigate")]), true),
            (
                "GET",
                h(&[("sec-fetch-mode", "cors"), ("accept", "text/html")]),
                false,
            ),
            (
                "GET",
                h(&[("accept", "text/html,application/xhtml+xml")]),
                true,
            ),
            ("HEAD", h(&[("accept", "text/html")]), true),
            ("GET", h(&[("accept", "*/*")]), false),
            ("GET", h(&[("accept", "application/json")]), false),
            ("POST", h(&[("accept", "text/html")]), false),
            ("GET", h(&[]), false),
        ];
        for (method, headers, want) in cases {
            assert_eq!(
                view(method, &headers).is_navigation(),
                want,
                "{method} {headers:?}"
            );
        }
    }

    #[test]
    fn forwarded_proto_is_honoured_only_when_trusted() {
        let headers: HashMap<String, String> =
            [("x-forwarded-proto".to_string(), "https".to_string())].into();
        let req = view("GET", &headers);
        assert_eq!(req.scheme(true), Scheme::Https);
        assert_eq!(req.scheme(false), Scheme::Http);
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
