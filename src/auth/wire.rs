//! Field types for the JSON providers send: a document is deserialized
//! once, into typed structs, and these keep that tolerant of the odd shapes
//! real providers answer with (numeric ids, nulls, strings for booleans).

use serde::de::{Deserialize, DeserializeOwned, Deserializer};
use serde_json::Value;

/// A string field; a number becomes its decimal text (GitHub and Kakao
/// ids are numbers); absent, null or any other shape is empty.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(match Value::deserialize(d)? {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        }))
    }
}

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.0
    }
}

/// A `T` when the JSON holds one of that shape; absent, null or any other
/// shape is `None` (one odd field never fails the whole document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lenient<T>(pub Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(T::deserialize(Value::deserialize(d)?).ok()))
    }
}

impl<T> Lenient<T> {
    pub fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<T: Default> Lenient<T> {
    /// The value, or `T`'s default when there was none.
    pub fn or_default(self) -> T {
        self.0.unwrap_or_default()
    }
}

impl Lenient<bool> {
    /// JSON `true` (nothing else).
    pub fn is_true(&self) -> bool {
        self.0 == Some(true)
    }
}

impl Lenient<String> {
    /// The string, `""` when there was none.
    pub fn text(&self) -> &str {
        self.0.as_deref().unwrap_or_default()
    }
}

/// A field that may be present with any value (even null): whether it
/// was, and its string if it is one (an ID token's `nonce`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Present {
    pub present: bool,
    pub text: Option<String>,
}

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(Self {
            present: true,
            text: v.as_str().map(str::to_string),
        })
    }
}

/// An OpenID `email_verified`: `true`, or the string `"true"` some
/// providers send; anything else is not verified.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Verified(pub bool);

impl<'de> Deserialize<'de> for Verified {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(Self(
            v.as_bool()
                .or_else(|| v.as_str().map(|s| s.eq_ignore_ascii_case("true")))
                .unwrap_or(false),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(default)]
        id: Text,
        #[serde(default)]
        n: Text,
        #[serde(default)]
        missing: Text,
        #[serde(default)]
        a: Lenient<Inner>,
        #[serde(default)]
        odd: Lenient<Inner>,
    }

    #[derive(serde::Deserialize)]
    struct Inner {
        b: String,
    }

    #[test]
    fn numeric_ids_become_strings_and_odd_shapes_are_empty() {
        let v = serde_json::json!({"id": 42, "a": {"b": "c"}, "n": null, "odd": "x"});
        let doc: Doc = serde_json::from_value(v).unwrap();
        assert_eq!(doc.id.as_str(), "42");
        assert_eq!(doc.a.get().map(|i| i.b.as_str()), Some("c"));
        assert_eq!(doc.n.as_str(), "");
        assert_eq!(doc.missing.as_str(), "");
        assert!(doc.odd.get().is_none());
    }

    #[test]
    fn email_verified_takes_true_or_the_string_true() {
        for (v, want) in [
            (serde_json::json!(true), true),
            (serde_json::json!("TRUE"), true),
            (serde_json::json!("yes"), false),
            (serde_json::json!(1), false),
        ] {
            assert_eq!(serde_json::from_value::<Verified>(v).unwrap().0, want);
        }
    }
}
