//! Our cookies: opening sealed session and login-state values (seeds
//! tampered, truncated, oversized, sealed with other keys or for the
//! other purpose, or holding any JSON), finding ours in a `Cookie` header
//! and keeping them from the upstream, and server-side session tickets
//! (`store::records::Ticket::parse`) and the records they open.
#![no_main]

use ingress_authz::cookies::Stripped;
use ingress_authz::request::Scheme;
use ingress_authz::secret::Secret;
use ingress_authz::session::{LoginState, Purpose, Session, SessionKeys};
use ingress_authz::store::records::Ticket;
use ingress_authz_fuzz::cookies_input::{Input, Plain, Sealed, TicketInput};
use ingress_authz_fuzz::harness::{cookie_names, is_our_cookie};
use ingress_authz_fuzz::{fixture, text};
use libfuzzer_sys::fuzz_target;

fn seed(i: u8) -> Option<&'static fixture::SessionSeed> {
    let s = fixture::sessions();
    (!s.is_empty()).then(|| &s[usize::from(i) % s.len()])
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fuzz_target!(|input: Input| {
    let engine = fixture::engine();
    let keys = &engine.login.keys;
    let now = fixture::now();
    let purpose_of = |session: bool| {
        if session {
            Purpose::Session
        } else {
            Purpose::LoginState
        }
    };
    let plain_bytes = |p: &Plain| match p {
        Plain::Session(j) => j.bytes(now),
        Plain::Bytes(b) => b.clone(),
    };

    // 1. Opening one sealed value.
    let (value, expect): (String, Option<(Purpose, Vec<u8>)>) = match &input.sealed {
        Sealed::Seed(i) => (seed(*i).map(|s| s.value.clone()).unwrap_or_default(), None),
        Sealed::Tampered { seed: i, at, xor } => {
            let v = seed(*i).map(|s| s.value.clone()).unwrap_or_default();
            let mut b = v.clone().into_bytes();
            if !b.is_empty() {
                let at = usize::from(*at) % b.len();
                b[at] ^= (*xor).max(1);
            }
            let tampered = text(&b).into_owned();
            assert!(
                tampered == v || keys.open(Purpose::Session, &tampered).is_none(),
                "a tampered session opens"
            );
            (tampered, None)
        }
        Sealed::Truncated { seed: i, len } => {
            let v = seed(*i).map(|s| s.value.clone()).unwrap_or_default();
            let cut = usize::from(*len) % (v.len() + 1);
            let t = v[..cut].to_string();
            assert!(
                cut == v.len() || keys.open(Purpose::Session, &t).is_none(),
                "a truncated session opens"
            );
            (t, None)
        }
        Sealed::Oversized {
            seed: i,
            times,
            pad,
        } => {
            let v = seed(*i).map(|s| s.value.clone()).unwrap_or_default();
            let mut big = v.repeat(usize::from(*times % 8) + 2);
            big.extend(std::iter::repeat_n(*pad, 5000));
            assert!(
                keys.open(Purpose::Session, &big).is_none(),
                "an oversized value opens"
            );
            (big, None)
        }
        Sealed::Right { purpose, plaintext } => {
            let p = purpose_of(*purpose);
            let bytes = plain_bytes(plaintext);
            (keys.seal(p, &bytes), Some((p, bytes)))
        }
        Sealed::OtherKey {
            secret,
            purpose,
            plaintext,
        } => {
            let p = purpose_of(*purpose);
            let other = SessionKeys::from_secrets(&[Secret::new(format!(
                "{secret}-other-key-{}",
                "x".repeat(32)
            ))]);
            let v = other.seal(p, &plain_bytes(plaintext));
            assert!(keys.open(p, &v).is_none(), "another key's value opens");
            (v, None)
        }
        Sealed::Raw(s) => (s.clone(), None),
    };
    let as_session = keys.open(Purpose::Session, &value);
    let as_login = keys.open(Purpose::LoginState, &value);
    assert!(
        as_session.is_none() || as_login.is_none(),
        "one sealed value opens for both purposes"
    );
    if let Some((p, bytes)) = &expect {
        let opened = keys.open(*p, &value);
        assert_eq!(opened.as_deref(), Some(bytes.as_slice()), "round trip");
    }
    let _ = keys.open_json::<Session>(Purpose::Session, &value);
    let _ = keys.open_json::<LoginState>(Purpose::LoginState, &value);
    // Each login client opens only its own sessions.
    for label in ["rules[3]", "rules[4]"] {
        let route = engine.route_by_label(label).expect("fixture route");
        let protected = engine.protected(route.id).expect("protected");
        let client = protected
            .methods
            .session()
            .and_then(|m| m.authenticator.login_client())
            .expect("a login client");
        if let Some(s) = client.open_cookie(&value) {
            assert_eq!(
                (s.provider.as_str(), s.client_id.as_str()),
                (client.provider.as_str(), client.client_id.as_str())
            );
        }
    }

    // 2. A Cookie header: ours found, stripped, replaced.
    ingress_authz_fuzz::input::forget_sealed();
    let mut header: Vec<String> = input.header.iter().map(|c| c.text(now)).collect();
    if let Some(raw) = &input.raw_header {
        header.push(raw.clone());
    }
    let header = header.join("; ");
    let settings = &engine.login.cookies;
    for scheme in [Scheme::Http, Scheme::Https] {
        if let Some((v, _legacy)) = settings.session_in(&header, scheme) {
            assert!(header.contains(v));
        }
        let replaced = settings.replace_session(&header, input.replacement.as_deref(), scheme);
        let sessions = cookie::Cookie::split_parse(replaced.as_str())
            .filter_map(Result::ok)
            .filter(|c| {
                let n = c.name();
                let plain = n
                    .strip_prefix("__Host-")
                    .or_else(|| n.strip_prefix("__Secure-"))
                    .unwrap_or(n);
                plain == fixture::COOKIE
            })
            .count();
        assert!(
            sessions <= 1,
            "{sessions} session cookies after replacing: {replaced:?}"
        );
    }
    let _ = settings.login_in(&header, &input.record);
    let _ = ingress_authz::cookies::value(&header, fixture::COOKIE);
    match settings.strip_ours(&header) {
        Stripped::Untouched => {}
        Stripped::Empty => {}
        Stripped::Kept(kept) => {
            if let Some(n) = cookie_names(&kept).find(|n| is_our_cookie(n)) {
                panic!("`{n}` kept in {kept:?} (from {header:?})");
            }
        }
    }

    // 3. Tickets and the records they open.
    let ticket_text = match &input.ticket {
        TicketInput::Raw(s) => s.clone(),
        TicketInput::Parts { id, key, prefix } => format!(
            "{}{}.{}",
            if *prefix { "t1." } else { "" },
            b64(id),
            b64(key)
        ),
    };
    if let Some(ticket) = Ticket::parse(&ticket_text) {
        assert!(Ticket::looks_like(&ticket_text));
        assert_eq!(ticket.encode(), ticket_text, "a ticket has one spelling");
        let _ = ticket.open(&input.record);
        // A record of this ticket opens; changed, or another's, it does not.
        let session = Session {
            id: ticket.id().to_string(),
            sid: None,
            identity: Default::default(),
            provider: fixture::OIDC.into(),
            client_id: fixture::OIDC_CLIENT.into(),
            issued: 1,
            expires: fixture::FAR_FUTURE,
            refresh: Some(input.record.clone().into()),
            renew_at: 0,
            attrs: Default::default(),
        };
        let record = ticket.seal_record(&session);
        assert_eq!(ticket.open(&record), Some(session.clone()));
        if let Some((at, xor)) = input.flip_record {
            let mut b = record.clone().into_bytes();
            let at = usize::from(at) % b.len();
            b[at] ^= xor.max(1);
            assert_eq!(ticket.open(&text(&b)), None, "a changed record opens");
        }
        assert_eq!(
            Ticket::new().open(&record),
            None,
            "another ticket opens a record"
        );
    }
    let fresh = Ticket::new();
    let encoded = fresh.encode();
    assert_eq!(Ticket::parse(&encoded).map(|t| t.encode()), Some(encoded));
});
