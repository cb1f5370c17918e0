//! Every validation error the config loader reports, with its location.

use ingress_authz::config::ConfigError;
use ingress_authz::engine::Engine;

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("from-env-token".into()),
        _ => None,
    }
}

fn errors(yaml: &str) -> Vec<String> {
    match Engine::from_text(yaml, "test.yaml", &env) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { errors, .. }) => errors.iter().map(|e| e.to_string()).collect(),
        Err(other) => vec![other.to_string()],
    }
}

/// Wraps an auth block in a one-rule config (auth block starts at line 6).
fn with_auth(auth: &str) -> String {
    let indented: String = auth.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "rules:\n  - host: example.com\n    backend:\n      service:\n        auth:\n{indented}"
    )
}

#[track_caller]
fn assert_error(yaml: &str, needle: &str) {
    let errs = errors(yaml);
    assert!(
        errs.iter().any(|e| e.contains(needle)),
        "expected an error containing {needle:?}, got {errs:#?}"
    );
}

#[test]
fn typo_in_type_is_an_error_naming_the_line() {
    let yaml = with_auth("  tpye: basic\n  basic:\n    users:\n      - {username: a, password: b}");
    let errs = errors(&yaml);
    // The block without its `type` would serve the route open: an error of
    // its own, beside the typo's.
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(
        errs[0],
        format!("line 5:9: rules[0].backend.service.auth: {NO_TYPE}")
    );
    assert!(errs[1].starts_with("line 6:"), "{}", errs[1]);
    assert!(
        errs[1].contains("rules[0].backend.service.auth.tpye"),
        "{}",
        errs[1]
    );
    assert!(errs[1].contains("did you mean `type`"), "{}", errs[1]);
}

/// The error of an `auth` block with settings but no `type`.
const NO_TYPE: &str = "`auth` has settings but no `type`, so it would authenticate no one: name the method (`type`: one of basic, bearer, jwt, oauth2, oidc), or write `enabled: false` to leave the route open";

#[test]
fn validation_error_table() {
    let cases: &[(&str, &str)] = &[
        (
            "  type: Basic",
            "unknown auth type \"Basic\"; expected one of basic, bearer, jwt, oauth2, oidc",
        ),
        ("  type: ldap", "unknown auth type \"ldap\""),
        ("  enabled: true", "`enabled: true` needs a `type`"),
        ("  type: basic", "type basic needs a `basic` block"),
        (
            "  type: basic\n  basic:\n    users: []",
            "basic needs at least one user",
        ),
        (
            "  type: basic\n  basic:\n    users:\n      - {username: a}",
            "user needs a `password`",
        ),
        (
            "  type: basic\n  basic:\n    users:\n      - {password: a}",
            "user needs a `username`",
        ),
        (
            "  type: basic\n  basic:\n    users:\n      - {username: 'a:b', password: c}",
            "username must not contain `:`",
        ),
        (
            "  type: basic\n  basic:\n    users:\n      - {username: a, password: '$2y$10$broken'}",
            "invalid bcrypt hash",
        ),
        (
            "  type: basic\n  basic:\n    users:\n      - {username: a, password: '$argon2id$v=19$bad'}",
            "invalid argon2 hash",
        ),
        (
            "  type: basic\n  basic:\n    users:\n      - {username: a, password: '$apr1$x$y'}",
            "too weak",
        ),
        (
            "  type: basic\n  basic:\n    users_file: /nonexistent/htpasswd",
            "cannot read users_file",
        ),
        (
            "  type: basic\n  basic:\n    users:\n      - {username: a, password: b}\n      - {username: a, password: c}",
            "duplicate user `a`",
        ),
        ("  type: bearer", "type bearer needs a `bearer` block"),
        (
            "  type: bearer\n  bearer:\n    tokens: []",
            "bearer needs at least one token",
        ),
        (
            "  type: bearer\n  bearer:\n    tokens_file: /nonexistent/tokens",
            "cannot read tokens_file",
        ),
        ("  type: jwt", "jwt needs a key"),
        ("  type: jwt\n  jwt:\n    issuer: x", "jwt needs a key"),
        (
            "  type: jwt\n  jwt:\n    public_key: not-a-pem",
            "public_key is not valid PEM",
        ),
        (
            "  type: jwt\n  secret: s1\n  jwt:\n    secret: s2",
            "exactly one key",
        ),
        (
            "  type: jwt\n  secret: s\n  jwt:\n    algorithms: [RS256]",
            "does not fit the configured key",
        ),
        (
            "  type: jwt\n  secret: s\n  jwt:\n    algorithms: [none]",
            "unknown JWT algorithm",
        ),
        (
            "  type: jwt\n  secret: s\n  jwt:\n    leeway: soon",
            "invalid duration",
        ),
        (
            "  type: jwt\n  secret: ${UNSET_SECRET_VAR}",
            "environment variable `UNSET_SECRET_VAR` is not set",
        ),
        ("  type: oauth2", "type oauth2 needs an `oauth2` block"),
        (
            "  type: oauth2\n  oauth2:\n    provider: gitbub\n    client_id: a\n    client_secret: b",
            "unknown oauth2 provider \"gitbub\"",
        ),
        (
            "  type: oauth2\n  oauth2:\n    provider: github",
            "oauth2 needs `client_id`",
        ),
        (
            "  type: oauth2\n  oauth2:\n    provider: auth0\n    client_id: a\n    client_secret: b",
            "needs `base_url`",
        ),
        (
            "  type: oauth2\n  oauth2:\n    provider: github\n    client_id: a\n    client_secret: b\n    redirect_url: https://x/callback",
            "redirect_url path must be /oauth2/callback",
        ),
        (
            "  type: oauth2\n  oauth2:\n    provider: github\n    client_id: a\n    client_secret: b\n    connect:\n      enabled: true",
            "connect.enabled needs `jwt.secret`",
        ),
        (
            "  type: oauth2\n  oauth2:\n    provider: github\n    client_id: a\n    client_secret: b\n    connect:\n      enabled: true\n      jwt: {secret: s, algorithm: rs256}",
            "needs a PEM private key",
        ),
        ("  type: oidc", "oidc needs `provider`"),
        (
            "  type: oidc\n  provider: google\n  oidc:\n    client_id: a",
            "use one form",
        ),
        ("  type: oidc\n  provider: github", "unknown oidc provider"),
        ("  enabled: maybe\n  type: basic", "expected true or false"),
    ];
    for (auth, needle) in cases {
        assert_error(&with_auth(auth), needle);
    }
}

