//! The admin gRPC API (`proto/admin.proto`): Explain, Reload, ConfigSummary,
//! RevokeUser.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::explain::explain_request;
use crate::matching::{Route, RouteAuth};
use crate::request::RequestView;
use crate::state::{Reloaded, Shared};

pub mod proto {
    #![allow(missing_docs, unused_qualifications, unreachable_pub, clippy::all)]
    tonic::include_proto!("ingress_authz.admin.v1");
}

use proto::admin_server::Admin;
use proto::*;

pub struct AdminService {
    shared: Arc<Shared>,
}

impl AdminService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// With `authz.admin_token` set (the config serving now), every admin call
/// carries `authorization: Bearer <token>`, compared in constant time.
#[allow(clippy::result_large_err)] // tonic's interceptor signature
pub fn check_token(shared: &Shared, request: Request<()>) -> Result<Request<()>, Status> {
    use subtle::ConstantTimeEq;
    let engine = shared.engine();
    let Some((token, _)) = &engine.settings.admin_token else {
        return Ok(request);
    };
    let presented = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
        })
        .unwrap_or_default();
    if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
        Ok(request)
    } else {
        Err(Status::unauthenticated(
            "the admin API needs `authorization: Bearer <admin_token>`",
        ))
    }
}

fn auth_summary(route: &Route) -> String {
    match &route.policy {
        RouteAuth::Open(reason) => format!("none: {}", reason.describe()),
        RouteAuth::Protected(p) => p.methods.describe(),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn explain(
        &self,
        request: Request<ExplainRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        let r = request.into_inner();
        let headers = r
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let method = if r.method.is_empty() {
            "GET".to_string()
        } else {
            r.method
        };
        let req = RequestView {
            host: &r.host,
            path: &r.path,
            method: &method,
            scheme: "http",
            headers: &headers,
            client: None,
        };
        let ex = explain_request(&self.shared.engine(), &req);
        Ok(Response::new(ExplainResponse {
            rule: ex.rule,
            path_rule: ex.path_rule,
            auth_type: ex.auth_type,
            decision: if ex.allowed { "allow" } else { "deny" }.into(),
            status: u32::from(ex.status),
            reason: ex.reason,
            normalized_path: ex.normalized_path,
            text: ex.text,
        }))
    }

    async fn reload(&self, _: Request<ReloadRequest>) -> Result<Response<ReloadResponse>, Status> {
        let shared = self.shared.clone();
        let result = tokio::task::spawn_blocking(move || shared.reload(true))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let response = match result {
            Ok(Reloaded::Swapped(generation) | Reloaded::Unchanged(generation)) => ReloadResponse {
                ok: true,
                errors: Vec::new(),
                generation,
            },
            Err(e) => ReloadResponse {
                ok: false,
                errors: match e {
                    crate::config::ConfigError::Invalid { errors, .. } => {
                        errors.iter().map(ToString::to_string).collect()
                    }
                    other => vec![other.to_string()],
                },
                generation: self.shared.generation(),
            },
        };
        Ok(Response::new(response))
    }

    async fn revoke_user(
        &self,
        request: Request<RevokeUserRequest>,
    ) -> Result<Response<RevokeUserResponse>, Status> {
        let r = request.into_inner();
        let user = r.user.trim();
        if user.is_empty() || user.len() > 512 {
            return Err(Status::invalid_argument(
                "user: a user id of 1 to 512 bytes",
            ));
        }
        if r.provider.len() > 512 {
            return Err(Status::invalid_argument("provider: at most 512 bytes"));
        }
        let before = crate::clock::unix_secs();
        let revocation = crate::store::Revocation::User {
            provider: r.provider.trim().to_string(),
            user: user.to_string(),
            before,
        };
        let reach = self.shared.runtime.revoke(revocation).await.map_err(|e| {
            tracing::warn!(target: "audit", event = "revoke_user_failed", user = %user, error = %e);
            // Applied here; the caller retries for the other replicas.
            Status::unavailable(format!(
                "revoked on this replica only: {e}; retry to reach every replica"
            ))
        })?;
        let reach = match reach {
            crate::store::Reach::EveryReplica => "every_replica",
            crate::store::Reach::ThisReplica => "this_replica",
        };
        tracing::info!(target: "audit", event = "revoke_user", user = %user, provider = %r.provider.trim(), reach);
        Ok(Response::new(RevokeUserResponse {
            revoked_before: before,
            reach: reach.into(),
        }))
    }

    async fn config_summary(
        &self,
        _: Request<ConfigSummaryRequest>,
    ) -> Result<Response<ConfigSummaryResponse>, Status> {
        let engine = self.shared.engine();
        let mut routes = Vec::new();
        for rule in engine.router().rules() {
            routes.push(RouteSummary {
                label: rule.route.label.clone(),
                host: rule.host.clone(),
                path: String::new(),
                auth: auth_summary(&rule.route),
            });
            for p in &rule.paths {
                routes.push(RouteSummary {
                    label: p.route.label.clone(),
                    host: rule.host.clone(),
                    path: p.pattern.clone(),
                    auth: auth_summary(&p.route),
                });
            }
        }
        Ok(Response::new(ConfigSummaryResponse {
            file: self.shared.config_path.display().to_string(),
            generation: self.shared.generation(),
            routes,
            fallback: engine.router().fallback().is_some(),
            stale: self
                .shared
                .stale()
                .map(|s| s.to_string())
                .unwrap_or_default(),
        }))
    }
}
