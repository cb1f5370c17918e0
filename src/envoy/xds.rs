//! The ADS server (state of the world) that `serve` runs on its gRPC
//! port: listener, route configuration and service clusters of the config
//! serving, pushed again after every reload that changes them.
//!
//! Per stream and resource type it remembers the version and nonce it
//! last sent. A request with no nonce subscribes and gets the current
//! resources; one that echoes the last nonce is an ACK, or a NACK when it
//! carries `error_detail` — logged and counted, and nothing is resent:
//! Envoy keeps the version it had, and the authorizer keeps the rules of
//! that version (see [`crate::state::Shared::engine_for`]). Clusters are
//! pushed before routes, and a snapshot keeps the previous generation's
//! clusters too, so routes never point at a cluster Envoy does not have.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Endpoint;
use super::model::Resources;
use super::proto;
use crate::state::Shared;

pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// The order of a push: clusters, then the listener, then its routes.
const PUSH_ORDER: [&str; 3] = [CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE];

/// One generation of resources, encoded once for every stream.
#[derive(Debug)]
pub struct Snapshot {
    pub version: String,
    /// This generation's clusters and the previous one's still needed.
    clusters: Vec<Any>,
    /// This generation's own, by name (what the next one may keep).
    own: Vec<(String, Any)>,
    listeners: Vec<Any>,
    routes: Vec<Any>,
}

impl Snapshot {
    /// `previous`: the snapshot this one replaces, whose clusters are kept
    /// for one more generation (make before break).
    pub fn new(resources: &Resources, listen: &Endpoint, previous: Option<&Self>) -> Self {
        let own: Vec<(String, Any)> = resources
            .clusters
            .iter()
            .map(|c| (c.name.clone(), proto::any(&proto::cluster(c))))
            .collect();
        let names: BTreeSet<&str> = own.iter().map(|(n, _)| n.as_str()).collect();
        let mut clusters: Vec<Any> = own.iter().map(|(_, a)| a.clone()).collect();
        if let Some(prev) = previous {
            clusters.extend(
                prev.own
                    .iter()
                    .filter(|(n, _)| !names.contains(n.as_str()))
                    .map(|(_, a)| a.clone()),
            );
        }
        Self {
            version: resources.version.clone(),
            clusters,
            own,
            listeners: vec![proto::any(&proto::listener(listen))],
            routes: vec![proto::any(&proto::route_configuration(resources))],
        }
    }

    fn of_type(&self, type_url: &str) -> Option<&[Any]> {
        match type_url {
            CLUSTER_TYPE => Some(&self.clusters),
            LISTENER_TYPE => Some(&self.listeners),
            ROUTE_TYPE => Some(&self.routes),
            _ => None,
        }
    }
}

fn short(type_url: &str) -> &'static str {
    match type_url {
        CLUSTER_TYPE => "cluster",
        LISTENER_TYPE => "listener",
        ROUTE_TYPE => "route",
        _ => "other",
    }
}

#[derive(Clone)]
pub struct AdsService {
    shared: Arc<Shared>,
}

impl AdsService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// What one stream last sent of a type.
struct Sent {
    version: String,
    nonce: String,
}

struct StreamState {
    shared: Arc<Shared>,
    /// Registered with the shared state once it takes routes.
    route_stream: Option<u64>,
    out: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    sent: BTreeMap<&'static str, Sent>,
    nonces: u64,
    node: String,
}

impl StreamState {
    async fn send(&mut self, type_url: &'static str, snapshot: &Snapshot) -> bool {
        let Some(resources) = snapshot.of_type(type_url) else {
            return true;
        };
        self.nonces += 1;
        let nonce = self.nonces.to_string();
        let response = DiscoveryResponse {
            version_info: snapshot.version.clone(),
            resources: resources.to_vec(),
            type_url: type_url.to_string(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        self.sent.insert(
            type_url,
            Sent {
                version: snapshot.version.clone(),
                nonce,
            },
        );
        self.out.send(Ok(response)).await.is_ok()
    }

    async fn on_request(&mut self, request: DiscoveryRequest, snapshot: &Snapshot) -> bool {
        if let Some(node) = &request.node {
            self.node.clone_from(&node.id);
        }
        let Some(type_url) = PUSH_ORDER.into_iter().find(|t| *t == request.type_url) else {
            tracing::debug!(type_url = %request.type_url, "xds: resource type not served");
            return true;
        };
        if type_url == ROUTE_TYPE && self.route_stream.is_none() {
            self.route_stream = Some(self.shared.ads_route_stream());
        }
        if request.response_nonce.is_empty() {
            // A new subscription (or Envoy reconnected): the current set.
            return self.send(type_url, snapshot).await;
        }
        let Some(sent) = self.sent.get(type_url) else {
            return self.send(type_url, snapshot).await;
        };
        if request.response_nonce != sent.nonce {
            // An answer to an older push: the newer one is on its way.
            return true;
        }
        if let Some(error) = &request.error_detail {
            self.shared
                .metrics
                .record_xds_answer(short(type_url), false);
            tracing::warn!(
                node = %self.node,
                r#type = short(type_url),
                rejected = %sent.version,
                kept = %request.version_info,
                error = %error.message,
                "xds: Envoy rejected a push (NACK); it keeps its previous version"
            );
            return true;
        }
        self.shared.metrics.record_xds_answer(short(type_url), true);
        if let (ROUTE_TYPE, Some(id)) = (type_url, self.route_stream) {
            self.shared.ads_routes_applied(id, &request.version_info);
        }
        tracing::info!(node = %self.node, r#type = short(type_url), version = %request.version_info, "xds: Envoy applied a push");
        if sent.version != snapshot.version {
            // A reload happened between our push and this ACK.
            return self.send(type_url, snapshot).await;
        }
        true
    }

    /// After a reload: every subscribed type, clusters first.
    async fn push(&mut self, snapshot: &Snapshot) -> bool {
        for type_url in PUSH_ORDER {
            let due = self
                .sent
                .get(type_url)
                .is_some_and(|s| s.version != snapshot.version);
            if due && !self.send(type_url, snapshot).await {
                return false;
            }
        }
        true
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ResponseStream;
    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut requests = request.into_inner();
        let (out, rx) = mpsc::channel(8);
        // Generating the first snapshot can take a while for a large config.
        let shared = self.shared.clone();
        let mut snapshots: watch::Receiver<Option<Arc<Snapshot>>> =
            tokio::task::spawn_blocking(move || shared.xds_snapshots())
                .await
                .map_err(|_| Status::internal("generating the Envoy resources failed"))?;
        let mut state = StreamState {
            shared: self.shared.clone(),
            route_stream: None,
            out,
            sent: BTreeMap::new(),
            nonces: 0,
            node: String::new(),
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    request = requests.message() => {
                        let Ok(Some(request)) = request else { break };
                        let Some(snapshot) = snapshots.borrow_and_update().clone() else { break };
                        if !state.on_request(request, &snapshot).await {
                            break;
                        }
                    }
                    changed = snapshots.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let Some(snapshot) = snapshots.borrow_and_update().clone() else { break };
                        if !state.push(&snapshot).await {
                            break;
                        }
                    }
                }
            }
            if let Some(id) = state.route_stream {
                state.shared.ads_stream_closed(id);
            }
            tracing::debug!(node = %state.node, "xds: stream closed");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "incremental xDS is not served; use the state-of-the-world ADS (api_type: GRPC)",
        ))
    }
}