#[test]
fn host_and_path_errors() {
    assert_error(
        "rules:\n  - host: '(bad'\n",
        "rules[0].host: invalid host regex",
    );
    assert_error(
        "rules:\n  - host: a.com\n    paths:\n      - path: '/x('\n",
        "rules[0].paths[0].path: invalid path regex",
    );
    assert_error(
        "rules:\n  - host: a.com\n    host_type: fuzzy\n",
        "unknown host_type",
    );
    assert_error("rules:\n  - host: a.com:8080\n", "must not include a port");
    assert_error("rules:\n  - backend: {}\n", "rule needs a `host`");
    assert_error(
        "rules:\n  - host: a.com\n    paths:\n      - backend: {}\n",
        "path entry needs a `path`",
    );
    assert_error("rules: {}\n", "expected a list");
    assert_error("rulez: []\n", "unknown key `rulez` (did you mean `rules`?)");
    assert_error(
        "authz:\n  session:\n    secret: short\n",
        "at least 32 bytes",
    );
    assert_error("authz:\n  grpc_addr: nowhere\n", "invalid address");
}

#[test]
fn all_errors_are_reported_at_once_in_line_order() {
    let yaml = "rules:\n  - host: '(bad'\n    backend:\n      service:\n        auth:\n          type: Basic\n  - host: ok.com\n    bogus: 1\n";
    let errs = errors(yaml);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs[0].starts_with("line 2:"));
    assert!(errs[1].starts_with("line 6:"));
    assert!(errs[2].starts_with("line 8:"));
}

#[test]
fn syntax_errors_name_the_position() {
    let err = Engine::from_text("rules: [\n", "x.yaml", &env).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("line"), "{err}");
}

#[test]
fn ingress_proxy_keys_are_warned_once_not_errors() {
    let yaml = "version: v1\nport: 8080\nwaf: {enabled: true}\nrules:\n  - host: a.com\n    backend:\n      service: {name: a, port: 1, protocol: https}\n  - host: b.com\n    backend:\n      service: {name: b, port: 1, protocol: https}\n";
    let engine = Engine::from_text(yaml, "x.yaml", &env).expect("valid");
    let warnings: Vec<String> = engine.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings.iter().filter(|w| w.contains("protocol")).count(),
        1,
        "reported once: {warnings:#?}"
    );
    for key in ["version", "port", "waf"] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&format!(": {key}: ignored: handled by Envoy"))),
            "{key}: {warnings:#?}"
        );
    }
}

#[test]
fn env_expansion_in_auth_only() {
    let yaml = with_auth("  type: bearer\n  bearer:\n    tokens: [\"${TOKEN}\"]");
    assert!(Engine::from_text(&yaml, "x", &env).is_ok());
    // ingress's own templates elsewhere are left alone.
    let yaml = "rules:\n  - host: a.com\n    backend:\n      service:\n        name: ${host.1}\n";
    assert!(Engine::from_text(yaml, "x", &env).is_ok());
}

