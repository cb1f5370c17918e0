//! The random values of a login in flight: `state`, `nonce` and the PKCE
//! S256 pair (RFC 7636). Made here from the OS-seeded generator; a crate
//! for these few lines would bring a second `rand` and `sha2`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// 32 random bytes, base64url without padding (43 characters: 256 bits).
pub fn random_token() -> Secret {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    Secret::new(URL_SAFE_NO_PAD.encode(bytes))
}

/// A PKCE pair: the challenge sent in the authorize URL, and the verifier
/// kept in the login-state cookie for the code exchange.
pub fn s256_pair() -> (String, Secret) {
    let verifier = random_token();
    (s256_challenge(verifier.expose()), verifier)
}

/// `BASE64URL(SHA256(verifier))`.
fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_the_verifiers_s256_and_tokens_differ() {
        let (challenge, verifier) = s256_pair();
        assert_eq!(
            verifier.expose().len(),
            43,
            "RFC 7636: 43 to 128 characters"
        );
        assert_eq!(challenge, s256_challenge(verifier.expose()));
        assert_ne!(random_token().expose(), random_token().expose());
    }

    #[test]
    fn rfc_7636_appendix_b() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
