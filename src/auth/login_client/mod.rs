//! What the redirect logins (oauth2 and oidc) share on the `Check` side:
//! the session check, the connect headers, sealing sessions; starting a
//! login is in `start`.

use std::sync::Arc;

mod start;

use super::open_sessions::{OpenSessions, Opened};
use super::{AuthKind, AuthResult, BuildContext, BuildError, Denial, PolicyNeeds};
use crate::config::spec::ConnectSpec;
use crate::config::spec::SessionStore;
use crate::connect::{ConnectClaims, ConnectSigner};
use crate::cookies::CookieSettings;
use crate::decision::{Pending, Reason, Status};
use crate::identity::Identity;
use crate::request::{RequestView, Scheme};
use crate::secret::Secret;
use crate::session::{ATTRIBUTES_VERSION, Purpose, Session, SessionKeys};
use crate::store::records::Ticket;
use crate::store::{Runtime, StoreError};

/// Browsers drop cookies over 4096 bytes (name, value and attributes):
/// stay below with room for the attributes.
const MAX_COOKIE_VALUE: usize = 3800;

/// A refresh token and when to use it (seconds from now).
#[derive(Debug, Clone)]
pub struct Refresh {
    pub token: Secret,
    pub renew_in: u64,
}

/// How long a replica uses a server-side session's record it read before
/// reading it again (revocations reach it sooner, through the store's feed).
const RECORD_FRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a login may take at the provider.
pub const LOGIN_TTL_SECS: u64 = 600;

/// Where a login sends the browser back to.
#[derive(Clone, Copy, Debug)]
pub enum ReturnTo<'a> {
    /// The request's own path on its host; a host under the cookie domain
    /// is sent to the login host first when there is one.
    Request,
    /// An absolute URL under the cookie domain, already checked
    /// ([`crate::sso::return_url`]): a login begun at the login host.
    Url(&'a str),
}

/// One registered client at one provider.
#[derive(Debug)]
pub struct LoginClient {
    /// What sessions are bound to besides the client id (`github`, `oidc`, ...).
    pub provider: String,
    pub client_id: String,
    client_secret: Secret,
    redirect_url: Option<url::Url>,
    pub kind: AuthKind,
    /// What the route's policy needs kept fresh.
    pub needs: PolicyNeeds,
    pub connect: Option<ConnectSigner>,
    pub keys: Arc<SessionKeys>,
    pub cookies: Arc<CookieSettings>,
    /// Cookies of this client already decrypted (and server-side records
    /// already read), with their connect tokens.
    opened: OpenSessions,
    /// Server-side records being read: one read per session at a time.
    loads: crate::auth::record_loads::RecordLoads,
    /// The revocations every check reads, and the store.
    pub runtime: Arc<Runtime>,
    /// Where new sessions go: a sealed cookie, or a record and a ticket.
    session_store: SessionStore,
}

/// The parameters of one authorize redirect.
pub struct AuthorizeParams<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub challenge: Option<&'a str>,
    pub nonce: Option<&'a str>,
}

/// Settings of a login client, as the config gives them.
pub struct ClientSettings<'a> {
    pub provider: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_url: Option<url::Url>,
    pub kind: AuthKind,
    pub needs: PolicyNeeds,
    pub connect: Option<&'a ConnectSpec>,
}

impl LoginClient {
    /// A client of the config's login flows (`ctx`: their keys and cookies).
    pub fn new(s: ClientSettings<'_>, ctx: &BuildContext) -> Result<Self, BuildError> {
        let connect = match s.connect {
            Some(c) => ConnectSigner::from_spec(c)?,
            None => None,
        };
        Ok(Self {
            provider: s.provider,
            client_id: s.client_id,
            client_secret: s.client_secret,
            redirect_url: s.redirect_url,
            kind: s.kind,
            needs: s.needs,
            connect,
            keys: ctx.keys.clone(),
            cookies: ctx.cookies.clone(),
            opened: OpenSessions::default(),
            loads: Default::default(),
            runtime: ctx.runtime.clone(),
            session_store: ctx.session_store,
        })
    }

    pub fn client_secret(&self) -> &str {
        self.client_secret.expose()
    }