#[test]
fn disabled_auth_is_still_validated() {
    assert_error(
        &with_auth("  enabled: false\n  type: basic\n  basic:\n    users: []"),
        "at least one user",
    );
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let yaml = with_auth(
        "  type: basic\n  basic:\n    users:\n      - {username: a, password: 'hunter2-secret'}\n    bogus: 1",
    );
    let errs = errors(&yaml).join("\n");
    assert!(!errs.contains("hunter2"), "{errs}");
    let ok = with_auth("  type: jwt\n  secret: jwt-secret-value-xyz");
    let engine = Engine::from_text(&ok, "x", &env).unwrap();
    let debug = format!("{engine:?}");
    assert!(!debug.contains("jwt-secret-value-xyz"), "{debug}");
    let ok = with_auth(
        "  type: basic\n  basic:\n    users:\n      - {username: a, password: 'hunter2-secret'}",
    );
    let engine = Engine::from_text(&ok, "x", &env).unwrap();
    assert!(!format!("{engine:?}").contains("hunter2"));
}

#[test]
fn ingress_example_corpus_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/ingress-examples");
    assert!(
        dir.is_dir(),
        "the ingress example corpus is expected at {} (CI always has it)",
        dir.display()
    );
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(p);
            }
        }
    }
    assert!(
        files.len() > 40,
        "corpus looks incomplete: {} files",
        files.len()
    );
    for f in files {
        if let Err(e) = Engine::load(&f) {
            panic!("{} must validate: {e}", f.display());
        }
    }
}

// ---------------------------------------------------------------------------
// `allow:` (the authorization policy)

const GITHUB: &str =
    "  type: oauth2\n  oauth2:\n    provider: github\n    client_id: a\n    client_secret: b";

/// An error located at `path` whose text also has every one of `words`.
#[track_caller]
fn assert_error_at(yaml: &str, path: &str, words: &[&str]) {
    let errs = errors(yaml);
    assert!(
        errs.iter()
            .any(|e| e.contains(&format!(": {path}: ")) && words.iter().all(|w| e.contains(w))),
        "expected an error at {path} mentioning {words:?}, got {errs:#?}"
    );
}

#[test]
fn allow_kinds_must_fit_the_auth_type() {
    let basic = "  type: basic\n  basic:\n    users:\n      - {username: a, password: b}";
    assert_error_at(
        &with_auth(&format!("{basic}\n  allow:\n    emails: [a@x.com]")),
        "rules[0].backend.service.auth.allow.emails",
        &["basic"],
    );
    assert_error_at(
        &with_auth("  type: jwt\n  secret: s\n  allow:\n    logins: [octocat]"),
        "rules[0].backend.service.auth.allow.logins",
        &["jwt"],
    );
    assert_error_at(
        &with_auth(
            "  type: bearer\n  bearer:\n    tokens: [t]\n  allow:\n    claims: {tenant: acme}",
        ),
        "rules[0].backend.service.auth.allow.claims",
        &["bearer"],
    );
    // Control: what each of them can check loads.
    for auth in [
        format!("{basic}\n  allow:\n    users: [a]"),
        "  type: jwt\n  secret: s\n  allow:\n    users: [a]\n    claims: {tenant: acme}".to_owned(),
        "  type: bearer\n  bearer:\n    tokens: [t]\n  allow:\n    users: [ci]".to_owned(),
    ] {
        let errs = errors(&with_auth(&auth));
        assert!(errs.is_empty(), "{auth}: {errs:#?}");
    }
}

#[test]
fn allowed_emails_and_allow_emails_together_is_an_error() {
    let yaml = with_auth(&format!(
        "{GITHUB}\n    allowed_emails: [a@x.com]\n  allow:\n    emails: [b@x.com]"
    ));
    let errs = errors(&yaml);
    assert!(
        errs.iter()
            .any(|e| e.contains("rules[0].backend.service.auth.")
                && e.contains("allowed_emails")
                && e.contains("allow.emails")),
        "an error naming both `allowed_emails` and `allow.emails`: {errs:#?}"
    );
    // Either one alone is fine (the old key is an alias).
    for auth in [
        format!("{GITHUB}\n    allowed_emails: [a@x.com]\n    allowed_domains: [x.com]"),
        format!("{GITHUB}\n  allow:\n    emails: [b@x.com]\n    domains: [x.com]"),
    ] {
        let errs = errors(&with_auth(&auth));
        assert!(errs.is_empty(), "{auth}: {errs:#?}");
    }
}

