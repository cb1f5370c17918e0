//! `*` host patterns matched without a regex: a wildcard rule costs a few
//! strings instead of a compiled automaton (~10 KB each), which matters at
//! thousands of rules.

/// A wildcard host: `*` matches one or more characters, across labels.
/// Both pattern and host are lower-case ASCII (see `normalize_host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildcard {
    /// The literal text between the stars; `parts.len()` ≥ 2.
    parts: Box<[Box<str>]>,
}

impl Wildcard {
    /// `pattern` must contain at least one `*`.
    pub fn new(pattern: &str) -> Self {
        debug_assert!(pattern.contains('*'));
        let parts = pattern
            .to_ascii_lowercase()
            .split('*')
            .map(Box::from)
            .collect();
        Self { parts }
    }

    /// The literal text between the stars, lower-cased (the Envoy
    /// generator writes the same pattern as a regex).
    pub fn parts(&self) -> &[Box<str>] {
        &self.parts
    }

    /// The literal text after the last `*`: every matching host ends with it
    /// (the router indexes wildcard rules by it).
    pub fn tail(&self) -> &str {
        self.parts.last().map_or("", |p| p)
    }

    /// Leftmost matching of each middle part is enough: taking the earliest
    /// place for a part leaves the most room for the parts after it.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.as_bytes();
        let (first, rest) = self.parts.split_first().expect("two parts or more");
        let (last, middle) = rest.split_last().expect("two parts or more");
        let (first, last) = (first.as_bytes(), last.as_bytes());
        if host.contains(&b'\n') || !host.starts_with(first) || !host.ends_with(last) {
            return false;
        }
        // Where the last part must start; stars may not reach past it.
        let Some(end) = host.len().checked_sub(last.len()) else {
            return false;
        };
        let mut pos = first.len();
        for part in middle {
            // The star before `part` takes at least one character.
            pos += 1;
            let part = part.as_bytes();
            match host.get(pos..end).and_then(|hay| find(hay, part)) {
                Some(at) => pos += at + part.len(),
                None => return false,
            }
        }
        // ...and so does the star before the last part.
        pos < end
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    /// The regex a wildcard used to compile to: the reference semantics.
    fn reference(pattern: &str) -> Regex {
        let parts: Vec<String> = pattern.split('*').map(regex::escape).collect();
        Regex::new(&format!("(?i)^{}$", parts.join(".+"))).unwrap()
    }

    #[test]
    fn table() {
        for (pattern, host, want) in [
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "a.example.com.evil.com", false),
            ("api.*.example.com", "api.eu.example.com", true),
            ("api.*.example.com", "api..example.com", false),
            ("*", "x", true),
            ("*", "", false),
            ("a*b*c", "abc", false),
            ("a*b*c", "axbxc", true),
            ("a*b*c", "axbc", false),
            ("a**b", "axyb", true),
            ("a**b", "axb", false),
            ("*.*", "a.b", true),
            ("*.*", "a.", false),
        ] {
            assert_eq!(
                Wildcard::new(pattern).matches(host),
                want,
                "{pattern} vs {host}"
            );
        }
    }

    proptest::proptest! {
        /// Same answers as the regex, over hosts and patterns built from a
        /// small alphabet so that parts overlap often.
        #[test]
        fn agrees_with_the_regex(
            pattern in "[ab.*]{0,6}\\*[ab.*]{0,6}",
            host in "[ab.]{0,12}",
        ) {
            let want = reference(&pattern).is_match(&host);
            proptest::prop_assert_eq!(Wildcard::new(&pattern).matches(&host), want);
        }
    }
}
