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

/// Characters that make an `auto` host a regex (SPEC §4).
const REGEX_CHARS: &[char] = &['(', ')', '[', ']', '^', '$', '|', '+', '?', '\\'];

impl HostPattern {
    pub fn compile(host: &str, host_type: HostType) -> Result<Self, String> {
        let kind = match host_type {
            HostType::Auto if host.contains(REGEX_CHARS) => HostType::Regex,
            HostType::Auto if host.contains('*') => HostType::Wildcard,
            HostType::Auto => HostType::Exact,
            other => other,
        };
        match kind {
            HostType::Regex => Regex::new(&format!("(?i)^(?:{host})$"))
                .map(HostPattern::Regex)
                .map_err(|e| format!("invalid host regex: {}", regex_error_detail(&e))),
            HostType::Wildcard if host.contains('*') => {
                Ok(HostPattern::Wildcard(Wildcard::new(host)))
            }
            HostType::Wildcard => Ok(HostPattern::Exact(host.to_ascii_lowercase())),
            _ => {
                if host.contains(':') && !host.starts_with('[') {
                    return Err(
                        "host must not include a port (the port is stripped from requests)".into(),
                    );
                }
                Ok(HostPattern::Exact(
                    host.trim_end_matches('.').to_ascii_lowercase(),
                ))
            }
        }
    }

    /// Matches an already normalised host (see [`normalize_host`]).
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(w) => w.matches(host),
            HostPattern::Regex(re) => re.is_match(host),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            HostPattern::Exact(_) => "exact",
            HostPattern::Wildcard(_) => "wildcard",
            HostPattern::Regex(_) => "regex",
        }
    }
}

/// The last line of a regex syntax error (the one that says what is
/// wrong; the lines above repeat the pattern with a caret).
pub(super) fn regex_error_detail(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines().last().unwrap_or(&text).trim().to_string()
}

/// Strips the port (and IPv6 brackets) and a trailing dot; lower-cases.
/// Borrows when nothing changes.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = if let Some(rest) = raw.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(inside, _)| inside)
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