#[test]
fn microsoft_domains_need_a_single_tenant() {
    let microsoft = "  type: oauth2\n  oauth2:\n    provider: microsoft\n    client_id: a\n    client_secret: b";
    for tenant in ["", "\n    tenant: common", "\n    tenant: organizations"] {
        assert_error_at(
            &with_auth(&format!(
                "{microsoft}{tenant}\n  allow:\n    domains: [contoso.example]"
            )),
            "rules[0].backend.service.auth.allow.domains",
            &["tenant"],
        );
    }
    // Control: a tenant of its own.
    let yaml = with_auth(&format!(
        "{microsoft}\n    tenant: contoso\n  allow:\n    domains: [contoso.example]"
    ));
    let errs = errors(&yaml);
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn google_oauth2_has_no_groups() {
    let google =
        "  type: oauth2\n  oauth2:\n    provider: google\n    client_id: a\n    client_secret: b";
    assert_error_at(
        &with_auth(&format!("{google}\n  allow:\n    groups: [admins]")),
        "rules[0].backend.service.auth.allow.groups",
        &["google"],
    );
    let errs = errors(&with_auth(&format!(
        "{google}\n  allow:\n    emails: [grace@google.example]"
    )));
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn oidc_api_mode_needs_an_audience() {
    let yaml = with_auth("  type: oidc\n  issuer: https://idp.example.com");
    let errs = errors(&yaml);
    assert!(
        errs.iter()
            .any(|e| e.contains("rules[0].backend.service.auth") && e.contains("audience")),
        "{errs:#?}"
    );
    // Control: with an audience, or in login mode (the client id is the
    // audience of the ID token).
    for auth in [
        "  type: oidc\n  issuer: https://idp.example.com\n  audience: [my-api]",
        "  type: oidc\n  issuer: https://idp.example.com\n  client_id: a\n  client_secret: b",
    ] {
        let errs = errors(&with_auth(auth));
        assert!(errs.is_empty(), "{auth}: {errs:#?}");
    }
}

#[test]
fn unknown_keys_in_allow_are_errors() {
    let yaml = with_auth(
        "  type: basic\n  basic:\n    users:\n      - {username: a, password: b}\n  allow:\n    user: [a]",
    );
    assert_error_at(
        &yaml,
        "rules[0].backend.service.auth.allow.user",
        &["unknown key `user`"],
    );
}

#[test]
fn allow_for_every_auth_type_loads() {
    let yaml = "\
authz:
  session:
    secret: \"policy-config-session-secret-0123456789\"
rules:
  - host: basic.example.com
    backend:
      service:
        auth:
          type: basic
          basic:
            users:
              - {username: alice, password: a}
              - {username: bob, password: b}
          allow:
            users: [alice]
  - host: bearer.example.com
    backend:
      service:
        auth:
          type: bearer
          bearer:
            tokens:
              - plain-token
              - {name: ci, token: ci-token-xyz}
          allow:
            users: [ci]
  - host: jwt.example.com
    backend:
      service:
        auth:
          type: jwt
          secret: s
          jwt:
            groups_claim: realm_access.roles
          allow:
            users: [alice]
            groups: [admins]
            claims: {tenant: acme, scope: read}
  - host: github.example.com
    backend:
      service:
        auth:
          type: oauth2
          oauth2:
            provider: github
            client_id: a
            client_secret: b
          allow:
            users: [\"583231\"]
            logins: [octocat]
            emails: [octocat@github.example]
            domains: [github.example]
            groups: [acme, acme/platform]
  - host: oidc.example.com
    backend:
      service:
        auth:
          type: oidc
          issuer: https://idp.example.com
          client_id: a
          client_secret: b
          allow:
            emails: [a@x.com]
            domains: [x.com]
            claims: {tenant: acme}
";
    let engine = Engine::from_text(yaml, "x.yaml", &env).unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<String> = engine.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("any github account can sign in")),
        "github has an allow block: {warnings:#?}"
    );
}

#[test]
fn github_without_allow_warns_that_anyone_can_sign_in() {
    let engine =
        Engine::from_text(&with_auth(GITHUB), "x.yaml", &env).unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<String> = engine.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("rules[0].backend.service.auth")
                && w.contains("any github account can sign in")),
        "{warnings:#?}"
    );
}

