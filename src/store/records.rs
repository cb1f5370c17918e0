//! Server-side sessions (`session.store: redis`): the cookie is a
//! [`Ticket`] — the record's id and a per-session key — and the record,
//! sealed with that key, lives in the store until the session expires.
//! The store alone cannot read a session, and the cookie stays small
//! whatever the tokens weigh.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use zeroize::Zeroizing;

use super::{Store, StoreError};
use crate::session::Session;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// What every ticket starts with (its format's version).
const TICKET_PREFIX: &str = "t1.";

/// A ticket: what the cookie of a server-side session holds. A credential:
/// never logged, `Debug` shows nothing of it.
pub struct Ticket {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket(..)")
    }
}

impl Ticket {
    /// A new ticket: a random id and key.
    pub fn new() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(key.as_mut());
        Self {
            id: crate::session::new_session_id(),
            key,
        }
    }

    /// Whether a cookie value has the ticket form (it may still be forged).
    pub fn looks_like(value: &str) -> bool {
        value.starts_with(TICKET_PREFIX)
    }

    /// The ticket a cookie value holds, or None.
    pub fn parse(value: &str) -> Option<Self> {
        let (id, key) = value.strip_prefix(TICKET_PREFIX)?.split_once('.')?;
        let id_ok = id.len() == 22 && B64.decode(id).is_ok_and(|b| b.len() == 16);
        let key = B64.decode(key).ok()?;
        let key: [u8; 32] = key.try_into().ok()?;
        id_ok.then(|| Self {
            id: id.to_string(),
            key: Zeroizing::new(key),
        })
    }

    /// The cookie value.
    pub fn encode(&self) -> String {
        format!(
            "{TICKET_PREFIX}{}.{}",
            self.id,
            B64.encode(self.key.as_ref())
        )
    }

    /// The record's id (also the session's id).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The record [`Store::save_session`] stores for `session` (whose id
    /// must be this ticket's): for tools that fill a store themselves (the
    /// benchmark).
    pub fn seal_record(&self, session: &Session) -> String {
        self.seal(session)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.key))
    }

    /// The associated data: a record opens only under its own id.
    fn aad(&self) -> Vec<u8> {
        format!("ingress-authz session record v1 {}", self.id).into_bytes()
    }

    fn seal(&self, session: &Session) -> String {
        let json = Zeroizing::new(serde_json::to_vec(session).expect("plain structs serialise"));
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &json,
                    aad: &self.aad(),
                },
            )
            .expect("AES-GCM encryption of a small message cannot fail");
        let mut out = Vec::with_capacity(12 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// The session a stored record holds, if this ticket opens it (public
    /// for the fuzz targets; [`Store::load_session`] reads records with it).
    pub fn open(&self, stored: &str) -> Option<Session> {
        let raw = B64.decode(stored).ok()?;
        if raw.len() < 12 + 16 {
            return None;
        }
        let nonce: [u8; 12] = raw[..12].try_into().ok()?;
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: &raw[12..],
                        aad: &self.aad(),
                    },
                )
                .ok()?,
        );
        let session: Session = serde_json::from_slice(&plain).ok()?;
        (session.id == self.id).then_some(session)
    }
}

impl Default for Ticket {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// Stores (or replaces) a session's record until it expires.
    pub async fn save_session(&self, ticket: &Ticket, session: &Session) -> Result<(), StoreError> {
        let ttl = session
            .expires
            .saturating_sub(crate::clock::unix_secs())
            .max(1);
        let mut set = redis::cmd("SET");
        set.arg(self.key("session", ticket.id()))
            .arg(ticket.seal(session))
            .arg("EX")
            .arg(ttl);
        self.call::<()>("session_save", &set).await
    }

    /// The session a ticket opens: None when there is no record (ended,
    /// expired) or the ticket does not open it (tampered, forged).
    pub async fn load_session(&self, ticket: &Ticket) -> Result<Option<Session>, StoreError> {
        let stored: Option<String> = self
            .call(
                "session_load",
                redis::cmd("GET").arg(self.key("session", ticket.id())),
            )
            .await?;
        Ok(stored.and_then(|s| ticket.open(&s)))
    }

    /// Deletes a session's record.
    pub async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        self.call::<()>(
            "session_delete",
            redis::cmd("DEL").arg(self.key("session", id)),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session {
            id: id.into(),
            sid: None,
            identity: Default::default(),
            provider: "oidc:https://idp".into(),
            client_id: "c".into(),
            issued: 1,
            expires: 2,
            refresh: Some("refresh-token".into()),
            renew_at: 0,
            attrs: Default::default(),
        }
    }

    #[test]
    fn a_ticket_opens_its_own_record_only() {
        let ticket = Ticket::new();
        let sealed = ticket.seal(&session(ticket.id()));
        let again = Ticket::parse(&ticket.encode()).expect("parses");
        assert_eq!(
            again.open(&sealed).map(|s| s.id),
            Some(ticket.id().to_string())
        );
        assert!(!sealed.contains("refresh-token"), "the record is sealed");

        let other = Ticket::new();
        assert!(other.open(&sealed).is_none(), "another ticket's key");
        // The same key under another id: the associated data differs.
        let swapped = Ticket {
            id: other.id,
            key: Zeroizing::new(*ticket.key),
        };
        assert!(swapped.open(&sealed).is_none());
    }

    #[test]
    fn tampered_tickets_do_not_parse_or_open() {
        let ticket = Ticket::new();
        let sealed = ticket.seal(&session(ticket.id()));
        let value = ticket.encode();
        assert!(value.len() < 80, "{value}");
        for bad in [
            "",
            "t1.",
            "t1.abc.def",
            &value[..value.len() - 1],
            &format!("{value}x"),
            &value.replacen("t1.", "t2.", 1),
        ] {
            assert!(
                Ticket::parse(bad).is_none_or(|t| t.open(&sealed).is_none()),
                "{bad}"
            );
        }
        // One changed character of the key: parses, but opens nothing.
        let mut chars: Vec<char> = value.chars().collect();
        let last = chars.len() - 2;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let flipped: String = chars.into_iter().collect();
        assert!(Ticket::parse(&flipped).is_none_or(|t| t.open(&sealed).is_none()));
    }
}
