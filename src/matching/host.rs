//! Host patterns (exact, wildcard, regex) and request-host normalisation.

use std::borrow::Cow;

use regex::Regex;

use super::wildcard::Wildcard;
use crate::config::spec::HostType;

/// A compiled `rules[].host`.
#[derive(Debug, Clone)]
pub enum HostPattern {
    /// Lower-cased host; looked up in a hash map.
    Exact(String),
    /// `*` matches one or more characters, across labels.
    Wildcard(Wildcard),
    /// Anchored to the whole host, case-insensitive.
    Regex(Regex),
}

/// Why a `rules[].host` or `paths[].path` does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// `[...]` that is not an IPv6 address.
    #[error("`{0}` is not a valid bracketed IPv6 address")]
    Ipv6(String),
    /// A host with `:port`.
    #[error("host must not include a port (the port is stripped from requests)")]
    Port,
    /// A host regex that does not compile (the regex crate's one-line reason).
    #[error("invalid host regex: {0}")]
    HostRegex(String),
    /// A path regex that does not compile.
    #[error("invalid path regex: {0}")]
    PathRegex(String),
}

/// Characters that make an `auto` host a regex (SPEC §4).
const REGEX_CHARS: &[char] = &['(', ')', '[', ']', '^', '$', '|', '+', '?', '\\'];

impl HostPattern {
    pub fn compile(host: &str, host_type: HostType) -> Result<Self, PatternError> {
        // A bracketed IPv6 literal is an exact host, not a regex class.
        if let Some(inside) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))
            && matches!(host_type, HostType::Auto | HostType::Exact)
        {
            return inside
                .parse::<std::net::Ipv6Addr>()
                .map(|ip| Self::Exact(ip.to_string()))
                .map_err(|_| PatternError::Ipv6(host.to_string()));
        }
        let kind = match host_type {
            HostType::Auto if host.contains(REGEX_CHARS) => HostType::Regex,
            HostType::Auto if host.contains('*') => HostType::Wildcard,
            HostType::Auto => HostType::Exact,
            other => other,
        };
        match kind {
            HostType::Regex => Regex::new(&format!("(?i)^(?:{host})$"))
                .map(HostPattern::Regex)
                .map_err(|e| PatternError::HostRegex(regex_error_detail(&e))),
            HostType::Wildcard if host.contains('*') => Ok(Self::Wildcard(Wildcard::new(host))),
            HostType::Wildcard => Ok(Self::Exact(host.to_ascii_lowercase())),
            _ => {
                if host.contains(':') && !host.starts_with('[') {
                    return Err(PatternError::Port);
                }
                Ok(Self::Exact(host.trim_end_matches('.').to_ascii_lowercase()))
            }
        }
    }

    /// Matches an already normalised host (see [`normalize_host`]).
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => h == host,
            Self::Wildcard(w) => w.matches(host),
            Self::Regex(re) => re.is_match(host),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exact(_) => "exact",
            Self::Wildcard(_) => "wildcard",
            Self::Regex(_) => "regex",
        }
    }
}

/// The last line of a regex syntax error (the one that says what is
/// wrong; the lines above repeat the pattern with a caret).
pub(super) fn regex_error_detail(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines().last().unwrap_or(&text).trim().to_string()
}

/// Why a request's `Host` is refused (400 `bad_host`) before any lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("empty host")]
    Empty,
    #[error("host longer than 253 bytes")]
    TooLong,
    #[error("userinfo (`user@`) in the host")]
    Userinfo,
    #[error("the port is not 1 to 5 digits")]
    BadPort,
    #[error("more than one `:` outside brackets")]
    ExtraColon,
    #[error("an empty or over-long label")]
    BadLabel,
    #[error("a character outside host-name syntax")]
    BadCharacter,
    #[error("an invalid bracketed IPv6 address")]
    BadIpv6,
}