#[test]
fn hash_costs_above_the_caps_are_errors_at_the_user() {
    let bcrypt15 = "$2b$15$KQ7QUeZQdNQm3jG5u7QFceE0Z1b9x5WcS8i1h0Q3b1nH3d9o7VQ1W";
    let yaml = with_auth(&format!(
        "  type: basic\n  basic:\n    users:\n      - username: slow\n        password: '{bcrypt15}'"
    ));
    assert_error_at(
        &yaml,
        "rules[0].backend.service.auth.basic.users[0].password",
        &["bcrypt cost 15", "cap 14"],
    );
    // m = 128 MiB.
    let argon = "$argon2id$v=19$m=131072,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
    let yaml = with_auth(&format!(
        "  type: basic\n  basic:\n    users:\n      - username: big\n        password: '{argon}'"
    ));
    assert_error_at(
        &yaml,
        "rules[0].backend.service.auth.basic.users[0].password",
        &["m=131072", "64 MiB"],
    );
    let ok = bcrypt::hash("pw", 4).unwrap();
    let yaml = with_auth(&format!(
        "  type: basic\n  basic:\n    users:\n      - username: fine\n        password: '{ok}'"
    ));
    assert!(errors(&yaml).is_empty(), "{:?}", errors(&yaml));
}

#[test]
fn hostile_traffic_settings_are_checked() {
    let with_authz = |authz: &str| {
        format!(
            "authz:\n{authz}rules:\n  - host: a.example.com\n    backend: {{service: {{name: app}}}}\n"
        )
    };
    assert_error_at(
        &with_authz("  hash_concurrency: 0\n"),
        "authz.hash_concurrency",
        &["1 to 256"],
    );
    assert_error_at(
        &with_authz("  login_throttle: {max_failures: 0}\n"),
        "authz.login_throttle.max_failures",
        &["at least 1"],
    );
    assert_error_at(
        &with_authz("  login_throttle: {windw: 1m}\n"),
        "authz.login_throttle.windw",
        &["unknown key"],
    );
    assert_error_at(
        &with_authz("  admin_token: short\n"),
        "authz.admin_token",
        &["32 bytes"],
    );
    assert!(errors(&with_authz(
        "  hash_concurrency: 2\n  login_throttle: {enabled: true, max_failures: 5, window: 30s, max_failures_per_user: 50, per_user: false}\n  admin_token: 0123456789abcdef0123456789abcdef\n"
    ))
    .is_empty());
}

#[test]
fn an_emptied_credential_file_is_valid_and_admits_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let users = dir.path().join("htpasswd");
    std::fs::write(&tokens, "# all revoked\n").unwrap();
    std::fs::write(&users, "").unwrap();
    let yaml = format!(
        "rules:\n  - host: t.example.com\n    backend:\n      service:\n        auth: {{type: bearer, bearer: {{tokens_file: '{}'}}}}\n  - host: u.example.com\n    backend:\n      service:\n        auth: {{type: basic, basic: {{users_file: '{}'}}}}\n",
        tokens.display(),
        users.display()
    );
    assert!(errors(&yaml).is_empty(), "{:?}", errors(&yaml));
}

#[test]
fn an_open_prefix_under_an_authenticated_rule_is_warned() {
    let yaml = "rules:\n  - host: a.example.com\n    backend:\n      service:\n        auth: {type: bearer, bearer: {tokens: [t-123]}}\n    paths:\n      - path: /public\n        backend: {service: {auth: {enabled: false}}}\n      - path: /static/\n        backend: {service: {auth: {enabled: false}}}\n      - path: /health$\n        backend: {service: {auth: {enabled: false}}}\n";
    let engine = Engine::from_text(yaml, "test.yaml", &env).expect("valid");
    let warnings: Vec<String> = engine.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.contains("open prefix"))
            .count(),
        1,
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("rules[0].paths[0].path") && w.contains("/public-internal")),
        "{warnings:#?}"
    );
}

#[test]
fn identity_header_errors_name_their_location() {
    let basic = "  type: basic\n  basic:\n    users:\n      - {username: a, password: b}\n";
    let cases: &[(&str, &str)] = &[
        (
            "  identity_headers:\n    user: X-Connect-Token",
            "line 11:13: rules[0].backend.service.auth.identity_headers.user: `X-Connect-Token` cannot be an identity header: the proxy or the authorizer owns it",
        ),
        (
            "  identity_headers:\n    email: Authorization",
            "line 11:13: rules[0].backend.service.auth.identity_headers.email: `Authorization` cannot be an identity header: the proxy or the authorizer owns it",
        ),
        (
            "  identity_headers:\n    groups: \"X Groups\"",
            "line 11:13: rules[0].backend.service.auth.identity_headers.groups: `X Groups` is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)",
        ),
        (
            "  identity_headers:\n    user: Connection",
            "line 11:13: rules[0].backend.service.auth.identity_headers.user: `Connection` cannot be an identity header: the proxy or the authorizer owns it",
        ),
        (
            "  identity_headers:\n    user: X-User\n    email: x-user",
            "line 12:13: rules[0].backend.service.auth.identity_headers.email: `x-user` is already used for another identity header",
        ),
        (
            "  identity_headers:\n    name: X-User",
            "line 11:13: rules[0].backend.service.auth.identity_headers.name: unknown key `name`; expected one of: email, groups, user",
        ),
        (
            "  strip_credentials: yes",
            "line 10:11: rules[0].backend.service.auth.strip_credentials: expected true or false, found `yes`",
        ),
    ];
    for (extra, want) in cases {
        let yaml = with_auth(&format!("{basic}{extra}"));
        assert_eq!(errors(&yaml), [want.to_string()], "{extra}");
    }
    // Control: valid names load.
    let yaml = with_auth(&format!(
        "{basic}  strip_credentials: true\n  identity_headers:\n    user: X-Auth-Request-User\n    groups: X-Auth-Request-Groups"
    ));
    assert_eq!(errors(&yaml), Vec::<String>::new());
}

