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

/// `paths:` with one `path` to the service `name` (port 8080), no auth yet;
/// goes after a rule.
pub fn path_head(path: &str, name: &str) -> String {
    format!(
        "    paths:\n      - path: {path}\n        backend:\n          service:\n            name: {name}\n            port: 8080\n"
    )
}

/// [`path_head`] with `auth` (lines relative to its `auth:`) as its own auth.
pub fn path(path: &str, name: &str, auth: &str) -> String {
    format!(
        "{}            auth:\n{}",
        path_head(path, name),
        indent(14, [auth])
    )
}

/// One host, basic auth: admin:admin123 and a password with colons.
pub const BASIC: &str = r#"
rules:
  - host: basic.example.com
    backend:
      service:
        name: app
        port: 8080
        auth:
          type: basic
          basic:
            users:
              - username: admin
                password: admin123
              - username: colon
                password: "a:b:c"
"#;

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
