//! The config as the file states it, after schema checks and `${VAR}`
//! expansion, before anything is compiled. Every field that a later check
//! can reject keeps its [`Loc`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::error::Loc;
use crate::auth::providers::Kind;
use crate::secret::Secret;

#[derive(Debug, Default)]
pub struct ConfigSpec {
    pub authz: AuthzSpec,
    pub rules: Vec<RuleSpec>,
    pub fallback: Option<BackendSpec>,
    /// Files the config reads (users_file, tokens_file, secret_file): a
    /// change to any of them reloads the config.
    pub files: Vec<PathBuf>,
}

/// The `authz:` section (ours).
#[derive(Debug)]
pub struct AuthzSpec {
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub session: Option<SessionSpec>,
    pub trust_forwarded_proto: bool,
    /// Password hashes verified at once (default: half the cores).
    pub hash_concurrency: Option<usize>,
    pub login_throttle: crate::throttle::ThrottleSettings,
    /// Bearer token every admin call must carry (required off loopback).
    pub admin_token: Option<(Secret, Loc)>,
    /// `login_host`, lower-cased: where every host under the cookie domain
    /// logs in (one registered callback).
    pub login_host: Option<String>,
    /// `envoy.listen`: the generated Envoy listener's address.
    pub envoy_listen: Option<SocketAddr>,
    /// `store.redis`: state shared by every replica (SPEC §13.3).
    pub store: Option<StoreSpec>,
}

impl Default for AuthzSpec {
    fn default() -> Self {
        Self {
            grpc_addr: None,
            http_addr: None,
            admin_addr: None,
            session: None,
            trust_forwarded_proto: true,
            hash_concurrency: None,
            login_throttle: Default::default(),
            admin_token: None,
            login_host: None,
            envoy_listen: None,
            store: None,
        }
    }
}

#[derive(Debug)]
pub struct SessionSpec {
    /// First encrypts, all decrypt (rotation).
    pub secrets: Vec<Secret>,
    pub cookie_name: String,
    pub max_age: Duration,
    /// `cookie_domain`, without a leading dot, lower-cased: the session
    /// cookie covers it and its subdomains.
    pub cookie_domain: Option<String>,
    /// `store`: whether the cookie holds the session or a ticket to it.
    pub store: SessionStore,
}

/// Where sessions live (`authz.session.store`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionStore {
    /// The sealed cookie is the session (the default).
    #[default]
    Cookie,
    /// The cookie is a ticket; the record, sealed by a key only the ticket
    /// holds, lives in the Redis store.
    Redis,
}

/// `authz.store.redis`.
#[derive(Debug)]
pub struct StoreSpec {
    /// `redis://`, `rediss://` or `redis+unix://`; it may hold a password.
    pub url: Secret,
    /// Put in front of every key and the pub/sub channel.
    pub key_prefix: String,
    /// Every store call gives up after this long.
    pub timeout: Duration,
    pub loc: Loc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostType {
    Auto,
    Exact,
    Wildcard,
    Regex,
}

#[derive(Debug)]
pub struct RuleSpec {
    pub loc: Loc,
    pub host: String,
    pub host_loc: Loc,
    pub host_type: HostType,
    pub backend: BackendSpec,
    pub paths: Vec<PathSpec>,
}

#[derive(Debug)]
pub struct PathSpec {
    pub loc: Loc,
    pub path: String,
    pub path_loc: Loc,
    pub backend: BackendSpec,
}

/// What a backend does, as far as authentication cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Service,
    /// ingress answers redirects itself and never authenticates them.
    Redirect,
    /// ingress answers handlers itself and never authenticates them.
    Handler,
}

#[derive(Debug)]
pub struct BackendSpec {
    pub kind: BackendKind,
    /// `service.auth`, when present.
    pub auth: Option<AuthSpec>,
}

