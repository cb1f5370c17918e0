//! Path and host normalisation: a normal path normalises to itself, keeps
//! no `..` or `.` segment, no `//`, no encoded `/`, `\` or NUL, no `;`
//! parameters and no control character; the reference normaliser agrees;
//! and the route a request takes is the route of its normalised path and
//! host (the fixture's router, and the reference's own matching).
//! Input: `host\npath` as text, or a path alone.
#![no_main]

use ingress_authz::matching::host::{check_host, normalize_host};
use ingress_authz::matching::path::normalize;
use ingress_authz::request::RequestView;
use ingress_authz_fuzz::{fixture, reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `host\npath`, or a path alone (for the fixture's basic host).
    let text = ingress_authz_fuzz::text(data);
    let (host, raw) = match text.split_once('\n') {
        Some((host, path)) => (host.to_string(), path),
        None => ("basic.example.com".to_string(), text.as_ref()),
    };

    let ours = normalize(raw);
    if let Ok(once) = &ours {
        let twice = normalize(once).expect("a normal path normalises again");
        assert_eq!(once.as_ref(), twice.as_ref(), "idempotent");
        assert!(once.starts_with('/'));
        assert!(!once.contains("//"), "{once:?}");
        assert!(!once.contains(['?', '#', ';', '\\']), "{once:?}");
        assert!(!once.chars().any(|c| c.is_ascii_control()), "{once:?}");
        assert!(
            !once.split('/').any(|s| s == ".." || s == "."),
            "a dot segment survives: {once:?}"
        );
        let upper = once.to_ascii_uppercase();
        for encoded in ["%2F", "%5C", "%00"] {
            assert!(!upper.contains(encoded), "{encoded} survives: {once:?}");
        }
        // Percent-escapes left are of reserved characters, in upper case.
        for (i, _) in once.match_indices('%') {
            let hex = &once[i + 1..];
            assert!(
                hex.len() >= 2
                    && hex[..2]
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
                "{once:?}"
            );
        }
    }
    // The reference normaliser, written on its own, agrees.
    let reference = reference::normalize_path(raw);
    assert_eq!(
        ours.as_deref().ok(),
        reference.as_deref(),
        "normalisations of {raw:?} differ"
    );

    // Hosts.
    if check_host(&host).is_ok() {
        let n = normalize_host(&host);
        if host.starts_with('[') {
            // `[v6]` is written in its one canonical form (brackets off:
            // it is never normalised again).
            let ip: std::net::Ipv6Addr = n.parse().expect("an IPv6 address");
            assert_eq!(ip.to_string(), n);
        } else {
            assert_eq!(normalize_host(&n), n, "host normalisation is idempotent");
        }
        assert!(!n.bytes().any(|b| b.is_ascii_uppercase()));
        assert!(!n.ends_with('.'), "{n:?}");
        if !host.starts_with('[') {
            assert!(!n.contains(':'), "{n:?} keeps a port");
        }
    }

    // What matching sees: the route of the raw request is the route of
    // its normalised path (and host), and the reference's.
    let engine = fixture::engine();
    let headers = std::collections::HashMap::new();
    let decide = |host: &str, path: &str| {
        engine
            .decide(&RequestView {
                host,
                path,
                method: "GET",
                scheme: "http",
                headers: &headers,
                client: None,
            })
            .label
            .map(str::to_string)
    };
    let label = decide(&host, raw);
    if let Ok(once) = &ours {
        assert_eq!(label, decide(&host, once), "route of {raw:?} vs {once:?}");
        if check_host(&host).is_ok() {
            let n = normalize_host(&host);
            if !host.starts_with('[') {
                assert_eq!(label, decide(&n, once), "route of host {host:?} vs {n:?}");
            }
            assert_eq!(
                label,
                reference::route(&host, raw),
                "the reference routes {host:?} {raw:?} elsewhere"
            );
        } else {
            assert_eq!(label, None, "a bad host is never routed");
        }
    } else {
        assert_eq!(label, None, "a refused path is never routed");
    }
});
