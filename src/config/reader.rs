//! Helpers that walk the YAML tree, collecting every problem instead of
//! stopping at the first.

use std::collections::HashSet;
use std::time::Duration;

use super::env::expand_env;
use super::error::{Diagnostics, Loc};
use super::yaml::{Node, Value};
use crate::secret::Secret;

/// Looks up environment variables; a seam so tests need not touch the process env.
pub(super) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Walk state: diagnostics so far, the environment, and which ignored keys
/// were already reported (each is reported once).
pub(super) struct Walker<'a> {
    pub diags: Diagnostics,
    /// Files the config refers to, for reload watching.
    pub files: Vec<std::path::PathBuf>,
    env: EnvLookup<'a>,
    reported_ignored: HashSet<String>,
}

/// A YAML mapping being read: keys not taken by the end are unknown.
pub(super) struct Fields<'n> {
    pub loc: Loc,
    entries: Vec<(&'n str, &'n Node, Loc)>,
    taken: Vec<bool>,
    known: Vec<&'static str>,
}

impl<'n> Fields<'n> {
    /// The value under `key`, if present and not null.
    pub(super) fn take(&mut self, key: &'static str) -> Option<(&'n Node, Loc)> {
        self.known.push(key);
        let i = self.entries.iter().position(|(k, _, _)| *k == key)?;
        self.taken[i] = true;
        let (_, node, loc) = &self.entries[i];
        (!node.is_null()).then(|| (*node, loc.clone()))
    }

    /// Every entry, for maps whose keys are the user's (e.g. required claims).
    pub(super) fn take_all(&mut self) -> Vec<(&'n str, &'n Node, Loc)> {
        self.taken.iter_mut().for_each(|t| *t = true);
        self.entries
            .iter()
            .map(|(k, n, l)| (*k, *n, l.clone()))
            .collect()
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|(k, n, _)| *k == key && !n.is_null())
    }

    /// Reports keys not taken: `ignored` ones as "handled by Envoy" warnings
    /// (once per key path), all others as errors.
    pub(super) fn finish(self, w: &mut Walker<'_>, ignored: &[&str]) {
        for (i, (key, _, loc)) in self.entries.iter().enumerate() {
            if self.taken[i] {
                continue;
            }
            if ignored.contains(key) {
                let pattern = strip_indexes(&loc.path);
                if w.reported_ignored.insert(pattern) {
                    w.diags.warn(loc, "ignored: handled by Envoy");
                }
            } else {
                let hint = suggestion(key, &self.known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                let mut expected: Vec<_> = self.known.clone();
                expected.sort_unstable();
                expected.dedup();
                w.diags.error(
                    loc,
                    format!(
                        "unknown key `{key}`{hint}; expected one of: {}",
                        expected.join(", ")
                    ),
                );
            }
        }
    }
}

fn strip_indexes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// The known key closest to a typo (`tpye` → `type`), if any is close.
fn suggestion<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal string alignment distance (Levenshtein plus transpositions).
fn strsim_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

impl<'a> Walker<'a> {
    pub(super) fn new(env: EnvLookup<'a>) -> Self {
        Walker {
            diags: Diagnostics::default(),
            files: Vec::new(),
            env,
            reported_ignored: HashSet::new(),
        }
    }

    /// Opens a mapping; null counts as an empty one.
    pub(super) fn fields<'n>(&mut self, node: &'n Node, loc: &Loc) -> Option<Fields<'n>> {
        let entries = match &node.value {
            _ if node.is_null() => Vec::new(),
            Value::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                let mut seen = HashSet::new();
                for (k, v) in entries {
                    let Value::Scalar { text, .. } = &k.value else {
                        let at = Loc {
                            path: loc.path.clone(),
                            mark: k.mark,
                        };
                        self.diags.error(&at, "mapping keys must be plain strings");
                        continue;
                    };
                    let child = loc.child(text, k.mark);
                    if !seen.insert(text.as_str()) {
                        self.diags.error(&child, format!("duplicate key `{text}`"));
                        continue;
                    }
                    out.push((text.as_str(), v, child));
                }
                out
            }
            _ => {
                self.diags
                    .error(loc, format!("expected a mapping, found a {}", node.kind()));
                return None;
            }
        };
        let taken = vec![false; entries.len()];
        Some(Fields {
            loc: loc.clone(),
            entries,
            taken,
            known: Vec::new(),
        })
    }

    /// The items of a list, each with its location.
    pub(super) fn seq<'n>(&mut self, node: &'n Node, loc: &Loc) -> Vec<(&'n Node, Loc)> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| (n, loc.index(i, n.mark)))
                .collect(),
            _ => {
                self.diags
                    .error(loc, format!("expected a list, found a {}", node.kind()));
                Vec::new()
            }
        }
    }

    /// A scalar as text, without `${VAR}` expansion.
    pub(super) fn raw_string(&mut self, node: &Node, loc: &Loc) -> Option<String> {
        match &node.value {
            Value::Scalar { text, .. } => Some(text.clone()),
            _ => {
                self.diags
                    .error(loc, format!("expected a string, found a {}", node.kind()));
                None
            }
        }
    }

    /// A scalar as text with `${VAR}` and `${VAR:-default}` expanded.
    pub(super) fn string(&mut self, node: &Node, loc: &Loc) -> Option<String> {
        let raw = self.raw_string(node, loc)?;
        match expand_env(&raw, self.env) {
            Ok(s) => Some(s),
            Err(msg) => {
                self.diags.error(loc, msg);
                None
            }
        }
    }

    /// A non-empty expanded string.
    pub(super) fn non_empty(&mut self, node: &Node, loc: &Loc) -> Option<String> {
        let s = self.string(node, loc)?;
        if s.trim().is_empty() {
            self.diags.error(loc, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub(super) fn secret(&mut self, node: &Node, loc: &Loc) -> Option<Secret> {
        self.non_empty(node, loc).map(Secret::new)
    }

    pub(super) fn bool(&mut self, node: &Node, loc: &Loc) -> Option<bool> {
        match self.string(node, loc)?.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            other => {
                self.diags
                    .error(loc, format!("expected true or false, found `{other}`"));
                None
            }
        }
    }

    pub(super) fn duration(&mut self, node: &Node, loc: &Loc) -> Option<Duration> {
        let s = self.string(node, loc)?;
        match parse_duration(&s) {
            Some(d) => Some(d),
            None => {
                self.diags.error(
                    loc,
                    format!("invalid duration `{s}`; use e.g. 30s, 5m, 24h, 500ms"),
                );
                None
            }
        }
    }

    /// A list of strings; a single string is accepted as a list of one.
    pub(super) fn string_list(&mut self, node: &Node, loc: &Loc) -> Vec<(String, Loc)> {
        if let Value::Scalar { .. } = node.value {
            return self
                .string(node, loc)
                .map(|s| (s, loc.clone()))
                .into_iter()
                .collect();
        }
        self.seq(node, loc)
            .into_iter()
            .filter_map(|(n, l)| self.non_empty(n, &l).map(|s| (s, l)))
            .collect()
    }
}

/// `30s`, `5m`, `24h`, `7d`, `500ms`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => return Some(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("5 minutes"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn suggestions_catch_typos() {
        assert_eq!(
            suggestion("tpye", &["type", "basic", "enabled"]),
            Some("type")
        );
        assert_eq!(suggestion("bsaic", &["type", "basic"]), Some("basic"));
        assert_eq!(suggestion("completely", &["type", "basic"]), None);
    }

    #[test]
    fn index_stripping() {
        assert_eq!(strip_indexes("rules[12].paths[0].x"), "rules[].paths[].x");
    }
}
