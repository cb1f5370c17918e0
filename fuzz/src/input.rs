//! The `decision` target's input: a `CheckRequest` built from choices
//! among the fixture's hosts, path pieces and credentials (so inputs reach
//! every route and its allow), or raw text anywhere (so they reach
//! everything else).

use std::collections::HashMap;

use arbitrary::Arbitrary;
use base64::Engine as _;
use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use serde_json::{Value, json};

use crate::fixture;
use crate::header_safe;

#[derive(Arbitrary, Debug)]
pub struct Input {
    pub host: Host,
    pub path: Path,
    pub method: Method,
    pub scheme: SchemeChoice,
    pub forwarded_proto: Option<SchemeChoice>,
    pub authorization: Option<Authorization>,
    pub cookies: Vec<CookiePart>,
    pub accept: Option<Accept>,
    pub sec_fetch_mode: Option<FetchMode>,
    pub extra: Vec<(HeaderName, String)>,
    pub source: Option<String>,
    /// The generated Envoy route's label (`context_extensions.route`).
    pub envoy_route: Option<EnvoyRoute>,
    /// No `attributes.request.http` at all.
    pub malformed: Rare,
}

/// True for about one input in 64.
#[derive(Arbitrary, Debug)]
pub struct Rare(u8);

impl Rare {
    pub fn is(&self) -> bool {
        self.0 < 4
    }
}

