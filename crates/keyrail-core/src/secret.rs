//! Secrets are their own type: no `Debug` or `Display` in clear, zeroed on drop.

use std::fmt;

use zeroize::Zeroizing;

/// A secret string (a password, a token, a key). Its `Debug` prints `Secret(***)`.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// The clear text, for the few places that must hash, compare or show it once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// The 32-byte master key that encrypts what must be stored recoverably.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        rand::fill(&mut b);
        Self::from_bytes(b)
    }

    /// Reads 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self::from_bytes(out))
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(64));
        for b in self.0.iter() {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2hunter2".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let k = MasterKey::generate();
        assert_eq!(format!("{k:?}"), "MasterKey(***)");
    }

    #[test]
    fn master_key_hex_round_trip() {
        let k = MasterKey::generate();
        let back = MasterKey::from_hex(&k.to_hex()).unwrap();
        assert_eq!(k.bytes(), back.bytes());
        assert!(MasterKey::from_hex("abc").is_none());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_none());
        assert!(MasterKey::from_hex(&"é".repeat(32)).is_none());
    }
}
