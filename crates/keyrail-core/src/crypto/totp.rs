//! TOTP (RFC 6238 on top of HOTP, RFC 4226): SHA-1, 6 digits, 30-second steps, the parameters
//! every authenticator app supports.

use std::fmt;

use ring::hmac;
use zeroize::Zeroizing;

use super::{CryptoError, fill_random};
use crate::time::Timestamp;

/// Seconds per time step.
pub const PERIOD_SECS: i64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Length of a freshly generated secret (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;
/// Shortest secret accepted from outside (128 bits, RFC 4226's minimum).
pub const MIN_SECRET_LEN: usize = 16;
/// Longest secret accepted from outside.
pub const MAX_SECRET_LEN: usize = 64;

/// A TOTP shared secret. Zeroed on drop; its `Debug` shows nothing.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    /// 20 fresh random bytes.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut b = Zeroizing::new(vec![0u8; SECRET_LEN]);
        fill_random(&mut b)?;
        Ok(Self(b))
    }

    /// A secret from raw bytes (e.g. after opening the sealed copy), 16..=64 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) {
            return Err(CryptoError::InvalidKey);
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// Reads RFC 4648 base32; lowercase, spaces and `=` padding are tolerated.
    pub fn from_base32(s: &str) -> Result<Self, CryptoError> {
        let bytes = base32_decode(s).ok_or(CryptoError::Malformed("base32"))?;
        Self::from_bytes(&bytes)
    }

    /// RFC 4648 base32, uppercase, without padding (what authenticator apps expect).
    pub fn base32(&self) -> String {
        base32_encode(&self.0)
    }

    /// The raw secret, to seal it or compute a code.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The code for the time step `step`.
    pub fn code_at(&self, step: u64) -> u32 {
        code_at(&self.0, step)
    }

    /// Checks a submitted code, see [`verify`].
    pub fn verify(&self, code: &str, now: Timestamp, last_used_step: Option<u64>) -> Option<u64> {
        verify(self, code, now, last_used_step)
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(***)")
    }
}

/// The `otpauth://` key URI for QR codes and authenticator apps:
/// `otpauth://totp/{issuer}:{account}?secret=..&issuer=..&algorithm=SHA1&digits=6&period=30`,
/// with issuer and account percent-encoded.
pub fn otpauth_url(secret: &TotpSecret, issuer: &str, account: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={PERIOD_SECS}",
        percent_encode(account),
        secret.base32(),
    )
}

/// The time step containing `now` (`None` before the Unix epoch).
pub fn step_at(now: Timestamp) -> Option<u64> {
    let secs = now.millis().div_euclid(1000);
    u64::try_from(secs.div_euclid(PERIOD_SECS)).ok()
}

/// The 6-digit SHA-1 code of `secret` for time step `step`.
pub fn code_at(secret: &[u8], step: u64) -> u32 {
    hotp(Alg::Sha1, secret, step, DIGITS)
}

/// Checks `code` against the steps `now - 1`, `now` and `now + 1` (one step of clock drift),
/// keeping only steps later than `last_used_step` so that an accepted code cannot be replayed
/// (RFC 6238 section 5.2). Returns the accepted step, to be stored as the new `last_used_step`.
/// Anything other than exactly 6 ASCII digits is refused. The comparison is constant time.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    now: Timestamp,
    last_used_step: Option<u64>,
) -> Option<u64> {
    let submitted = code.as_bytes();
    if submitted.len() != DIGITS as usize || !submitted.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let current = step_at(now)?;
    let mut accepted = None;
    for step in [
        current.checked_sub(1),
        Some(current),
        current.checked_add(1),
    ]
    .into_iter()
    .flatten()
    {
        let expected = format!("{:06}", code_at(secret.expose(), step));
        let matches = super::token::ct_eq(expected.as_bytes(), submitted);
        let fresh = last_used_step.is_none_or(|last| step > last);
        if matches && fresh && accepted.is_none() {
            accepted = Some(step);
        }
    }
    accepted
}

#[derive(Clone, Copy)]
enum Alg {
    Sha1,
    #[cfg_attr(not(test), allow(dead_code))]
    Sha256,
    #[cfg_attr(not(test), allow(dead_code))]
    Sha512,
}

/// HOTP (RFC 4226 section 5.3) with dynamic truncation, generic over the HMAC and digit count.
fn hotp(alg: Alg, key: &[u8], counter: u64, digits: u32) -> u32 {
    let alg = match alg {
        Alg::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        Alg::Sha256 => hmac::HMAC_SHA256,
        Alg::Sha512 => hmac::HMAC_SHA512,
    };
    let tag = hmac::sign(&hmac::Key::new(alg, key), &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    bin % 10u32.pow(digits)
}

const B32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(B32_ALPHABET[((acc >> bits) & 0x1f) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            B32_ALPHABET[((acc << (5 - bits)) & 0x1f) as usize],
        ));
    }
    out
}

fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut symbols = 0usize;
    for c in s
        .trim_end_matches(|c: char| c == '=' || c.is_whitespace())
        .chars()
    {
        if c.is_whitespace() {
            continue;
        }
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u32 - 'A' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => return None,
        };
        symbols += 1;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Valid base32 ends with 0, 2, 4, 5 or 7 symbols in its last group of 8.
    if matches!(symbols % 8, 1 | 3 | 6) {
        return None;
    }
    Some(out)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn rfc6238_appendix_b_vectors() {
        // (Unix time, SHA-1, SHA-256, SHA-512), 8 digits, T0 = 0, X = 30.
        let table: [(u64, u32, u32, u32); 6] = [
            (59, 94287082, 46119246, 90693936),
            (1111111109, 7081804, 68084774, 25091201),
            (1111111111, 14050471, 67062674, 99943326),
            (1234567890, 89005924, 91819424, 93441116),
            (2000000000, 69279037, 90698825, 38618901),
            (20000000000, 65353130, 77737706, 47863826),
        ];
        for (t, sha1, sha256, sha512) in table {
            let step = t / 30;
            assert_eq!(hotp(Alg::Sha1, SEED_SHA1, step, 8), sha1, "SHA1 at {t}");
            assert_eq!(
                hotp(Alg::Sha256, SEED_SHA256, step, 8),
                sha256,
                "SHA256 at {t}"
            );
            assert_eq!(
                hotp(Alg::Sha512, SEED_SHA512, step, 8),
                sha512,
                "SHA512 at {t}"
            );
        }
    }

    #[test]
    fn rfc4226_appendix_d_vectors() {
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, want) in expected.into_iter().enumerate() {
            assert_eq!(code_at(SEED_SHA1, counter as u64), want);
        }
    }

    #[test]
    fn base32_rfc4648_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "MY"),
            (b"fo", "MZXQ"),
            (b"foo", "MZXW6"),
            (b"foob", "MZXW6YQ"),
            (b"fooba", "MZXW6YTB"),
            (b"foobar", "MZXW6YTBOI"),
        ];
        for (raw, enc) in cases {
            assert_eq!(base32_encode(raw), enc);
            assert_eq!(base32_decode(enc).unwrap(), raw);
        }
        assert_eq!(base32_decode("mzxw6ytboi======").unwrap(), b"foobar");
        assert_eq!(base32_decode("MZXW 6YTB OI").unwrap(), b"foobar");
        assert!(base32_decode("MZXW6YTB1").is_none());
        assert!(base32_decode("M").is_none());
    }

    #[test]
    fn secrets() {
        let s = TotpSecret::generate().unwrap();
        assert_eq!(s.expose().len(), 20);
        let b32 = s.base32();
        assert_eq!(b32.len(), 32);
        assert!(!b32.contains('='));
        assert_eq!(TotpSecret::from_base32(&b32).unwrap().expose(), s.expose());
        assert_eq!(format!("{s:?}"), "TotpSecret(***)");
        assert!(TotpSecret::from_base32("MZXW6YTBOI").is_err(), "too short");
        assert!(TotpSecret::from_base32("not base32!").is_err());
        assert!(TotpSecret::from_bytes(&[0u8; 65]).is_err());
    }

    #[test]
    fn otpauth_url_format() {
        let s = TotpSecret::from_bytes(SEED_SHA1).unwrap();
        assert_eq!(
            otpauth_url(&s, "ACME Co", "john.doe@example.com"),
            "otpauth://totp/ACME%20Co:john.doe%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30"
        );
        assert!(otpauth_url(&s, "a:b&c", "é").starts_with("otpauth://totp/a%3Ab%26c:%C3%A9?"));
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }

    #[test]
    fn verify_accepts_one_step_of_drift_and_blocks_replay() {
        let s = TotpSecret::from_bytes(SEED_SHA1).unwrap();
        let now = at(1_111_111_111); // step 37037037
        let step = 37_037_037u64;
        let code = |st: u64| format!("{:06}", s.code_at(st));

        assert_eq!(verify(&s, &code(step), now, None), Some(step));
        assert_eq!(verify(&s, &code(step - 1), now, None), Some(step - 1));
        assert_eq!(verify(&s, &code(step + 1), now, None), Some(step + 1));
        assert_eq!(verify(&s, &code(step - 2), now, None), None);
        assert_eq!(verify(&s, &code(step + 2), now, None), None);

        // Replay: the same step, or an earlier one, is refused once used.
        assert_eq!(verify(&s, &code(step), now, Some(step)), None);
        assert_eq!(verify(&s, &code(step - 1), now, Some(step - 1)), None);
        assert_eq!(verify(&s, &code(step - 1), now, Some(step)), None);
        assert_eq!(verify(&s, &code(step + 1), now, Some(step)), Some(step + 1));
        assert_eq!(s.verify(&code(step), now, Some(step - 1)), Some(step));
    }

    #[test]
    fn verify_refuses_malformed_codes() {
        let s = TotpSecret::from_bytes(SEED_SHA1).unwrap();
        let now = at(59);
        let good = format!("{:06}", s.code_at(1));
        assert_eq!(verify(&s, &good, now, None), Some(1));
        for bad in [
            "",
            "12345",
            "1234567",
            &format!(" {good}"),
            &format!("{good} "),
            &format!("+{}", &good[1..]),
            "١٢٣٤٥٦",
            "abcdef",
        ] {
            assert_eq!(verify(&s, bad, now, None), None, "{bad:?}");
        }
        assert_eq!(verify(&s, &good, Timestamp::from_millis(-1), None), None);
        // At step 0 there is no step -1.
        assert_eq!(
            verify(&s, &format!("{:06}", s.code_at(0)), at(1), None),
            Some(0)
        );
    }

    proptest! {
        #[test]
        fn base32_round_trips(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(base32_decode(&base32_encode(&data)).unwrap(), data);
        }

        #[test]
        fn verify_never_panics(code in ".{0,12}", ms in any::<i64>(), last in any::<Option<u64>>()) {
            let s = TotpSecret::from_bytes(SEED_SHA1).unwrap();
            let _ = verify(&s, &code, Timestamp::from_millis(ms), last);
            let _ = TotpSecret::from_base32(&code);
        }
    }
}
