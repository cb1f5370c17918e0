//! Single sign-on across subdomains: the cookie domain a session covers
//! (`authz.session.cookie_domain`), the login host where every covered host
//! logs in (`authz.login_host`, one registered callback), and which return
//! URLs a login there may send the browser back to.

use url::Url;

/// The path on the login host where a login for another host begins.
pub const START_PATH: &str = "/oauth2/start";

/// A host name as DNS writes it: labels of letters, digits and `-` (not
/// at either end), at most 63 bytes each, 253 in all; lower-cased. The
/// last label is not all digits (no IP addresses).
fn host_name(raw: &str) -> Option<String> {
    let host = raw.to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = host.len() <= 253
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(host)
}

/// `cookie_domain` as configured: `.example.com` and `example.com` alike,
/// lower-cased; at least two labels (a single label such as `com` or
/// `localhost` would hand the session to every site under it).
pub fn parse_domain(raw: &str) -> Result<String, SsoConfigError> {
    let trimmed = raw.trim();
    let bare = trimmed.strip_prefix('.').unwrap_or(trimmed);
    match host_name(bare) {
        Some(d) if d.contains('.') => Ok(d),
        _ => Err(SsoConfigError::NotADomain(raw.to_string())),
    }
}

/// `login_host` as configured: a host name without port, lower-cased.
pub fn parse_host(raw: &str) -> Result<String, SsoConfigError> {
    host_name(raw.trim()).ok_or_else(|| SsoConfigError::NotAHost(raw.to_string()))
}

/// Why `cookie_domain` or `login_host` is refused (a config error's text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsoConfigError {
    #[error("cookie_domain `{0}` is not a domain of at least two labels (e.g. example.com)")]
    NotADomain(String),
    #[error("login_host `{0}` is not a host name")]
    NotAHost(String),
}

/// Whether `host` (lower-cased, no port) is `domain` or a subdomain of it.
pub fn within(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
}

/// A return URL a login at the login host may go back to: absolute, http
/// or https, no user info, its host the cookie domain or under it. The
/// URL as parsed, which is what the browser is sent to (never the raw
/// text, which a browser could read differently).
pub fn return_url(raw: &str, domain: &str) -> Option<Url> {
    let url = Url::parse(raw).ok()?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && matches!(url.host(), Some(url::Host::Domain(h)) if within(h, domain));
    ok.then_some(url)
}

/// Where a navigation on a covered host without a session goes: the login
/// host's start, with the original absolute URL and the route that asked.
pub fn start_url(scheme: &str, login_host: &str, original: &str, route: &str) -> String {
    let mut url = Url::parse(&format!("{scheme}://{login_host}{START_PATH}"))
        .expect("a validated login host makes a valid URL");
    url.query_pairs_mut()
        .append_pair("rd", original)
        .append_pair("route", route);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_need_two_labels_and_ignore_a_leading_dot() {
        assert_eq!(parse_domain("example.com").unwrap(), "example.com");
        assert_eq!(parse_domain(".Example.COM").unwrap(), "example.com");
        for bad in [
            "com",
            ".com",
            "localhost",
            "",
            ".",
            "example..com",
            "-a.com",
            "a_b.com",
            "10.0.0.1",
            "example.com.",
        ] {
            assert!(parse_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn within_is_the_domain_or_below_it() {
        assert!(within("example.com", "example.com"));
        assert!(within("a.b.example.com", "example.com"));
        assert!(!within("badexample.com", "example.com"));
        assert!(!within("example.com.evil.org", "example.com"));
        assert!(!within(".example.com", "example.com"));
    }

    #[test]
    fn return_urls_stay_in_the_domain() {
        let ok = |u: &str| return_url(u, "example.test").map(|u| u.to_string());
        assert_eq!(
            ok("https://b.example.test/x?y=1").as_deref(),
            Some("https://b.example.test/x?y=1")
        );
        assert_eq!(
            ok("http://A.Example.Test:8000/").as_deref(),
            Some("http://a.example.test:8000/")
        );
        for bad in [
            "https://evil.test/",
            "https://example.test.evil.test/",
            "https://a.example.test@evil.test/",
            "https://evil.test\\@a.example.test/",
            "javascript://a.example.test/%0aalert(1)",
            "//a.example.test/",
            "/relative",
            "https://127.0.0.1/",
            "ftp://a.example.test/",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_start_url_carries_the_original_and_the_route() {
        let u = start_url(
            "https",
            "auth.example.test",
            "https://a.example.test/x?y=1&z",
            "rules[0]",
        );
        assert_eq!(
            u,
            "https://auth.example.test/oauth2/start?rd=https%3A%2F%2Fa.example.test%2Fx%3Fy%3D1%26z&route=rules%5B0%5D"
        );
    }
}
