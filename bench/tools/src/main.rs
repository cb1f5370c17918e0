//! `bench-tools`: credentials for the benchmark, made with ingress-authz's
//! own code so they are exactly what the service accepts.
//!
//! ```text
//! bench-tools session --secret S --provider P --client-id C [--ttl SECS]
//!     a sealed session cookie value (the `ingress_authz` cookie)
//! bench-tools ticket --provider P --client-id C [--ttl SECS]
//!     the same session kept server-side (`session.store: redis`): one JSON
//!     line {"cookie": ticket, "id": record id, "record": sealed record,
//!     "ttl": secs}; the record goes under `<key_prefix>session:<id>`
//! bench-tools argon2 PASSWORD
//!     an argon2id PHC string (argon2 crate defaults)
//! bench-tools load --addr HOST:PORT --body FILE --rate RPS [--duration SECS]
//!     [--connections N] [--warmup N]
//!     open-loop Check load at a fixed rate; one JSON line of latency
//!     percentiles (see load.rs)
//! ```

// A load generator keeps real time.
#![allow(clippy::disallowed_methods)]

mod load;

use std::process::ExitCode;

use ingress_authz::clock::unix_secs;
use ingress_authz::secret::Secret;
use ingress_authz::session::{Purpose, Session, SessionKeys, new_session_id};
use ingress_authz::store::records::Ticket;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-tools: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    match args.first().map(String::as_str) {
        Some("session") => session(&args[1..]),
        Some("ticket") => ticket(&args[1..]),
        Some("load") => load::run(&args[1..]),
        Some("argon2") => {
            use argon2::PasswordHasher;
            let password = args.get(1).ok_or("argon2 needs a password")?;
            argon2::Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| e.to_string())
        }
        _ => Err(
            "usage: bench-tools session --secret S --provider P --client-id C [--ttl SECS] \
                  | ticket --provider P --client-id C [--ttl SECS] \
                  | argon2 PASSWORD | load --addr HOST:PORT --body FILE --rate RPS ..."
                .into(),
        ),
    }
}

struct SessionArgs {
    secret: Option<String>,
    provider: String,
    client_id: String,
    ttl: u64,
}

fn session_args(args: &[String]) -> Result<SessionArgs, String> {
    let (mut secret, mut provider, mut client_id, mut ttl) = (None, None, None, 86_400u64);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--secret" => secret = Some(value.clone()),
            "--provider" => provider = Some(value.clone()),
            "--client-id" => client_id = Some(value.clone()),
            "--ttl" => ttl = value.parse().map_err(|_| "--ttl takes seconds")?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(SessionArgs {
        secret,
        provider: provider.ok_or("--provider is required")?,
        client_id: client_id.ok_or("--client-id is required")?,
        ttl,
    })
}

/// The benchmark's session with id `id`, as JSON in the cookie's own format
/// (its serde names) rather than as a struct literal, so fields
/// ingress-authz adds with defaults do not break this tool; parsing it back
/// as a `Session` checks it.
fn bench_session(a: &SessionArgs, id: &str) -> Result<(serde_json::Value, Session), String> {
    let issued = unix_secs();
    let json = serde_json::json!({
        // Every login since the store gives its session an id (what a
        // logout revokes): the revocation set is looked up by it.
        "s": id,
        "u": {
            "id": "42",
            "username": "bench",
            "email": "bench@example.com",
            "nickname": "Bench User",
            "avatar": "",
        },
        "p": a.provider,
        "c": a.client_id,
        "i": issued,
        "e": issued + a.ttl,
    });
    let session = serde_json::from_value::<Session>(json.clone())
        .map_err(|e| format!("not a valid ingress-authz session: {e}"))?;
    Ok((json, session))
}

fn session(args: &[String]) -> Result<String, String> {
    let a = session_args(args)?;
    let secret = a.secret.clone().ok_or("--secret is required")?;
    let keys = SessionKeys::from_secrets(&[Secret::new(secret)]);
    let (json, _) = bench_session(&a, &new_session_id())?;
    Ok(keys.seal_json(Purpose::Session, &json))
}

/// A server-side session: the ticket (the cookie) and its sealed record,
/// as `Store::save_session` writes it.
fn ticket(args: &[String]) -> Result<String, String> {
    let a = session_args(args)?;
    if a.secret.is_some() {
        return Err("a ticket takes no --secret: its own key seals the record".into());
    }
    let ticket = Ticket::new();
    let (_, session) = bench_session(&a, ticket.id())?;
    Ok(serde_json::json!({
        "cookie": ticket.encode(),
        "id": ticket.id(),
        "record": ticket.seal_record(&session),
        "ttl": a.ttl,
    })
    .to_string())
}
