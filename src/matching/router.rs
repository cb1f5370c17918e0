//! Rules compiled for lookup: exact hosts in a hash map, wildcard hosts
//! indexed by the labels after their last `*`, the rest tried in order.

use std::collections::HashMap;
use std::sync::Arc;

use super::host::{HostPattern, normalize_host};
use super::path_pattern::PathPattern;
use crate::auth::methods::Methods;
use crate::decision::RouteId;
use crate::policy::Policy;

/// Why a route needs no authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenReason {
    /// No `auth` block, or an empty one (`auth: {}`).
    NotConfigured,
    /// `auth.enabled: false`.
    Disabled,
    /// A redirect or handler backend: ingress never authenticated those.
    RedirectOrHandler,
}

impl OpenReason {
    pub fn describe(self) -> &'static str {
        match self {
            Self::NotConfigured => "no auth configured",
            Self::Disabled => "auth disabled (enabled: false)",
            Self::RedirectOrHandler => "redirect/handler backend carries no auth",
        }
    }
}

/// What a route demands.
#[derive(Clone, Debug)]
pub enum RouteAuth {
    Open(OpenReason),
    Protected(Arc<Protected>),
}

/// A protected route's two stages: who (its methods, most often one) and
/// whether they may pass (the `allow` policy, for whichever method
/// verified the identity).
#[derive(Debug)]
pub struct Protected {
    pub methods: Methods,
    /// Boxed: most routes have none, and a config can hold thousands.
    pub allow: Option<Box<Policy>>,
    /// Evaluate, allow, and record what would have been denied.
    pub report_only: bool,
}

/// Where a request ends up and the policy that applies there.
#[derive(Debug)]
pub struct Route {
    pub id: RouteId,
    /// `rules[0]`, `rules[0].paths[1]` or `fallback`.
    pub label: String,
    pub policy: RouteAuth,
    /// True when a path had no `auth` and took its rule's.
    pub inherited: bool,
}

#[derive(Debug)]
pub struct PathRoute {
    /// As written in the config.
    pub pattern: String,
    pub matcher: PathPattern,
    pub route: Route,
}

#[derive(Debug)]
pub struct Rule {
    pub host: String,
    pub host_pattern: HostPattern,
    pub route: Route,
    pub paths: Vec<PathRoute>,
}

impl Rule {
    /// The first path rule whose pattern matches a prefix of `path`.
    pub fn path_for(&self, path: &str) -> Option<&PathRoute> {
        self.paths.iter().find(|p| p.matcher.matches(path))
    }
}

#[derive(Debug)]
pub enum RouteMatch<'r> {
    Rule {
        rule: &'r Rule,
        path: Option<&'r PathRoute>,
    },
    Fallback(&'r Route),
    NoRoute,
}