#[derive(Debug)]
pub struct AuthSpec {
    pub loc: Loc,
    pub enabled: Option<bool>,
    /// The methods `type` names, in its order (`type: [oidc, bearer]`);
    /// empty when no `type` is given.
    pub methods: Vec<MethodSpec>,
    /// `allow:` for whichever method verified the identity, with the older
    /// aliases folded in when there is one method; empty when none.
    pub allow: AllowSpec,
    /// Allow everything, record what would have been denied.
    pub report_only: bool,
    /// `identity_headers` and `strip_credentials`: what the upstream sees.
    pub identity_headers: IdentityHeadersSpec,
}

/// `auth.identity_headers` (upstream header names, lower-cased, with where
/// each was given) and `auth.strip_credentials`.
#[derive(Debug, Default, Clone)]
pub struct IdentityHeadersSpec {
    pub user: Option<(String, Loc)>,
    pub email: Option<(String, Loc)>,
    pub groups: Option<(String, Loc)>,
    pub strip_credentials: bool,
}

/// Claim name → any of these values.
pub type ClaimsSpec = Vec<(String, Vec<String>)>;

/// The `allow:` policy block (SPEC §13.1), checked after authentication.
#[derive(Debug, Default, Clone)]
pub struct AllowSpec {
    pub users: Vec<String>,
    pub logins: Vec<String>,
    pub emails: Vec<String>,
    pub domains: Vec<String>,
    pub groups: Vec<String>,
    /// Claim name → any of these values.
    pub claims: Vec<(String, Vec<String>)>,
    /// Where each kind was given (for errors about it).
    pub locs: Vec<(crate::decision::Condition, Loc)>,
}

impl AllowSpec {
    pub fn is_empty(&self) -> bool {
        self.locs.is_empty()
    }

    pub fn has(&self, c: crate::decision::Condition) -> bool {
        self.locs.iter().any(|(k, _)| *k == c)
    }

    pub fn loc_of(&self, c: crate::decision::Condition) -> Option<&Loc> {
        self.locs.iter().find(|(k, _)| *k == c).map(|(_, l)| l)
    }
}

#[derive(Debug)]
pub enum MethodSpec {
    Basic(BasicSpec),
    Bearer(BearerSpec),
    Jwt(JwtSpec),
    OAuth2(OAuth2Spec),
    Oidc(OidcSpec),
}

impl MethodSpec {
    /// The `allow` written in the method's own block (`bearer: {allow: ..}`):
    /// it judges only identities this method verified.
    pub fn allow(&self) -> &AllowSpec {
        match self {
            Self::Basic(s) => &s.allow,
            Self::Bearer(s) => &s.allow,
            Self::Jwt(s) => &s.allow,
            Self::OAuth2(s) => &s.allow,
            Self::Oidc(s) => &s.allow,
        }
    }

    pub fn allow_mut(&mut self) -> &mut AllowSpec {
        match self {
            Self::Basic(s) => &mut s.allow,
            Self::Bearer(s) => &mut s.allow,
            Self::Jwt(s) => &mut s.allow,
            Self::OAuth2(s) => &mut s.allow,
            Self::Oidc(s) => &mut s.allow,
        }
    }

    /// A method that logs users in through a browser and keeps a session
    /// (oauth2, oidc with `client_id`).
    pub fn is_session(&self) -> bool {
        match self {
            Self::OAuth2(_) => true,
            Self::Oidc(s) => s.client_id.is_some(),
            _ => false,
        }
    }
}

#[derive(Debug)]
pub struct BasicUserSpec {
    pub username: String,
    pub password: Secret,
    pub loc: Loc,
}

#[derive(Debug)]
pub struct BasicSpec {
    pub loc: Loc,
    pub users: Vec<BasicUserSpec>,
    pub users_file: Option<(PathBuf, Loc)>,
    pub realm: String,
    /// The method's own `allow` (see [`MethodSpec::allow`]).
    pub allow: AllowSpec,
}

