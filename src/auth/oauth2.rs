//! OAuth2 redirect login (SPEC §5, §6): the `Check` side. A valid session
//! cookie allows (with connect headers); a browser navigation without one is
//! sent to the provider; anything else gets 401. The provider's answer comes
//! back to the sidecar's `/oauth2/callback` ([`crate::login`]).

use super::login_client::{ClientSettings, LoginClient, ReturnTo};
use super::providers::{Provider, ProviderHttp};
use super::refresh_flights::RefreshFlights;
use super::{AuthKind, AuthResult, BuildContext, BuildError, PolicyNeeds};
use crate::config::spec::OAuth2Spec;
use crate::request::{RequestView, Scheme};
use crate::secret::Secret;
use crate::session::{Attributes, Identity, LoginState, Session};

#[derive(Debug)]
pub struct OAuth2 {
    pub provider: Provider,
    pub client: LoginClient,
    /// Refreshes of group memberships in flight, by session cookie.
    flights: RefreshFlights,
}

impl OAuth2 {
    pub fn build(
        spec: &OAuth2Spec,
        ctx: &BuildContext,
        needs: PolicyNeeds,
    ) -> Result<Self, BuildError> {
        let mut provider = Provider::from_spec(spec)?;
        if needs.groups
            && let Some(scope) = provider.kind.descriptor().groups_scope
            && !provider.scopes.iter().any(|s| s == scope)
        {
            provider.scopes.push(scope.to_string());
        }
        let client = LoginClient::new(
            ClientSettings {
                provider: provider.kind.as_str().to_string(),
                client_id: spec.client_id.clone(),
                client_secret: spec.client_secret.clone(),
                redirect_url: spec.redirect_url.clone(),
                kind: AuthKind::OAuth2,
                needs,
                connect: spec.connect.as_ref(),
            },
            ctx,
        )?;
        Ok(Self {
            provider,
            client,
            flights: RefreshFlights::default(),
        })
    }

    pub fn authenticate(&self, req: &RequestView<'_>, route: &str) -> AuthResult<'_> {
        if let Some(result) = self.client.session_result(req) {
            return result;
        }
        self.login(req, route)
    }

    /// No (usable) session: a navigation goes to the provider, else 401.
    pub fn login(&self, req: &RequestView<'_>, route: &str) -> AuthResult<'_> {
        self.login_to(req, route, ReturnTo::Request)
    }

    /// A login that returns to `to`.
    pub fn login_to(&self, req: &RequestView<'_>, route: &str, to: ReturnTo<'_>) -> AuthResult<'_> {
        let provider = &self.provider;
        self.client
            .login_or_401(req, route, (provider.pkce, false), to, |p| {
                provider.authorize_url(p.client_id, p.redirect_uri, p.state, p.challenge)
            })
    }

    /// Completes a login at the provider (called by the callback).
    pub async fn finish_login(
        &self,
        http: &ProviderHttp,
        code: &str,
        login: &LoginState,
    ) -> Result<(Identity, Attributes), super::LoginError> {
        self.provider
            .login(
                http,
                &super::providers::CodeExchange {
                    client_id: &self.client.client_id,
                    client_secret: self.client.client_secret(),
                    code,
                    redirect_uri: &login.redirect_uri,
                    verifier: login.verifier.as_ref().map(Secret::expose),
                },
                self.client.needs.groups,
            )
            .await
    }

    /// Reads a session's groups again with its access token (single flight
    /// per cookie). Some((cookie value, Set-Cookie)), or None when the
    /// provider no longer answers for the token (the session ends).
    pub async fn refresh_session(
        &self,
        http: &ProviderHttp,
        cookie: &str,
        scheme: Scheme,
    ) -> Option<(String, String)> {
        let client = &self.client;
        self.flights
            .run(cookie, || client.shared_refresh(cookie, scheme, || async {
                let mut session: Session = client.read_session(cookie).await.ok()??;
                let token = session.attrs.access.clone()?;
                let groups = self.provider.groups(http, token.expose()).await?;
                session.attrs.groups = Some(groups);
                session.attrs.read_at = crate::clock::unix_secs();
                session.attrs.version = crate::session::ATTRIBUTES_VERSION;
                tracing::info!(target: "audit", event = "groups_refreshed", user = %session.identity.id);
                client.save_session(session, scheme, Some(cookie)).await.ok()
            }))
            .await
    }
}