#[derive(Arbitrary, Debug)]
pub enum Host {
    Known {
        index: u8,
        port: Option<u16>,
        upper: bool,
        trailing_dot: bool,
    },
    /// A label in front of a fixture host.
    Sub {
        label: String,
        index: u8,
    },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Path {
    Segments {
        segments: Vec<Segment>,
        trailing_slash: bool,
        query: Option<String>,
    },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Segment {
    Known(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum SchemeChoice {
    Http,
    Https,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Accept {
    Html,
    Json,
    Any,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum FetchMode {
    Navigate,
    Cors,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum HeaderName {
    XAuthUser,
    XConnectToken,
    XConnectTimestamp,
    XForwardedFor,
    Origin,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum EnvoyRoute {
    Protected(u8),
    Open(u8),
    Raw(String),
}

/// How `Basic`/`Bearer` is spelled and separated.
#[derive(Arbitrary, Debug)]
pub struct Spelling {
    case: u8,
    tab: bool,
    extra_spaces: u8,
    trailing: Option<String>,
}

#[derive(Arbitrary, Debug)]
pub enum Authorization {
    /// A fixture user's correct password.
    BasicKnown {
        user: u8,
        spelling: Spelling,
    },
    /// Any user and password, each a fixture one or raw.
    Basic {
        user: Word,
        password: Word,
        padding: bool,
        spelling: Spelling,
    },
    /// Raw bytes, base64-encoded.
    BasicBytes(Vec<u8>, Spelling),
    Bearer(Token, Spelling),
    /// The whole header value.
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Word {
    User(u8),
    Password(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Token {
    Static(u8),
    /// One of the fixture's ready-made JWTs.
    FixtureJwt(u8),
    Minted(Box<MintedJwt>),
    /// A ready-made JWT with one byte changed.
    FlippedJwt {
        which: u8,
        at: u16,
        xor: u8,
    },
    Raw(String),
}

/// A JWT from chosen parts; signed with the fixture's secret or not.
#[derive(Arbitrary, Debug)]
pub struct MintedJwt {
    alg: Alg,
    kid: Option<String>,
    iss: Claim,
    aud: Aud,
    exp: Time,
    nbf: Option<Time>,
    sub: Option<String>,
    groups: Groups,
    extra: Option<(String, String)>,
    signature: Signature,
}

#[derive(Arbitrary, Debug)]
pub enum Alg {
    Hs256,
    Hs384,
    None,
    Rs256,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Claim {
    Right,
    Missing,
    Number(i64),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Aud {
    Right,
    InList(Vec<String>),
    Missing,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Time {
    /// Now plus this many seconds (negative: past).
    Offset(i32),
    Missing,
    Float(f64),
    Text(String),
}

#[derive(Arbitrary, Debug)]
pub enum Groups {
    None,
    Admins,
    AdminsText,
    List(Vec<String>),
    Number(i64),
}

#[derive(Arbitrary, Debug)]
pub enum Signature {
    Right,
    OtherSecret(Vec<u8>),
    Empty,
    Truncated(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum CookieName {
    Plain,
    Host,
    Secure,
    Login(String),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum CookiePart {
    /// A sealed session of the seed list.
    Session {
        seed: u8,
        name: CookieName,
        quoted: bool,
    },
    /// A seed session with one byte changed.
    Tampered {
        seed: u8,
        at: u16,
        xor: u8,
        name: CookieName,
    },
    Truncated {
        seed: u8,
        len: u16,
        name: CookieName,
    },
    /// Anything sealed with the right key as a session: the JSON inside is
    /// the fuzzer's.
    SealedJson {
        json: SessionJson,
        name: CookieName,
    },
    Other {
        name: String,
        value: String,
    },
    Raw(String),
}

/// Session JSON that is nearly right, or raw bytes.
#[derive(Arbitrary, Debug)]
pub enum SessionJson {
    Shaped {
        provider: u8,
        login: String,
        id: String,
        expires: Time,
        renew_at: Option<u64>,
        refresh: Option<String>,
        attrs_version: Option<u8>,
        read_at: Option<u64>,
        groups: Option<Vec<String>>,
    },
    Raw(Vec<u8>),
}

thread_local! {
    /// Values this input sealed with the fixture's key, and their
    /// plaintext (a key holder's cookies: the reference reads them itself).
    static SEALED: std::cell::RefCell<Vec<(String, Vec<u8>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What the last `Input::check_request` on this thread sealed.
pub fn sealed_by_input() -> Vec<(String, Vec<u8>)> {
    SEALED.with(|s| s.borrow().clone())
}

/// Forgets what earlier inputs sealed: every input that turns
/// [`CookiePart`]s into text starts with this (else the list grows with
/// every execution).
pub fn forget_sealed() {
    SEALED.with(|s| s.borrow_mut().clear());
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

impl Spelling {
    fn apply(&self, scheme: &str, credentials: &str) -> String {
        let scheme = match self.case % 4 {
            0 => scheme.to_string(),
            1 => scheme.to_ascii_lowercase(),
            2 => scheme.to_ascii_uppercase(),
            _ => scheme
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect(),
        };
        let sep = if self.tab { "\t" } else { " " };
        let spaces = " ".repeat(usize::from(self.extra_spaces % 4));
        let trailing = self.trailing.as_deref().unwrap_or_default();
        format!("{scheme}{sep}{spaces}{credentials}{trailing}")
    }
}

impl Word {
    fn text(&self) -> String {
        match self {
            Word::User(i) => fixture::BASIC_USERS[usize::from(*i) % 4].0.to_string(),
            Word::Password(i) => fixture::BASIC_USERS[usize::from(*i) % 4].1.to_string(),
            Word::Raw(s) => s.clone(),
        }
    }
}

fn time(t: &Time, now: u64) -> Option<Value> {
    match t {
        Time::Offset(o) => Some(json!(now as i64 + i64::from(*o))),
        Time::Missing => None,
        Time::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number),
        Time::Text(s) => Some(json!(s)),
    }
}

impl MintedJwt {
    fn token(&self, now: u64) -> String {
        let alg = match &self.alg {
            Alg::Hs256 => "HS256".to_string(),
            Alg::Hs384 => "HS384".to_string(),
            Alg::None => "none".to_string(),
            Alg::Rs256 => "RS256".to_string(),
            Alg::Raw(s) => s.clone(),
        };
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = &self.kid {
            header["kid"] = json!(kid);
        }
        let mut claims = serde_json::Map::new();
        match &self.iss {
            Claim::Right => {
                claims.insert("iss".into(), json!(fixture::JWT_ISSUER));
            }
            Claim::Missing => {}
            Claim::Number(n) => {
                claims.insert("iss".into(), json!(n));
            }
            Claim::Raw(s) => {
                claims.insert("iss".into(), json!(s));
            }
        }
        match &self.aud {
            Aud::Right => {
                claims.insert("aud".into(), json!(fixture::JWT_AUDIENCE));
            }
            Aud::InList(others) => {
                let mut list = others.clone();
                list.push(fixture::JWT_AUDIENCE.into());
                claims.insert("aud".into(), json!(list));
            }
            Aud::Missing => {}
            Aud::Raw(s) => {
                claims.insert("aud".into(), json!(s));
            }
        }
        if let Some(exp) = time(&self.exp, now) {
            claims.insert("exp".into(), exp);
        }
        if let Some(nbf) = self.nbf.as_ref().and_then(|t| time(t, now)) {
            claims.insert("nbf".into(), nbf);
        }
        if let Some(sub) = &self.sub {
            claims.insert("sub".into(), json!(sub));
        }
        match &self.groups {
            Groups::None => {}
            Groups::Admins => {
                claims.insert("groups".into(), json!(["admins"]));
            }
            Groups::AdminsText => {
                claims.insert("groups".into(), json!("admins"));
            }
            Groups::List(l) => {
                claims.insert("groups".into(), json!(l));
            }
            Groups::Number(n) => {
                claims.insert("groups".into(), json!(n));
            }
        }
        if let Some((k, v)) = &self.extra {
            claims.insert(k.clone(), json!(v));
        }
        let claims = Value::Object(claims);
        let right = crate::mint::hs256(&header, &claims, fixture::JWT_SECRET);
        let (signing_input, _) = right.rsplit_once('.').expect("three parts");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        match &self.signature {
            Signature::Right => right.clone(),
            Signature::OtherSecret(secret) => {
                let sig = crate::mint::hmac_sha256(secret, signing_input.as_bytes());
                format!("{signing_input}.{}", b64.encode(sig))
            }
            Signature::Empty => format!("{signing_input}."),
            Signature::Truncated(n) => {
                let cut = right.len().saturating_sub(usize::from(*n % 44));
                right[..cut].to_string()
            }
            Signature::Raw(s) => format!("{signing_input}.{s}"),
        }
    }
}

fn flip(value: &str, at: u16, xor: u8) -> String {
    let mut bytes = value.as_bytes().to_vec();
    if !bytes.is_empty() {
        let i = usize::from(at) % bytes.len();
        bytes[i] ^= xor.max(1);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Token {
    fn text(&self, now: u64) -> String {
        let jwts = crate::mint::fixture_jwts();
        match self {
            Token::Static(i) => pick(&fixture::BEARER_TOKENS, *i).to_string(),
            Token::FixtureJwt(i) => jwts[usize::from(*i) % jwts.len()].clone(),
            Token::Minted(m) => m.token(now),
            Token::FlippedJwt { which, at, xor } => {
                flip(&jwts[usize::from(*which) % jwts.len()], *at, *xor)
            }
            Token::Raw(s) => s.clone(),
        }
    }
}

impl CookieName {
    fn text(&self) -> String {
        match self {
            CookieName::Plain => fixture::COOKIE.to_string(),
            CookieName::Host => format!("__Host-{}", fixture::COOKIE),
            CookieName::Secure => format!("__Secure-{}", fixture::COOKIE),
            CookieName::Login(s) => format!("{}_login_{s}", fixture::COOKIE),
            CookieName::Raw(s) => s.clone(),
        }
    }
}

fn seed(i: u8) -> Option<&'static fixture::SessionSeed> {
    let seeds = fixture::sessions();
    (!seeds.is_empty()).then(|| &seeds[usize::from(i) % seeds.len()])
}

impl SessionJson {
    pub fn bytes(&self, now: u64) -> Vec<u8> {
        match self {
            SessionJson::Shaped {
                provider,
                login,
                id,
                expires,
                renew_at,
                refresh,
                attrs_version,
                read_at,
                groups,
            } => {
                let (p, c) = if provider % 2 == 0 {
                    (fixture::GITHUB, fixture::GITHUB_CLIENT)
                } else {
                    (fixture::OIDC, fixture::OIDC_CLIENT)
                };
                let mut s = json!({
                    "u": {"id": id, "username": login, "email": "", "nickname": "", "avatar": ""},
                    "p": p, "c": c, "i": now,
                });
                if let Some(e) = time(expires, now) {
                    s["e"] = e;
                }
                if let Some(n) = renew_at {
                    s["n"] = json!(n);
                }
                if let Some(r) = refresh {
                    s["r"] = json!(r);
                }
                if let Some(v) = attrs_version {
                    s["a"] = json!({"v": v, "t": read_at.unwrap_or(now), "g": groups});
                }
                s.to_string().into_bytes()
            }
            SessionJson::Raw(b) => b.clone(),
        }
    }
}

impl CookiePart {
    pub fn text(&self, now: u64) -> String {
        match self {
            CookiePart::Session {
                seed: i,
                name,
                quoted,
            } => {
                let value = seed(*i).map(|s| s.value.as_str()).unwrap_or_default();
                if *quoted {
                    format!("{}=\"{value}\"", name.text())
                } else {
                    format!("{}={value}", name.text())
                }
            }
            CookiePart::Tampered {
                seed: i,
                at,
                xor,
                name,
            } => {
                let value = seed(*i).map(|s| s.value.as_str()).unwrap_or_default();
                format!("{}={}", name.text(), flip(value, *at, *xor))
            }
            CookiePart::Truncated { seed: i, len, name } => {
                let value = seed(*i).map(|s| s.value.as_str()).unwrap_or_default();
                let cut = usize::from(*len) % (value.len() + 1);
                format!("{}={}", name.text(), &value[..cut])
            }
            CookiePart::SealedJson { json, name } => {
                let plaintext = json.bytes(now);
                let sealed = fixture::engine()
                    .login
                    .keys
                    .seal(ingress_authz::session::Purpose::Session, &plaintext);
                SEALED.with(|s| s.borrow_mut().push((sealed.clone(), plaintext)));
                format!("{}={sealed}", name.text())
            }
            CookiePart::Other { name, value } => format!("{name}={value}"),
            CookiePart::Raw(s) => s.clone(),
        }
    }
}

impl Input {
    pub fn host(&self) -> String {
        match &self.host {
            Host::Known {
                index,
                port,
                upper,
                trailing_dot,
            } => {
                let mut h = pick(&fixture::HOSTS, *index).to_string();
                if *upper {
                    h = h.to_ascii_uppercase();
                }
                if *trailing_dot {
                    h.push('.');
                }
                if let Some(p) = port {
                    h = format!("{h}:{p}");
                }
                h
            }
            Host::Sub { label, index } => format!("{label}.{}", pick(&fixture::HOSTS, *index)),
            Host::Raw(s) => s.clone(),
        }
    }

    pub fn path(&self) -> String {
        match &self.path {
            Path::Segments {
                segments,
                trailing_slash,
                query,
            } => {
                let mut p = String::new();
                for s in segments {
                    p.push('/');
                    match s {
                        Segment::Known(i) => p.push_str(pick(&fixture::SEGMENTS, *i)),
                        Segment::Raw(r) => p.push_str(r),
                    }
                }
                if *trailing_slash || p.is_empty() {
                    p.push('/');
                }
                if let Some(q) = query {
                    p.push('?');
                    p.push_str(q);
                }
                p
            }
            Path::Raw(s) => s.clone(),
        }
    }

    /// The request's headers as Envoy would send them (lower-case names).
    pub fn headers(&self, now: u64) -> HashMap<String, String> {
        let mut h = HashMap::new();
        for (name, value) in &self.extra {
            let name = match name {
                HeaderName::XAuthUser => "x-auth-user".to_string(),
                HeaderName::XConnectToken => "x-connect-token".to_string(),
                HeaderName::XConnectTimestamp => "x-connect-timestamp".to_string(),
                HeaderName::XForwardedFor => "x-forwarded-for".to_string(),
                HeaderName::Origin => "origin".to_string(),
                HeaderName::Raw(s) => s.to_ascii_lowercase(),
            };
            h.insert(name, value.clone());
        }
        if let Some(a) = &self.authorization {
            let value = match a {
                Authorization::BasicKnown { user, spelling } => {
                    let (u, p) = fixture::BASIC_USERS[usize::from(*user) % 4];
                    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                    spelling.apply("Basic", &b64)
                }
                Authorization::Basic {
                    user,
                    password,
                    padding,
                    spelling,
                } => {
                    let pair = format!("{}:{}", user.text(), password.text());
                    let b64 = if *padding {
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    } else {
                        base64::engine::general_purpose::STANDARD_NO_PAD.encode(pair)
                    };
                    spelling.apply("Basic", &b64)
                }
                Authorization::BasicBytes(bytes, spelling) => spelling.apply(
                    "Basic",
                    &base64::engine::general_purpose::STANDARD.encode(bytes),
                ),
                Authorization::Bearer(token, spelling) => {
                    spelling.apply("Bearer", &token.text(now))
                }
                Authorization::Raw(s) => s.clone(),
            };
            h.insert("authorization".into(), value);
        }
        if !self.cookies.is_empty() {
            let joined: Vec<String> = self.cookies.iter().map(|c| c.text(now)).collect();
            h.insert("cookie".into(), joined.join("; "));
        }
        if let Some(a) = &self.accept {
            let value = match a {
                Accept::Html => "text/html,application/xhtml+xml".to_string(),
                Accept::Json => "application/json".to_string(),
                Accept::Any => "*/*".to_string(),
                Accept::Raw(s) => s.clone(),
            };
            h.insert("accept".into(), value);
        }
        if let Some(m) = &self.sec_fetch_mode {
            let value = match m {
                FetchMode::Navigate => "navigate".to_string(),
                FetchMode::Cors => "cors".to_string(),
                FetchMode::Raw(s) => s.clone(),
            };
            h.insert("sec-fetch-mode".into(), value);
        }
        if let Some(p) = &self.forwarded_proto {
            h.insert("x-forwarded-proto".into(), scheme_text(p));
        }
        h.into_iter()
            .map(|(k, v)| (header_safe(&k), header_safe(&v)))
            .collect()
    }

    pub fn check_request(&self, now: u64) -> CheckRequest {
        forget_sealed();
        let method = match &self.method {
            Method::Get => "GET".to_string(),
            Method::Head => "HEAD".to_string(),
            Method::Post => "POST".to_string(),
            Method::Put => "PUT".to_string(),
            Method::Delete => "DELETE".to_string(),
            Method::Options => "OPTIONS".to_string(),
            Method::Raw(s) => s.clone(),
        };
        let http = HttpRequest {
            host: header_safe(&self.host()),
            path: header_safe(&self.path()),
            method,
            scheme: scheme_text(&self.scheme),
            headers: self.headers(now),
            ..Default::default()
        };
        let source = self.source.as_ref().map(|a| Peer {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: a.clone(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        });
        let mut context_extensions = HashMap::new();
        if let Some(r) = &self.envoy_route {
            let label = match r {
                EnvoyRoute::Protected(i) => pick(&fixture::PROTECTED, *i).to_string(),
                EnvoyRoute::Open(i) => pick(&fixture::OPEN, *i).to_string(),
                EnvoyRoute::Raw(s) => s.clone(),
            };
            context_extensions.insert("route".to_string(), label);
        }
        let request = (!self.malformed.is()).then_some(Request {
            http: Some(http),
            ..Default::default()
        });
        CheckRequest {
            attributes: Some(AttributeContext {
                source,
                request,
                context_extensions,
                ..Default::default()
            }),
        }
    }
}

fn scheme_text(s: &SchemeChoice) -> String {
    match s {
        SchemeChoice::Http => "http".into(),
        SchemeChoice::Https => "https".into(),
        SchemeChoice::Raw(r) => r.clone(),
    }
}
