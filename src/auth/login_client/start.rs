//! Starting a login: a navigation without a session goes to the provider
//! (or first to the login host), with its state, nonce and PKCE verifier
//! sealed in a login-state cookie; anything else gets 401.

use super::{AuthorizeParams, LOGIN_TTL_SECS, LoginClient, ReturnTo};
use crate::auth::{AuthResult, Denial, Redirect, pkce};
use crate::decision::{Reason, Status};
use crate::request::{RequestView, Scheme};
use crate::secret::Secret;
use crate::session::{LoginState, Purpose, same_host_path};

impl LoginClient {
    /// No session: a navigation goes to the provider, anything else gets 401.
    pub fn login_or_401<'s>(
        &self,
        req: &RequestView<'_>,
        route: &str,
        (pkce, nonce): (bool, bool),
        to: ReturnTo<'_>,
        authorize: impl FnOnce(&AuthorizeParams<'_>) -> String,
    ) -> AuthResult<'s> {
        if !req.is_navigation() {
            return AuthResult::Deny(Denial::status(Status::Unauthorized, Reason::LoginRequired));
        }
        let scheme = req.scheme(self.cookies.trust_forwarded_proto);
        if let ReturnTo::Request = to
            && let Some(location) = self.via_login_host(req, route, scheme)
        {
            // The login host sets its own login state: nothing to set here.
            return AuthResult::Deny(Denial::redirect(
                Reason::LoginRedirect,
                Redirect {
                    location,
                    set_cookie: String::new(),
                },
            ));
        }
        let original = match to {
            ReturnTo::Request => same_host_path(req.path).to_string(),
            ReturnTo::Url(url) => url.to_string(),
        };
        let redirect_uri = self.redirect_uri(req);
        let state = pkce::random_token();
        let (challenge, verifier) = if pkce {
            let (c, v) = pkce::s256_pair();
            (Some(c), Some(v))
        } else {
            (None, None)
        };
        let nonce = nonce.then(pkce::random_token);
        let login = LoginState {
            state: state.clone(),
            verifier,
            nonce: nonce.clone(),
            route: route.to_string(),
            original,
            redirect_uri: redirect_uri.clone(),
            expires: crate::clock::unix_secs() + LOGIN_TTL_SECS,
        };
        let sealed = self.keys.seal_json(Purpose::LoginState, &login);
        let set_cookie = self
            .cookies
            .set_login(state.expose(), &sealed, LOGIN_TTL_SECS, scheme);
        let location = authorize(&AuthorizeParams {
            client_id: &self.client_id,
            redirect_uri: &redirect_uri,
            state: state.expose(),
            challenge: challenge.as_deref(),
            nonce: nonce.as_ref().map(Secret::expose),
        });
        AuthResult::Deny(Denial::redirect(
            Reason::LoginRedirect,
            Redirect {
                location,
                set_cookie,
            },
        ))
    }

    /// With a login host, a host under the cookie domain other than the
    /// login host itself logs in there (one registered callback for all):
    /// the URL of the login host's start. None: log in here. A route with
    /// its own `redirect_url` keeps it.
    fn via_login_host(&self, req: &RequestView<'_>, route: &str, scheme: Scheme) -> Option<String> {
        let (Some(domain), Some(login_host)) = (&self.cookies.domain, &self.cookies.login_host)
        else {
            return None;
        };
        let host = crate::matching::host::normalize_host(req.host);
        if self.redirect_url.is_some()
            || *host == **login_host
            || !crate::sso::within(&host, domain)
        {
            return None;
        }
        let original = format!("{}://{}{}", scheme.as_str(), req.host, req.path);
        // The same listener serves the login host: keep a non-default port.
        let port = req
            .host
            .rsplit_once(':')
            .map(|(_, p)| p)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let login_host = match port {
            Some(p) => format!("{login_host}:{p}"),
            None => login_host.clone(),
        };
        Some(crate::sso::start_url(
            scheme.as_str(),
            &login_host,
            &original,
            route,
        ))
    }

    /// The configured redirect_url, or `{scheme}://{host}/oauth2/callback`.
    fn redirect_uri(&self, req: &RequestView<'_>) -> String {
        match &self.redirect_url {
            Some(u) => u.to_string(),
            None => format!(
                "{}://{}/oauth2/callback",
                req.scheme(self.cookies.trust_forwarded_proto).as_str(),
                req.host
            ),
        }
    }
}
