//! OpenID bearer tokens (API mode, and login mode with `accept_bearer`):
//! JWTs verified against the issuer's JWKS, with connect headers signed
//! from their claims.

use std::sync::Arc;

use serde_json::Value;

use super::Oidc;
use super::claims::{Claims, issuer_holds};
use crate::auth::bearer::{CHALLENGE, CHALLENGE_INVALID};
use crate::auth::cache::VerifiedTokens;
use crate::auth::discovery::Metadata;
use crate::auth::jwks::VerifyError;
use crate::auth::{AuthKind, AuthResult, Denial};
use crate::connect::ConnectClaims;
use crate::decision::{Reason, Status};
use crate::identity::{Identity, TokenIdentity};
use crate::request::RequestView;

impl Oidc {
    /// A bearer JWT signed by the issuer.
    pub(super) fn check_bearer(&self, req: &RequestView<'_>, meta: &Metadata) -> AuthResult<'_> {
        let Some(token) = req.authorization("bearer") else {
            return AuthResult::Deny(Denial::missing(Some(CHALLENGE)));
        };
        let cache_key = VerifiedTokens::key(token);
        if let Some(who) = self.verified.get(&cache_key) {
            return self.allow_token(req, who);
        }
        let access_token = jsonwebtoken::decode_header(token).is_ok_and(|h| {
            h.typ.is_some_and(|t| {
                t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
            })
        });
        if !access_token && !self.accept_id_tokens {
            tracing::debug!("oidc bearer token is not a JWT access token (typ at+jwt)");
            return AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID)));
        }
        let verified = meta
            .jwks
            .verify::<Value>(token, &self.checks(meta).bearer)
            .map(|claims| (Claims::of(&claims), claims));
        match verified {
            Ok((checked, _)) if !issuer_holds(&meta.issuer, &checked) => {
                AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID)))
            }
            // An ID token that carries a nonce was issued to a browser
            // login: never a bearer credential.
            Ok((checked, _)) if !access_token && checked.nonce.present => {
                AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID)))
            }
            Ok((_, claims)) => {
                let who = Arc::new(self.reader().read(&claims));
                self.verified.insert(cache_key, who.exp, who.clone());
                self.allow_token(req, who)
            }
            Err(VerifyError::NoKeys) => AuthResult::pending_keys(Denial::status(
                Status::ServiceUnavailable,
                Reason::IdpUnavailable,
            )),
            Err(VerifyError::UnknownKey) => AuthResult::pending_keys(Denial {
                reason: Reason::UnknownKey,
                ..Denial::invalid(Some(CHALLENGE_INVALID))
            }),
            Err(VerifyError::Invalid(e)) => {
                tracing::debug!(error = %e, "oidc bearer token rejected");
                AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID)))
            }
        }
    }

    /// API mode: a verified token, with connect headers from its claims.
    fn allow_token(&self, req: &RequestView<'_>, who: Arc<TokenIdentity>) -> AuthResult<'_> {
        let mut upstream = Vec::new();
        // API mode's `connect`, or the login client's for its bearer tokens.
        let signer = self
            .api_connect
            .as_ref()
            .or_else(|| self.client.as_ref().and_then(|c| c.connect.as_ref()));
        if let Some(signer) = signer {
            let now = crate::clock::unix_now();
            let audience = signer.audience_for(req.host);
            let signed = signer.sign(&ConnectClaims::of_token(&who, &audience), now);
            upstream.push(("x-connect-token", signed.token));
            upstream.push(("x-connect-timestamp", signed.issued_ms.to_string()));
        }
        AuthResult::Allow {
            identity: Identity::token(AuthKind::Oidc, who),
            upstream,
        }
    }
}
