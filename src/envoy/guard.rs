//! `:authority` guards: the RE2 regex an Envoy route matches the raw
//! authority against, so that routes in config order pick the rule the
//! authorizer picks, and what can be proved about each guard.
//!
//! The authorizer refuses hosts outside host-name syntax, then strips the
//! port and one trailing dot and lower-cases ([`normalize_host`]) before
//! matching. Envoy matches the raw header, so each guard allows an optional
//! trailing dot and port around the host and matches case-insensitively.
//!
//! [`normalize_host`]: crate::matching::host::normalize_host

use crate::matching::host::{HostPattern, check_host};
use crate::matching::wildcard::Wildcard;

/// An optional trailing dot and `:port`, as the authorizer strips them.
const DOT_AND_PORT: &str = r"\.?(?::[0-9]{1,5})?";

/// What the authorizer accepts as a host name (SPEC §13.2), without IPv6
/// literals: only such authorities may take a bypass. Labels of 1–63
/// bytes, at most 253 bytes of name (254 with a trailing dot), a port of
/// 1–5 digits.
pub const HOST_SYNTAX: &str = r"(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?(?::[0-9]{1,5})?";
pub const HOST_LENGTH: &str = r"(?:[^:]{1,253}|[^:]{253}\.)(?::[0-9]{1,5})?";

/// A rule's guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    pub regex: String,
    /// On host names, Envoy matches at least what the authorizer matches:
    /// a request of this rule never slips past it to a later route.
    pub covers: bool,
    /// On host names, Envoy matches at most what the authorizer matches:
    /// a request Envoy sends here is this rule's.
    pub exact: bool,
    /// Whatever this guard matches is a host name the authorizer accepts
    /// (an exact host that passes its syntax check): the bypass needs no
    /// syntax fence of its own.
    pub implies_syntax: bool,
    /// A note for stderr when the guard is not exact.
    pub note: Option<String>,
}

impl Guard {
    pub fn new(pattern: &HostPattern, as_written: &str) -> Self {
        match pattern {
            HostPattern::Exact(h) if h.contains(':') => Self {
                // An IPv6 literal: its canonical spelling only. IPv6
                // authorities never take a bypass (HOST_SYNTAX), so a
                // different spelling goes through the authorizer.
                regex: format!(r"(?i)\[{}\](?::[0-9]{{1,5}})?", regex::escape(h)),
                covers: true,
                exact: true,
                implies_syntax: false,
                note: None,
            },
            HostPattern::Exact(h) => Self {
                regex: format!("(?i){}{DOT_AND_PORT}", regex::escape(h)),
                covers: true,
                // `host_type: wildcard` without `*` keeps a trailing dot,
                // which no normalised host has.
                exact: !h.ends_with('.'),
                implies_syntax: check_host(h).is_ok() && !h.ends_with('.'),
                note: None,
            },
            HostPattern::Wildcard(w) => wildcard(w),
            HostPattern::Regex(_) => regex_host(as_written),
        }
    }
}

fn wildcard(w: &Wildcard) -> Guard {
    let parts = w.parts();
    let body: Vec<String> = parts.iter().map(|p| regex::escape(p)).collect();
    // `*` is one or more characters of the normalised host, which holds no
    // `:` for a host name; `[^:]` keeps the star out of the port. A star
    // that ends the pattern ends the normalised host, whose last character
    // is never the dot the authorizer strips: it must not take that dot
    // (`a.**` is not `a.a.`).
    let mut regex = body.join("[^:]+");
    if parts.last().is_some_and(|p| p.is_empty()) {
        regex.truncate(regex.len() - "[^:]+".len());
        regex.push_str("[^:]*[^:.]");
    }
    let regex = format!("(?i){regex}{DOT_AND_PORT}");
    let literal_ok = parts.iter().all(|p| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    });
    let exact = literal_ok && !w.tail().ends_with('.');
    Guard {
        regex,
        covers: true,
        exact,
        implies_syntax: false,
        note: (!exact).then(|| {
            "a wildcard with characters outside host names: no bypass after it is proved".into()
        }),
    }
}

fn regex_host(r: &str) -> Guard {
    // The authorizer anchors the whole host; Envoy's match is a full match
    // already, and anchors inside would refuse the port or trailing dot.
    // An anchor under a repetition (`^*x`, valid for the authorizer) would
    // leave a bare `*` once removed: such a pattern keeps its anchors.
    let stripped = strip_anchors(r)
        .filter(|body| regex::Regex::new(&format!("(?i)(?:{body}){DOT_AND_PORT}")).is_ok());
    let assertions = ["\\A", "\\z", "\\b", "\\B", "(?m", "(?s"];
    let covers = stripped.is_some() && !assertions.iter().any(|a| r.contains(a));
    let body = stripped.unwrap_or_else(|| r.to_string());
    Guard {
        regex: format!("(?i)(?:{body}){DOT_AND_PORT}"),
        covers,
        // A regex may match a port or a trailing dot itself: never exact,
        // so a regex-host rule is always checked by the authorizer, which
        // refuses (403 route_mismatch) a request it places elsewhere.
        exact: false,
        implies_syntax: false,
        note: (!covers).then(|| {
            format!("`{r}`: assertions Envoy cannot mirror; no route after it is bypassed")
        }),
    }
}

