//! Typed, prefixed, time-sortable ids: `usr_`, `ws_`, `mem_`, ... followed by a UUIDv7 written in
//! 26 lowercase Crockford base32 characters. The encoding keeps the UUID's byte order, so ids of
//! one kind sort by creation time, which cursor pagination relies on.

use std::fmt;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const BODY_LEN: usize = 26;

/// Encodes 128 bits as 26 base32 characters (the first carries the top 3 bits).
fn encode(value: u128) -> [u8; BODY_LEN] {
    let mut out = [0u8; BODY_LEN];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (BODY_LEN - 1 - i);
        *slot = ALPHABET[((value >> shift) & 0x1f) as usize];
    }
    out
}

fn decode(body: &str) -> Option<u128> {
    let b = body.as_bytes();
    if b.len() != BODY_LEN || !matches!(b[0], b'0'..=b'7') {
        return None;
    }
    let mut v: u128 = 0;
    for &c in b {
        let d = ALPHABET.iter().position(|&a| a == c)? as u128;
        v = (v << 5) | d;
    }
    Some(v)
}

/// Makes the body of a new id: a UUIDv7 (48 bits of milliseconds, then randomness).
pub fn new_body() -> String {
    let v = uuid::Uuid::now_v7().as_u128();
    // SAFETY of unwrap: the alphabet is ASCII.
    String::from_utf8(encode(v).to_vec()).expect("ascii")
}

/// Checks that `s` is `<prefix>_<26 base32>`.
pub fn is_valid(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|body| decode(body).is_some())
}

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn new() -> Self {
                Self(format!("{}_{}", $prefix, new_body()))
            }

            /// Parses an id given by a client; `None` when it is not one of this kind.
            pub fn parse(s: &str) -> Option<Self> {
                is_valid($prefix, s).then(|| Self(s.to_owned()))
            }

            /// Wraps an id read back from the store, which wrote it.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(concat!("expected an id starting with ", $prefix, "_"))
                })
            }
        }
    };
}

typed_id!(
    /// A user account.
    UserId, "usr"
);
typed_id!(
    /// A workspace (tenant).
    WorkspaceId, "ws"
);
typed_id!(
    /// A membership of a user in a workspace.
    MemberId, "mem"
);
typed_id!(
    /// A login session (one refresh-token chain).
    SessionId, "ses"
);
typed_id!(
    /// An audit log entry.
    AuditId, "aud"
);
typed_id!(
    /// A custom role of a workspace.
    RoleId, "rol"
);
typed_id!(
    /// An API key.
    KeyId, "key"
);
typed_id!(
    /// A builder profile (an app publisher's public identity).
    BuilderProfileId, "bld"
);
typed_id!(
    /// A member's grant of scopes to an app in a workspace.
    GrantId, "grt"
);
typed_id!(
    /// A webhook endpoint of a workspace.
    WebhookId, "whk"
);
typed_id!(
    /// A webhook message (one event for one workspace); sent as `webhook-id`, the same on
    /// every retry.
    MessageId, "msg"
);
typed_id!(
    /// One delivery attempt of a message to an endpoint.
    DeliveryId, "dlv"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn new_ids_have_their_prefix_and_parse_back() {
        let id = UserId::new();
        assert!(id.as_str().starts_with("usr_"));
        assert_eq!(id.as_str().len(), 4 + BODY_LEN);
        assert_eq!(UserId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(WorkspaceId::parse(id.as_str()), None);
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let a = WorkspaceId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = WorkspaceId::new();
        assert!(a < b);
    }

    #[test]
    fn rejects_foreign_shapes() {
        for bad in [
            "",
            "usr_",
            "usr",
            "usr_ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "usr_8zzzzzzzzzzzzzzzzzzzzzzzzz",
            "usr_0000000000000000000000000u",
        ] {
            assert!(UserId::parse(bad).is_none(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn encoding_round_trips_and_keeps_order(a: u128, b: u128) {
            let (ea, eb) = (encode(a), encode(b));
            prop_assert_eq!(decode(std::str::from_utf8(&ea).unwrap()), Some(a));
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = UserId::parse(&s);
        }
    }
}