    /// Some(decision) when the request carries a valid session of this
    /// client; None when it carries none (or one that must log in again).
    pub fn session_result<'s>(&self, req: &RequestView<'_>) -> Option<AuthResult<'s>> {
        let scheme = req.scheme(self.cookies.trust_forwarded_proto);
        let (value, _) = self.cookies.session_in(req.header("cookie")?, scheme)?;
        let opened = if Ticket::looks_like(value) {
            match self.record(value)? {
                Ok(opened) => opened,
                Err(result) => return Some(result),
            }
        } else {
            self.opened.get_or_open(value, || self.open_cookie(value))?
        };
        let session = &opened.session;
        let now = crate::clock::unix_secs();
        if session.expires <= now {
            return None;
        }
        if !self.runtime.revocations_known() {
            // A replica that never loaded the revocations cannot tell who
            // logged out: it waits for the store rather than guess.
            return Some(AuthResult::Deny(store_unavailable()));
        }
        if self.runtime.revocations.revokes(session) {
            return None;
        }
        let tokens_due =
            session.refresh.is_some() && session.renew_at != 0 && session.renew_at <= now;
        let attrs = &session.attrs;
        let attrs_due = self.needs.groups_ttl.is_some_and(|ttl| {
            attrs.version < ATTRIBUTES_VERSION || attrs.read_at.saturating_add(ttl) <= now
        });
        if attrs_due && !self.can_reread(session) {
            // Groups that cannot be read again are never trusted stale:
            // the user logs in again (a navigation) or gets 401.
            return None;
        }
        if tokens_due || attrs_due {
            // The service refreshes it at the provider, then decides again.
            return Some(AuthResult::Pending {
                work: Pending::RefreshSession,
                then: Denial::status(Status::ServiceUnavailable, Reason::IdpUnavailable),
            });
        }
        let mut upstream = Vec::new();
        if let Some(signer) = &self.connect {
            let now = crate::clock::unix_now();
            let audience = signer.audience_for(req.host);
            let signed = match opened.connect.load_full() {
                Some(signed) if signer.is_fresh(&signed, now) && *signed.audience == *audience => {
                    signed
                }
                // None yet, near expiry, or for another host: sign (two
                // requests racing here both sign; either token is valid).
                _ => {
                    let claims = ConnectClaims::of_session(session, &audience);
                    let signed = Arc::new(signer.sign(&claims, now));
                    opened.connect.store(Some(signed.clone()));
                    signed
                }
            };
            upstream.push(("x-connect-token", signed.token.clone()));
            upstream.push(("x-connect-timestamp", signed.issued_ms.to_string()));
        }
        Some(AuthResult::Allow {
            identity: Identity::session(self.kind, opened),
            upstream,
        })
    }

    /// A server-side session's record as this replica last read it: Ok
    /// while fresh; otherwise what to answer now — read it first, or 503
    /// while the store is down. None: no store, so no such session.
    fn record<'s>(&self, value: &str) -> Option<Result<Arc<Opened>, AuthResult<'s>>> {
        let store = self.runtime.store()?;
        if !store.is_up() {
            return Some(Err(AuthResult::Deny(store_unavailable())));
        }
        Some(match self.opened.get(value) {
            Some(o) if o.read_at.is_some_and(|t| t.elapsed() < RECORD_FRESH) => Ok(o),
            _ => Err(AuthResult::Pending {
                work: Pending::LoadSession,
                then: store_unavailable(),
            }),
        })
    }

    /// Reads a server-side session's record into this client's cache (one
    /// read for every check of the session waiting on it). Ok(false):
    /// there is none of this client (ended, expired, forged).
    pub async fn load_record(&self, value: &str) -> Result<bool, StoreError> {
        self.loads.run(value, || self.read_record(value)).await
    }

    async fn read_record(&self, value: &str) -> Result<bool, StoreError> {
        let store = self.runtime.store().ok_or(StoreError::Unavailable)?;
        let Some(ticket) = Ticket::parse(value) else {
            return Ok(false);
        };
        match store.load_session(&ticket).await? {
            Some(session)
                if session.provider == self.provider && session.client_id == self.client_id =>
            {
                self.opened
                    .insert(value, Arc::new(Opened::read_now(session)));
                Ok(true)
            }
            _ => {
                self.opened.remove(value);
                Ok(false)
            }
        }
    }

    /// The session a cookie value holds (a sealed cookie of this client, or
    /// a ticket to a record of this client), valid or not.
    pub async fn read_session(&self, value: &str) -> Result<Option<Session>, StoreError> {
        if !Ticket::looks_like(value) {
            return Ok(self.open_cookie(value));
        }
        if let Some(o) = self.opened.get(value)
            && o.read_at.is_some_and(|t| t.elapsed() < RECORD_FRESH)
        {
            return Ok(Some(o.session.clone()));
        }
        Ok(self
            .load_record(value)
            .await?
            .then(|| self.opened.get(value).map(|o| o.session.clone()))
            .flatten())
    }

    /// Makes `session` the browser's: (cookie value, `Set-Cookie`). A
    /// sealed cookie; or with `session.store: redis` (or when `ticket`, the
    /// cookie value it replaces, is one) a record in the store and a ticket.
    pub async fn save_session(
        &self,
        mut session: Session,
        scheme: Scheme,
        replacing: Option<&str>,
    ) -> Result<(String, String), StoreError> {
        let existing = replacing.and_then(Ticket::parse);
        if existing.is_none() && self.session_store == SessionStore::Cookie {
            return Ok(self.seal_session(session, scheme));
        }
        let store = self.runtime.store().ok_or(StoreError::Unavailable)?;
        let ticket = match existing {
            Some(t) => t,
            None => {
                let t = Ticket::new();
                session.id = t.id().to_string();
                t
            }
        };
        store.save_session(&ticket, &session).await?;
        let value = ticket.encode();
        let max_age = session.expires.saturating_sub(crate::clock::unix_secs());
        let set_cookie = self.cookies.set_session(&value, max_age, scheme);
        self.opened
            .insert(&value, Arc::new(Opened::read_now(session)));
        Ok((value, set_cookie))
    }

    /// Runs `refresh` of the session in `value` once for every replica
    /// (the store's lease; without a store, once for this one: the caller's
    /// single flight) and returns its outcome: (cookie value, Set-Cookie),
    /// or None when the provider refused.
    pub async fn shared_refresh<F, Fut>(
        &self,
        value: &str,
        scheme: Scheme,
        refresh: F,
    ) -> Option<(String, String)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<(String, String)>>,
    {
        let Some(store) = self.runtime.store() else {
            return refresh().await;
        };
        let ticket = Ticket::looks_like(value);
        let version = if ticket {
            let s = self.read_session(value).await.ok()??;
            // The ticket itself, not only the id: the outcome is sealed
            // with a key derived from this, which the store must not know.
            format!("{value}:{}:{}", s.renew_at, s.attrs.read_at)
        } else {
            value.to_string()
        };
        let mut refresh = Some(refresh);
        let shared = crate::store::lease::refresh_once(store, &version, &mut refresh, |outcome| {
            outcome.map(|(new, _)| if ticket { String::new() } else { new })
        })
        .await;
        match shared {
            Ok(Some(new)) if ticket || new.is_empty() => {
                // The winner rewrote the record under the same ticket.
                self.opened.remove(value);
                let session = self.read_session(value).await.ok()??;
                let max_age = session.expires.saturating_sub(crate::clock::unix_secs());
                Some((
                    value.to_string(),
                    self.cookies.set_session(value, max_age, scheme),
                ))
            }
            Ok(Some(new)) => {
                let session = self.open_cookie(&new)?;
                let max_age = session.expires.saturating_sub(crate::clock::unix_secs());
                let set_cookie = self.cookies.set_session(&new, max_age, scheme);
                Some((new, set_cookie))
            }
            Ok(None) => None,
            Err(e) => {
                // Without the store's lease, refresh here alone: a provider
                // that rotates refresh tokens may then refuse a second
                // replica's redeem (that user logs in again).
                tracing::warn!(error = %e, "store: refreshing a session without the cross-replica lease");
                match refresh.take() {
                    Some(refresh) => refresh().await,
                    None => None,
                }
            }
        }
    }

    /// Whether a session's groups and claims can be read again without the
    /// user: through its refresh token (OpenID) or access token (GitHub, GitLab).
    fn can_reread(&self, session: &Session) -> bool {
        match self.kind {
            AuthKind::Oidc => session.refresh.is_some(),
            _ => session.attrs.access.is_some(),
        }
    }

    /// Seals a session: (cookie value, `Set-Cookie`). Trims the identity
    /// (avatar first) rather than make a cookie the browser would drop.
    pub fn seal_session(&self, mut session: Session, scheme: Scheme) -> (String, String) {
        let mut sealed = self.keys.seal_json(Purpose::Session, &session);
        for trim in [
            |s: &mut Session| s.identity.avatar.clear(),
            |s: &mut Session| truncate_at_char(&mut s.identity.nickname, 64),
            |s: &mut Session| truncate_at_char(&mut s.identity.username, 64),
            |s: &mut Session| truncate_at_char(&mut s.identity.email, 128),
            // Past this, what policies read is dropped: they then deny
            // (fail closed) rather than the browser dropping the cookie.
            |s: &mut Session| s.attrs.claims.clear(),
            |s: &mut Session| s.attrs.groups = None,
            |s: &mut Session| s.attrs.access = None,
        ] {
            if sealed.len() <= MAX_COOKIE_VALUE {
                break;
            }
            trim(&mut session);
            sealed = self.keys.seal_json(Purpose::Session, &session);
        }
        let max_age = session.expires.saturating_sub(crate::clock::unix_secs());
        let set_cookie = self.cookies.set_session(&sealed, max_age, scheme);
        (sealed, set_cookie)
    }

    /// The identity a session of this client proves (for the callback's
    /// policy check, before the cookie exists).
    pub fn identity_of(&self, session: Session) -> Identity {
        Identity::session(self.kind, Arc::new(Opened::new(session)))
    }

    /// A plain-named session cookie read on https, sealed again under the
    /// `__Host-` name: the `Set-Cookie`s that replace it.
    pub fn reissue(&self, value: &str) -> Option<[String; 2]> {
        let session = self.open_cookie(value)?;
        let (_, set_cookie) = self.seal_session(session, Scheme::Https);
        Some([set_cookie, self.cookies.expire_plain_session()])
    }

    /// Decrypts a session cookie, valid or not; None unless it is a session
    /// of this client.
    pub fn open_cookie(&self, value: &str) -> Option<Session> {
        let session: Session = self.keys.open_json(Purpose::Session, value)?;
        (session.provider == self.provider && session.client_id == self.client_id)
            .then_some(session)
    }
}

