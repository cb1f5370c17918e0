//! The ext_authz v3 gRPC `Check` service.

use std::sync::Arc;
use std::time::Instant;

use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use tonic::{Request, Response, Status as GrpcStatus};

use crate::audit;
use crate::decision::{Decision, Reason, Status};
use crate::negotiate::prefers_html;
use crate::request::RequestView;
use crate::response::to_check_response;
use crate::state::Shared;

/// How long a check waits for an issuer fetch before answering without it
/// (well inside the shipped Envoy config's 0.5 s ext_authz timeout).
const FETCH_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Answers `Check` with the engine serving when the check starts; a reload
/// never affects a check already running.
#[derive(Clone)]
pub struct CheckService {
    shared: Arc<Shared>,
}

impl CheckService {
    pub fn new(shared: Arc<Shared>) -> Self {
        CheckService { shared }
    }

    /// The decision and its wire form for one CheckRequest.
    pub async fn check_one(&self, check: &CheckRequest) -> CheckResponse {
        let started = Instant::now();
        let engine = self.shared.engine_arc();
        let req = match RequestView::try_from(check) {
            Ok(req) => req,
            Err(e) => {
                audit::malformed(&e);
                let decision = Decision::deny(None, None, Status::BadRequest, Reason::BadRequest);
                self.shared
                    .metrics
                    .record_check(&decision, started.elapsed().as_secs_f64());
                return to_check_response(&decision, false);
            }
        };
        let mut decision = engine.decide(&req);
        // An unknown signing key or missing OpenID metadata: fetch (single
        // flight, rate-limited) and decide once more. The fetch runs on its
        // own task and is waited for only briefly, so a hanging provider
        // gets our 503 before Envoy's ext_authz timeout gives its own.
        if let Some(fetcher) = engine.fetcher_for(&decision) {
            let http = self.shared.http.clone();
            let fetch = tokio::spawn(async move { fetcher.run(&http).await });
            let _ = tokio::time::timeout(FETCH_WAIT, fetch).await;
            decision = engine.decide(&req);
        }
        audit::check(&req, &decision);
        let response = to_check_response(&decision, prefers_html(req.header("accept")));
        self.shared
            .metrics
            .record_check(&decision, started.elapsed().as_secs_f64());
        response
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
