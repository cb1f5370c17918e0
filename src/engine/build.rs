//! Building an [`Engine`]: reading and validating the config file, then
//! compiling each rule's host, paths and auth into routes numbered by
//! [`RouteId`].

use std::path::Path;
use std::sync::Arc;

use super::{Engine, Slot};
use crate::auth::methods::{Method, Methods};
use crate::auth::{Authenticator, BuildContext, PolicyNeeds};
use crate::config::spec::{
    AuthSpec, BackendKind, BackendSpec, ConfigSpec, MethodSpec, SessionStore,
};
use crate::config::{self, ConfigError, Diagnostic};
use crate::cookies::CookieSettings;
use crate::decision::RouteId;
use crate::hashing::HashPool;
use crate::identity_headers::{IdentityHeaders, RouteSource};
use crate::matching::host::HostPattern;
use crate::matching::path_pattern::PathPattern;
use crate::matching::{OpenReason, PathRoute, Protected, Route, RouteAuth, Router, Rule};
use crate::policy::Policy;
use crate::store::Runtime;
use crate::throttle::Throttle;

impl Engine {
    /// Reads, validates and compiles a config file: every error at once.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        Self::from_text(&text, &file, &config::process_env)
    }

    /// As [`Self::load`], with the text it was built from; the engine
    /// shares `runtime` (the revocations and store of the running server).
    pub fn load_with_text(
        path: &Path,
        runtime: &Arc<Runtime>,
    ) -> Result<(Self, String), ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        Self::from_text_in(&text, &file, &config::process_env, runtime).map(|e| (e, text))
    }

    /// An engine on its own (a one-shot command, a test): no store, and
    /// revocations of its own.
    pub fn from_text(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::from_text_in(text, file, env, &Arc::default())
    }

    pub fn from_text_in(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
        runtime: &Arc<Runtime>,
    ) -> Result<Self, ConfigError> {
        let parsed = config::parse(text, file, env)?;
        let mut errors = parsed.errors;
        let built = Self::build_in(parsed.spec, runtime);
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
                // What the walk reported, the build may find again (a jwt
                // without a key): each problem is listed once.
                for e in more {
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
                errors.sort_by_key(|e| (e.loc.mark.line, e.loc.mark.col));
                Err(ConfigError::Invalid {
                    file: file.to_string(),
                    errors,
                })
            }
        }
    }

    /// Compiles host and path patterns, authenticators and policies.
    pub fn build(spec: ConfigSpec) -> Result<Self, Vec<Diagnostic>> {
        Self::build_in(spec, &Arc::default())
    }

    /// As [`Self::build`], sharing `runtime`.
    pub fn build_in(spec: ConfigSpec, runtime: &Arc<Runtime>) -> Result<Self, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let session = spec.authz.session.as_ref();
        let (policy_claims, any_groups) = policy_needs(&spec);
        let login = BuildContext {
            keys: Arc::new(crate::session::SessionKeys::from_secrets(
                session.map_or(&[][..], |s| &s.secrets),
            )),
            cookies: Arc::new(CookieSettings {
                name: session
                    .map_or_else(|| "ingress_authz".to_string(), |s| s.cookie_name.clone()),
                max_age: session.map_or(24 * 3600, |s| s.max_age.as_secs()),
                trust_forwarded_proto: spec.authz.trust_forwarded_proto,
                domain: session.and_then(|s| s.cookie_domain.clone()),
                login_host: spec.authz.login_host.clone(),
            }),
            policy_claims: policy_claims.into(),
            runtime: runtime.clone(),
            session_store: session.map_or(SessionStore::Cookie, |s| s.store),
        };
        let mut b = Builder {
            login: &login,
            any_groups,
            errors: &mut errors,
            slots: Vec::new(),
        };
        let mut rules = Vec::with_capacity(spec.rules.len());
        for (i, rule_spec) in spec.rules.iter().enumerate() {
            let label = format!("rules[{i}]");
            let host_pattern = match HostPattern::compile(&rule_spec.host, rule_spec.host_type) {
                Ok(p) => Some(p),
                Err(message) => {
                    b.errors.push(Diagnostic::at(&rule_spec.host_loc, message));
                    None
                }
            };
            let rule_id = b.slot(Slot::Rule(i));
            let rule_policy = b.policy(&rule_spec.backend, None);
            let mut paths = Vec::with_capacity(rule_spec.paths.len());
            for (j, path_spec) in rule_spec.paths.iter().enumerate() {
                let matcher = match PathPattern::compile(&path_spec.path) {
                    Ok(m) => Some(m),
                    Err(message) => {
                        b.errors.push(Diagnostic::at(&path_spec.path_loc, message));
                        None
                    }
                };
                let inherited = path_spec.backend.kind == BackendKind::Service
                    && path_spec.backend.auth.is_none();
                let id = b.slot(Slot::Path(i, paths.len()));
                let path_policy = b.policy(&path_spec.backend, Some(&rule_policy));
                if let Some(matcher) = matcher {
                    paths.push(PathRoute {
                        pattern: path_spec.path.clone(),
                        matcher,
                        route: Route {
                            id,
                            label: format!("{label}.paths[{j}]"),
                            policy: path_policy,
                            inherited,
                        },
                    });
                } else {
                    b.slots.pop();
                }
            }
            if let Some(host_pattern) = host_pattern {
                rules.push(Rule {
                    host: rule_spec.host.clone(),
                    host_pattern,
                    route: Route {
                        id: rule_id,
                        label,
                        policy: rule_policy,
                        inherited: false,
                    },
                    paths,
                });
            }
        }
        let fallback = spec.fallback.as_ref().map(|backend| {
            let id = b.slot(Slot::Fallback);
            Route {
                id,
                label: "fallback".into(),
                policy: b.policy(backend, None),
                inherited: false,
            }
        });
        let slots = std::mem::take(&mut b.slots);
        if !errors.is_empty() {
            return Err(errors);
        }
        // Every path compiled (else errors above), so path indexes are the spec's.
        let identity_headers = IdentityHeaders::build(
            &spec,
            slots.iter().map(|s| match *s {
                Slot::Rule(i) => RouteSource::Rule(i),
                Slot::Path(i, j) => RouteSource::Path(i, j),
                Slot::Fallback => RouteSource::Fallback,
            }),
        );
        let router = Router::new(rules, fallback);
        // What the store counts each route's failures under.
        let mut labels = vec![String::new(); slots.len()];
        for route in super::routes(&router) {
            if let Some(label) = labels.get_mut(route.id.0 as usize) {
                label.clone_from(&route.label);
            }
        }
        let concurrency = spec
            .authz
            .hash_concurrency
            .unwrap_or_else(HashPool::default_concurrency);
        Ok(Self {
            router,
            slots,
            hash_pool: Arc::new(HashPool::new(concurrency)),
            throttle: Throttle::shared(spec.authz.login_throttle, runtime.clone(), labels),
            settings: spec.authz,
            files: spec.files,
            login,
            warnings: Vec::new(),
            identity_headers,
            envoy_version: std::sync::OnceLock::new(),
        })
    }
}

