//! ID tokens, JWK Sets and back-channel logout tokens: a JWKS document
//! (the test keys of tests/fixtures, edited, or any JSON) loaded as a
//! fetch would (`Jwks::load`), then a token (signed with a fixture key,
//! with an HMAC over a public key, unsigned, or raw) checked as a login's
//! ID token (`auth::oidc::check_id_token`) and as a logout token
//! (`login::check_logout_token`). Never a panic; an accepted token is
//! signed by one of the fixture keys (checked here with the PEM keys, not
//! the JWKS) and its claims hold what each check promises.
#![no_main]

use arbitrary::Arbitrary;
use ingress_authz_fuzz::tokens::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A leading NUL: the rest is a structured input; else text
    // (`token\njwks-json[\nnow]`, see `run_text`).
    match data.split_first() {
        Some((0, rest)) => {
            if let Ok(input) = Input::arbitrary(&mut arbitrary::Unstructured::new(rest)) {
                run(&input);
            }
        }
        _ => {
            run_text(&ingress_authz_fuzz::text(data));
        }
    }
});