/// Checks a request's `Host`/`:authority` (SPEC §13.2): a host name of
/// letters, digits, `-` and `_` in labels of 1 to 63 bytes (a trailing dot
/// allowed), or a bracketed IPv6 literal, then optionally `:` and 1 to 5
/// digits. Everything else — userinfo, a second port, `host:x` — is
/// refused rather than matched as some other host. Linear in the input.
pub fn check_host(raw: &str) -> Result<(), HostError> {
    let bytes = raw.as_bytes();
    if bytes.is_empty() {
        return Err(HostError::Empty);
    }
    // 253 bytes of name, a trailing dot and `:65535` at most: a longer
    // host is refused without being read.
    if bytes.len() > 253 + 1 + 6 {
        return Err(HostError::TooLong);
    }
    if bytes[0] == b'[' {
        return check_bracketed(raw);
    }
    // One pass over the name: it runs on every check.
    let mut label = 0usize;
    let mut name_end = bytes.len();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => {
                label += 1;
                if label > 63 {
                    return Err(HostError::BadLabel);
                }
            }
            b'.' if label == 0 => return Err(HostError::BadLabel),
            b'.' => label = 0,
            b':' => {
                name_end = i;
                break;
            }
            b'@' => return Err(HostError::Userinfo),
            _ => return Err(HostError::BadCharacter),
        }
    }
    // Ended on a dot (a trailing dot is allowed) or on nothing at all.
    if label == 0 && name_end == 0 {
        return Err(HostError::BadLabel);
    }
    let name_len = name_end - usize::from(bytes[name_end - 1] == b'.');
    if name_len > 253 {
        return Err(HostError::TooLong);
    }
    match raw.get(name_end + 1..) {
        None => Ok(()),
        Some(port) if port.contains('@') => Err(HostError::Userinfo),
        Some(port) if port.contains(':') => Err(HostError::ExtraColon),
        Some(port) if port_ok(port) => Ok(()),
        Some(_) => Err(HostError::BadPort),
    }
}

