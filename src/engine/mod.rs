//! The decision engine: a compiled config that answers "allow or deny?"
//! for one request without touching the config text again.

use std::sync::Arc;

use crate::auth::{AuthKind, AuthResult, Authenticator, BuildContext};
use crate::config::Diagnostic;
use crate::config::spec::AuthzSpec;
use crate::cookies::Stripped;
use crate::decision::{Decision, Denial, Pending, Reason, RouteId, Status, Verdict};
use crate::hashing::HashPool;
use crate::identity_headers::IdentityHeaders;
use crate::matching::host::check_host;
use crate::matching::path::normalize;
use crate::matching::{Protected, Route, RouteAuth, RouteMatch, Router};
use crate::request::RequestView;
use crate::throttle::Throttle;

mod build;

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
    /// Each route's identity headers; every configured name.
    pub identity_headers: IdentityHeaders,
    /// The version of the Envoy resources generated from this config, once
    /// an ADS stream made the server generate them.
    pub envoy_version: std::sync::OnceLock<String>,
}

impl Engine {
    /// The longest a session of this config lives (seconds): how long a
    /// revocation can matter.
    pub fn session_max_life(&self) -> u64 {
        self.login.cookies.max_age
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
            upstream,
            remove,
            user,
            ..
        } = &mut decision.verdict
        {
            self.strip_our_cookies(req, upstream, remove);
            self.identity_headers
                .apply(decision.route, user.as_ref(), upstream, remove);
        }
        decision
    }

    /// Envoy's route (the generated `context_extensions` `route`) against
    /// ours: the label only narrows. A request Envoy routes by another
    /// rule than ours — a stale Envoy config, a host or path Envoy reads
    /// differently, a forged or unknown label — keeps our denial, and an
    /// allow becomes 403 `route_mismatch`: the upstream Envoy picked is not
    /// the one this decision was for.
    pub fn cross_check<'e>(
        &self,
        decision: Decision<'e>,
        envoy_route: Option<&str>,
    ) -> Decision<'e> {
        let Some(envoy_route) = envoy_route else {
            return decision;
        };
        if !decision.is_allowed() || decision.label.is_some_and(|l| l == envoy_route) {
            return decision;
        }
        Decision {
            verdict: Verdict::Deny(Denial::status(Status::Forbidden, Reason::RouteMismatch)),
            ..decision
        }
    }

    /// Decides, verifying a password hash on this thread if one is due
    /// (`explain`, tests, benchmarks; the service uses the bounded pool).
    pub fn decide_inline<'e>(&'e self, req: &RequestView<'_>) -> Decision<'e> {
        let decision = self.decide(req);
        let (Verdict::Pending { work, .. }, Some(route)) = (&decision.verdict, decision.route)
        else {
            return decision;
        };
        let mut failure_counted = false;
        if *work == Pending::VerifyPassword
            && let Some(p) = self.protected(route)
            && let Some(Authenticator::Basic(basic)) = p.methods.basic().map(|m| &m.authenticator)
        {
            if basic.verify_here(req) {
                return self.decide(req);
            }
            self.record_failure(route, req);
            failure_counted = true;
        }
        let Verdict::Pending { then, .. } = decision.verdict else {
            return decision;
        };
        self.settle(
            Decision {
                verdict: Verdict::Deny(then),
                failure_counted,
                ..decision
            },
            req,
        )
    }

    /// Counts a failed authentication of `req` on `route` (here; see
    /// [`Self::share_failure`]).
    pub fn record_failure(&self, route: RouteId, req: &RequestView<'_>) {
        let user = self.throttle_user(route, req);
        self.throttle.fail(route, req.client, user.as_deref());
    }

    /// Counts a failure [`Self::record_failure`] counted here across
    /// replicas too, when a store is attached (one store call, waited for
    /// at most [`crate::throttle::SHARE_WAIT`]; the check is a denial
    /// anyway).
    pub async fn share_failure(&self, route: RouteId, req: &RequestView<'_>) {
        let user = self.throttle_user(route, req);
        self.throttle
            .share(route, req.client, user.as_deref())
            .await;
    }

    /// The username a basic route's failures are also counted by.
    fn throttle_user(&self, route: RouteId, req: &RequestView<'_>) -> Option<Vec<u8>> {
        self.protected(route)?.methods.basic()?;
        req.authorization("basic")
            .and_then(crate::auth::basic::decode_credentials)
            .map(|(user, _)| user)
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
            RouteAuth::Protected(p) => {
                let (kind, verdict) = self.guarded(route, p, req);
                (Some(kind), verdict)
            }
        };
        // What `guarded` counts.
        let failure_counted = matches!(&verdict, Verdict::Deny(d) if counts_as_failure(d.reason));
        Decision {
            route: Some(route.id),
            label: Some(&route.label),
            kind,
            verdict,
            failure_counted,
        }
    }

    /// The throttle gate, then authorization; a failure is counted. The
    /// kind is the method that decided.
    fn guarded<'e>(
        &'e self,
        route: &'e Route,
        p: &'e Protected,
        req: &RequestView<'_>,
    ) -> (AuthKind, Verdict<'e>) {
        if self.throttle.may_block() {
            let user = self.throttle_user(route.id, req);
            if let Some(wait) = self.throttle.blocked(route.id, req.client, user.as_deref()) {
                // A correct credential too: else guessing would go on.
                let verdict = Verdict::Deny(Denial::too_many(Reason::Throttled, wait));
                return (p.methods.first().kind(), verdict);
            }
        }
        let (kind, verdict) = authorize(p, req, &route.label);
        if let Verdict::Deny(d) = &verdict
            && counts_as_failure(d.reason)
        {
            self.record_failure(route.id, req);
        }
        (kind, verdict)
    }

    /// Our cookies (session, login state) never reach the upstream.
    fn strip_our_cookies<'e>(
        &'e self,
        req: &RequestView<'_>,
        upstream: &mut Vec<(&'e str, String)>,
        remove: &mut Vec<&'e str>,
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
        methods(&self.router)
            .filter_map(|m| m.authenticator.fetcher())
            .collect()
    }

    /// The fetcher of a route whose decision is pending on keys or
    /// metadata: that of the method (`kind`, the decision's) that waits.
    pub fn fetcher_for(
        &self,
        route: RouteId,
        kind: Option<AuthKind>,
    ) -> Option<crate::auth::Fetcher> {
        self.protected(route)?
            .methods
            .get(kind?)?
            .authenticator
            .fetcher()
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
        methods(&self.router).filter_map(|m| match &m.authenticator {
            Authenticator::Oidc(o) => Some(o.as_ref()),
            _ => None,
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

/// Denials the throttle counts: a wrong credential, or a right one the
/// policy refuses.
fn counts_as_failure(reason: Reason) -> bool {
    matches!(reason, Reason::InvalidCredentials | Reason::NotAllowed)
}

/// Who (authenticate), then whether they may pass (the route's policy and
/// the deciding method's own), on every request and for the route that
/// matched. The kind is the method whose answer this is.
fn authorize<'e>(p: &'e Protected, req: &RequestView<'_>, label: &str) -> (AuthKind, Verdict<'e>) {
    let (method, result) = p.methods.authenticate(req, label);
    let kind = method.kind();
    let verdict = match result {
        AuthResult::Allow { identity, upstream } => {
            let policies = [p.allow.as_deref(), method.allow.as_deref()];
            match policies
                .into_iter()
                .flatten()
                .try_for_each(|allow| allow.check(&identity))
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
                    match method.authenticator.login(req, label) {
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
    };
    (kind, verdict)
}

/// Where a [`RouteId`] points.
#[derive(Clone, Copy, Debug)]
pub(super) enum Slot {
    Rule(usize),
    /// Rule index, index among the rule's compiled paths.
    Path(usize, usize),
    Fallback,
}

/// Every route of a router: rules, their paths, the fallback.
fn routes(router: &Router) -> impl Iterator<Item = &Route> {
    router
        .rules()
        .iter()
        .flat_map(|r| std::iter::once(&r.route).chain(r.paths.iter().map(|p| &p.route)))
        .chain(router.fallback())
}

/// Every method of every protected route.
fn methods(router: &Router) -> impl Iterator<Item = &crate::auth::methods::Method> {
    routes(router)
        .filter_map(|r| match &r.policy {
            RouteAuth::Protected(p) => Some(p.methods.iter()),
            RouteAuth::Open(_) => None,
        })
        .flatten()
}

/// Auth kinds used anywhere in the config (for startup notes).
pub fn kinds_in_use(engine: &Engine) -> Vec<AuthKind> {
    let mut kinds = Vec::new();
    for kind in methods(&engine.router).map(crate::auth::methods::Method::kind) {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds
}
