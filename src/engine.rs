//! The decision engine: a compiled config that answers "allow or deny?"
//! for one request without touching the config text again.

use std::path::Path;
use std::sync::Arc;

use crate::auth::oauth2::CookieSettings;
use crate::auth::{AuthKind, AuthResult, Authenticator, BuildContext};
use crate::config::spec::{AuthSpec, AuthzSpec, BackendKind, BackendSpec, ConfigSpec};
use crate::config::{self, ConfigError, Diagnostic};
use crate::decision::{Decision, Reason, Status, Verdict};
use crate::matching::host::HostPattern;
use crate::matching::path::normalize;
use crate::matching::path_pattern::PathPattern;
use crate::matching::{OpenReason, PathRoute, Policy, Route, RouteMatch, Router, Rule};
use crate::request::RequestView;

#[derive(Debug)]
pub struct Engine {
    router: Router,
    pub settings: AuthzSpec,
    /// Files the config reads besides itself (watched for reload).
    pub files: Vec<std::path::PathBuf>,
    /// Session keys and cookie settings of the login flows.
    pub login: BuildContext,
    /// Warnings from loading (ignored keys and the like).
    pub warnings: Vec<Diagnostic>,
}

impl Engine {
    /// Reads, validates and compiles a config file: every error at once.
    pub fn load(path: &Path) -> Result<Engine, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        Self::from_text(&text, &file, &config::process_env)
    }

    pub fn from_text(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Engine, ConfigError> {
        let parsed = config::parse(text, file, env)?;
        let mut errors = parsed.errors;
        let built = Self::build(parsed.spec);
        match built {
            Ok(mut engine) if errors.is_empty() => {
                engine.warnings = parsed.warnings;
                engine
                    .warnings
                    .sort_by_key(|w| (w.loc.mark.line, w.loc.mark.col));
                Ok(engine)
            }
            Ok(_) => Err(ConfigError::Invalid {
                file: file.to_string(),
                errors,
            }),
            Err(more) => {
                errors.extend(more);
                errors.sort_by_key(|e| (e.loc.mark.line, e.loc.mark.col));
                Err(ConfigError::Invalid {
                    file: file.to_string(),
                    errors,
                })
            }
        }
    }

    /// Compiles host and path patterns and authenticators.
    pub fn build(spec: ConfigSpec) -> Result<Engine, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let session = spec.authz.session.as_ref();
        let login = BuildContext {
            keys: Arc::new(crate::session::SessionKeys::from_secrets(
                session.map_or(&[][..], |s| &s.secrets),
            )),
            cookies: Arc::new(CookieSettings {
                name: session
                    .map_or_else(|| "ingress_authz".to_string(), |s| s.cookie_name.clone()),
                max_age: session.map_or(24 * 3600, |s| s.max_age.as_secs()),
                trust_forwarded_proto: spec.authz.trust_forwarded_proto,
            }),
        };
        let mut rules = Vec::with_capacity(spec.rules.len());
        for (i, rule_spec) in spec.rules.iter().enumerate() {
            let label = format!("rules[{i}]");
            let host_pattern = match HostPattern::compile(&rule_spec.host, rule_spec.host_type) {
                Ok(p) => Some(p),
                Err(message) => {
                    errors.push(Diagnostic {
                        loc: rule_spec.host_loc.clone(),
                        message,
                    });
                    None
                }
            };
            let rule_policy = policy(&rule_spec.backend, None, &login, &mut errors);
            let mut paths = Vec::with_capacity(rule_spec.paths.len());
            for (j, path_spec) in rule_spec.paths.iter().enumerate() {
                let matcher = match PathPattern::compile(&path_spec.path) {
                    Ok(m) => Some(m),
                    Err(message) => {
                        errors.push(Diagnostic {
                            loc: path_spec.path_loc.clone(),
                            message,
                        });
                        None
                    }
                };
                let inherited = path_spec.backend.kind == BackendKind::Service
                    && path_spec.backend.auth.is_none();
                let path_policy =
                    policy(&path_spec.backend, Some(&rule_policy), &login, &mut errors);
                if let Some(matcher) = matcher {
                    paths.push(PathRoute {
                        pattern: path_spec.path.clone(),
                        matcher,
                        route: Route {
                            label: format!("{label}.paths[{j}]"),
                            policy: path_policy,
                            inherited,
                        },
                    });
                }
            }
            if let Some(host_pattern) = host_pattern {
                rules.push(Rule {
                    host: rule_spec.host.clone(),
                    host_pattern,
                    route: Route {
                        label,
                        policy: rule_policy,
                        inherited: false,
                    },
                    paths,
                });
            }
        }
        let fallback = spec.fallback.as_ref().map(|b| Route {
            label: "fallback".into(),
            policy: policy(b, None, &login, &mut errors),
            inherited: false,
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        let router = Router::new(rules, fallback);
        Ok(Engine {
            router,
            settings: spec.authz,
            files: spec.files,
            login,
            warnings: Vec::new(),
        })
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Decides one request. Never fails: malformed input is a denial.
    pub fn decide<'e>(&'e self, req: &RequestView<'_>) -> Decision<'e> {
        let path = match normalize(req.path) {
            Ok(p) => p,
            Err(_) => return Decision::deny(None, None, Status::BadRequest, Reason::BadPath),
        };
        let found = self.router.find(req.host, &path);
        let Some(route) = found.route() else {
            return Decision::deny(None, None, Status::Forbidden, Reason::NoRoute);
        };
        let mut decision = decide_route(route, req);
        if let Verdict::Allow {
            upstream, remove, ..
        } = &mut decision.verdict
        {
            self.strip_our_cookies(req, upstream, remove);
        }
        decision
    }

    /// Our cookies (session, login state) never reach the upstream.
    fn strip_our_cookies(
        &self,
        req: &RequestView<'_>,
        upstream: &mut crate::auth::UpstreamHeaders,
        remove: &mut Vec<&'static str>,
    ) {
        let Some(header) = req.header("cookie") else {
            return;
        };
        let cookies = &self.login.cookies;
        let is_ours = |pair: &str| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
            cookies.is_ours(name)
        };
        if !header.split(';').any(is_ours) {
            return;
        }
        let kept: Vec<&str> = header
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty() && !is_ours(p))
            .collect();
        if kept.is_empty() {
            remove.push("cookie");
        } else {
            upstream.push(("cookie", kept.join("; ")));
        }
    }

    /// Fetchers of every route that depends on a remote issuer.
    pub fn fetchers(&self) -> Vec<crate::auth::Fetcher> {
        routes(&self.router)
            .filter_map(|r| match &r.policy {
                Policy::Protected(a) => a.fetcher(),
                Policy::Open(_) => None,
            })
            .collect()
    }

    /// The fetcher to run before deciding again, when a decision was a
    /// denial that fresh metadata or keys could turn around.
    pub fn fetcher_for(&self, decision: &Decision<'_>) -> Option<crate::auth::Fetcher> {
        let Verdict::Deny(denial) = &decision.verdict else {
            return None;
        };
        if !matches!(denial.reason, Reason::UnknownKey | Reason::IdpUnavailable) {
            return None;
        }
        match &self.route_by_label(decision.route?)?.policy {
            Policy::Protected(a) => a.fetcher(),
            Policy::Open(_) => None,
        }
    }

    /// Every oidc authenticator of the config.
    pub fn oidc_routes(&self) -> impl Iterator<Item = &crate::auth::oidc::Oidc> {
        routes(&self.router).filter_map(|r| match &r.policy {
            Policy::Protected(a) => match a.as_ref() {
                Authenticator::Oidc(o) => Some(o.as_ref()),
                _ => None,
            },
            Policy::Open(_) => None,
        })
    }

    /// The authenticator of the route with this label.
    pub fn authenticator_for(&self, label: &str) -> Option<Arc<Authenticator>> {
        match &self.route_by_label(label)?.policy {
            Policy::Protected(a) => Some(a.clone()),
            Policy::Open(_) => None,
        }
    }

    /// The route with this label (`rules[0].paths[1]`), for the login callback.
    pub fn route_by_label(&self, label: &str) -> Option<&Route> {
        routes(&self.router).find(|r| r.label == label)
    }

    /// The route a request would take, for `explain`.
    pub fn find<'e>(&'e self, host: &str, path: &str) -> RouteMatch<'e> {
        self.router.find(host, path)
    }
}