#[test]
fn single_sign_on_errors_name_their_location() {
    let config = |authz: &str| {
        format!(
            "authz:\n  session:\n    secret: \"0123456789abcdef0123456789abcdef\"\n{authz}rules: []\n"
        )
    };
    let cases: &[(&str, &str)] = &[
        (
            "    cookie_domain: com\n",
            "line 4:5: authz.session.cookie_domain: cookie_domain `com` is not a domain of at least two labels (e.g. example.com)",
        ),
        (
            "    cookie_domain: exa_mple.com\n",
            "line 4:5: authz.session.cookie_domain: cookie_domain `exa_mple.com` is not a domain of at least two labels (e.g. example.com)",
        ),
        (
            "  login_host: auth.example.com\n",
            "line 4:3: authz.login_host: login_host needs `authz.session.cookie_domain` (the session must reach the hosts that log in there)",
        ),
        (
            "    cookie_domain: example.com\n  login_host: auth.example.org\n",
            "line 5:3: authz.login_host: login_host `auth.example.org` is not inside the cookie domain `example.com`",
        ),
        (
            "    cookie_domain: example.com\n  login_host: auth.example.com:8443\n",
            "line 5:3: authz.login_host: login_host `auth.example.com:8443` is not a host name",
        ),
    ];
    for (authz, want) in cases {
        assert_eq!(errors(&config(authz)), [want.to_string()], "{authz}");
    }
    for ok in [
        "    cookie_domain: example.com\n  login_host: auth.example.com\n",
        "    cookie_domain: .Example.com\n  login_host: example.com\n",
    ] {
        assert_eq!(errors(&config(ok)), Vec::<String>::new(), "{ok}");
    }
}

/// Every error of a config, as `validate` lists them.
fn all_errors(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    match Engine::from_text(yaml, "test.yaml", env) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { errors, .. }) => errors.iter().map(|e| e.to_string()).collect(),
        Err(other) => vec![other.to_string()],
    }
}

#[test]
fn a_short_session_secret_says_how_long_it_is_never_what() {
    let errs = errors("authz:\n  session:\n    secret: short-secret\n");
    assert_eq!(
        errs,
        [
            "line 3:5: authz.session.secret: the session secret is 12 bytes long; it must be at least 32 bytes (e.g. `openssl rand -hex 32`)"
        ],
        "one error, at the secret"
    );
    assert!(!errs[0].contains("short-secret"));
}

#[test]
fn a_session_secret_from_an_unset_variable_names_the_variable() {
    let errs = errors("authz:\n  session:\n    secret: ${NO_SUCH_SESSION_SECRET}\n");
    assert_eq!(
        errs,
        [
            "line 3:5: authz.session.secret: environment variable `NO_SUCH_SESSION_SECRET` is not set (use ${NO_SUCH_SESSION_SECRET:-default} for a default)"
        ]
    );
}

#[test]
fn a_session_without_any_secret_still_asks_for_one() {
    assert_eq!(
        errors("authz:\n  session:\n    cookie_name: s\n"),
        ["line 2:3: authz.session: session needs `secret` or `secret_file`"]
    );
    assert_eq!(
        errors("authz:\n  session:\n    secret: []\n"),
        ["line 2:3: authz.session: session needs `secret` or `secret_file`"],
        "an empty list is no secret"
    );
}

#[test]
fn a_jwt_block_without_a_key_is_reported_once() {
    let errs = errors(&with_auth(
        "  type: jwt\n  jwt:\n    issuer: https://issuer.example.com",
    ));
    assert_eq!(
        errs,
        [
            "line 7:11: rules[0].backend.service.auth.jwt: jwt needs a key: `secret`, `jwt.secret`, `jwt.public_key` or `jwt.jwks_url`"
        ]
    );
    let two = errors(&with_auth(
        "  type: jwt\n  secret: first-key-0123456789abcdef\n  jwt:\n    secret: second-key-0123456789abcdef",
    ));
    assert_eq!(
        two,
        [
            "line 9:13: rules[0].backend.service.auth.jwt.secret: jwt takes exactly one key: `secret`, `jwt.secret`, `jwt.public_key` or `jwt.jwks_url`"
        ],
        "two keys: one error at the second, none about a missing key"
    );
}