/// 503 `store_unavailable`: a session cannot be checked without the store.
fn store_unavailable<'s>() -> Denial<'s> {
    Denial::status(Status::ServiceUnavailable, Reason::StoreUnavailable)
}

/// Cuts to at most `max` bytes without splitting a character.
fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_characters() {
        let mut s = "홍".repeat(30);
        truncate_at_char(&mut s, 64);
        assert_eq!(s, "홍".repeat(21));
        let mut short = "abc".to_string();
        truncate_at_char(&mut short, 64);
        assert_eq!(short, "abc");
    }

    fn client(client_id: &str, keys: &Arc<SessionKeys>) -> LoginClient {
        let settings = ClientSettings {
            provider: "github".into(),
            client_id: client_id.into(),
            client_secret: Secret::new("s".into()),
            redirect_url: None,
            kind: AuthKind::OAuth2,
            needs: PolicyNeeds::default(),
            connect: None,
        };
        let cookies = Arc::new(CookieSettings {
            name: "ingress_authz".into(),
            max_age: 3600,
            trust_forwarded_proto: false,
            domain: None,
            login_host: None,
        });
        let ctx = BuildContext {
            keys: keys.clone(),
            cookies,
            policy_claims: Arc::from([]),
            runtime: Arc::default(),
            session_store: SessionStore::Cookie,
        };
        LoginClient::new(settings, &ctx).unwrap()
    }

    fn allowed(client: &LoginClient, cookie: &str) -> bool {
        let headers = std::collections::HashMap::from([(
            "cookie".to_string(),
            format!("ingress_authz={cookie}"),
        )]);
        let req = RequestView {
            host: "app.example.com",
            path: "/",
            method: "GET",
            scheme: "https",
            headers: &headers,
            client: None,
        };
        matches!(client.session_result(&req), Some(AuthResult::Allow { .. }))
    }

    /// The opened-session cache saves decryption only: expiry is still
    /// checked on every request, and a cookie of another client is refused.
    #[test]
    fn a_cached_session_still_expires_and_stays_bound_to_its_client() {
        let keys = Arc::new(SessionKeys::from_secrets(&[Secret::new(
            "a-session-secret-of-enough-length".into(),
        )]));
        let ours = client("ours", &keys);
        let theirs = client("theirs", &keys);
        let session = Session {
            id: String::new(),
            sid: None,
            identity: crate::session::Identity {
                id: "42".into(),
                ..Default::default()
            },
            provider: "github".into(),
            client_id: "ours".into(),
            issued: crate::clock::unix_secs(),
            expires: crate::clock::unix_secs() + 1,
            refresh: None,
            renew_at: 0,
            attrs: Default::default(),
        };
        let cookie = keys.seal_json(Purpose::Session, &session);
        assert!(allowed(&ours, &cookie));
        assert!(allowed(&ours, &cookie), "again, from the cache");
        assert!(!allowed(&theirs, &cookie));
        crate::clock::advance(std::time::Duration::from_millis(2100));
        assert!(!allowed(&ours, &cookie), "expired while cached");
    }
}
