//! The ext_authz v3 gRPC `Check` service.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use tonic::{Request, Response, Status as GrpcStatus};

use crate::audit;
use crate::auth::Authenticator;
use crate::decision::{Decision, Denial, Pending, Reason, RouteId, Status, Verdict};
use crate::engine::Engine;
use crate::negotiate::prefers_html;
use crate::request::RequestView;
use crate::response::{add_set_cookie, to_check_response};
use crate::state::Shared;

/// How long a check waits for a session refresh at the provider.
const REFRESH_WAIT: std::time::Duration = std::time::Duration::from_millis(400);

/// How long a check waits for an issuer fetch before answering without it
/// (well inside the shipped Envoy config's 0.5 s ext_authz timeout).
const FETCH_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Answers `Check` with the engine serving when the check starts; a reload
/// never affects a check already running.
#[derive(Clone)]
pub struct CheckService {
    shared: Arc<Shared>,
}

/// A value the generated Envoy config put in the route's
/// `context_extensions` (`ingress-authz envoy`): `route` (the route's
/// label) or `config` (the resources' version).
fn context<'c>(check: &'c CheckRequest, key: &str) -> Option<&'c str> {
    check
        .attributes
        .as_ref()?
        .context_extensions
        .get(key)
        .map(String::as_str)
}

