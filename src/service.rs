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
    pub fn check_one(&self, check: &CheckRequest) -> CheckResponse {
        let started = Instant::now();
        let engine = self.shared.engine();
        let (decision, response) = match RequestView::try_from(check) {
            Ok(req) => {
                let decision = engine.decide(&req);
                audit::check(&req, &decision);
                let response = to_check_response(&decision, prefers_html(req.header("accept")));
                (decision, response)
            }
            Err(e) => {
                audit::malformed(&e);
                let decision = Decision::deny(None, None, Status::BadRequest, Reason::BadRequest);
                let response = to_check_response(&decision, false);
                (decision, response)
            }
        };
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
        // A hashed-password check that misses the cache takes milliseconds:
        // with such users configured, let the runtime move other work away
        // from this thread. Everything else is microseconds and stays inline.
        if self.shared.engine().may_block() {
            Ok(Response::new(tokio::task::block_in_place(|| {
                self.check_one(&check)
            })))
        } else {
            Ok(Response::new(self.check_one(&check)))
        }
    }
}