fn decide_route<'e>(route: &'e Route, req: &RequestView<'_>) -> Decision<'e> {
    match &route.policy {
        Policy::Open(_) => Decision {
            route: Some(&route.label),
            kind: None,
            verdict: Verdict::Allow {
                reason: Reason::Open,
                user: None,
                upstream: Vec::new(),
                remove: Vec::new(),
            },
        },
        Policy::Protected(auth) => Decision {
            route: Some(&route.label),
            kind: Some(auth.kind()),
            verdict: match auth.authenticate(req, &route.label) {
                AuthResult::Allow { user, upstream } => Verdict::Allow {
                    reason: Reason::Authenticated,
                    user,
                    upstream,
                    remove: Vec::new(),
                },
                AuthResult::Deny(denial) => Verdict::Deny(denial),
            },
        },
    }
}

/// The policy of a backend; `inherit` is the rule's policy for its paths.
fn policy(
    backend: &BackendSpec,
    inherit: Option<&Policy>,
    login: &BuildContext,
    errors: &mut Vec<Diagnostic>,
) -> Policy {
    if backend.kind != BackendKind::Service {
        return Policy::Open(OpenReason::RedirectOrHandler);
    }
    match &backend.auth {
        None => inherit
            .cloned()
            .unwrap_or(Policy::Open(OpenReason::NotConfigured)),
        Some(auth) => auth_policy(auth, login, errors),
    }
}

fn auth_policy(auth: &AuthSpec, login: &BuildContext, errors: &mut Vec<Diagnostic>) -> Policy {
    // Built even when disabled: a disabled config is still validated.
    let built = auth.method.as_ref().map(|m| Authenticator::build(m, login));
    let authenticator = match built {
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            errors.extend(e);
            None
        }
        None => None,
    };
    match (auth.enabled, authenticator) {
        (Some(false), _) => Policy::Open(OpenReason::Disabled),
        (_, Some(a)) => Policy::Protected(Arc::new(a)),
        // No `type`, or one whose errors are already reported.
        (_, None) => Policy::Open(OpenReason::NotConfigured),
    }
}

/// Every route of a router: rules, their paths, the fallback.
fn routes(router: &Router) -> impl Iterator<Item = &Route> {
    router
        .rules()
        .iter()
        .flat_map(|r| std::iter::once(&r.route).chain(r.paths.iter().map(|p| &p.route)))
        .chain(router.fallback())
}

/// Auth kinds used anywhere in the config (for startup notes).
pub fn kinds_in_use(engine: &Engine) -> Vec<AuthKind> {
    let mut kinds = Vec::new();
    for route in routes(&engine.router) {
        if let Policy::Protected(a) = &route.policy
            && !kinds.contains(&a.kind())
        {
            kinds.push(a.kind());
        }
    }
    kinds
}
