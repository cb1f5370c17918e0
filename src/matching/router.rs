//! Rules compiled for lookup: exact hosts in a hash map, patterns in order.

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;

use super::host::{HostPattern, normalize_host};
use crate::auth::Authenticator;

/// Why a route needs no authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenReason {
    /// No `auth` block (or one without `type`).
    NotConfigured,
    /// `auth.enabled: false`.
    Disabled,
    /// A redirect or handler backend: ingress never authenticated those.
    RedirectOrHandler,
}

impl OpenReason {
    pub fn describe(self) -> &'static str {
        match self {
            OpenReason::NotConfigured => "no auth configured",
            OpenReason::Disabled => "auth disabled (enabled: false)",
            OpenReason::RedirectOrHandler => "redirect/handler backend carries no auth",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Policy {
    Open(OpenReason),
    Protected(Arc<Authenticator>),
}

/// Where a request ends up and the policy that applies there.
#[derive(Debug)]
pub struct Route {
    /// `rules[0]`, `rules[0].paths[1]` or `fallback`.
    pub label: String,
    pub policy: Policy,
    /// True when a path had no `auth` and took its rule's.
    pub inherited: bool,
}

#[derive(Debug)]
pub struct PathRoute {
    pub pattern: String,
    pub regex: Regex,
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
    /// The first path rule whose regex matches a prefix of `path`.
    pub fn path_for(&self, path: &str) -> Option<&PathRoute> {
        self.paths.iter().find(|p| p.regex.is_match(path))
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
    /// Indexes of wildcard and regex rules, in config order.
    patterns: Vec<usize>,
    fallback: Option<Route>,
}

impl Router {
    pub fn new(rules: Vec<Rule>, fallback: Option<Route>) -> Self {
        let mut exact = HashMap::new();
        let mut patterns = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            match &rule.host_pattern {
                HostPattern::Exact(h) => {
                    exact.entry(h.clone()).or_insert(i);
                }
                _ => patterns.push(i),
            }
        }
        Router {
            rules,
            exact,
            patterns,
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
        let limit = exact.unwrap_or(usize::MAX);
        let pattern = self
            .patterns
            .iter()
            .copied()
            .take_while(|i| *i < limit)
            .find(|i| self.rules[*i].host_pattern.matches(&host));
        pattern.or(exact).map(|i| &self.rules[i])
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