fn port_ok(port: &str) -> bool {
    (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
}

/// `[IPv6]` with an optional port.
fn check_bracketed(raw: &str) -> Result<(), HostError> {
    if raw.contains('@') {
        return Err(HostError::Userinfo);
    }
    let (inside, after) = raw[1..].split_once(']').ok_or(HostError::BadIpv6)?;
    inside
        .parse::<std::net::Ipv6Addr>()
        .map_err(|_| HostError::BadIpv6)?;
    match after {
        "" => Ok(()),
        _ => match after.strip_prefix(':') {
            Some(port) if port_ok(port) => Ok(()),
            Some(_) => Err(HostError::BadPort),
            None => Err(HostError::BadCharacter),
        },
    }
}

/// Strips the port (and IPv6 brackets, writing the address in its one
/// canonical form) and a trailing dot; lower-cases. Borrows when nothing
/// changes.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = if let Some(rest) = raw.strip_prefix('[') {
        let inside = rest.split_once(']').map_or(rest, |(inside, _)| inside);
        return match inside.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => Cow::Owned(ip.to_string()),
            Err(_) => Cow::Owned(inside.to_ascii_lowercase()),
        };
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_syntax_table() {
        let long_label = format!("{}.example.com", "a".repeat(64));
        let too_long = format!("{}com", "a.".repeat(127));
        let cases: &[(&str, Result<(), HostError>)] = &[
            ("example.com", Ok(())),
            ("Example.COM.", Ok(())),
            ("example.com:8080", Ok(())),
            ("my_service:80", Ok(())),
            ("[::1]", Ok(())),
            ("[2001:db8::1]:443", Ok(())),
            ("", Err(HostError::Empty)),
            ("admin.example.com:80:80", Err(HostError::ExtraColon)),
            ("host:x", Err(HostError::BadPort)),
            ("host:", Err(HostError::BadPort)),
            ("host:123456", Err(HostError::BadPort)),
            ("u@host", Err(HostError::Userinfo)),
            ("a..b", Err(HostError::BadLabel)),
            (".a", Err(HostError::BadLabel)),
            (&long_label, Err(HostError::BadLabel)),
            (&too_long, Err(HostError::TooLong)),
            ("a b", Err(HostError::BadCharacter)),
            ("a/b", Err(HostError::BadCharacter)),
            ("[::1", Err(HostError::BadIpv6)),
            ("[zz::1]", Err(HostError::BadIpv6)),
            ("[::1]x", Err(HostError::BadCharacter)),
            ("[::1]:x", Err(HostError::BadPort)),
        ];
        for (host, want) in cases {
            assert_eq!(check_host(host), *want, "{host:?}");
        }
    }

    #[test]
    fn bracketed_ipv6_rules_and_requests_meet_in_one_form() {
        let rule = HostPattern::compile("[2001:DB8:0::1]", HostType::Auto).unwrap();
        assert_eq!(rule.kind(), "exact");
        for request in ["[2001:db8::1]", "[2001:0db8:0:0::1]:8443"] {
            assert!(rule.matches(&normalize_host(request)), "{request}");
        }
        assert!(HostPattern::compile("[not-ipv6]", HostType::Auto).is_err());
    }

    fn m(pattern: &str, host: &str) -> bool {
        HostPattern::compile(pattern, HostType::Auto)
            .unwrap()
            .matches(&normalize_host(host))
    }

    #[test]
    fn host_normalisation_table() {
        for (raw, want) in [
            ("example.com", "example.com"),
            ("Example.COM", "example.com"),
            ("example.com:8080", "example.com"),
            ("EXAMPLE.com:443", "example.com"),
            ("example.com.", "example.com"),
            ("[::1]:8080", "::1"),
            ("[::1]", "::1"),
            ("", ""),
        ] {
            assert_eq!(normalize_host(raw), want, "{raw}");
        }
    }

    #[test]
    fn auto_detects_kind() {
        let kind = |h: &str| HostPattern::compile(h, HostType::Auto).unwrap().kind();
        assert_eq!(kind("example.com"), "exact");
        assert_eq!(kind("*.example.com"), "wildcard");
        assert_eq!(kind("^t-(\\w+).example.work"), "regex");
        assert_eq!(kind("a|b"), "regex");
    }

    #[test]
    fn matching_table() {
        let cases = [
            ("example.com", "example.com", true),
            ("example.com", "EXAMPLE.com:80", true),
            ("example.com", "www.example.com", false),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.example.com.evil.com", false),
            ("*.example.com", "A.Example.Com:8443", true),
            ("api.*.example.com", "api.eu.example.com", true),
            ("api.*.example.com", "api..example.com", false),
            ("^t-(\\w+).example.work", "t-x.example.work", true),
            ("^t-(\\w+).example.work", "t-x.example.work.evil.com", false),
            ("^t-(\\w+).example.work", "T-X.EXAMPLE.WORK", true),
            ("(a|b).example.com", "a.example.com", true),
            ("(a|b).example.com", "xa.example.com", false),
        ];
        for (pattern, host, want) in cases {
            assert_eq!(m(pattern, host), want, "{pattern} vs {host}");
        }
    }

    #[test]
    fn forced_types() {
        let exact = HostPattern::compile("a*b", HostType::Exact).unwrap();
        assert!(exact.matches("a*b") && !exact.matches("axxb"));
        let re = HostPattern::compile("a.c", HostType::Regex).unwrap();
        assert!(re.matches("abc"));
        let wc = HostPattern::compile("a.c", HostType::Wildcard).unwrap();
        assert!(!wc.matches("abc"));
    }

    #[test]
    fn invalid_patterns_are_errors() {
        assert!(HostPattern::compile("(unclosed", HostType::Auto).is_err());
        assert!(HostPattern::compile("example.com:8080", HostType::Auto).is_err());
    }
}
