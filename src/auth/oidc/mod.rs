//! OpenID Connect (SPEC §5, §6): the authenticator, its build and the
//! login redirect; API mode (`api`), the callback and refresh
//! (`callback`) and the typed wire data (`claims`) are its parts.

mod api;
mod callback;
mod claims;

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::discovery::{Discovery, Metadata};
use super::login_client::{ClientSettings, LoginClient, ReturnTo};
use super::providers::{Kind, is_multi_tenant};
use super::refresh_flights::RefreshFlights;
use super::{AuthKind, AuthResult, BuildContext, BuildError, Denial, PolicyNeeds};
use crate::config::spec::OidcSpec;
use crate::connect::ConnectSigner;
use crate::decision::{Reason, Status};
use crate::identity::{ClaimsReader, EmailRule};
use crate::request::RequestView;
use crate::session::{ATTRIBUTES_VERSION, Attributes};
use claims::IssuerChecks;

/// An ID token's whole check once the issuer's keys are in `jwks`: the
/// signature and validation a login's callback applies, then its claim
/// checks (tenant, `iat`, `nonce`, `azp`, `sub`) at `now`. The verified
/// claims. Public for the fuzz targets; the callback runs the same steps
/// with a key refresh between them.
pub fn check_id_token(
    jwks: &super::jwks::Jwks,
    issuer: &str,
    client_id: &str,
    token: &str,
    nonce: Option<&str>,
    now: u64,
) -> Result<serde_json::Value, crate::auth::login_error::IdTokenError> {
    let checks = IssuerChecks::new(issuer, &[], Some(client_id));
    let claims = jwks.verify::<serde_json::Value>(token, &checks.id_token)?;
    claims::id_token_claims(issuer, client_id, &claims, nonce, now)?;
    Ok(claims)
}

#[derive(Debug)]
pub struct Oidc {
    pub discovery: Arc<Discovery>,
    /// None in API mode (no `client_id`).
    pub client: Option<LoginClient>,
    scopes: Vec<String>,
    audience: Vec<String>,
    /// How identities are read out of verified claims.
    groups_claim: String,
    email_rule: EmailRule,
    policy_claims: Arc<[String]>,
    /// Bearer tokens: ID tokens (never with a nonce) count too.
    accept_id_tokens: bool,
    /// Login mode: bearer access tokens for the client count too.
    accept_bearer: bool,
    /// API mode: connect headers signed from the token's claims.
    api_connect: Option<ConnectSigner>,
    /// API mode: bearer tokens that verified recently.
    verified: super::cache::VerifiedTokens,
    /// `/oauth2/logout` also ends the session at the provider.
    pub logout_at_provider: bool,
    /// Refreshes in flight or just done.
    flights: RefreshFlights,
    /// The token validations for the discovered issuer, made once.
    checks: ArcSwapOption<IssuerChecks>,
}

/// The issuer of a known provider (SPEC §5), or the configured one.
fn issuer_of(spec: &OidcSpec) -> Result<String, BuildError> {
    if let Some(issuer) = &spec.issuer {
        return Ok(issuer.as_str().trim_end_matches('/').to_string());
    }
    let base = spec
        .base_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_string());
    let needs_base = |name| base.clone().ok_or(BuildError::NeedsBaseUrl(name));
    Ok(match spec.provider {
        Some(Kind::Google) => "https://accounts.google.com".into(),
        Some(Kind::Microsoft) => format!(
            "https://login.microsoftonline.com/{}/v2.0",
            spec.tenant.as_deref().unwrap_or("common")
        ),
        Some(Kind::Auth0) => format!("{}/", needs_base("auth0")?),
        Some(Kind::Okta) => format!("{}/oauth2/default", needs_base("okta")?),
        Some(Kind::Gitlab) => base.unwrap_or_else(|| "https://gitlab.com".into()),
        _ => return Err(BuildError::NoIssuer),
    })
}

impl Oidc {
    pub fn build(
        spec: &OidcSpec,
        ctx: &BuildContext,
        needs: PolicyNeeds,
    ) -> Result<Self, BuildError> {
        let issuer = issuer_of(spec)?;
        let email_rule = match spec.provider {
            Some(Kind::Google) => EmailRule::HostedDomain,
            Some(Kind::Microsoft) if !is_multi_tenant(spec.tenant.as_deref()) => EmailRule::Tenant,
            _ if issuer == "https://accounts.google.com" => EmailRule::HostedDomain,
            _ => EmailRule::EmailVerified,
        };
        let client = match &spec.client_id {
            Some(client_id) => Some(LoginClient::new(
                ClientSettings {
                    // Sessions are bound to the issuer, not just "oidc".
                    provider: format!("oidc:{issuer}"),
                    client_id: client_id.clone(),
                    client_secret: spec
                        .client_secret
                        .clone()
                        .unwrap_or_else(|| crate::secret::Secret::new(String::new())),
                    redirect_url: spec.redirect_url.clone(),
                    kind: AuthKind::Oidc,
                    needs,
                    connect: spec.connect.as_ref(),
                },
                ctx,
            )?),
            None => None,
        };
        let api_connect = match (&spec.client_id, &spec.connect) {
            (None, Some(c)) => ConnectSigner::from_spec(c)?,
            _ => None,
        };
        let mut scopes = spec.scopes.clone();
        if scopes.is_empty() {
            scopes = vec!["openid".into(), "profile".into(), "email".into()];
        }
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        Ok(Self {
            discovery: Arc::new(Discovery::new(&issuer)),
            client,
            scopes,
            audience: spec.audience.clone(),
            groups_claim: spec.groups_claim.clone(),
            email_rule,
            policy_claims: ctx.policy_claims.clone(),
            accept_id_tokens: spec.accept_id_tokens,
            accept_bearer: spec.accept_bearer,
            api_connect,
            flights: RefreshFlights::default(),
            logout_at_provider: spec.logout_at_provider,
            verified: Default::default(),
            checks: ArcSwapOption::empty(),
        })
    }

