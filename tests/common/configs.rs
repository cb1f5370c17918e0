//! Configs shared by several test files, and builders for the parts that
//! many tests' configs share.

/// `lines` (each may hold several, split at newlines) indented by `n`
/// spaces, each ending in a newline.
pub fn indent<S: AsRef<str>>(n: usize, lines: impl IntoIterator<Item = S>) -> String {
    let pad = " ".repeat(n);
    lines
        .into_iter()
        .flat_map(|l| {
            l.as_ref()
                .lines()
                .map(|line| format!("{pad}{line}\n"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `authz.session.secret` (quoted) with `session` lines beyond it, then
/// `rules`.
pub fn with_session(secret: &str, session: &[&str], rules: &[String]) -> String {
    format!(
        "authz:\n  session:\n    secret: \"{secret}\"\n{}rules:\n{}",
        indent(4, session),
        rules.concat()
    )
}

/// The head of a rule for `host`: backend service `app` on port 8080.
pub fn rule_head(host: &str) -> String {
    format!(
        "  - host: {host}\n    backend:\n      service:\n        name: app\n        port: 8080\n"
    )
}

/// A rule for `host` whose `auth:` block holds `auth` (lines relative to
/// `auth:`).
pub fn rule(host: &str, auth: &str) -> String {
    format!("{}        auth:\n{}", rule_head(host), indent(10, [auth]))
}

/// `paths:` with `entries` (from [`path_entry`] or [`path_auth`]); goes
/// after a rule.
pub fn paths(entries: &[String]) -> String {
    format!("    paths:\n{}", entries.concat())
}

/// A `paths:` entry for `path` to the service `name` (port 8080), without
/// an auth block of its own.
pub fn path_entry(path: &str, name: &str) -> String {
    format!(
        "      - path: {path}\n        backend:\n          service:\n            name: {name}\n            port: 8080\n"
    )
}

/// [`path_entry`] with `auth` (lines relative to its `auth:`) as its own
/// auth.
pub fn path_auth(path: &str, name: &str, auth: &str) -> String {
    format!(
        "{}            auth:\n{}",
        path_entry(path, name),
        indent(14, [auth])
    )
}

/// `paths:` with the one entry [`path_auth`].
pub fn path(path: &str, name: &str, auth: &str) -> String {
    paths(&[path_auth(path, name, auth)])
}

/// `rules:` with `rules` (each from [`rule`] or the like).
pub fn rules(rules: &[String]) -> String {
    format!("rules:\n{}", rules.concat())
}

/// The auth lines of `type: basic` with these (username, password) pairs.
pub fn basic_users(users: &[(&str, &str)]) -> String {
    let users: Vec<String> = users
        .iter()
        .map(|(u, p)| format!("- username: {u}\n  password: \"{p}\""))
        .collect();
    format!("type: basic\nbasic:\n  users:\n{}", indent(4, users))
}

/// The auth lines of `type: bearer` with these tokens.
pub fn bearer_tokens(tokens: &[&str]) -> String {
    let tokens: Vec<String> = tokens.iter().map(|t| format!("- {t}")).collect();
    format!("type: bearer\nbearer:\n  tokens:\n{}", indent(4, tokens))
}

/// One host, basic auth: admin:admin123 and a password with colons.
pub fn basic() -> String {
    rules(&[rule(
        "basic.example.com",
        &basic_users(&[("admin", "admin123"), ("colon", "a:b:c")]),
    )])
}

/// `app.example.com` with basic auth for admin:`password`, `/public` open
/// and `/api` behind the bearer `token` (no service ports).
pub fn public_and_api(password: &str, token: &str) -> String {
    format!(
        r#"rules:
  - host: app.example.com
    backend:
      service:
        name: app
        auth:
          type: basic
          basic:
            users:
              - username: admin
                password: {password}
    paths:
      - path: /public
        backend: {{service: {{auth: {{enabled: false}}}}}}
      - path: /api
        backend:
          service:
            auth:
              type: bearer
              bearer:
                tokens: [{token}]
"#
    )
}

/// The guide's "Path-Level Authentication" example, verbatim.
pub const PATH_LEVEL: &str = r#"
rules:
  - host: example.com
    backend:
      service:
        name: backend-service
        port: 8080
        auth:
          type: basic
          basic:
            users:
              - username: default
                password: default123
    paths:
      - path: /admin
        backend:
          service:
            name: admin-service
            port: 8080
            auth:
              type: basic
              basic:
                users:
                  - username: admin
                    password: admin123
                  - username: superadmin
                    password: super123
      - path: /api
        backend:
          service:
            name: api-service
            port: 8080
            auth:
              type: bearer
              bearer:
                tokens:
                  - api-token-1
                  - api-token-2
                  - api-token-3
"#;