/// `^` and `$` outside classes and escapes removed; `None` when the
/// pattern is too unusual to edit (an unterminated class).
fn strip_anchors(r: &str) -> Option<String> {
    let mut out = String::with_capacity(r.len());
    let mut chars = r.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                out.push(chars.next()?);
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // `[]...]` and `[^]...]`: a leading `]` is a literal.
                let rest = chars.as_str();
                for lead in ["^]", "]", "^"] {
                    if let Some(after) = rest.strip_prefix(lead) {
                        out.push_str(lead);
                        chars = after.chars();
                        break;
                    }
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '^' | '$' if !in_class => {}
            _ => out.push(c),
        }
    }
    (!in_class).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spec::HostType;
    use crate::matching::host::{check_host, normalize_host};

    fn full(re: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?:{re})$")).unwrap()
    }

    #[test]
    fn anchors_are_removed_outside_classes() {
        assert_eq!(
            strip_anchors(r"^a-([^.]+)\.b$").as_deref(),
            Some(r"a-([^.]+)\.b")
        );
        assert_eq!(strip_anchors(r"[$^]x\$").as_deref(), Some(r"[$^]x\$"));
        assert_eq!(strip_anchors("[abc"), None);
    }

    /// Found by the property below: a final star must not take the
    /// trailing dot the authorizer strips.
    #[test]
    fn a_final_star_never_takes_the_stripped_dot() {
        let compiled = HostPattern::compile("a.**", HostType::Auto).unwrap();
        let guard = Guard::new(&compiled, "a.**");
        assert!(guard.exact);
        for (host, want) in [
            ("a.a.", false),
            ("a.a", false),
            ("a.ab.", true),
            ("A.AB:80", true),
        ] {
            assert_eq!(compiled.matches(&normalize_host(host)), want, "{host}");
            assert_eq!(
                full(&guard.regex).is_match(host),
                want,
                "{} vs {host}",
                guard.regex
            );
        }
    }

    /// Found by the `envoy_config` fuzz target: `^*` is a valid (empty)
    /// repetition for the authorizer, and a bare `*` once the anchor went.
    #[test]
    fn an_anchor_under_a_repetition_keeps_the_regex_valid() {
        for written in ["^*\u{15}", "(^+a)", "^{2}b$"] {
            let compiled = HostPattern::compile(written, HostType::Regex).unwrap();
            let guard = Guard::new(&compiled, written);
            assert!(
                regex::Regex::new(&guard.regex).is_ok(),
                "{written}: {}",
                guard.regex
            );
            assert!(!guard.covers, "{written}");
        }
    }

    proptest::proptest! {
        /// On host names, an exact guard matches exactly the hosts the
        /// authorizer's pattern matches, and a covering guard at least them.
        #[test]
        fn guards_mirror_the_authorizer(
            pattern in "(\\*\\.)?[ab]{1,2}(\\.[ab*]{1,2}){0,2}\\.?",
            // Host names only (labels of `a`/`b`, any case, an optional
            // trailing dot and port): what a bypass can be taken with.
            host in "[aAb]{1,2}(\\.[aAb]{1,2}){0,2}\\.?(:[0-9]{1,2})?",
            regex in proptest::bool::ANY,
        ) {
            let (written, kind) = if regex {
                (format!("^{}$", pattern.replace('.', "\\.").replace('*', ".+")), HostType::Regex)
            } else {
                (pattern, HostType::Auto)
            };
            let compiled = HostPattern::compile(&written, kind).unwrap();
            let guard = Guard::new(&compiled, &written);
            proptest::prop_assume!(check_host(&host).is_ok());
            proptest::prop_assume!(full(HOST_SYNTAX).is_match(&host));
            let ours = compiled.matches(&normalize_host(&host));
            let envoy = full(&guard.regex).is_match(&host);
            if guard.covers {
                proptest::prop_assert!(!ours || envoy, "covers: {} vs {host}", guard.regex);
            }
            if guard.exact {
                proptest::prop_assert_eq!(ours, envoy, "exact: {} vs {}", guard.regex, host);
            }
        }

        /// An exact guard that implies the syntax fence matches only host
        /// names the authorizer accepts.
        #[test]
        fn implied_syntax_holds(
            pattern in "[ab]{1,3}(\\.[ab]{1,3}){0,2}",
            host in "[aAb.:0-9 @_]{0,12}",
        ) {
            let compiled = HostPattern::compile(&pattern, HostType::Auto).unwrap();
            let guard = Guard::new(&compiled, &pattern);
            proptest::prop_assert!(guard.implies_syntax);
            if full(&guard.regex).is_match(&host) {
                proptest::prop_assert!(check_host(&host).is_ok(), "{}", host);
                proptest::prop_assert!(full(HOST_SYNTAX).is_match(&host), "{}", host);
            }
        }

        /// The bypass syntax guards accept only hosts the authorizer accepts.
        #[test]
        fn host_syntax_is_no_wider_than_check_host(host in "[a-z_.:0-9-]{0,12}|[a-z.]{250,258}") {
            if full(HOST_SYNTAX).is_match(&host) && full(HOST_LENGTH).is_match(&host) {
                proptest::prop_assert!(check_host(&host).is_ok(), "{}", host);
            }
        }
    }
}
