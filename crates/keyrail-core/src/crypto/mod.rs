//! The pure cryptographic building blocks of the identity feature: password hashing and policy,
//! TOTP, EdDSA access tokens, sealing secrets under the master key, random tokens and hashes.
//!
//! Nothing here does I/O or reads the clock: callers pass the time in. No secret ever appears in
//! a `Debug` or `Display` output or in an error.

pub mod jwe;
pub mod jwt;
pub mod password;
pub mod seal;
pub mod token;
pub mod totp;

pub use jwt::{AccessClaims, JwtError, SigningKey, VerifyingKey};
pub use password::{
    PasswordCheck, PolicyError, burn_equivalent_time, check_password_policy, hash_password,
    verify_password,
};
pub use seal::{open, seal};
pub use token::{ct_eq, normalize_recovery_code, random_token, recovery_codes, sha256, sha256_hex};
pub use totp::{TotpSecret, otpauth_url};

/// Failures of the cryptographic helpers. The messages never carry secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Rng,
    /// Hashing a password failed (should not happen with valid parameters).
    #[error("password hashing failed")]
    PasswordHash,
    /// An encoded value (base32, base64, sealed box, key) is not well formed.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Key material was rejected (wrong length, not a valid key).
    #[error("invalid key material")]
    InvalidKey,
    /// A sealed value could not be opened: wrong master key, wrong purpose or tampered data.
    #[error("sealed value could not be opened (wrong key or purpose, or tampered)")]
    Unseal,
}

/// Fills `out` from the operating system's secure random number generator.
pub(crate) fn fill_random(out: &mut [u8]) -> Result<(), CryptoError> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(out)
        .map_err(|_| CryptoError::Rng)
}

/// Like [`fill_random`], for the callers whose signature has no error: a failing system RNG
/// must never produce a weak secret, so this stops the operation instead.
pub(crate) fn fill_random_or_panic(out: &mut [u8]) {
    if fill_random(out).is_err() {
        panic!("the system random number generator failed");
    }
}

/// base64url without padding (RFC 4648 section 5), strict on decode.
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64url_is_strict() {
        assert_eq!(b64url_encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(b64url_decode("-_8=").is_none(), "padding refused");
        assert!(b64url_decode("+/8").is_none(), "standard alphabet refused");
        assert!(
            b64url_decode("-_9").is_none(),
            "non-canonical trailing bits refused"
        );
    }

    #[test]
    fn errors_carry_no_data() {
        assert_eq!(
            CryptoError::Malformed("base32").to_string(),
            "malformed base32"
        );
        let mut a = [0u8; 32];
        fill_random(&mut a).unwrap();
        assert_ne!(a, [0u8; 32]);
    }
}