/// `${NAME}` expands in `path` as in `host`, and a regex's `$` anchor is
/// left alone; `$$` before `{` keeps a literal `${` (here in a token).
#[test]
fn paths_expand_variables_and_keep_regex_anchors() {
    let env = |name: &str| match name {
        "API_PREFIX" => Some("/api/v2".to_string()),
        "APP_HOST" => Some("app.example.com".to_string()),
        _ => None,
    };
    let yaml = "rules:\n  - host: ${APP_HOST}\n    backend:\n      service:\n        auth: {type: bearer, bearer: {tokens: [\"t-$${API_PREFIX}-0123456789\"]}}\n    paths:\n      - path: ${API_PREFIX}/public$\n        backend: {service: {auth: {enabled: false}}}\n";
    let engine = Engine::from_text(yaml, "test.yaml", &env).expect("valid");
    let explain = |url: &str, token: Option<&str>| {
        let headers = token
            .map(|t| [("authorization".to_string(), format!("Bearer {t}"))].into())
            .unwrap_or_default();
        ingress_authz::explain::explain_url(&engine, url, &headers).expect("explains")
    };
    let expanded = explain("http://app.example.com/api/v2/public", None);
    assert_eq!(expanded.path_rule, "rules[0].paths[0]", "{}", expanded.text);
    assert!(expanded.allowed, "{}", expanded.text);
    assert!(
        expanded
            .text
            .contains("(`/api/v2/public$` matches as a prefix)"),
        "{}",
        expanded.text
    );
    let anchored = explain("http://app.example.com/api/v2/public/more", None);
    assert_eq!(anchored.path_rule, "", "`$` anchors: {}", anchored.text);
    assert_eq!(anchored.status, 401, "{}", anchored.text);
    let literal = explain(
        "http://app.example.com/x",
        Some("t-${API_PREFIX}-0123456789"),
    );
    assert!(
        literal.allowed,
        "the escaped token is literal: {}",
        literal.text
    );
    let expanded_token = explain("http://app.example.com/x", Some("t-/api/v2-0123456789"));
    assert!(!expanded_token.allowed, "{}", expanded_token.text);

    let unset = all_errors(
        "rules:\n  - host: a.example.com\n    paths:\n      - path: ${NO_SUCH_PREFIX}/x\n",
        &env,
    );
    assert_eq!(
        unset,
        [
            "line 4:9: rules[0].paths[0].path: environment variable `NO_SUCH_PREFIX` is not set (use ${NO_SUCH_PREFIX:-default} for a default)"
        ]
    );
}

/// Login mode of oidc (a login method) at a fake issuer.
const OIDC_LOGIN: &str =
    "  oidc:\n    issuer: https://idp.example.com\n    client_id: app\n    client_secret: s";
const BEARER_BLOCK: &str = "  bearer:\n    tokens: [t-123]";

/// The errors of an auth block, exactly.
#[track_caller]
fn assert_errors(auth: &str, want: &[&str]) {
    assert_eq!(errors(&with_auth(auth)), want, "{auth}");
}

#[test]
fn a_type_list_names_each_method_once_and_at_most_one_login() {
    let types = "rules[0].backend.service.auth.type";
    assert_errors(
        &format!("  type: [bearer, jwt, bearer]\n  secret: s\n{BEARER_BLOCK}"),
        &[&format!(
            "line 6:31: {types}[2]: `type` lists bearer twice; each method appears once"
        )],
    );
    assert_errors(
        &format!("  type: [bearer, ldap]\n{BEARER_BLOCK}"),
        &[&format!(
            "line 6:26: {types}[1]: unknown auth type \"ldap\"; expected one of basic, bearer, jwt, oauth2, oidc"
        )],
    );
    assert_errors(
        "  type: []",
        &[&format!(
            "line 6:11: {types}: `type` is an empty list; name one or more of basic, bearer, jwt, oauth2, oidc"
        )],
    );
    assert_errors(
        &format!(
            "  type: [oauth2, oidc]\n{}\n{OIDC_LOGIN}\n  allow:\n    users: [a]",
            GITHUB.replacen("  type: oauth2\n", "", 1)
        ),
        &[&format!(
            "line 6:26: {types}[1]: `type` lists two login methods (oauth2 and oidc); a route has at most one (oauth2, or oidc with `client_id`)"
        )],
    );
    // Controls: a login method with bearer-style ones, and a list of one.
    for auth in [
        format!(
            "  type: [oidc, bearer, jwt, basic]\n  secret: s\n{OIDC_LOGIN}\n{BEARER_BLOCK}\n  basic:\n    users:\n      - {{username: a, password: b}}\n  allow:\n    users: [a]"
        ),
        format!("  type: [bearer]\n{BEARER_BLOCK}"),
    ] {
        assert_errors(&auth, &[]);
    }
}

