//! The generated Envoy resources as plain types: the route list, the
//! clusters and what each route does. The static bootstrap
//! ([`super::bootstrap`]) and the ADS server ([`super::proto`]) both
//! render these, so the two modes can never route differently.

use std::time::Duration;

use super::Endpoint;

/// A request-header condition of a route (all of a route's must hold).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderGuard {
    pub name: &'static str,
    pub test: HeaderTest,
    /// Matches when the test does not (a missing header counts as empty).
    pub invert: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderTest {
    /// RE2, matched against the whole value.
    Regex(String),
    /// The value contains this text (cheaper than a regex).
    Contains(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    /// RE2, matched against the whole path (without the query).
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Forward {
        cluster: String,
        /// `(pattern, substitution)`.
        regex_rewrite: Option<(String, String)>,
        auto_host_rewrite: bool,
        timeout: Option<Duration>,
    },
    Redirect {
        scheme: String,
        host: String,
        port: Option<u16>,
        /// With the query, when the target has one.
        path: String,
        strip_query: bool,
        permanent: bool,
    },
    Respond {
        status: u16,
        body: Option<String>,
    },
}

/// What the ext_authz filter does on a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The sidecar and bypassed routes.
    Disabled,
    /// Checked, with the route's label and the resources' version in the
    /// CheckRequest's `context_extensions`.
    Labelled(String),
    /// Checked, with nothing added (the no-rule route).
    Plain,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub name: String,
    pub comment: Option<&'static str>,
    pub path: PathMatch,
    pub headers: Vec<HeaderGuard>,
    pub action: Action,
    pub check: Check,
    pub remove_request_headers: Vec<String>,
    pub add_request_headers: Vec<(String, String)>,
    pub add_response_headers: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    pub name: String,
    pub endpoint: Endpoint,
    pub h2: bool,
    /// TLS to the endpoint, verifying this server name.
    pub tls: Option<String>,
    pub comment: Option<&'static str>,
}

/// Everything generated from one config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resources {
    pub routes: Vec<RouteSpec>,
    /// The backend services' clusters (ingress-authz's own are the
    /// bootstrap's).
    pub clusters: Vec<ClusterSpec>,
    /// A content hash of the above: the same config gives the same
    /// version on every replica.
    pub version: String,
    pub notes: Vec<String>,
    pub bypassed: usize,
}
