//! The reference check of the `decision` target, written on its own: it
//! shares no code with `src/matching` or `src/auth`. It knows the
//! fixture's few rules (fixtures/config.yaml) and credentials, and answers
//! two questions: which route does a request reach, and does it carry a
//! credential that route accepts (including the route's `allow` policy)?
//!
//! It is deliberately simple: plain string tests for the hosts and paths,
//! base64 and compare for basic, compare for bearer, HMAC-SHA256 with the
//! `hmac` crate for the JWTs, and, for sessions, only the sealed cookies
//! of the seed list (the fuzzer cannot forge AES-GCM, so a session it
//! presents is one of those, or one the harness sealed with the key for
//! this input, whose JSON it then reads itself).

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::Value;

use crate::fixture;

/// Percent-decodes what RFC 3986 calls unreserved, keeps the rest encoded
/// (hex upper-cased), drops each segment's `;params`, resolves `.` and
/// `..`, merges `//`; None for what the service must refuse (400).
pub fn normalize_path(raw: &str) -> Option<String> {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let path = &raw[..end];
    if !path.starts_with('/') {
        return None;
    }
    if path.chars().any(|c| c.is_ascii_control() || c == '\\') {
        return None;
    }
    // Decoding, byte by byte.
    let bytes = path.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            decoded.push(b);
            i += 1;
            continue;
        }
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let hi = bytes.get(i + 1).copied().and_then(hex)?;
        let lo = bytes.get(i + 2).copied().and_then(hex)?;
        let v = hi * 16 + lo;
        if v == b'/' || v == b'\\' || v == 0 || v.is_ascii_control() {
            return None;
        }
        if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
            decoded.push(v);
        } else {
            decoded.extend(format!("%{v:02X}").bytes());
        }
        i += 3;
    }
    let decoded = String::from_utf8(decoded).ok()?;
    let mut stack: Vec<&str> = Vec::new();
    let mut ends_with_slash = false;
    for seg in decoded.split('/').skip(1) {
        let seg = match seg.find(';') {
            Some(p) => &seg[..p],
            None => seg,
        };
        ends_with_slash = matches!(seg, "" | "." | "..");
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop()?;
            }
            s => stack.push(s),
        }
    }
    let mut out = String::new();
    for s in &stack {
        out.push('/');
        out.push_str(s);
    }
    if ends_with_slash || stack.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// The host as rules see it: no port, no trailing dot, lower case; None
/// for a bracketed address (no rule of the fixture names one).
fn host_name(raw: &str) -> Option<String> {
    if raw.starts_with('[') {
        return None;
    }
    let mut h = raw;
    if let Some((name, port)) = h.rsplit_once(':')
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        h = name;
    }
    let h = h.strip_suffix('.').unwrap_or(h);
    Some(h.to_ascii_lowercase())
}

/// `^/v[0-9]+/health$`.
fn is_health(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/v") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && &rest[digits..] == "/health"
}

/// The rule of the fixture a host reaches (its index), None for the fallback.
fn rule(host: &str) -> Option<usize> {
    let h = host_name(host)?;
    let longer_with = |suffix: &str| h.len() > suffix.len() && h.ends_with(suffix);
    if h == "basic.example.com" {
        return Some(0);
    }
    if longer_with(".bearer.example.com") {
        return Some(1);
    }
    if let Some(first) = h.strip_suffix(".jwt.example.com") {
        let v_digits = first
            .strip_prefix('v')
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
        if first == "api" || v_digits {
            return Some(2);
        }
    }
    if h == "app.example.com" {
        return Some(3);
    }
    if h == "sso.example.com" {
        return Some(4);
    }
    if longer_with(".mixed.example.com") {
        return Some(5);
    }
    None
}

