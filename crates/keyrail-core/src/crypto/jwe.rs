//! Compact JWE (RFC 7516) with direct key agreement (`alg: "dir"`) and AES-GCM content
//! encryption (`A128GCM` / `A256GCM`): the two layers of an app token.
//!
//! A compact JWE is `protected . encrypted_key . iv . ciphertext . tag`, each part base64url
//! without padding. With `dir` the encrypted key is empty and the shared symmetric key is the
//! content key. The additional authenticated data is the ASCII of the protected header's
//! base64url, so the header cannot be changed without failing the tag.
//!
//! Decryption is strict: only `dir` with the expected `enc`, no `zip`, no `crit`, a 96-bit IV and
//! a 128-bit tag. Any failure is one error that says nothing about which check failed.

use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, Algorithm, LessSafeKey, NONCE_LEN, Nonce};
use ring::aead::{MAX_TAG_LEN, UnboundKey};
use serde::Deserialize;

use super::{CryptoError, b64url_decode, b64url_encode, fill_random_or_panic};

/// The content encryptions supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enc {
    A128Gcm,
    A256Gcm,
}

impl Enc {
    pub fn name(self) -> &'static str {
        match self {
            Enc::A128Gcm => "A128GCM",
            Enc::A256Gcm => "A256GCM",
        }
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Enc::A128Gcm => 16,
            Enc::A256Gcm => 32,
        }
    }

    fn algorithm(self) -> &'static Algorithm {
        match self {
            Enc::A128Gcm => &AES_128_GCM,
            Enc::A256Gcm => &AES_256_GCM,
        }
    }
}

fn aead_key(enc: Enc, key: &[u8]) -> Result<LessSafeKey, CryptoError> {
    if key.len() != enc.key_len() {
        return Err(CryptoError::InvalidKey);
    }
    UnboundKey::new(enc.algorithm(), key)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::InvalidKey)
}

/// Encrypts `plaintext` under `key` as a compact JWE with `{"alg":"dir","enc":..,"kid":..}`.
///
/// # Panics
/// If the system random number generator fails (no IV can be drawn).
pub fn encrypt(
    enc: Enc,
    key: &[u8],
    kid: Option<&str>,
    plaintext: &[u8],
) -> Result<String, CryptoError> {
    let aead = aead_key(enc, key)?;
    let header = match kid {
        Some(kid) => serde_json::json!({"alg": "dir", "enc": enc.name(), "kid": kid}),
        None => serde_json::json!({"alg": "dir", "enc": enc.name()}),
    };
    let protected = b64url_encode(header.to_string().as_bytes());
    let mut iv = [0u8; NONCE_LEN];
    fill_random_or_panic(&mut iv);
    let mut buf = plaintext.to_vec();
    let tag = aead
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected.as_bytes()),
            &mut buf,
        )
        .map_err(|_| CryptoError::InvalidKey)?;
    Ok(format!(
        "{protected}..{}.{}.{}",
        b64url_encode(&iv),
        b64url_encode(&buf),
        b64url_encode(tag.as_ref())
    ))
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    enc: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    zip: Option<serde_json::Value>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// A compact JWE split into its parts, header parsed; not yet decrypted.
pub struct Parsed<'a> {
    protected: &'a str,
    pub enc: Enc,
    pub kid: Option<String>,
    iv: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
}

/// `true` when `s` has the shape of a compact JWE (five parts, empty encrypted key): cheap, for
/// telling app tokens from other credentials.
pub fn looks_like_dir_jwe(s: &str) -> bool {
    let mut parts = s.split('.');
    let first = parts.next().unwrap_or("");
    first.starts_with("eyJ") && parts.next() == Some("") && s.split('.').count() == 5
}

