//! The ext_authz v3 gRPC `Check` service.

use std::sync::Arc;

use arc_swap::ArcSwap;
use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use tonic::{Request, Response, Status as GrpcStatus};

use crate::decision::{Decision, Reason, Status, Verdict};
use crate::engine::Engine;
use crate::negotiate::prefers_html;
use crate::request::RequestView;
use crate::response::to_check_response;

/// Answers `Check` with the current engine; swapping the engine (reload)
/// never affects a check already running.
#[derive(Clone)]
pub struct CheckService {
    engine: Arc<ArcSwap<Engine>>,
}

impl CheckService {
    pub fn new(engine: Arc<ArcSwap<Engine>>) -> Self {
        CheckService { engine }
    }

    /// The decision and its wire form for one CheckRequest.
    pub fn check_one(&self, check: &CheckRequest) -> CheckResponse {
        let engine = self.engine.load();
        match RequestView::try_from(check) {
            Ok(req) => {
                let decision = engine.decide(&req);
                audit(&req, &decision);
                to_check_response(&decision, prefers_html(req.header("accept")))
            }
            Err(e) => {
                tracing::warn!(target: "audit", event = "denied", reason = Reason::BadRequest.code(), error = %e);
                let decision = Decision::deny(None, None, Status::BadRequest, Reason::BadRequest);
                to_check_response(&decision, false)
            }
        }
    }
}

/// One structured line per denial; allows are logged at debug.
fn audit(req: &RequestView<'_>, decision: &Decision<'_>) {
    let route = decision.route.unwrap_or("-");
    let kind = decision.kind.map_or("-", |k| k.as_str());
    let path = crate::matching::path::strip_query(req.path);
    match &decision.verdict {
        Verdict::Deny(denial) => tracing::info!(
            target: "audit",
            event = "denied",
            status = denial.status.code(),
            reason = denial.reason.code(),
            rule = route,
            auth = kind,
            host = req.host,
            path,
            method = req.method,
            client = req.client.unwrap_or("-"),
        ),
        Verdict::Allow { reason, user } => tracing::debug!(
            target: "audit",
            event = "allowed",
            reason = reason.code(),
            rule = route,
            auth = kind,
            host = req.host,
            path,
            user = user.as_deref().unwrap_or("-"),
        ),
    }
}

#[tonic::async_trait]
impl Authorization for CheckService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, GrpcStatus> {
        let check = request.into_inner();
        // A hashed-password check that misses the cache takes milliseconds:
        // with such users configured, let the runtime move other work away
        // from this thread. Everything else is microseconds and stays inline.
        if self.engine.load().may_block() {
            Ok(Response::new(tokio::task::block_in_place(|| {
                self.check_one(&check)
            })))
        } else {
            Ok(Response::new(self.check_one(&check)))
        }
    }
}
