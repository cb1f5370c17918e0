//! Config diagnostics: every error and warning carries its YAML location.

use std::fmt;

use super::yaml::Mark;

/// Where in the config a value sits: its YAML path and line/column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    /// e.g. `rules[2].paths[0].backend.service.auth.type`
    pub path: String,
    pub mark: Mark,
}

impl Loc {
    pub fn child(&self, key: &str, mark: Mark) -> Self {
        let path = if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        };
        Self { path, mark }
    }

    pub fn index(&self, i: usize, mark: Mark) -> Self {
        Self {
            path: format!("{}[{i}]", self.path),
            mark,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(top level)"
        } else {
            &self.path
        };
        write!(f, "line {}:{}: {path}", self.mark.line, self.mark.col)
    }
}

/// One problem found in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub loc: Loc,
    pub message: String,
}

impl Diagnostic {
    /// The one way a diagnostic is made: any error type (or text) at `loc`.
    pub fn at(loc: &Loc, message: impl fmt::Display) -> Self {
        Self {
            loc: loc.clone(),
            message: message.to_string(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.message)
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{file}: invalid YAML at {source}")]
    Syntax {
        file: String,
        #[source]
        source: super::yaml::SyntaxError,
    },
    /// The YAML is well-formed but the config is not valid: every error found.
    #[error("{file}: {} error(s):\n{}", errors.len(), list(errors))]
    Invalid {
        file: String,
        errors: Vec<Diagnostic>,
    },
}

fn list(errors: &[Diagnostic]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects errors and warnings while a config is walked.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, loc: &Loc, message: impl fmt::Display) {
        self.errors.push(Diagnostic::at(loc, message));
    }

    pub fn warn(&mut self, loc: &Loc, message: impl fmt::Display) {
        self.warnings.push(Diagnostic::at(loc, message));
    }
}