/// Splits and checks the header of a compact `dir` JWE.
pub fn parse(token: &str) -> Result<Parsed<'_>, CryptoError> {
    let bad = || CryptoError::Malformed("JWE");
    let mut parts = token.split('.');
    let (Some(protected), Some(encrypted_key), Some(iv), Some(ct), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    if !encrypted_key.is_empty() || protected.len() > 1024 {
        return Err(bad());
    }
    let header: Header =
        serde_json::from_slice(&b64url_decode(protected).ok_or_else(bad)?).map_err(|_| bad())?;
    if header.alg != "dir" || header.zip.is_some() || header.crit.is_some() {
        return Err(bad());
    }
    let enc = match header.enc.as_str() {
        "A128GCM" => Enc::A128Gcm,
        "A256GCM" => Enc::A256Gcm,
        _ => return Err(bad()),
    };
    let iv: [u8; NONCE_LEN] = b64url_decode(iv)
        .and_then(|v| v.try_into().ok())
        .ok_or_else(bad)?;
    let tag = b64url_decode(tag)
        .filter(|t| t.len() == MAX_TAG_LEN)
        .ok_or_else(bad)?;
    let ciphertext = b64url_decode(ct).ok_or_else(bad)?;
    Ok(Parsed {
        protected,
        enc,
        kid: header.kid,
        iv,
        ciphertext,
        tag,
    })
}

