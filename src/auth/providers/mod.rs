//! The OAuth2 providers of SPEC §7: their table, endpoints (every one can be
//! overridden in the config), the HTTP client for provider calls, and each
//! provider's token and profile shapes.

mod endpoints;
mod http;
mod lists;
mod login;
mod profiles;
mod table;

pub use endpoints::Provider;
pub use http::{HttpError, MAX_RESPONSE, ProviderHttp, loggable};
pub use login::CodeExchange;
pub use table::{Descriptor, EmailTrust, GroupSource, Kind, PROVIDERS, is_multi_tenant};
