//! `paths[].path`: a regex matched as a prefix of the normalised request
//! path (SPEC §4). Most paths are plain text (`/api`), and those are
//! compared as text: no automaton to build, store or run.

use regex::Regex;

use super::host::{PatternError, regex_error_detail};

/// Characters that give a path a regex meaning. Outside a character class
/// (and without the `x` flag, which a pattern would have to turn on with
/// `(?x)`, itself caught here) every other character matches itself.
const REGEX_CHARS: &[char] = &[
    '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
];

#[derive(Debug, Clone)]
pub enum PathPattern {
    /// Plain text: the request path starts with it.
    Prefix(Box<str>),
    /// `^(?:pattern)` as a regex.
    Regex(Regex),
}

impl PathPattern {
    pub fn compile(pattern: &str) -> Result<Self, PatternError> {
        if !pattern.contains(REGEX_CHARS) {
            return Ok(Self::Prefix(pattern.into()));
        }
        Regex::new(&format!("^(?:{pattern})"))
            .map(PathPattern::Regex)
            .map_err(|e| PatternError::PathRegex(regex_error_detail(&e)))
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Prefix(prefix) => path.starts_with(&**prefix),
            Self::Regex(re) => re.is_match(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_prefixes_and_regexes_stay_regexes() {
        assert!(matches!(
            PathPattern::compile("/api").unwrap(),
            PathPattern::Prefix(_)
        ));
        assert!(matches!(
            PathPattern::compile("/my-app_v1~x").unwrap(),
            PathPattern::Prefix(_)
        ));
        assert!(matches!(
            PathPattern::compile("/v1.0").unwrap(),
            PathPattern::Regex(_)
        ));
        assert!(matches!(
            PathPattern::compile("/api$").unwrap(),
            PathPattern::Regex(_)
        ));
        assert!(PathPattern::compile("/a(").is_err());
    }

    #[test]
    fn table() {
        for (pattern, path, want) in [
            ("/api", "/api", true),
            ("/api", "/api/x", true),
            ("/api", "/apix", true),
            ("/api", "/ap", false),
            ("/api", "/x/api", false),
            ("/api$", "/api/x", false),
            ("/api$", "/api", true),
            ("/v1.0", "/v1x0", true),
            ("/", "/anything", true),
        ] {
            let p = PathPattern::compile(pattern).unwrap();
            assert_eq!(p.matches(path), want, "{pattern} vs {path}");
        }
    }

    proptest::proptest! {
        /// A plain-text pattern answers as its regex would.
        #[test]
        fn prefix_agrees_with_the_regex(
            pattern in "[/a-c~#&% -]{0,6}",
            path in "[/a-c~#&% -]{0,10}",
        ) {
            let re = Regex::new(&format!("^(?:{pattern})")).unwrap();
            let ours = PathPattern::compile(&pattern).unwrap();
            proptest::prop_assert!(matches!(ours, PathPattern::Prefix(_)));
            proptest::prop_assert_eq!(ours.matches(&path), re.is_match(&path));
        }
    }
}