/// An auth-level condition must suit every listed method; in a method's
/// own block it judges that method's identities only.
#[test]
fn a_shared_condition_must_suit_every_listed_method() {
    assert_errors(
        &format!(
            "  type: [oidc, bearer]\n{OIDC_LOGIN}\n{BEARER_BLOCK}\n  allow:\n    emails: [a@example.com]"
        ),
        &[
            "line 14:13: rules[0].backend.service.auth.allow.emails: type bearer (listed in `type`) cannot check `emails`; it can check: users; a condition for some of the listed methods belongs in their own block (`<type>: {allow: ...}`)",
        ],
    );
    assert_errors(
        &format!(
            "  type: [oidc, bearer]\n{OIDC_LOGIN}\n    allow:\n      emails: [a@example.com]\n{BEARER_BLOCK}\n    allow:\n      users: [ci]"
        ),
        &[],
    );
    assert_errors(
        &format!(
            "  type: [oidc, bearer]\n{OIDC_LOGIN}\n{BEARER_BLOCK}\n    allow:\n      emails: [a@example.com]"
        ),
        &[
            "line 14:15: rules[0].backend.service.auth.bearer.allow.emails: type bearer cannot check `emails`; it can check: users",
        ],
    );
}

#[test]
fn auth_settings_without_a_type_are_an_error_unless_disabled() {
    let at = "line 5:9: rules[0].backend.service.auth";
    for auth in [
        BEARER_BLOCK.to_owned(),
        "  secret: s".to_owned(),
        "  allow:\n    users: [a]".to_owned(),
        "  report_only: true".to_owned(),
        OIDC_LOGIN.to_owned(),
    ] {
        assert_errors(&auth, &[&format!("{at}: {NO_TYPE}")]);
    }
    // Said out loud: the route is open, and the blocks are kept.
    let yaml = with_auth(&format!(
        "  enabled: false\n{BEARER_BLOCK}\n  allow:\n    users: [a]"
    ));
    let engine =
        Engine::from_text(&yaml, "test.yaml", &env).expect("enabled: false with blocks loads");
    let warnings: Vec<String> = engine.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        ["line 7:11: rules[0].backend.service.auth.bearer: ignored: has no effect without `type`"]
    );
}

#[test]
fn an_empty_auth_on_a_path_under_an_authenticated_rule_is_warned() {
    let yaml = "rules:\n  - host: a.example.com\n    backend:\n      service:\n        auth: {type: bearer, bearer: {tokens: [t-123]}}\n    paths:\n      - path: /open/\n        backend: {service: {auth: {}}}\n      - path: /inherits/\n        backend: {service: {name: app}}\n";
    let engine = Engine::from_text(yaml, "test.yaml", &env).expect("valid");
    let warnings: Vec<String> = engine.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        [
            "line 8:29: rules[0].paths[0].backend.service.auth: an empty `auth` opens this path: a path with its own `auth` does not inherit the rule's; remove it to inherit the rule's auth, or write `enabled: false` to say the path is public"
        ]
    );
}

#[test]
fn a_login_route_outside_the_cookie_domain_is_an_error() {
    let config = |host: &str, login: bool| {
        let auth = if login {
            "type: oauth2, oauth2: {provider: github, client_id: c, client_secret: s}"
        } else {
            "type: bearer, bearer: {tokens: [t-0123456789]}"
        };
        format!(
            "authz:\n  session:\n    secret: \"0123456789abcdef0123456789abcdef\"\n    cookie_domain: example.com\nrules:\n  - host: \"{host}\"\n    backend:\n      service:\n        auth: {{{auth}}}\n"
        )
    };
    assert_eq!(
        errors(&config("app.example.org", true)),
        [
            "line 6:5: rules[0].host: `app.example.org` logs users in but is outside session.cookie_domain `example.com`: its browsers would drop the session cookie"
        ]
    );
    assert_eq!(
        errors(&config("*.example.net", true)).len(),
        1,
        "a wildcard outside the domain"
    );
    for ok in [
        ("app.example.com", true),
        ("*.example.com", true),
        ("example.com", true),
        ("app.example.org", false),
    ] {
        assert_eq!(errors(&config(ok.0, ok.1)), Vec::<String>::new(), "{ok:?}");
    }
}
