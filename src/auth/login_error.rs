//! Why a login failed after the provider sent the user back: one error for
//! oauth2 and oidc, whose stable [`LoginError::code`] metrics, audit and
//! the callback's error page use.

use super::jwks::VerifyError;
use super::providers::HttpError;

/// Why a login failed at the provider.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// OpenID: the provider's metadata is not available.
    #[error("the provider's metadata is not available")]
    Unavailable,
    /// The token endpoint refused or failed.
    #[error("code exchange failed: {0}")]
    Exchange(#[source] CallError),
    /// The token response had no access token.
    #[error("the provider returned no access token")]
    EmptyToken,
    /// The user endpoint refused or failed (oauth2).
    #[error("user profile request failed: {0}")]
    Profile(#[source] CallError),
    /// OpenID userinfo refused, failed or disagreed with the ID token.
    #[error("userinfo failed: {0}")]
    Userinfo(#[source] CallError),
    /// The profile had no user id.
    #[error("the provider returned no user id")]
    EmptyUser,
    /// OpenID: the ID token did not validate.
    #[error("invalid ID token: {0}")]
    IdToken(#[source] IdTokenError),
}

impl LoginError {
    /// The stable reason code (metrics, audit, the callback's error page).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable => "idp_unavailable",
            Self::Exchange(_) => "exchange_failed",
            Self::EmptyToken => "empty_token",
            Self::Profile(_) | Self::Userinfo(_) => "profile_failed",
            Self::EmptyUser => "empty_user",
            Self::IdToken(_) => "invalid_id_token",
        }
    }
}

/// What went wrong in one provider call: the transport, or an answer that
/// says no. Nothing the provider sent beyond a short, sanitised code.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// An RFC 6749 `error` (GitHub answers them with HTTP 200).
    #[error("provider error {0}")]
    Provider(String),
    /// OpenID: a token response with an `error`.
    #[error("the token endpoint answered an error")]
    TokenEndpoint,
    /// Slack's `{"ok": false}`.
    #[error("slack answered ok=false")]
    SlackNotOk,
    /// Feishu's envelope with a non-zero `code`.
    #[error("feishu error code {0}")]
    Feishu(i64),
    /// Feishu's envelope without a `code`.
    #[error("feishu answer without code")]
    FeishuNoCode,
    /// Feishu's app_access_token answer without the token.
    #[error("feishu returned no app_access_token")]
    FeishuNoAppToken,
    /// A refresh must re-read userinfo, and cannot.
    #[error("no userinfo endpoint or access token")]
    NoUserinfo,
    /// userinfo names another user than the ID token.
    #[error("userinfo sub differs from the ID token")]
    SubMismatch,
}

impl CallError {
    /// A provider's `error` value, reduced to a short code safe to log.
    pub fn provider(code: &str) -> Self {
        Self::Provider(
            code.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect(),
        )
    }
}

/// Why an ID token was refused (OpenID Connect Core §3.1.3.7).
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    #[error("no id_token in the token response")]
    Missing,
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("iss does not fit the tenant")]
    Tenant,
    #[error("no iat")]
    NoIat,
    #[error("iat in the future")]
    IatInFuture,
    #[error("nonce does not match")]
    Nonce,
    #[error("azp is not this client")]
    Azp,
    #[error("empty sub")]
    EmptySub,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_sanitised() {
        let code = |s: &str| CallError::provider(s).to_string();
        assert_eq!(
            code("bad_verification_code"),
            "provider error bad_verification_code"
        );
        assert_eq!(code("x\ny<script>"), "provider error xyscript");
    }
}
