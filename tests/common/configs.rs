//! Configs shared by several test files.

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