    pub fn authenticate(&self, req: &RequestView<'_>, route: &str) -> AuthResult<'_> {
        // A session is ours to check: a provider that is down blocks new
        // logins, not the users already logged in.
        if let Some(result) = self.client.as_ref().and_then(|c| c.session_result(req)) {
            return result;
        }
        // A token that fails is a 401, never a login redirect.
        if self.client.is_some() && self.accept_bearer && req.authorization("bearer").is_some() {
            return self.authenticate_bearer(req);
        }
        self.login(req, route)
    }

    /// Whether bearer tokens are a credential here: always in API mode, in
    /// login mode with `accept_bearer`.
    pub fn takes_bearer(&self) -> bool {
        self.client.is_none() || self.accept_bearer
    }

    /// The request's bearer token, verified as in API mode.
    pub fn authenticate_bearer(&self, req: &RequestView<'_>) -> AuthResult<'_> {
        let Some(meta) = self.discovery.metadata() else {
            return AuthResult::pending_keys(Denial::status(
                Status::ServiceUnavailable,
                Reason::IdpUnavailable,
            ));
        };
        self.check_bearer(req, &meta)
    }

    fn reader(&self) -> ClaimsReader<'_> {
        ClaimsReader {
            groups_claim: &self.groups_claim,
            policy_claims: &self.policy_claims,
            email: self.email_rule,
        }
    }

    /// No (usable) session: API mode checks the bearer token; a navigation
    /// goes to the provider; anything else gets 401.
    pub fn login(&self, req: &RequestView<'_>, route: &str) -> AuthResult<'_> {
        self.login_to(req, route, ReturnTo::Request)
    }

    /// As [`Self::login`], returning to `to`.
    pub fn login_to(&self, req: &RequestView<'_>, route: &str, to: ReturnTo<'_>) -> AuthResult<'_> {
        let Some(meta) = self.discovery.metadata() else {
            return AuthResult::pending_keys(Denial::status(
                Status::ServiceUnavailable,
                Reason::IdpUnavailable,
            ));
        };
        let Some(client) = &self.client else {
            return self.check_bearer(req, &meta);
        };
        let scope = self.scopes.join(" ");
        let offline = self.scopes.iter().any(|s| s == "offline_access");
        client.login_or_401(req, route, (true, true), to, |p| {
            let mut u = meta.authorization_endpoint.clone();
            u.query_pairs_mut()
                .append_pair("client_id", p.client_id)
                .append_pair("redirect_uri", p.redirect_uri)
                .append_pair("response_type", "code")
                .append_pair("scope", &scope)
                .append_pair("state", p.state)
                .append_pair("nonce", p.nonce.unwrap_or_default())
                .append_pair("code_challenge", p.challenge.unwrap_or_default())
                .append_pair("code_challenge_method", "S256");
            if offline {
                // OpenID Connect Core §11: offline_access needs prompt=consent.
                u.query_pairs_mut().append_pair("prompt", "consent");
            }
            u.to_string()
        })
    }

    /// The validations for `meta`'s issuer: made on first use, kept while
    /// the issuer stays the same.
    fn checks(&self, meta: &Metadata) -> Arc<IssuerChecks> {
        if let Some(checks) = self.checks.load_full()
            && checks.issuer == meta.issuer
        {
            return checks;
        }
        let client_id = self.client.as_ref().map(|c| c.client_id.as_str());
        let checks = Arc::new(IssuerChecks::new(&meta.issuer, &self.audience, client_id));
        self.checks.store(Some(checks.clone()));
        checks
    }

    /// The policy attributes of verified (and userinfo-completed) claims.
    fn attributes(&self, claims: &serde_json::Value) -> Attributes {
        let who = self.reader().read(claims);
        Attributes {
            version: ATTRIBUTES_VERSION,
            email: who.email,
            domain: who.domain,
            groups: who.groups,
            claims: who.claims,
            read_at: crate::clock::unix_secs(),
            access: None,
        }
    }
}
