//! What the fuzz targets share: the `decision` target's fixture (config,
//! credentials, sealed sessions), the check as the service runs it and
//! what a well-formed answer is, the structured request the fuzzer builds,
//! and the independent reference check (`reference`), which shares no code
//! with `src/matching` or `src/auth`.

pub mod cookies_input;
pub mod envoy_input;
pub mod fixture;
pub mod harness;
pub mod input;
pub mod mint;
pub mod reference;
pub mod stats;
pub mod tokens;

/// Text from fuzzer bytes: valid UTF-8 as is, anything else lossily (the
/// service only ever sees strings: Envoy's headers are UTF-8 in protobuf).
pub fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Envoy never hands over a header value with CR, LF or NUL: inputs that
/// would are cleaned the same way, so that what comes out can be checked
/// for them.
pub fn header_safe(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
        .collect()
}
