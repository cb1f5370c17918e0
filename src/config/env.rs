//! `${NAME}` and `${NAME:-default}` in config strings: the one expansion
//! every string of the schema walk goes through.

use super::reader::EnvLookup;

/// A `${NAME}` without a default whose variable is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable `{0}` is not set (use ${{{0}:-default}} for a default)")]
pub(super) struct UnsetVar(String);

/// Replaces `${NAME}` and `${NAME:-default}`; `$${` is a literal `${`;
/// any other `$` is kept (regex anchors such as `^/api$`, bcrypt hashes).
pub(super) fn expand_env(input: &str, env: EnvLookup<'_>) -> Result<String, UnsetVar> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            // `$${`: the escape, kept as `${` without expansion.
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if !is_env_name(name) {
            // Not a variable reference (e.g. ingress's own `${host.1}`): keep it.
            out.push_str(&rest[start..start + 3 + end]);
        } else {
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(UnsetVar(name.to_string())),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_string())
    }

    #[test]
    fn env_expansion_table() {
        let cases = [
            ("${SET}", "value"),
            ("a-${SET}-b", "a-value-b"),
            ("${UNSET:-dflt}", "dflt"),
            ("${SET:-dflt}", "value"),
            ("${UNSET:-}", ""),
            ("no vars", "no vars"),
            ("${host.1}", "${host.1}"),
            ("$HOME", "$HOME"),
            ("${unterminated", "${unterminated"),
            ("$${SET}", "${SET}"),
            ("$${UNSET}", "${UNSET}"),
            ("^/api$", "^/api$"),
            ("/a$$", "/a$$"),
            ("$$$${SET}", "$$${SET}"),
            ("pa$$word-${SET}", "pa$$word-value"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_env(input, &env).unwrap(), want, "{input}");
        }
        let err = expand_env("${UNSET}", &env).unwrap_err().to_string();
        assert!(err.contains("UNSET"), "{err}");
    }
}
