//! Which rule, path and auth policy a request falls under (SPEC §4).

pub mod host;
pub mod path;
pub mod path_pattern;
mod router;
pub mod wildcard;

pub use router::{OpenReason, PathRoute, Protected, Route, RouteAuth, RouteMatch, Router, Rule};
