//! One scope name, `resource:action`, validated once at the edge.
//!
//! A name matches `^[a-z][a-z0-9_-]*:[a-z][a-z0-9_-]*$` and has at most 64 characters
//! (`API.md`, "Scopes"). Whether the scope *exists* is the catalog's question, not this type's.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A syntactically valid scope name. Ordered and compared as its string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(String);

impl Scope {
    /// The longest scope name accepted, in characters (all valid names are ASCII).
    pub const MAX_LEN: usize = 64;

    /// Parses a scope name; a 400 `invalid_request` on field `scope` that names the scope.
    pub fn parse(s: &str) -> Result<Scope, Error> {
        Self::parse_field(s, "scope")
    }

    /// Like [`Scope::parse`], naming `field` (e.g. `scopes`, `name`) in the error.
    pub fn parse_field(s: &str, field: &str) -> Result<Scope, Error> {
        match check(s) {
            Ok(()) => Ok(Scope(s.to_owned())),
            Err(why) => Err(Error::invalid(
                field,
                format!("{field}: invalid scope {}: {why}", shown(s)),
            )),
        }
    }

    /// True when `s` is a valid scope name.
    pub fn is_valid(s: &str) -> bool {
        check(s).is_ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The part before the colon (`keys` in `keys:read`).
    pub fn resource(&self) -> &str {
        self.split().0
    }

    /// The part after the colon (`read` in `keys:read`).
    pub fn action(&self) -> &str {
        self.split().1
    }

    fn split(&self) -> (&str, &str) {
        // A valid name has exactly one colon.
        self.0.split_once(':').unwrap_or((&self.0, ""))
    }
}

/// Why `s` is not a scope name, or `Ok`.
fn check(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("a scope cannot be empty; expected resource:action");
    }
    if s.len() > Scope::MAX_LEN {
        return Err("a scope has at most 64 characters");
    }
    let Some((resource, action)) = s.split_once(':') else {
        return Err("expected resource:action (one colon)");
    };
    part(resource)?;
    part(action)?;
    Ok(())
}

fn part(p: &str) -> Result<(), &'static str> {
    let mut bytes = p.bytes();
    match bytes.next() {
        None => return Err("resource and action cannot be empty"),
        Some(b'a'..=b'z') => {}
        Some(_) => return Err("resource and action must start with a lowercase letter a-z"),
    }
    if bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')) {
        Ok(())
    } else {
        Err("only lowercase letters, digits, '_' and '-' are allowed, around one colon")
    }
}

/// The scope as shown in an error: quoted and escaped, cut after 64 characters.
fn shown(s: &str) -> String {
    match s.char_indices().nth(Scope::MAX_LEN) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", self.0)
    }
}

impl AsRef<str> for Scope {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Scope {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Scope::parse(s)
    }
}

impl PartialEq<str> for Scope {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Scope {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Scope::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(e: Error) -> (String, String) {
        match e {
            Error::Invalid { field, message } => (field, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    /// An independent reading of the rule, to compare against.
    fn reference(s: &str) -> bool {
        let ok_part = |p: &str| {
            let c: Vec<char> = p.chars().collect();
            !c.is_empty()
                && c[0].is_ascii_lowercase()
                && c.iter()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "_-".contains(*ch))
        };
        let parts: Vec<&str> = s.split(':').collect();
        s.chars().count() <= 64 && parts.len() == 2 && ok_part(parts[0]) && ok_part(parts[1])
    }

    #[test]
    fn accepts_the_catalog_shapes() {
        for s in [
            "keys:read",
            "export:read-all",
            "admin:superuser",
            "a:b",
            "chats_v2:x-1_y",
        ] {
            let sc = Scope::parse(s).unwrap();
            assert_eq!(sc.as_str(), s);
        }
        let sc = Scope::parse("export:read-all").unwrap();
        assert_eq!((sc.resource(), sc.action()), ("export", "read-all"));
    }

    #[test]
    fn refuses_bad_names_and_names_them() {
        for s in [
            "",
            ":",
            "keys",
            "keys:",
            ":read",
            "Keys:read",
            "keys:Read",
            "1keys:read",
            "keys:1read",
            "_keys:read",
            "keys:-read",
            "keys:read:all",
            "keys read",
            "keys: read",
            "kéys:read",
            "keys:read\n",
            " keys:read",
        ] {
            let (field, msg) = message(Scope::parse(s).unwrap_err());
            assert_eq!(field, "scope");
            assert!(msg.contains(&format!("{s:?}")), "{msg}");
        }
    }

    #[test]
    fn length_limit_is_64() {
        let ok = format!("a:{}", "b".repeat(62));
        assert_eq!(ok.len(), 64);
        assert!(Scope::parse(&ok).is_ok());
        let long = format!("a:{}", "b".repeat(63));
        let (_, msg) = message(Scope::parse(&long).unwrap_err());
        assert!(msg.contains("64 characters"), "{msg}");
        assert!(
            msg.contains("..."),
            "long names are cut in the message: {msg}"
        );
    }

    #[test]
    fn parse_field_names_the_field() {
        let (field, msg) = message(Scope::parse_field("nope", "scopes").unwrap_err());
        assert_eq!(field, "scopes");
        assert!(msg.starts_with("scopes: invalid scope \"nope\""), "{msg}");
    }

    #[test]
    fn serde_is_a_plain_string() {
        let s = Scope::parse("keys:read").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"keys:read\"");
        let back: Scope = serde_json::from_str("\"keys:read\"").unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<Scope>("\"KEYS\"").is_err());
        assert!(serde_json::from_str::<Scope>("3").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_agrees_with_the_rule(s in "\\PC{0,80}") {
            prop_assert_eq!(Scope::parse(&s).is_ok(), reference(&s));
        }

        #[test]
        fn parse_agrees_on_near_misses(s in "[a-zA-Z0-9_:\\- ]{0,70}") {
            prop_assert_eq!(Scope::parse(&s).is_ok(), reference(&s));
        }

        #[test]
        fn valid_names_round_trip(s in "[a-z][a-z0-9_-]{0,30}:[a-z][a-z0-9_-]{0,31}") {
            let sc = Scope::parse(&s).unwrap();
            prop_assert_eq!(sc.as_str(), s.as_str());
            prop_assert_eq!(format!("{}:{}", sc.resource(), sc.action()), s.clone());
            let json = serde_json::to_string(&sc).unwrap();
            prop_assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), sc);
        }

        #[test]
        fn invalid_names_are_refused(
            good in "[a-z][a-z0-9_-]{0,20}:[a-z][a-z0-9_-]{0,20}",
            bad in "[A-Z0-9_\\-:. /\u{e9}]",
            at in 0usize..45,
        ) {
            // Putting a character outside the alphabet (or a second colon, or a non-letter at
            // the start of a part) anywhere must be refused.
            let at = at.min(good.len());
            let mut s = good.clone();
            s.insert_str(at, &bad);
            prop_assume!(!reference(&s));
            prop_assert!(Scope::parse(&s).is_err());
        }

        #[test]
        fn too_long_is_refused(r in "[a-z]{1,40}", a in "[a-z]{1,40}") {
            let s = format!("{r}:{a}");
            prop_assert_eq!(Scope::parse(&s).is_ok(), s.len() <= 64);
        }
    }
}