#[derive(Debug)]
pub struct BearerSpec {
    pub loc: Loc,
    /// (name, token): a named token's name is its identity.
    pub tokens: Vec<(Option<String>, Secret, Loc)>,
    pub tokens_file: Option<(PathBuf, Loc)>,
    /// The method's own `allow` (see [`MethodSpec::allow`]).
    pub allow: AllowSpec,
}

/// Where a JWT verification key comes from.
#[derive(Debug)]
pub enum JwtKeySpec {
    Secret(Secret),
    PublicKeyPem(String),
    JwksUrl(url::Url),
}

/// A jwt block without a key; the walk and the build say it in one text,
/// so that the load lists it once.
pub const JWT_NEEDS_KEY: &str =
    "jwt needs a key: `secret`, `jwt.secret`, `jwt.public_key` or `jwt.jwks_url`";

#[derive(Debug)]
pub struct JwtSpec {
    pub loc: Loc,
    pub key: Option<(JwtKeySpec, Loc)>,
    pub algorithms: Option<(Vec<Algorithm>, Loc)>,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub leeway: Duration,
    pub require_exp: bool,
    /// Where groups are read from (dotted path), default `groups`.
    pub groups_claim: String,
    /// The method's own `allow` (see [`MethodSpec::allow`]).
    pub allow: AllowSpec,
}

#[derive(Debug)]
pub struct ConnectSpec {
    pub loc: Loc,
    pub enabled: bool,
    pub secret: Option<Secret>,
    pub algorithm: Algorithm,
    pub expires_in: Duration,
    /// `aud` of the token; default the request's host.
    pub audience: Option<String>,
}

#[derive(Debug)]
pub struct OAuth2Spec {
    pub loc: Loc,
    pub provider: Kind,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Option<Vec<String>>,
    pub redirect_url: Option<url::Url>,
    pub base_url: Option<url::Url>,
    pub tenant: Option<String>,
    pub auth_url: Option<url::Url>,
    pub token_url: Option<url::Url>,
    pub userinfo_url: Option<url::Url>,
    /// Older spellings of `allow.emails` / `allow.domains`, with their
    /// locations (folded into `AuthSpec::allow`).
    pub allowed_emails: Option<(Vec<String>, Loc)>,
    pub allowed_domains: Option<(Vec<String>, Loc)>,
    pub connect: Option<ConnectSpec>,
    /// How long groups read from the provider are trusted.
    pub groups_ttl: Duration,
    /// The method's own `allow` (see [`MethodSpec::allow`]).
    pub allow: AllowSpec,
}

#[derive(Debug)]
pub struct OidcSpec {
    pub loc: Loc,
    /// A known OpenID provider (one of [`crate::config::OIDC_PROVIDERS`]).
    pub provider: Option<Kind>,
    pub issuer: Option<url::Url>,
    pub base_url: Option<url::Url>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub redirect_url: Option<url::Url>,
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    /// Older spellings of `allow.emails` / `allow.domains` / `allow.claims`.
    pub allowed_emails: Option<(Vec<String>, Loc)>,
    pub allowed_domains: Option<(Vec<String>, Loc)>,
    pub claims: Option<(ClaimsSpec, Loc)>,
    pub connect: Option<ConnectSpec>,
    /// Where groups are read from (dotted path), default `groups`.
    pub groups_claim: String,
    /// How long groups and claims read from the provider are trusted.
    pub groups_ttl: Duration,
    /// API mode: ID tokens (without a nonce) count as bearer credentials.
    pub accept_id_tokens: bool,
    /// RP-initiated logout from `/oauth2/logout`.
    pub logout_at_provider: bool,
    /// Login mode: bearer access tokens of the same issuer for this client
    /// (or `audience`) count too, as in API mode.
    pub accept_bearer: bool,
    /// The method's own `allow` (see [`MethodSpec::allow`]).
    pub allow: AllowSpec,
}