impl<'r> RouteMatch<'r> {
    pub fn route(&self) -> Option<&'r Route> {
        match self {
            RouteMatch::Rule { rule, path } => Some(path.map_or(&rule.route, |p| &p.route)),
            RouteMatch::Fallback(route) => Some(*route),
            RouteMatch::NoRoute => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Router {
    rules: Vec<Rule>,
    /// Lower-cased exact host → index of the first rule with it.
    exact: HashMap<String, usize>,
    /// Wildcard rules whose text after the last `*` starts with a dot
    /// (`*.example.com` → `.example.com`), by that text; indexes ascending.
    by_tail: HashMap<Box<str>, Vec<usize>>,
    /// Every other wildcard and regex rule, in config order.
    scanned: Vec<usize>,
    /// Length of the longest key of `by_tail`.
    longest_tail: usize,
    fallback: Option<Route>,
}

impl Router {
    pub fn new(rules: Vec<Rule>, fallback: Option<Route>) -> Self {
        let mut exact = HashMap::new();
        let mut by_tail: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut scanned = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            match &rule.host_pattern {
                HostPattern::Exact(h) => {
                    exact.entry(h.clone()).or_insert(i);
                }
                HostPattern::Wildcard(w) if w.tail().starts_with('.') => {
                    by_tail.entry(w.tail().into()).or_default().push(i);
                }
                _ => scanned.push(i),
            }
        }
        let longest_tail = by_tail.keys().map(|k| k.len()).max().unwrap_or(0);
        Self {
            rules,
            exact,
            by_tail,
            scanned,
            longest_tail,
            fallback,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn fallback(&self) -> Option<&Route> {
        self.fallback.as_ref()
    }

    /// The first rule, in config order, whose host matches.
    pub fn rule_for(&self, raw_host: &str) -> Option<&Rule> {
        let host = normalize_host(raw_host);
        let exact = self.exact.get(host.as_ref()).copied();
        // A pattern rule wins only if it comes before the exact one.
        let mut first = exact.unwrap_or(usize::MAX);
        let mut consider = |candidates: &[usize]| {
            if let Some(i) = candidates
                .iter()
                .copied()
                .take_while(|i| *i < first)
                .find(|i| self.rules[*i].host_pattern.matches(&host))
            {
                first = i;
            }
        };
        // Only the wildcards whose tail is one of the host's dot suffixes
        // can match it: a few hash lookups, however many rules there are.
        // Suffixes longer than the longest indexed tail cannot be one: a
        // long hostile host costs a scan of its dots, not a hash of each.
        let shortest_start = host.len().saturating_sub(self.longest_tail);
        for (at, _) in host
            .match_indices('.')
            .filter(|(at, _)| *at >= shortest_start)
        {
            if let Some(candidates) = self.by_tail.get(&host[at..]) {
                consider(candidates);
            }
        }
        consider(&self.scanned);
        self.rules.get(first)
    }

    /// Rule and path for a host and an already normalised path.
    pub fn find(&self, raw_host: &str, path: &str) -> RouteMatch<'_> {
        match self.rule_for(raw_host) {
            Some(rule) => RouteMatch::Rule {
                rule,
                path: rule.path_for(path),
            },
            None => match &self.fallback {
                Some(route) => RouteMatch::Fallback(route),
                None => RouteMatch::NoRoute,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spec::HostType;

    fn router(hosts: &[&str]) -> Router {
        let rules = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| Rule {
                host: host.to_string(),
                host_pattern: HostPattern::compile(host, HostType::Auto).unwrap(),
                route: Route {
                    id: RouteId(i as u32),
                    label: format!("rules[{i}]"),
                    policy: RouteAuth::Open(OpenReason::NotConfigured),
                    inherited: false,
                },
                paths: Vec::new(),
            })
            .collect();
        Router::new(rules, None)
    }

    fn first(router: &Router, host: &str) -> Option<String> {
        router.rule_for(host).map(|r| r.host.clone())
    }

    /// The first matching rule in config order wins, whichever index
    /// (exact map, wildcard tails, scanned list) holds it.
    #[test]
    fn config_order_wins_across_indexes() {
        let r = router(&[
            "*.b.example.com",
            "x.b.example.com",
            "*.example.com",
            "*example.org",
            "(a|b)\\.example\\.net",
            "a.example.net",
            "*.com",
        ]);
        for (host, want) in [
            ("x.b.example.com", Some("*.b.example.com")),
            ("y.b.example.com", Some("*.b.example.com")),
            ("b.example.com", Some("*.example.com")),
            ("Q.Example.COM:8443", Some("*.example.com")),
            ("example.com", Some("*.com")),
            ("www.example.org", Some("*example.org")),
            ("example.org", None),
            ("a.example.net", Some("(a|b)\\.example\\.net")),
            ("c.example.net", None),
            ("other.com", Some("*.com")),
        ] {
            assert_eq!(first(&r, host).as_deref(), want, "{host}");
        }
    }

    #[test]
    fn an_exact_rule_before_a_wildcard_wins() {
        let r = router(&["a.example.com", "*.example.com", "*.a.example.com"]);
        assert_eq!(first(&r, "a.example.com").as_deref(), Some("a.example.com"));
        assert_eq!(
            first(&r, "z.a.example.com").as_deref(),
            Some("*.example.com")
        );
    }

    proptest::proptest! {
        /// The indexes answer as trying every rule in order would.
        #[test]
        fn same_answer_as_a_linear_scan(
            hosts in proptest::collection::vec("(\\*\\.)?[ab]{1,2}(\\.[ab]{1,2}){0,2}|\\*[ab]{1,2}", 1..12),
            host in "[ab]{1,2}(\\.[ab]{1,2}){0,3}",
        ) {
            let refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let r = router(&refs);
            let normalized = normalize_host(&host);
            let linear = r.rules().iter().find(|rule| rule.host_pattern.matches(&normalized));
            proptest::prop_assert_eq!(
                r.rule_for(&host).map(|x| x.route.label.clone()),
                linear.map(|x| x.route.label.clone())
            );
        }
    }
}
