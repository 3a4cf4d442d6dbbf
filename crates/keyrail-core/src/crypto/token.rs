//! Random tokens, SHA-256, constant-time comparison and MFA recovery codes.

use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::{b64url_encode, fill_random_or_panic};
use crate::secret::{MasterKey, Secret};

/// `bytes` random bytes from the system RNG, as base64url without padding
/// (32 bytes give a 43-character token).
///
/// # Panics
/// If the operating system's random number generator fails.
pub fn random_token(bytes: usize) -> Secret {
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    fill_random_or_panic(&mut buf);
    Secret::new(b64url_encode(&buf))
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// SHA-256 of `data` as 64 lowercase hex characters.
pub fn sha256_hex(data: &[u8]) -> String {
    hex_lower(&sha256(data))
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// An HMAC-SHA256 of `data` under a key derived from the master key for `purpose` (HKDF), as
/// base64url: a value the server can recompute and nobody else can forge (e.g. the CSRF token
/// bound to a session).
pub fn keyed_tag(master: &MasterKey, purpose: &str, data: &[u8]) -> String {
    let prk =
        ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"keyrail/tag/v1").extract(master.bytes());
    let info = [purpose.as_bytes()];
    let key: ring::hmac::Key = match prk.expand(&info, ring::hmac::HMAC_SHA256) {
        Ok(okm) => okm.into(),
        Err(_) => unreachable!("HKDF-SHA256 can always produce one HMAC key"),
    };
    b64url_encode(ring::hmac::sign(&key, data).as_ref())
}

/// Compares two byte strings in time independent of their content (the length is not hidden).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The recovery-code alphabet: Crockford's base32 in lowercase, 32 symbols without the
/// confusable `i`, `l`, `o` and `u`. Each symbol carries 5 bits.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// `n` fresh recovery codes of the form `xxxxx-xxxxx` (10 symbols, 50 random bits each).
///
/// # Panics
/// If the operating system's random number generator fails.
pub fn recovery_codes(n: usize) -> Vec<Secret> {
    (0..n).map(|_| recovery_code()).collect()
}

fn recovery_code() -> Secret {
    let mut raw = Zeroizing::new([0u8; 10]);
    fill_random_or_panic(raw.as_mut_slice());
    let mut s = String::with_capacity(11);
    for (i, b) in raw.iter().enumerate() {
        if i == 5 {
            s.push('-');
        }
        // 32 divides 256: taking the low 5 bits of a uniform byte is unbiased.
        s.push(char::from(RECOVERY_ALPHABET[usize::from(b & 0x1f)]));
    }
    Secret::new(s)
}

/// The canonical form of a recovery code as typed by a user, so that hashing it is stable:
/// surrounding and inner whitespace and dashes are dropped, letters lowercased, the confusables
/// `o` -> `0` and `i`/`l` -> `1` mapped back (they are not in the alphabet), and a 10-symbol
/// result is shown as `xxxxx-xxxxx`. Anything else is returned cleaned but otherwise unchanged
/// (it will simply not match a stored code).
pub fn normalize_recovery_code(code: &str) -> String {
    let cleaned: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '\u{2010}'..='\u{2015}' | '\u{2212}'))
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            other => other,
        })
        .collect();
    if cleaned.len() == 10 && cleaned.is_ascii() {
        format!("{}-{}", &cleaned[..5], &cleaned[5..])
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn random_tokens_are_base64url_and_distinct() {
        let a = random_token(32);
        let b = random_token(32);
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a.expose(), b.expose());
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(random_token(0).expose(), "");
        assert_eq!(format!("{a:?}"), "Secret(***)");
    }

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256(b"abc")[0], 0xba);
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn recovery_codes_have_the_documented_shape() {
        let codes = recovery_codes(10);
        assert_eq!(codes.len(), 10);
        let distinct: HashSet<&str> = codes.iter().map(Secret::expose).collect();
        assert_eq!(distinct.len(), 10);
        for c in &codes {
            let s = c.expose();
            assert_eq!(s.len(), 11);
            assert_eq!(&s[5..6], "-");
            assert!(
                s.bytes()
                    .filter(|&b| b != b'-')
                    .all(|b| RECOVERY_ALPHABET.contains(&b))
            );
            assert_eq!(normalize_recovery_code(s), s, "fresh codes are canonical");
        }
    }

    #[test]
    fn normalization_is_stable() {
        assert_eq!(normalize_recovery_code("  ABCDE-FGH1J "), "abcde-fgh1j");
        assert_eq!(normalize_recovery_code("abcde fgh1j"), "abcde-fgh1j");
        assert_eq!(normalize_recovery_code("abcdefgh1j"), "abcde-fgh1j");
        assert_eq!(normalize_recovery_code("abc-de-fgh-1j"), "abcde-fgh1j");
        assert_eq!(normalize_recovery_code("abcde\u{2013}fghij"), "abcde-fgh1j");
        assert_eq!(normalize_recovery_code("O0ILx-yz123"), "0011x-yz123");
        assert_eq!(normalize_recovery_code("abc12"), "abc12");
        assert_eq!(normalize_recovery_code(""), "");
        assert_eq!(normalize_recovery_code("ééééééééé1"), "ééééééééé1");
    }
}