/// The route label a request reaches; None when its path must be refused.
pub fn route(host: &str, raw_path: &str) -> Option<String> {
    let path = normalize_path(raw_path)?;
    let p = path.as_str();
    let label = match rule(host) {
        None => "fallback".to_string(),
        Some(0) if p.starts_with("/public/") => "rules[0].paths[0]".into(),
        Some(0) if p.starts_with("/admin") => "rules[0].paths[1]".into(),
        Some(1) if p.starts_with("/named/") => "rules[1].paths[0]".into(),
        Some(2) if p.starts_with("/admin") => "rules[2].paths[0]".into(),
        Some(2) if is_health(p) => "rules[2].paths[1]".into(),
        Some(3) if p.starts_with("/api/") => "rules[3].paths[0]".into(),
        Some(3) if p.starts_with("/static/") => "rules[3].paths[1]".into(),
        Some(3) if p.starts_with("/admin") => "rules[3].paths[2]".into(),
        Some(5) if p.starts_with("/api") => "rules[5].paths[0]".into(),
        Some(5) if p.starts_with("/report/") => "rules[5].paths[1]".into(),
        Some(i) => format!("rules[{i}]"),
    };
    Some(label)
}

/// Whether a route label is one of the fixture's open routes.
pub fn is_open(label: &str) -> bool {
    fixture::OPEN.contains(&label)
}

/// `Authorization: <scheme> <rest>`: the rest, trimmed, when the scheme
/// matches (any case).
fn authorization<'h>(headers: &'h HashMap<String, String>, scheme: &str) -> Option<&'h str> {
    let value = headers.get("authorization")?.trim_start();
    let cut = value.find([' ', '\t'])?;
    value[..cut]
        .eq_ignore_ascii_case(scheme)
        .then(|| value[cut..].trim())
}

/// The basic user whose correct password the request presents.
fn basic_user(headers: &HashMap<String, String>) -> Option<&'static str> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = engine.decode(authorization(headers, "basic")?).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    fixture::BASIC_USERS
        .iter()
        .find(|(u, p)| u.as_bytes() == user && p.as_bytes() == password)
        .map(|(u, _)| *u)
}

fn bearer(headers: &HashMap<String, String>) -> Option<&str> {
    authorization(headers, "bearer")
}

/// The claims of an HS256 token of the fixture's secret whose `iss`,
/// `aud`, `exp` and `nbf` hold at `now`.
fn jwt_claims(token: &str, now: u64) -> Option<Value> {
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return None;
    };
    let header: Value = serde_json::from_slice(&lenient.decode(header).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    let expected = crate::mint::hmac_sha256(fixture::JWT_SECRET, signing_input.as_bytes());
    if lenient.decode(signature).ok()? != expected {
        return None;
    }
    let claims: Value = serde_json::from_slice(&lenient.decode(payload).ok()?).ok()?;
    let leeway = fixture::JWT_LEEWAY as f64 + 1.0;
    let now = now as f64;
    if claims.get("exp")?.as_f64()? + leeway < now {
        return None;
    }
    if let Some(nbf) = claims.get("nbf")
        && nbf.as_f64()? > now + leeway
    {
        return None;
    }
    if claims.get("iss")?.as_str()? != fixture::JWT_ISSUER {
        return None;
    }
    let aud_ok = match claims.get("aud")? {
        Value::String(a) => a == fixture::JWT_AUDIENCE,
        Value::Array(list) => list.iter().any(|a| a == fixture::JWT_AUDIENCE),
        _ => false,
    };
    aud_ok.then_some(claims)
}

fn in_group(claims: &Value, group: &str) -> bool {
    match claims.get("groups") {
        Some(Value::Array(list)) => list.iter().any(|g| g == group),
        Some(Value::String(g)) => g == group,
        _ => false,
    }
}

/// Whether the request's cookies carry a session of `provider`'s client
/// (of user `login`, if given) that is still valid: one of the seed list,
/// or one this input sealed with the key (read here from its JSON: the
/// provider, client, expiry and login as the session format has them).
fn session(
    headers: &HashMap<String, String>,
    provider: &str,
    client: &str,
    login: Option<&str>,
    now: u64,
) -> bool {
    let Some(cookies) = headers.get("cookie") else {
        return false;
    };
    let seeded = fixture::sessions().iter().any(|s| {
        s.provider == provider
            && cookies.contains(s.value.as_str())
            && login.is_none_or(|l| s.login.eq_ignore_ascii_case(l))
    });
    seeded
        || crate::input::sealed_by_input()
            .iter()
            .any(|(value, plaintext)| {
                let Ok(s) = serde_json::from_slice::<Value>(plaintext) else {
                    return false;
                };
                cookies.contains(value.as_str())
                    && s.get("p").and_then(Value::as_str) == Some(provider)
                    && s.get("c").and_then(Value::as_str) == Some(client)
                    && s.get("e")
                        .and_then(Value::as_f64)
                        .is_some_and(|e| e + 1.0 >= now as f64)
                    && login.is_none_or(|l| {
                        s.get("u")
                            .and_then(|u| u.get("username"))
                            .and_then(Value::as_str)
                            .is_some_and(|u| u.eq_ignore_ascii_case(l))
                    })
            })
}

