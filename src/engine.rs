//! The decision engine: a compiled config that answers "allow or deny?"
//! for one request without touching the config text again.

use std::path::Path;
use std::sync::Arc;

use crate::auth::{AuthKind, AuthResult, Authenticator, BuildContext, PolicyNeeds};
use crate::config::spec::{AuthSpec, AuthzSpec, BackendKind, BackendSpec, ConfigSpec, MethodSpec};
use crate::config::{self, ConfigError, Diagnostic};
use crate::cookies::{CookieSettings, Stripped};
use crate::decision::{Decision, Denial, Pending, Reason, RouteId, Status, Verdict};
use crate::hashing::HashPool;
use crate::matching::host::HostPattern;
use crate::matching::host::check_host;
use crate::matching::path::normalize;
use crate::matching::path_pattern::PathPattern;
use crate::matching::{
    OpenReason, PathRoute, Protected, Route, RouteAuth, RouteMatch, Router, Rule,
};
use crate::policy::Policy;
use crate::request::RequestView;
use crate::throttle::Throttle;

#[derive(Debug)]
pub struct Engine {
    router: Router,
    /// Where each [`RouteId`] lives in the router.
    slots: Vec<Slot>,
    /// Where password hashes are verified (bounded).
    pub hash_pool: Arc<HashPool>,
    /// Failed authentications, per route and client.
    pub throttle: Throttle,
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
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
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
    ) -> Result<Self, ConfigError> {
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

    /// Compiles host and path patterns, authenticators and policies.
    pub fn build(spec: ConfigSpec) -> Result<Self, Vec<Diagnostic>> {
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
            }),
            policy_claims: policy_claims.into(),
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
        let router = Router::new(rules, fallback);
        let concurrency = spec
            .authz
            .hash_concurrency
            .unwrap_or_else(HashPool::default_concurrency);
        Ok(Self {
            router,
            slots,
            hash_pool: Arc::new(HashPool::new(concurrency)),
            throttle: Throttle::new(spec.authz.login_throttle),
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
        // Before any lookup: a host that is no host name is never matched
        // as some other host, and a hostile one costs no hashing.
        if check_host(req.host).is_err() {
            return Decision::unrouted(Status::BadRequest, Reason::BadHost);
        }
        let Ok(path) = normalize(req.path) else {
            return Decision::unrouted(Status::BadRequest, Reason::BadPath);
        };
        let found = self.router.find(req.host, &path);
        let Some(route) = found.route() else {
            return Decision::unrouted(Status::Forbidden, Reason::NoRoute);
        };
        let decision = self.decide_route(route, req);
        self.settle(decision, req)
    }

    /// The last step of a decision (also after pending work): a
    /// `report_only` route lets a denial through and records it; an allow
    /// never carries our cookies upstream.
    pub fn settle<'e>(&'e self, mut decision: Decision<'e>, req: &RequestView<'_>) -> Decision<'e> {
        if let (Verdict::Deny(denial), Some(route)) = (&decision.verdict, decision.route)
            && self.protected(route).is_some_and(|p| p.report_only)
        {
            decision.verdict = Verdict::Allow {
                reason: Reason::ReportOnly,
                user: None,
                upstream: Vec::new(),
                remove: Vec::new(),
                would_deny: Some((denial.status, denial.reason)),
            };
        }
        if let Verdict::Allow {
            upstream, remove, ..
        } = &mut decision.verdict
        {
            self.strip_our_cookies(req, upstream, remove);
        }
        decision
    }

    /// Decides, verifying a password hash on this thread if one is due
    /// (`explain`, tests, benchmarks; the service uses the bounded pool).
    pub fn decide_inline<'e>(&'e self, req: &RequestView<'_>) -> Decision<'e> {
        let decision = self.decide(req);
        let (Verdict::Pending { work, .. }, Some(route)) = (&decision.verdict, decision.route)
        else {
            return decision;
        };
        if *work == Pending::VerifyPassword
            && let Some(p) = self.protected(route)
            && let Authenticator::Basic(basic) = &p.authenticator
        {
            if basic.verify_here(req) {
                return self.decide(req);
            }
            self.record_failure(route, req);
        }
        let Verdict::Pending { then, .. } = decision.verdict else {
            return decision;
        };
        self.settle(
            Decision {
                verdict: Verdict::Deny(then),
                ..decision
            },
            req,
        )
    }

    /// Counts a failed authentication of `req` on `route`.
    pub fn record_failure(&self, route: RouteId, req: &RequestView<'_>) {
        let user = self.throttle_user(route, req);
        self.throttle.fail(route, req.client, user.as_deref());
    }

    /// The username a basic route's failures are also counted by.
    fn throttle_user(&self, route: RouteId, req: &RequestView<'_>) -> Option<Vec<u8>> {
        let p = self.protected(route)?;
        match &p.authenticator {
            Authenticator::Basic(_) => req
                .authorization("basic")
                .and_then(crate::auth::basic::decode_credentials)
                .map(|(user, _)| user),
            _ => None,
        }
    }

    fn decide_route<'e>(&'e self, route: &'e Route, req: &RequestView<'_>) -> Decision<'e> {
        let (kind, verdict) = match &route.policy {
            RouteAuth::Open(_) => (
                None,
                Verdict::Allow {
                    reason: Reason::Open,
                    user: None,
                    upstream: Vec::new(),
                    remove: Vec::new(),
                    would_deny: None,
                },
            ),
            RouteAuth::Protected(p) => (Some(p.authenticator.kind()), self.guarded(route, p, req)),
        };
        Decision {
            route: Some(route.id),
            label: Some(&route.label),
            kind,
            verdict,
        }
    }

    /// The throttle gate, then authorization; a failure is counted.
    fn guarded<'e>(
        &'e self,
        route: &'e Route,
        p: &'e Protected,
        req: &RequestView<'_>,
    ) -> Verdict<'e> {
        if self.throttle.may_block() {
            let user = self.throttle_user(route.id, req);
            if let Some(wait) = self.throttle.blocked(route.id, req.client, user.as_deref()) {
                // A correct credential too: else guessing would go on.
                return Verdict::Deny(Denial::too_many(Reason::Throttled, wait));
            }
        }
        let verdict = authorize(p, req, &route.label);
        if let Verdict::Deny(d) = &verdict
            && matches!(d.reason, Reason::InvalidCredentials | Reason::NotAllowed)
        {
            self.record_failure(route.id, req);
        }
        verdict
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
        match self.login.cookies.strip_ours(header) {
            Stripped::Untouched => {}
            Stripped::Empty => remove.push("cookie"),
            Stripped::Kept(others) => upstream.push(("cookie", others)),
        }
    }

    /// Fetchers of every route that depends on a remote issuer.
    pub fn fetchers(&self) -> Vec<crate::auth::Fetcher> {
        routes(&self.router)
            .filter_map(|r| match &r.policy {
                RouteAuth::Protected(p) => p.authenticator.fetcher(),
                RouteAuth::Open(_) => None,
            })
            .collect()
    }

    /// The fetcher of a route whose decision is pending on keys or metadata.
    pub fn fetcher_for(&self, route: RouteId) -> Option<crate::auth::Fetcher> {
        match &self.route(route)?.policy {
            RouteAuth::Protected(p) => p.authenticator.fetcher(),
            RouteAuth::Open(_) => None,
        }
    }

    /// The route with this id.
    pub fn route(&self, id: RouteId) -> Option<&Route> {
        let rules = self.router.rules();
        match *self.slots.get(id.0 as usize)? {
            Slot::Rule(i) => rules.get(i).map(|r| &r.route),
            Slot::Path(i, j) => rules.get(i)?.paths.get(j).map(|p| &p.route),
            Slot::Fallback => self.router.fallback(),
        }
    }

    /// Every oidc authenticator of the config.
    pub fn oidc_routes(&self) -> impl Iterator<Item = &crate::auth::oidc::Oidc> {
        routes(&self.router).filter_map(|r| match &r.policy {
            RouteAuth::Protected(p) => match &p.authenticator {
                Authenticator::Oidc(o) => Some(o.as_ref()),
                _ => None,
            },
            RouteAuth::Open(_) => None,
        })
    }

    /// The protection of the route with this id.
    pub fn protected(&self, route: RouteId) -> Option<Arc<Protected>> {
        match &self.route(route)?.policy {
            RouteAuth::Protected(p) => Some(p.clone()),
            RouteAuth::Open(_) => None,
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

/// Who (authenticate), then whether they may pass (the policy), on every
/// request and for the route that matched.
fn authorize<'e>(p: &'e Protected, req: &RequestView<'_>, label: &str) -> Verdict<'e> {
    let kind = p.authenticator.kind();
    match p.authenticator.authenticate(req, label) {
        AuthResult::Allow { identity, upstream } => {
            match p
                .allow
                .as_ref()
                .map_or(Ok(()), |allow| allow.check(&identity))
            {
                Ok(()) => Verdict::Allow {
                    reason: Reason::Authenticated,
                    user: Some(identity),
                    upstream,
                    remove: Vec::new(),
                    would_deny: None,
                },
                // A session from before sessions carried what policies
                // read: log in again rather than judge it on nothing.
                Err(_) if identity.predates_attributes() => {
                    match p.authenticator.login(req, label) {
                        AuthResult::Deny(d) => Verdict::Deny(d),
                        AuthResult::Pending { work, then } => Verdict::Pending { work, then },
                        AuthResult::Allow { .. } => Verdict::Deny(Denial::status(
                            Status::Unauthorized,
                            Reason::LoginRequired,
                        )),
                    }
                }
                Err(condition) => Verdict::Deny(Denial::not_allowed(condition, kind)),
            }
        }
        AuthResult::Deny(denial) => Verdict::Deny(denial),
        AuthResult::Pending { work, then } => Verdict::Pending { work, then },
    }
}

/// Where a [`RouteId`] points.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Rule(usize),
    /// Rule index, index among the rule's compiled paths.
    Path(usize, usize),
    Fallback,
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
        let needs = PolicyNeeds {
            groups_ttl: allow
                .as_ref()
                .filter(|a| a.uses_groups_or_claims())
                .and_then(|_| auth.method.as_ref().and_then(groups_ttl)),
            groups: self.any_groups,
        };
        // Built even when disabled: a disabled config is still validated.
        let built = auth
            .method
            .as_ref()
            .map(|m| Authenticator::build(m, self.login, needs));
        let authenticator = match built {
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                self.errors.extend(e);
                None
            }
            None => None,
        };
        match (auth.enabled, authenticator) {
            (Some(false), _) => RouteAuth::Open(OpenReason::Disabled),
            (_, Some(authenticator)) => RouteAuth::Protected(Arc::new(Protected {
                authenticator,
                allow,
                report_only: auth.report_only,
            })),
            // No `type`, or one whose errors are already reported.
            (_, None) => RouteAuth::Open(OpenReason::NotConfigured),
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
    for auth in backends.filter_map(|b| b.auth.as_ref()) {
        groups |= !auth.allow.groups.is_empty();
        for (name, _) in &auth.allow.claims {
            if !claims.contains(name) {
                claims.push(name.clone());
            }
        }
    }
    (claims, groups)
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
        if let RouteAuth::Protected(p) = &route.policy
            && !kinds.contains(&p.authenticator.kind())
        {
            kinds.push(p.authenticator.kind());
        }
    }
    kinds
}
