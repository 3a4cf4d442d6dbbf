//! Encryption at rest of small secrets (JWT signing keys, TOTP secrets, ...) under the master key.
//!
//! Format: `v1.` + base64url(nonce (12 bytes) || ciphertext || tag (16 bytes)), AES-256-GCM.
//! The AES key is derived per purpose with HKDF-SHA256 (salt `keyrail/seal/v1`, info = purpose)
//! and the purpose is also the associated data, so a value sealed for one purpose cannot be
//! opened as another.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use zeroize::Zeroizing;

use super::{CryptoError, b64url_decode, b64url_encode, fill_random_or_panic};
use crate::secret::MasterKey;

const PREFIX: &str = "v1.";
const HKDF_SALT: &[u8] = b"keyrail/seal/v1";
const TAG_LEN: usize = 16;

fn purpose_key(master: &MasterKey, purpose: &str) -> LessSafeKey {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(master.bytes());
    let info = [purpose.as_bytes()];
    let okm = match prk.expand(&info, &AES_256_GCM) {
        Ok(okm) => okm,
        // expand only fails when the requested length exceeds 255 * 32 bytes; 32 never does.
        Err(_) => unreachable!("HKDF-SHA256 can always produce 32 bytes"),
    };
    LessSafeKey::new(UnboundKey::from(okm))
}

/// Encrypts `plaintext` for `purpose` (e.g. `"jwt-signing-key"`, `"totp-secret"`).
///
/// # Panics
/// If the operating system's random number generator fails (no nonce can be drawn).
pub fn seal(master: &MasterKey, purpose: &str, plaintext: &[u8]) -> String {
    let key = purpose_key(master, purpose);
    let mut nonce = [0u8; NONCE_LEN];
    fill_random_or_panic(&mut nonce);
    let mut buf = Zeroizing::new(Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN));
    buf.extend_from_slice(&nonce);
    buf.extend_from_slice(plaintext);
    let tag = match key.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(purpose.as_bytes()),
        &mut buf[NONCE_LEN..],
    ) {
        Ok(tag) => tag,
        // Only fails for inputs beyond AES-GCM's ~64 GiB limit.
        Err(_) => panic!("plaintext too large to seal"),
    };
    buf.extend_from_slice(tag.as_ref());
    format!("{PREFIX}{}", b64url_encode(&buf))
}

/// Decrypts a value made by [`seal`] with the same master key and purpose.
/// A wrong key, a wrong purpose or any alteration gives [`CryptoError::Unseal`];
/// a value that is not a `v1.` sealed box gives [`CryptoError::Malformed`].
pub fn open(
    master: &MasterKey,
    purpose: &str,
    sealed: &str,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let body = sealed
        .strip_prefix(PREFIX)
        .ok_or(CryptoError::Malformed("sealed value"))?;
    let mut buf =
        Zeroizing::new(b64url_decode(body).ok_or(CryptoError::Malformed("sealed value"))?);
    if buf.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("sealed value"));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&buf[..NONCE_LEN]);
    let key = purpose_key(master, purpose);
    let plain_len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(purpose.as_bytes()),
            &mut buf[NONCE_LEN..],
        )
        .map_err(|_| CryptoError::Unseal)?
        .len();
    Ok(Zeroizing::new(
        buf[NONCE_LEN..NONCE_LEN + plain_len].to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(b: u8) -> MasterKey {
        MasterKey::from_bytes([b; 32])
    }

    #[test]
    fn round_trip() {
        let k = MasterKey::generate();
        let sealed = seal(&k, "totp-secret", b"12345678901234567890");
        assert!(sealed.starts_with("v1."));
        assert_eq!(
            open(&k, "totp-secret", &sealed).unwrap().as_slice(),
            b"12345678901234567890"
        );
        let empty = seal(&k, "x", b"");
        assert_eq!(open(&k, "x", &empty).unwrap().len(), 0);
    }

    #[test]
    fn nonces_differ() {
        let k = key(1);
        assert_ne!(seal(&k, "p", b"same"), seal(&k, "p", b"same"));
    }

    #[test]
    fn wrong_key_purpose_or_tampering_fail() {
        let sealed = seal(&key(1), "jwt-signing-key", b"secret bytes");
        assert_eq!(
            open(&key(2), "jwt-signing-key", &sealed),
            Err(CryptoError::Unseal)
        );
        assert_eq!(
            open(&key(1), "totp-secret", &sealed),
            Err(CryptoError::Unseal)
        );

        let raw = b64url_decode(&sealed[3..]).unwrap();
        for i in 0..raw.len() {
            let mut t = raw.clone();
            t[i] ^= 0x01;
            let forged = format!("v1.{}", b64url_encode(&t));
            assert_eq!(
                open(&key(1), "jwt-signing-key", &forged),
                Err(CryptoError::Unseal)
            );
        }
        let truncated = format!("v1.{}", b64url_encode(&raw[..raw.len() - 1]));
        assert_eq!(
            open(&key(1), "jwt-signing-key", &truncated),
            Err(CryptoError::Unseal)
        );
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let k = key(1);
        for bad in [
            "",
            "v1.",
            "v2.AAAA",
            "v1.!!!",
            "v1.AAAA",
            "plain",
            "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert!(
                matches!(open(&k, "p", bad), Err(CryptoError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn error_messages_hold_no_secret() {
        let err = open(&key(1), "p", "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap_err();
        assert!(!err.to_string().contains("AAAA"));
    }

    proptest! {
        #[test]
        fn open_never_panics(s in ".{0,200}") {
            let _ = open(&key(3), "p", &s);
            let _ = open(&key(3), "p", &format!("v1.{s}"));
        }

        #[test]
        fn round_trips_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..300), purpose in "[a-z-]{0,20}") {
            let k = key(9);
            let sealed = seal(&k, &purpose, &data);
            let opened = open(&k, &purpose, &sealed).unwrap();
            prop_assert_eq!(opened.as_slice(), data.as_slice());
        }
    }
}
