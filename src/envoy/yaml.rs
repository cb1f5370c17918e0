//! A small YAML writer for generated Envoy configs: a tree of maps, lists
//! and scalars, written in a stable order with comments where a reader of
//! the bootstrap would look. Strings are written as JSON strings when they
//! are not plainly safe, which YAML reads back unchanged.

use std::fmt::Write;

/// A YAML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Yaml {
    Str(String),
    Int(i64),
    Bool(bool),
    Map(Vec<Entry>),
    List(Vec<Self>),
}

/// One key of a map, with the comment written above it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: Yaml,
    pub comment: Option<String>,
}

impl Yaml {
    pub fn str(s: impl Into<String>) -> Self {
        Self::Str(s.into())
    }

    /// A map from `(key, value)` pairs in the given order.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Self)>) -> Self {
        Self::Map(
            entries
                .into_iter()
                .map(|(key, value)| Entry {
                    key: key.into(),
                    value,
                    comment: None,
                })
                .collect(),
        )
    }

    /// Adds `key: value` at the end of a map (no-op on anything else).
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: Self) -> Self {
        if let Self::Map(entries) = &mut self {
            entries.push(Entry {
                key: key.into(),
                value,
                comment: None,
            });
        }
        self
    }

    /// Adds `key: value` with a comment above it.
    #[must_use]
    pub fn with_comment(
        mut self,
        comment: impl Into<String>,
        key: impl Into<String>,
        value: Self,
    ) -> Self {
        if let Self::Map(entries) = &mut self {
            entries.push(Entry {
                key: key.into(),
                value,
                comment: Some(comment.into()),
            });
        }
        self
    }

    /// The same tree as JSON (comments dropped): Envoy reads both.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Str(s) => serde_json::Value::String(s.clone()),
            Self::Int(i) => serde_json::Value::from(*i),
            Self::Bool(b) => serde_json::Value::Bool(*b),
            Self::List(items) => {
                serde_json::Value::Array(items.iter().map(Self::to_json).collect())
            }
            Self::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// The document, ending with a newline.
    pub fn to_document(&self) -> String {
        let mut out = String::new();
        write_value(&mut out, self, 0);
        out
    }
}

fn is_inline(value: &Yaml) -> bool {
    match value {
        Yaml::Map(e) => e.is_empty(),
        Yaml::List(l) => l.is_empty(),
        _ => true,
    }
}

fn inline(value: &Yaml) -> String {
    match value {
        Yaml::Str(s) => scalar(s),
        Yaml::Int(i) => i.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Map(_) => "{}".into(),
        Yaml::List(_) => "[]".into(),
    }
}

/// Writes a top-level or nested block value at `indent` spaces.
fn write_value(out: &mut String, value: &Yaml, indent: usize) {
    match value {
        Yaml::Map(entries) if !entries.is_empty() => write_map(out, entries, indent, None),
        Yaml::List(items) if !items.is_empty() => write_list(out, items, indent),
        other => {
            let _ = writeln!(out, "{:indent$}{}", "", inline(other));
        }
    }
}

/// A map's entries; `first_prefix` replaces the indentation of the first
/// line (a list item's `- `).
fn write_map(out: &mut String, entries: &[Entry], indent: usize, first_prefix: Option<&str>) {
    for (i, entry) in entries.iter().enumerate() {
        let lead = match (i, first_prefix) {
            (0, Some(prefix)) => prefix.to_string(),
            _ => " ".repeat(indent),
        };
        if let Some(comment) = &entry.comment {
            for line in comment.lines() {
                // The comment goes above the entry, at the entry's column.
                let _ = writeln!(out, "{:indent$}# {line}", "");
            }
        }
        let key = scalar(&entry.key);
        if is_inline(&entry.value) {
            let _ = writeln!(out, "{lead}{key}: {}", inline(&entry.value));
        } else {
            let _ = writeln!(out, "{lead}{key}:");
            write_value(out, &entry.value, indent + 2);
        }
    }
}

fn write_list(out: &mut String, items: &[Yaml], indent: usize) {
    for item in items {
        match item {
            Yaml::Map(entries) if !entries.is_empty() => {
                let prefix = format!("{:indent$}- ", "");
                write_map(out, entries, indent + 2, Some(&prefix));
            }
            Yaml::List(inner) if !inner.is_empty() => {
                let _ = writeln!(out, "{:indent$}-", "");
                write_list(out, inner, indent + 2);
            }
            other => {
                let _ = writeln!(out, "{:indent$}- {}", "", inline(other));
            }
        }
    }
}

/// A string as a plain scalar when that reads back as the same string,
/// else as a JSON string (valid YAML double-quoted).
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        && !s.starts_with(['-', '.'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
        )
        && s.parse::<f64>().is_err()
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_nested_maps_lists_and_comments() {
        let doc = Yaml::map([("a", Yaml::Int(1))])
            .with_comment(
                "why b\nand more",
                "b",
                Yaml::List(vec![
                    Yaml::map([("x", Yaml::str("y")), ("z", Yaml::Bool(true))]),
                    Yaml::str("plain"),
                ]),
            )
            .with("c", Yaml::map::<&str>([]))
            .with("d", Yaml::str("@type: x"))
            .with("e", Yaml::str("true"))
            .with("f", Yaml::str("8080"));
        assert_eq!(
            doc.to_document(),
            "a: 1\n# why b\n# and more\nb:\n  - x: \"y\"\n    z: true\n  - plain\nc: {}\nd: \"@type: x\"\ne: \"true\"\nf: \"8080\"\n"
        );
    }

    #[test]
    fn strings_read_back_unchanged() {
        for s in [
            "(?i)a\\.b",
            "*",
            ":authority",
            "a\"b",
            "line\nbreak",
            "",
            "-x",
            "0.5s",
            "null",
        ] {
            let doc = Yaml::map([("k", Yaml::str(s))]).to_document();
            let back = crate::config::yaml::parse(&doc).expect("parses");
            let crate::config::yaml::Value::Map(entries) = back.value else {
                panic!("a map");
            };
            let crate::config::yaml::Value::Scalar { text, .. } = &entries[0].1.value else {
                panic!("a scalar");
            };
            assert_eq!(text, s, "{doc}");
        }
    }
}
