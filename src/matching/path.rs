//! Request-path normalisation: one spelling per resource, so no encoding
//! trick reaches a path rule it should not.

use std::borrow::Cow;

/// Why a request path was refused (answered 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with `/`")]
    NotAbsolute,
    #[error("invalid percent-encoding")]
    BadPercentEncoding,
    #[error("encoded `/`, `\\` or NUL in path")]
    EncodedSeparator,
    #[error("control character or backslash in path")]
    ForbiddenCharacter,
    #[error("`..` above the root")]
    AboveRoot,
}

/// Splits `path?query` at the first `?` (and drops any `#fragment`).
pub fn strip_query(raw: &str) -> &str {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    &raw[..end]
}

/// Normalises the path part of a request target:
/// * percent-decodes unreserved characters (`%61` → `a`), upper-cases the hex
///   of the rest; encoded `/`, `\` and NUL are refused;
/// * removes each segment's `;params` (`/a;x=1/b` → `/a/b`) before dot
///   segments are resolved: servlet containers (Tomcat, Jetty, Spring) drop
///   them, so `/public/..;/admin` reaches their `/admin` and must match ours;
/// * merges `//`, resolves `.` and `..` segments (`..` above `/` is refused);
/// * keeps a trailing slash.
///
/// Returns the input unchanged (borrowed) when it is already normal, which
/// is the common case, so most requests allocate nothing here.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let path = strip_query(raw);
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    check_bytes(path)?;
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    resolve_segments(&decoded).map(Cow::Owned)
}

fn check_bytes(path: &str) -> Result<(), PathError> {
    if path.bytes().any(|b| b.is_ascii_control() || b == b'\\') {
        return Err(PathError::ForbiddenCharacter);
    }
    Ok(())
}

/// Fast check: no `%`, no `;`, no empty, `.` or `..` segment.
fn is_normal(path: &str) -> bool {
    !path.contains(['%', ';'])
        && !path.contains("//")
        && !path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // Safe: we only split at ASCII `%`, so `i` is a char boundary.
            let next = path[i..].find('%').map_or(bytes.len(), |p| i + p);
            out.push_str(&path[i..next]);
            i = next;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex_value),
            bytes.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(PathError::BadPercentEncoding);
        };
        let value = hi << 4 | lo;
        match value {
            b'/' | b'\\' | 0 => return Err(PathError::EncodedSeparator),
            v if v.is_ascii_control() => return Err(PathError::ForbiddenCharacter),
            v if is_unreserved(v) => out.push(v as char),
            v => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(v >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(v & 15)]));
            }
        }
        i += 3;
    }
    Ok(out)
}

fn resolve_segments(path: &str) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = false;
        let segment = segment
            .split_once(';')
            .map_or(segment, |(name, _params)| name);
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/admin", Ok("/admin")),
            ("/admin/", Ok("/admin/")),
            ("/admin?x=1", Ok("/admin")),
            ("/admin#frag", Ok("/admin")),
            ("//admin", Ok("/admin")),
            ("/api//x", Ok("/api/x")),
            ("/api/../admin", Ok("/admin")),
            ("/api/./x", Ok("/api/x")),
            ("/api/.", Ok("/api/")),
            ("/api/..", Ok("/")),
            ("/%61dmin", Ok("/admin")),
            ("/%41DMIN", Ok("/ADMIN")),
            ("/api/%2e%2e/admin", Ok("/admin")),
            ("/public/..;/admin", Ok("/admin")),
            ("/%2e%2e;/admin", Err(PathError::AboveRoot)),
            ("/public/%2e%2e;x=1/admin", Ok("/admin")),
            ("/a;x=1/b", Ok("/a/b")),
            ("/admin;x", Ok("/admin")),
            ("/;x/admin/", Ok("/admin/")),
            ("/a%3Bx/b", Ok("/a%3Bx/b")),
            ("/api/%2E%2E/admin", Ok("/admin")),
            ("/a%20b", Ok("/a%20b")),
            ("/a%3fb", Ok("/a%3Fb")),
            ("/a%25b", Ok("/a%25b")),
            ("/%7euser", Ok("/~user")),
            ("/caf%C3%A9", Ok("/caf%C3%A9")),
            ("/..", Err(PathError::AboveRoot)),
            ("/../admin", Err(PathError::AboveRoot)),
            ("/a/../../b", Err(PathError::AboveRoot)),
            ("/api%2fadmin", Err(PathError::EncodedSeparator)),
            ("/api%2Fadmin", Err(PathError::EncodedSeparator)),
            ("/api%5cadmin", Err(PathError::EncodedSeparator)),
            ("/api%00", Err(PathError::EncodedSeparator)),
            ("/api%0a", Err(PathError::ForbiddenCharacter)),
            ("/a\\b", Err(PathError::ForbiddenCharacter)),
            ("/a\u{0}b", Err(PathError::ForbiddenCharacter)),
            ("/a%zz", Err(PathError::BadPercentEncoding)),
            ("/a%4", Err(PathError::BadPercentEncoding)),
            ("admin", Err(PathError::NotAbsolute)),
            ("", Err(PathError::NotAbsolute)),
            ("*", Err(PathError::NotAbsolute)),
            ("?x", Err(PathError::NotAbsolute)),
        ];
        for (input, want) in cases {
            let got = normalize(input);
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "input {input:?}");
        }
    }

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(
            normalize("/a/b?c").unwrap(),
            Cow::Borrowed("/a/b")
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_is_idempotent(raw in "\\PC*") {
            if let Ok(once) = normalize(&raw) {
                let twice = normalize(&once).expect("a normal path normalises again");
                proptest::prop_assert_eq!(once.as_ref(), twice.as_ref());
                proptest::prop_assert!(once.starts_with('/'));
                proptest::prop_assert!(!once.contains("//"));
                proptest::prop_assert!(!once.split('/').any(|s| s == ".." || s == "."));
            }
        }

        #[test]
        fn path_like_inputs_are_idempotent(raw in "(/|%2[eEfF]|%6[01]|\\.|\\.\\.|a|%|//|\\?)*") {
            if let Ok(once) = normalize(&raw) {
                let twice = normalize(&once).expect("normal path");
                proptest::prop_assert_eq!(once.as_ref(), twice.as_ref());
            }
        }
    }
}
