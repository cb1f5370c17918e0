//! `Authorization` parsing: the scheme split (`request::parse_authorization`),
//! basic's `base64(user:password)` (`auth::basic::decode_credentials`),
//! and bearer and JWT compact tokens as the fixture's basic, bearer and
//! jwt routes read them (`Engine::decide`, no hashing). Never a panic; a
//! parsed credential is one word of the header; an allow is one the
//! reference accepts.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use ingress_authz::decision::Verdict;
use ingress_authz::request::{RequestView, parse_authorization};
use ingress_authz_fuzz::{fixture, harness, reference};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Value {
    Raw(String),
    /// `<scheme> base64(bytes)`.
    Basic {
        scheme: String,
        bytes: Vec<u8>,
        pad: bool,
    },
    /// `<scheme> <token>`.
    Bearer {
        scheme: String,
        token: String,
    },
    /// `Bearer b64(header).b64(payload).b64(signature)`.
    Jwt {
        header: String,
        payload: String,
        signature: Vec<u8>,
        parts: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    value: Value,
    /// The scheme asked for.
    scheme: String,
}

fuzz_target!(|data: &[u8]| {
    // A leading NUL: the rest is a structured value; else text, `value`
    // or `value\nscheme`.
    let input = match data.split_first() {
        Some((0, rest)) => match Input::arbitrary(&mut arbitrary::Unstructured::new(rest)) {
            Ok(input) => input,
            Err(_) => return,
        },
        _ => {
            let text = ingress_authz_fuzz::text(data);
            let (value, scheme) = text.split_once('\n').unwrap_or((&text, "basic"));
            Input {
                value: Value::Raw(value.to_string()),
                scheme: scheme.to_string(),
            }
        }
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let value = match &input.value {
        Value::Raw(s) => s.clone(),
        Value::Basic { scheme, bytes, pad } => {
            let encoded = if *pad {
                base64::engine::general_purpose::STANDARD.encode(bytes)
            } else {
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
            };
            format!("{scheme} {encoded}")
        }
        Value::Bearer { scheme, token } => format!("{scheme} {token}"),
        Value::Jwt {
            header,
            payload,
            signature,
            parts,
        } => {
            let mut p = vec![
                b64.encode(header),
                b64.encode(payload),
                b64.encode(signature),
            ];
            p.truncate(usize::from(*parts % 4).max(1));
            if parts % 7 == 6 {
                p.push(String::new());
            }
            format!("Bearer {}", p.join("."))
        }
    };
    let value = ingress_authz_fuzz::header_safe(&value);

    for scheme in [input.scheme.as_str(), "basic", "bearer", "Bearer"] {
        if let Some(credentials) = parse_authorization(&value, scheme) {
            assert!(!credentials.is_empty());
            assert!(!credentials.contains([' ', '\t', ',']), "{credentials:?}");
            assert!(value.contains(credentials));
            let given = value
                .trim_start()
                .split([' ', '\t'])
                .next()
                .unwrap_or_default();
            assert!(
                given.eq_ignore_ascii_case(scheme),
                "{given:?} for {scheme:?}"
            );
        }
    }
    if let Some(credentials) = parse_authorization(&value, "basic")
        && let Some((user, password)) = ingress_authz::auth::basic::decode_credentials(credentials)
    {
        assert!(!user.contains(&b':'), "the user ends at the first colon");
        let decoded = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        )
        .decode(credentials.trim())
        .expect("decoded once, decodes again");
        assert_eq!(decoded.len(), user.len() + 1 + password.len());
    }
    if let Some(token) = parse_authorization(&value, "bearer") {
        // The compact form's header, as every JWT method reads it first.
        let _ = jsonwebtoken::decode_header(token);
    }

    // The fixture's basic (plaintext or pending hash), bearer and jwt routes.
    let engine = fixture::engine();
    let headers = std::collections::HashMap::from([("authorization".to_string(), value.clone())]);
    let now = fixture::now();
    for (host, path) in [
        ("basic.example.com", "/admin"),
        ("www.mixed.example.com", "/"),
        ("x.bearer.example.com", "/named/"),
        ("x.bearer.example.com", "/"),
        ("api.jwt.example.com", "/"),
        ("api.jwt.example.com", "/admin"),
        ("www.mixed.example.com", "/api"),
    ] {
        let req = RequestView {
            host,
            path,
            method: "GET",
            scheme: "https",
            headers: &headers,
            client: Some("192.0.2.1"),
        };
        let decision = engine.decide(&req);
        let allowed = decision.is_allowed();
        if allowed {
            let label = decision.label.expect("an allow has a route");
            assert!(
                reference::accepts(label, &headers, now),
                "{label} allowed {value:?}"
            );
        }
        if let Verdict::Pending { .. } = decision.verdict {
            assert_eq!(
                host, "basic.example.com",
                "only basic hashes are pending here"
            );
        }
        let response = ingress_authz::response::to_check_response(&decision, || false);
        harness::assert_well_formed(&response, allowed);
    }
});
