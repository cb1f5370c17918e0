//! Loading the config file: YAML with positions → schema walk (unknown keys,
//! `${VAR}` expansion) → [`spec::ConfigSpec`]. Compiling the spec into the
//! decision engine is [`crate::engine::Engine::build`].

mod env;
pub mod error;
mod reader;
pub mod spec;
mod walk;
mod walk_allow;
mod walk_auth;
mod walk_authz;
mod walk_login;
mod walk_methods;
mod walk_store;
mod walk_upstream;
pub mod yaml;

pub use error::{ConfigError, Diagnostic, Loc};
pub use reader::parse_duration;
pub use walk_auth::AUTH_TYPES;
pub use walk_login::{OAUTH2_PROVIDERS, OIDC_PROVIDERS};

/// A config as written, with the warnings and errors found reading it.
#[derive(Debug)]
pub struct Parsed {
    pub spec: spec::ConfigSpec,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// Parses config text; `env` resolves `${VAR}`.
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, ConfigError> {
    let root = yaml::parse(text).map_err(|source| ConfigError::Syntax {
        file: file.to_string(),
        source,
    })?;
    let mut walker = reader::Walker::new(env);
    let spec = walk::config(&mut walker, &root);
    Ok(Parsed {
        spec,
        errors: walker.diags.errors,
        warnings: walker.diags.warnings,
    })
}

/// The process environment, for [`parse`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
