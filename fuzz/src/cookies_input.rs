//! The `cookies` target's input.

use arbitrary::Arbitrary;

use crate::input::{CookiePart, SessionJson};

#[derive(Arbitrary, Debug)]
pub enum Sealed {
    Seed(u8),
    Tampered {
        seed: u8,
        at: u16,
        xor: u8,
    },
    Truncated {
        seed: u8,
        len: u16,
    },
    /// A seed repeated, or padded, past any cookie size.
    Oversized {
        seed: u8,
        times: u8,
        pad: char,
    },
    /// Sealed with the right key for this purpose: any plaintext.
    Right {
        purpose: bool,
        plaintext: Plain,
    },
    /// Sealed with another key.
    OtherKey {
        secret: String,
        purpose: bool,
        plaintext: Plain,
    },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Plain {
    Session(SessionJson),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
pub enum TicketInput {
    Raw(String),
    Parts {
        id: Vec<u8>,
        key: Vec<u8>,
        prefix: bool,
    },
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    pub sealed: Sealed,
    pub header: Vec<CookiePart>,
    pub raw_header: Option<String>,
    pub replacement: Option<String>,
    pub ticket: TicketInput,
    pub record: String,
    pub flip_record: Option<(u16, u8)>,
}