/// Whether the request carries a credential `label` accepts, its policy
/// included.
pub fn accepts(label: &str, headers: &HashMap<String, String>, now: u64) -> bool {
    let basic = |users: &[&str]| basic_user(headers).is_some_and(|u| users.contains(&u));
    let token = |tokens: &[&str]| bearer(headers).is_some_and(|t| tokens.contains(&t));
    let jwt = |group: Option<&str>| {
        bearer(headers)
            .and_then(|t| jwt_claims(t, now))
            .is_some_and(|c| group.is_none_or(|g| in_group(&c, g)))
    };
    let github =
        |login: Option<&str>| session(headers, fixture::GITHUB, fixture::GITHUB_CLIENT, login, now);
    match label {
        "rules[0]" => basic(&["alice", "bob", "carol"]),
        "rules[0].paths[1]" => basic(&["bob"]),
        "rules[1]" => token(&["fuzz-bearer-token-0001", "fuzz-bearer-token-ci-0002"]),
        "rules[1].paths[0]" => token(&["fuzz-bearer-token-ci-0002"]),
        "rules[2]" => jwt(None),
        "rules[2].paths[0]" => jwt(Some("admins")),
        "rules[3]" => github(None),
        "rules[3].paths[0]" => github(None) || token(&["fuzz-app-api-token-0003"]),
        "rules[3].paths[2]" => github(Some("octocat")),
        "rules[4]" => session(headers, fixture::OIDC, fixture::OIDC_CLIENT, None, now),
        "rules[5]" => basic(&["bob"]),
        "rules[5].paths[0]" => token(&["fuzz-mixed-token-0004"]),
        "rules[5].paths[1]" => basic(&["carol"]),
        "fallback" => basic(&["dave"]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_of_the_fixture() {
        for (host, path, want) in [
            ("basic.example.com", "/", Some("rules[0]")),
            (
                "BASIC.example.com.:443",
                "/admin/x",
                Some("rules[0].paths[1]"),
            ),
            (
                "basic.example.com",
                "/public/../admin",
                Some("rules[0].paths[1]"),
            ),
            ("basic.example.com", "/public", Some("rules[0]")),
            ("x.bearer.example.com", "/named/", Some("rules[1].paths[0]")),
            (
                "v12.jwt.example.com",
                "/v3/health",
                Some("rules[2].paths[1]"),
            ),
            ("v.jwt.example.com", "/", Some("fallback")),
            ("app.example.com", "/%61pi/x", Some("rules[3].paths[0]")),
            ("a.mixed.example.com", "/apix", Some("rules[5].paths[0]")),
            ("a.mixed.example.com", "/../x", None),
            ("a.mixed.example.com", "/a%2fb", None),
        ] {
            assert_eq!(route(host, path).as_deref(), want, "{host} {path}");
        }
    }

    #[test]
    fn the_fixture_jwts_verify() {
        let [admin, user] = crate::mint::fixture_jwts();
        let h = |t: &str| HashMap::from([("authorization".to_string(), format!("Bearer {t}"))]);
        assert!(accepts("rules[2]", &h(&admin), fixture::now()));
        assert!(accepts("rules[2].paths[0]", &h(&admin), fixture::now()));
        assert!(accepts("rules[2]", &h(&user), fixture::now()));
        assert!(!accepts("rules[2].paths[0]", &h(&user), fixture::now()));
        assert!(!accepts(
            "rules[2]",
            &h(&format!("{user}x")),
            fixture::now()
        ));
    }
}