impl CheckService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The decision and its wire form for one CheckRequest.
    pub async fn check_one(&self, check: &CheckRequest) -> CheckResponse {
        let started = crate::clock::now();
        // A guard, not an Arc clone: no shared reference count to bounce
        // between workers on every check. A request Envoy routed by the
        // previous generation of its resources is decided by that
        // generation's rules, during the switch.
        let current = self.shared.engine();
        let previous = context(check, "config")
            .filter(|v| current.envoy_version.get().is_none_or(|c| c != v))
            .and_then(|v| self.shared.engine_for(v));
        let engine: &Engine = previous.as_deref().unwrap_or(&current);
        let req = match RequestView::try_from(check) {
            Ok(req) => req,
            Err(e) => {
                audit::malformed(&e);
                let decision = Decision::unrouted(Status::BadRequest, Reason::BadRequest);
                self.shared
                    .metrics
                    .record_check(&decision, started.elapsed().as_secs_f64());
                return to_check_response(&decision, || false);
            }
        };
        let mut decision = engine.decide(&req);
        // Work a decision waits on runs once, under the check's time budget,
        // and the request is decided again; what is still pending after
        // that gets the answer it would have without the work.
        let mut refreshed = None;
        if let (Verdict::Pending { work, .. }, Some(route)) = (&decision.verdict, decision.route) {
            match work {
                // An unknown signing key or missing OpenID metadata: fetch
                // (single flight, rate-limited) on its own task, waited for
                // only briefly, so a hanging provider gets our 503 before
                // Envoy's ext_authz timeout gives its own.
                Pending::FetchKeys => {
                    if let Some(fetcher) = engine.fetcher_for(route, decision.kind) {
                        let http = self.shared.http.clone();
                        let fetch = tokio::spawn(async move { fetcher.run(&http).await });
                        let _ = tokio::time::timeout(FETCH_WAIT, fetch).await;
                    }
                    decision = engine.decide(&req);
                }
                // A session whose tokens, groups or claims are due: decide
                // again with the refreshed (or ended) session, and send the
                // client its new cookie. If the provider has not answered in
                // time, the pending answer (503) stands; the refresh
                // completes and is kept for the next request.
                // A password hash: on the bounded pool, never on this
                // worker; a full pool answers 429 at once.
                Pending::VerifyPassword => {
                    decision = match self.verify_password(engine, route, &req).await {
                        Ok(true) => engine.decide(&req),
                        Ok(false) => {
                            engine.record_failure(route, &req);
                            Decision {
                                failure_counted: true,
                                ..decision
                            }
                        }
                        Err(_busy) => Decision {
                            verdict: Verdict::Deny(Denial::too_many(Reason::Busy, 1)),
                            ..decision
                        },
                    };
                }
                // A server-side session this replica has not read lately:
                // read its record (under the store's timeout) and decide
                // again; a store that does not answer leaves the 503.
                Pending::LoadSession => match self.load_session(engine, route, &req).await {
                    Some(Some(headers)) => {
                        decision = engine.decide(&RequestView {
                            headers: &headers,
                            ..req
                        });
                        if headers.get("cookie") != req.headers.get("cookie") {
                            // No such session (ended, expired, forged): decided
                            // as without it, and the browser forgets it.
                            refreshed =
                                Some((headers, engine.login.cookies.expire_session().to_vec()));
                        }
                    }
                    Some(None) => decision = engine.decide(&req),
                    None => {}
                },
                Pending::RefreshSession => {
                    refreshed = self.refresh(engine, route, &req).await;
                    if let Some((headers, _)) = &refreshed {
                        decision = engine.decide(&RequestView { headers, ..req });
                    }
                }
            }
        }
        if let Verdict::Pending { then, .. } = decision.verdict {
            decision.verdict = Verdict::Deny(then);
            decision = engine.settle(decision, &req);
        }
        // Counted here already; across replicas too when there is a store.
        // Only a failure waits for the store, at most `SHARE_WAIT`.
        if let (true, Some(route)) = (decision.failure_counted, decision.route) {
            engine.share_failure(route, &req).await;
        }
        decision = engine.cross_check(decision, context(check, "route"));
        let seen = match &refreshed {
            Some((headers, _)) => RequestView { headers, ..req },
            None => req,
        };
        audit::check(&seen, &decision);
        let mut response = to_check_response(&decision, || prefers_html(req.header("accept")));
        let mut set_cookies = refreshed
            .as_ref()
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        if set_cookies.is_empty() {
            set_cookies = self.reissue(engine, &decision, &seen);
        }
        for cookie in &set_cookies {
            add_set_cookie(&mut response, cookie);
        }
        self.shared
            .metrics
            .record_check(&decision, started.elapsed().as_secs_f64());
        response
    }

    async fn verify_password(
        &self,
        engine: &Engine,
        route: RouteId,
        req: &RequestView<'_>,
    ) -> Result<bool, crate::hashing::HashError> {
        let protected = engine.protected(route);
        let basic = protected.as_deref().and_then(|p| p.methods.basic());
        match basic.map(|m| &m.authenticator) {
            Some(Authenticator::Basic(basic)) => basic.verify_on(&engine.hash_pool, req).await,
            _ => Ok(false),
        }
    }

    /// Refreshes the request's session at its provider, waiting briefly.
    /// Some((headers with the new or no session cookie, Set-Cookie)) when
    /// the provider answered; None when it did not in time.
    async fn refresh(
        &self,
        engine: &Engine,
        route: RouteId,
        req: &RequestView<'_>,
    ) -> Option<(HashMap<String, String>, Vec<String>)> {
        let protected = engine.protected(route)?;
        let cookies = &engine.login.cookies;
        let scheme = req.scheme(cookies.trust_forwarded_proto);
        let cookie_header = req.header("cookie")?;
        let (value, _) = cookies.session_in(cookie_header, scheme)?;
        let http = self.shared.http.clone();
        let old = value.to_string();
        let task = tokio::spawn(async move {
            match protected.methods.session().map(|m| &m.authenticator) {
                Some(Authenticator::Oidc(o)) => o.refresh_session(&http, &old, scheme).await,
                Some(Authenticator::OAuth2(o)) => o.refresh_session(&http, &old, scheme).await,
                _ => None,
            }
        });
        let outcome = tokio::time::timeout(REFRESH_WAIT, task).await.ok()?.ok()?;
        // Decided again with the new session cookie, or (refused: the
        // session ends here) with none.
        let (new_value, set_cookies) = match outcome {
            Some((new_value, set_cookie)) => (Some(new_value), vec![set_cookie]),
            None => (None, cookies.expire_session().to_vec()),
        };
        let mut headers = req.headers.clone();
        headers.insert(
            "cookie".into(),
            cookies.replace_session(cookie_header, new_value.as_deref(), scheme),
        );
        Some((headers, set_cookies))
    }

    /// Reads the request's server-side session record from the store.
    /// Some(None): read (decide again as is); Some(Some(headers)): there
    /// is no such session (the headers without it); None: the store did
    /// not answer (the pending 503 stands).
    async fn load_session(
        &self,
        engine: &Engine,
        route: RouteId,
        req: &RequestView<'_>,
    ) -> Option<Option<HashMap<String, String>>> {
        let protected = engine.protected(route)?;
        let client = protected.methods.session()?.authenticator.login_client()?;
        let cookies = &engine.login.cookies;
        let scheme = req.scheme(cookies.trust_forwarded_proto);
        let cookie_header = req.header("cookie")?;
        let (value, _) = cookies.session_in(cookie_header, scheme)?;
        match client.load_record(value).await {
            Ok(true) => Some(None),
            Ok(false) => {
                let mut headers = req.headers.clone();
                headers.insert(
                    "cookie".into(),
                    cookies.replace_session(cookie_header, None, scheme),
                );
                Some(Some(headers))
            }
            Err(e) => {
                tracing::warn!(error = %e, "store: a server-side session could not be read");
                None
            }
        }
    }

    /// On https, a session cookie under its plain name (set by a release
    /// before the `__Host-` prefix) is read once and replaced.
    fn reissue(
        &self,
        engine: &Engine,
        decision: &Decision<'_>,
        req: &RequestView<'_>,
    ) -> Vec<String> {
        // Only allowed checks of login routes on https can carry one.
        let (true, Some(true), Some(route)) = (
            decision.is_allowed(),
            decision.kind.map(|k| k.is_login()),
            decision.route,
        ) else {
            return Vec::new();
        };
        let cookies = &engine.login.cookies;
        let scheme = req.scheme(cookies.trust_forwarded_proto);
        let legacy = req
            .header("cookie")
            .and_then(|h| cookies.session_in(h, scheme))
            .filter(|(_, legacy)| *legacy);
        let Some((value, _)) = legacy else {
            return Vec::new();
        };
        engine
            .protected(route)
            .and_then(|p| {
                p.methods
                    .session()?
                    .authenticator
                    .login_client()
                    .and_then(|c| c.reissue(value))
            })
            .map(Vec::from)
            .unwrap_or_default()
    }
}
#[tonic::async_trait]
impl Authorization for CheckService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, GrpcStatus> {
        let check = request.into_inner();
        Ok(Response::new(self.check_one(&check).await))
    }
}
