//! The whole decision: an arbitrary CheckRequest against the fixture
//! config (fixtures/config.yaml). It never panics; the answer is always a
//! well-formed CheckResponse; our cookies never reach the upstream; and
//! whenever it allows a protected route, the independent reference check
//! (src/reference.rs) accepts the request's credential for the route the
//! reference itself finds (an open allow must be of an open route).
#![no_main]

use ingress_authz::decision::Reason;
use ingress_authz_fuzz::{fixture, harness, input::Input, reference, stats};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: Input| {
    let engine = fixture::engine();
    let now = fixture::now();
    let check = input.check_request(now);
    let outcome = harness::check(engine, &check);
    harness::assert_well_formed(&outcome.response, outcome.allowed.is_some());

    let http = check
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let label = outcome.label.as_deref();
    stats::count(
        label,
        outcome.allowed == Some(Reason::Authenticated),
        outcome.allowed == Some(Reason::Open),
    );
    let (Some(http), Some(reason)) = (http, outcome.allowed) else {
        return;
    };
    if let Err(e) = harness::assert_our_cookies_stripped(
        http.headers.get("cookie").map(String::as_str),
        &outcome.response,
    ) {
        panic!("{e}");
    }
    let engine_label = label.expect("an allow names its route");
    // The route the reference finds (None: it would refuse the path).
    let reference_label = reference::route(&http.host, &http.path);
    match reason {
        Reason::Authenticated => {
            let judged = reference_label.as_deref().unwrap_or(engine_label);
            assert!(
                !reference::is_open(judged),
                "authenticated allow on {engine_label}, which the reference finds open ({judged})"
            );
            assert!(
                reference::accepts(judged, &http.headers, now),
                "allowed on {engine_label} (reference route {judged}) without a credential the reference accepts: host {:?} path {:?} headers {:?}",
                http.host,
                http.path,
                http.headers
            );
        }
        Reason::Open => {
            assert!(
                reference::is_open(engine_label),
                "open allow on {engine_label}, a protected route of the fixture"
            );
            if let Some(r) = &reference_label {
                assert!(
                    reference::is_open(r),
                    "open allow of {:?} {:?} (engine route {engine_label}) on the reference's protected route {r}",
                    http.host,
                    http.path
                );
            }
        }
        // report_only lets a denial through by design (and records it).
        Reason::ReportOnly => assert_eq!(engine_label, "rules[5].paths[1]"),
        other => panic!("allowed with reason {other:?}"),
    }
    if engine_label == "rules[5]" {
        let strips = match &outcome.response.http_response {
            Some(envoy_types::ext_authz::v3::pb::HttpResponse::OkResponse(ok)) => {
                ok.headers_to_remove.iter().any(|h| h == "authorization")
            }
            _ => false,
        };
        assert!(strips, "strip_credentials: authorization removed upstream");
    }
});