/// Compiles routes' auth, numbering routes as it goes.
struct Builder<'a> {
    login: &'a BuildContext,
    any_groups: bool,
    errors: &'a mut Vec<Diagnostic>,
    slots: Vec<Slot>,
}

impl Builder<'_> {
    fn slot(&mut self, slot: Slot) -> RouteId {
        self.slots.push(slot);
        RouteId(self.slots.len() as u32 - 1)
    }

    /// The auth of a backend; `inherit` is the rule's for its paths.
    fn policy(&mut self, backend: &BackendSpec, inherit: Option<&RouteAuth>) -> RouteAuth {
        if backend.kind != BackendKind::Service {
            return RouteAuth::Open(OpenReason::RedirectOrHandler);
        }
        match &backend.auth {
            None => inherit
                .cloned()
                .unwrap_or(RouteAuth::Open(OpenReason::NotConfigured)),
            Some(auth) => self.auth(auth),
        }
    }

    fn auth(&mut self, auth: &AuthSpec) -> RouteAuth {
        let allow = Policy::compile(&auth.allow).map(Box::new);
        let reads = |p: &Option<Box<Policy>>| p.as_ref().is_some_and(|a| a.uses_groups_or_claims());
        let mut methods = Vec::with_capacity(auth.methods.len());
        let mut failed = false;
        // Built even when disabled: a disabled config is still validated.
        for spec in &auth.methods {
            let own = Policy::compile(spec.allow()).map(Box::new);
            let needs = PolicyNeeds {
                groups_ttl: (reads(&allow) || reads(&own))
                    .then(|| groups_ttl(spec))
                    .flatten(),
                groups: self.any_groups,
            };
            match Authenticator::build(spec, self.login, needs) {
                Ok(authenticator) => methods.push(Method {
                    authenticator,
                    allow: own,
                }),
                Err(e) => {
                    self.errors.extend(e);
                    failed = true;
                }
            }
        }
        match auth.enabled {
            Some(false) => RouteAuth::Open(OpenReason::Disabled),
            // No `type`, or one whose errors are already reported.
            _ if failed || methods.is_empty() => RouteAuth::Open(OpenReason::NotConfigured),
            _ => RouteAuth::Protected(Arc::new(Protected {
                methods: Methods::new(methods),
                allow,
                report_only: auth.report_only,
            })),
        }
    }
}

/// How long a login type trusts groups it read (others read them per request).
fn groups_ttl(method: &MethodSpec) -> Option<u64> {
    match method {
        MethodSpec::OAuth2(s) => Some(s.groups_ttl.as_secs()),
        MethodSpec::Oidc(s) if s.client_id.is_some() => Some(s.groups_ttl.as_secs()),
        _ => None,
    }
}

/// The claim names any policy reads (sessions keep them), and whether any
/// policy reads groups (logins then fetch them).
fn policy_needs(spec: &ConfigSpec) -> (Vec<String>, bool) {
    let mut claims = Vec::new();
    let mut groups = false;
    let backends = spec
        .rules
        .iter()
        .flat_map(|r| std::iter::once(&r.backend).chain(r.paths.iter().map(|p| &p.backend)))
        .chain(spec.fallback.as_ref());
    let allows = backends
        .filter_map(|b| b.auth.as_ref())
        .flat_map(|a| std::iter::once(&a.allow).chain(a.methods.iter().map(MethodSpec::allow)));
    for allow in allows {
        groups |= !allow.groups.is_empty();
        for (name, _) in &allow.claims {
            if !claims.contains(name) {
                claims.push(name.clone());
            }
        }
    }
    (claims, groups)
}