impl Parsed<'_> {
    /// Decrypts with `key`, which must be for `expected` (a token naming another `enc` fails).
    pub fn decrypt(self, expected: Enc, key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if self.enc != expected {
            return Err(CryptoError::Malformed("JWE"));
        }
        let aead = aead_key(self.enc, key)?;
        let mut buf = self.ciphertext;
        buf.extend_from_slice(&self.tag);
        let len = aead
            .open_in_place(
                Nonce::assume_unique_for_key(self.iv),
                Aad::from(self.protected.as_bytes()),
                &mut buf,
            )
            .map_err(|_| CryptoError::Unseal)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// Parses and decrypts in one step.
pub fn decrypt(token: &str, expected: Enc, key: &[u8]) -> Result<Vec<u8>, CryptoError> {
    parse(token)?.decrypt(expected, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7520 section 5.6: the key of Figure 130, the JWE of Figure 136, the plaintext of
    /// Figure 72 (with U+2013 where the RFC writes the en dash).
    const RFC7520_KEY: &str = "XctOhJAkA-pD9Lh7ZgW_2A";
    const RFC7520_JWE: &str = concat!(
        "eyJhbGciOiJkaXIiLCJraWQiOiI3N2M3ZTJiOC02ZTEzLTQ1Y2YtODY3Mi02",
        "MTdiNWI0NTI0M2EiLCJlbmMiOiJBMTI4R0NNIn0",
        "..",
        "refa467QzzKx6QAB",
        ".",
        "JW_i_f52hww_ELQPGaYyeAB6HYGcR559l9TYnSovc23XJoBcW29rHP8yZOZG7Y",
        "hLpT1bjFuvZPjQS-m0IFtVcXkZXdH_lr_FrdYt9HRUYkshtrMmIUAyGmUnd9",
        "zMDB2n0cRDIHAzFVeJUDxkUwVAE7_YGRPdcqMyiBoCO-FBdE-Nceb4h3-FtB",
        "P-c_BIwCPTjb9o0SbdcdREEMJMyZBH8ySWMVi1gPD9yxi-aQpGbSv_F9N4IZ",
        "Axscj5g-NJsUPbjk29-s7LJAGb15wEBtXphVCgyy53CoIKLHHeJHXex45Uz9",
        "aKZSRSInZI-wjsY0yu3cT4_aQ3i1o-tiE-F8Ios61EKgyIQ4CWao8PFMj8TT",
        "np",
        ".",
        "vbb32Xvllea2OtmHAdccRQ"
    );
    const RFC7520_PLAINTEXT: &str = "You can trust us to stick with you through thick and thin\u{2013}to the bitter end. And you can trust us to keep any secret of yours\u{2013}closer than you keep it yourself. But you cannot trust us to let you face trouble alone, and go off without a word. We are your friends, Frodo.";

    #[test]
    fn rfc7520_5_6_dir_a128gcm_decrypts() {
        let key = b64url_decode(RFC7520_KEY).unwrap();
        let parsed = parse(RFC7520_JWE).unwrap();
        assert_eq!(
            parsed.kid.as_deref(),
            Some("77c7e2b8-6e13-45cf-8672-617b5b45243a")
        );
        assert_eq!(parsed.enc, Enc::A128Gcm);
        let plain = parsed.decrypt(Enc::A128Gcm, &key).unwrap();
        assert_eq!(String::from_utf8(plain).unwrap(), RFC7520_PLAINTEXT);
        assert!(looks_like_dir_jwe(RFC7520_JWE));
    }

    #[test]
    fn rfc7520_vector_fails_when_altered() {
        let key = b64url_decode(RFC7520_KEY).unwrap();
        // A different header (same enc) changes the AAD: the tag no longer matches.
        let other_header = b64url_encode(br#"{"alg":"dir","enc":"A128GCM"}"#);
        let rest = RFC7520_JWE.split_once('.').unwrap().1;
        let swapped = format!("{other_header}.{rest}");
        assert_eq!(
            decrypt(&swapped, Enc::A128Gcm, &key),
            Err(CryptoError::Unseal)
        );
        let mut wrong = key.clone();
        wrong[0] ^= 1;
        assert!(decrypt(RFC7520_JWE, Enc::A128Gcm, &wrong).is_err());
        // The expected enc is enforced, and a 16-byte key is not an A256GCM key.
        assert!(decrypt(RFC7520_JWE, Enc::A256Gcm, &key).is_err());
    }

    #[test]
    fn refuses_other_algorithms_and_shapes() {
        let key = [7u8; 16];
        let token = encrypt(Enc::A128Gcm, &key, None, b"hi").unwrap();
        let (_, rest) = token.split_once('.').unwrap();
        for header in [
            r#"{"alg":"A128KW","enc":"A128GCM"}"#,
            r#"{"alg":"dir","enc":"A128CBC-HS256"}"#,
            r#"{"alg":"dir","enc":"A128GCM","zip":"DEF"}"#,
            r#"{"alg":"dir","enc":"A128GCM","crit":["exp"]}"#,
            r#"{"alg":"none"}"#,
        ] {
            let t = format!("{}.{rest}", b64url_encode(header.as_bytes()));
            assert!(decrypt(&t, Enc::A128Gcm, &key).is_err(), "{header}");
        }
        let with_key = token.replacen("..", ".AAAA.", 1);
        assert!(decrypt(&with_key, Enc::A128Gcm, &key).is_err());
        assert!(decrypt("a.b.c", Enc::A128Gcm, &key).is_err());
        assert!(encrypt(Enc::A256Gcm, &key, None, b"x").is_err(), "16 bytes");
    }

    proptest::proptest! {
        #[test]
        fn round_trips(plain in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
                       big in proptest::bool::ANY,
                       kid in proptest::option::of("[a-z0-9]{1,12}")) {
            let enc = if big { Enc::A256Gcm } else { Enc::A128Gcm };
            let mut key = vec![0u8; enc.key_len()];
            fill_random_or_panic(&mut key);
            let token = encrypt(enc, &key, kid.as_deref(), &plain).unwrap();
            proptest::prop_assert!(looks_like_dir_jwe(&token));
            let parsed = parse(&token).unwrap();
            proptest::prop_assert_eq!(parsed.kid.clone(), kid);
            proptest::prop_assert_eq!(parsed.decrypt(enc, &key).unwrap(), plain);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,300}") {
            let _ = decrypt(&s, Enc::A128Gcm, &[0u8; 16]);
            let _ = looks_like_dir_jwe(&s);
        }
    }
}
