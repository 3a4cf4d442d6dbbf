//! The shape of API keys: generation, the display prefix, the checksum, and the store-free
//! precheck that verify runs first.
//!
//! A key is `<prefix>_<random>[<checksum>]`: the workspace prefix (`[a-z][a-z0-9]*`, so the first
//! `_` ends it), `length` characters drawn uniformly from the format's alphabet with the system
//! CSPRNG, and, for checksummed formats, 6 base62 characters (`0-9A-Za-z`) spelling the CRC32
//! (IEEE) of every byte before them, zero-padded on the left, as GitHub tokens do. The default
//! format gives `kr_` + 30 + 6 characters.
//!
//! Everything here is pure: no store, no clock. [`checksum_ok`] and [`FormatIndex::precheck`]
//! do not allocate, so verify can run them on every request.

use std::collections::HashMap;

use zeroize::Zeroizing;

use crate::model::{Alphabet, KeyFormat};
use crate::secret::Secret;

/// How many base62 characters the checksum takes (62^6 > 2^32 > 62^5).
pub const CHECKSUM_LEN: usize = 6;

/// Keys longer than this (in bytes) cannot be keys at all: [`Precheck::RejectShape`].
pub const MAX_KEY_BYTES: usize = 512;

/// How many characters of the body [`display_prefix`] shows after the workspace prefix.
pub const DISPLAY_BODY_CHARS: usize = 4;

/// The longest workspace prefix (`KeyFormat::validate` allows 1 to 16 characters).
const MAX_PREFIX_LEN: usize = 16;

/// The checksum's digits, most significant first.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new key of `format`: `prefix_` + `length` random characters + the checksum if the format
/// has one. The caller validates the format first (`KeyFormat::validate`); this does not.
///
/// # Panics
/// If the operating system's random number generator fails: a weak key is never returned.
pub fn generate(format: &KeyFormat) -> Secret {
    let alphabet = format.alphabet.chars();
    let length = usize::try_from(format.length).expect("key length fits in usize");
    let capacity =
        format.prefix.len() + 1 + length + if format.checksum { CHECKSUM_LEN } else { 0 };
    // Sized once so the buffer never reallocates (a reallocation would leave a copy behind),
    // and zeroed on drop should anything below panic.
    let mut key = Zeroizing::new(String::with_capacity(capacity));
    key.push_str(&format.prefix);
    key.push('_');

    let mut pool = Zeroizing::new([0u8; 64]);
    let mut next = pool.len();
    let mut produced = 0;
    while produced < length {
        if next == pool.len() {
            crate::crypto::fill_random_or_panic(&mut pool[..]);
            next = 0;
        }
        let byte = pool[next];
        next += 1;
        if let Some(i) = sample(byte, alphabet.len()) {
            key.push(char::from(alphabet[i]));
            produced += 1;
        }
    }

    if format.checksum {
        let digits = checksum_digits(key.as_bytes());
        key.extend(digits.iter().copied().map(char::from));
    }
    debug_assert_eq!(key.len(), capacity);
    Secret::new(std::mem::take(&mut *key))
}

/// Maps one uniformly random byte to a uniformly random index below `n` (`1..=256`), or
/// `None` when the byte falls in the incomplete last block and must be redrawn (rejection
/// sampling: a plain `byte % n` would favour the first `256 % n` characters).
fn sample(byte: u8, n: usize) -> Option<usize> {
    debug_assert!((1..=256).contains(&n));
    let byte = usize::from(byte);
    let limit = 256 - 256 % n;
    (byte < limit).then_some(byte % n)
}

/// The 6 base62 characters of the CRC32 (IEEE) of `bytes`, zero-padded on the left.
fn checksum_digits(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    encode_base62(crc32fast::hash(bytes))
}

fn encode_base62(mut v: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for digit in out.iter_mut().rev() {
        *digit = BASE62[(v % 62) as usize];
        v /= 62;
    }
    out
}

/// Whether the last [`CHECKSUM_LEN`] bytes of `key` are the checksum of the bytes before them.
/// The caller has made sure `key` is longer than the checksum.
fn checksum_matches(key: &[u8]) -> bool {
    let (head, check) = key.split_at(key.len() - CHECKSUM_LEN);
    checksum_digits(head) == *check
}

/// Whether `s` can be a workspace prefix: `[a-z][a-z0-9]*`, 1 to 16 characters.
fn is_prefix_shape(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=MAX_PREFIX_LEN).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Whether `c` is one of `alphabet`'s characters (the same set as `Alphabet::chars`).
fn in_alphabet(alphabet: Alphabet, c: u8) -> bool {
    match alphabet {
        Alphabet::Base62 => c.is_ascii_alphanumeric(),
        Alphabet::Hex => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
        Alphabet::Base36 => matches!(c, b'0'..=b'9' | b'a'..=b'z'),
    }
}

/// What a key shows in listings: the workspace prefix, `_`, and the first 4 characters of the
/// body (`sgw_6f45`), split at the first `_`. A shorter body is shown whole.
///
/// A key whose part before the first `_` is not a workspace prefix (an imported key of another
/// shape, `[a-z][a-z0-9]*` of at most 16 characters) shows only its first 4 characters, so a
/// long head of a secret is never displayed.
pub fn display_prefix(key: &str) -> String {
    match key.split_once('_') {
        Some((prefix, body)) if is_prefix_shape(prefix) => {
            let mut out = String::with_capacity(prefix.len() + 1 + 4 * DISPLAY_BODY_CHARS);
            out.push_str(prefix);
            out.push('_');
            out.extend(body.chars().take(DISPLAY_BODY_CHARS));
            out
        }
        _ => key.chars().take(DISPLAY_BODY_CHARS).collect(),
    }
}

/// For a key of shape `<prefix>_<body>` (non-empty prefix, split at the first `_`) whose body
/// is at least 7 characters: whether its last 6 characters are the base62 CRC32 of everything
/// before them. `None` for any other input. Allocation-free.
///
/// This says nothing about whether the key's format is checksummed; [`FormatIndex::precheck`]
/// decides what a failed checksum means.
pub fn checksum_ok(key: &str) -> Option<bool> {
    let (prefix, body) = key.split_once('_')?;
    if prefix.is_empty() || body.chars().nth(CHECKSUM_LEN).is_none() {
        return None;
    }
    // The body has at least 7 characters, so at least 7 bytes: the split below is in range.
    // It works on bytes, so a multibyte character among the last 6 bytes cannot panic; it
    // simply cannot match the (ASCII) checksum.
    Some(checksum_matches(key.as_bytes()))
}

/// The verdict of [`FormatIndex::precheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Precheck {
    /// The key may exist: hash it and look it up.
    LookUp,
    /// The key has the shape of a checksummed format of its prefix but the checksum fails:
    /// NOT_FOUND without a lookup.
    RejectChecksum,
    /// The input cannot be any key (empty, over [`MAX_KEY_BYTES`] bytes, or with whitespace,
    /// control or non-ASCII characters): NOT_FOUND without a lookup.
    RejectShape,
}

/// One checksummed shape under a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    /// `length + CHECKSUM_LEN`.
    body_len: usize,
    alphabet: Alphabet,
}

/// All the formats known under one prefix, summed up.
#[derive(Debug, Clone, Default)]
struct Summary {
    /// Some format with this prefix has no checksum: a key of any shape may be genuine.
    unchecked: bool,
    /// The checksummed formats' shapes, deduplicated.
    shapes: Vec<Shape>,
}

/// What verify needs to reject keys with a bad checksum without the store: the formats of all
/// workspaces, summed up per prefix (several workspaces may share a prefix).
///
/// [`insert`](Self::insert) only ever widens what is looked up, so inserting a workspace's new
/// format while keeping its old one leaves the keys issued under the old format verifiable.
/// [`rebuild`](Self::rebuild) forgets everything not passed to it: feed it every format that
/// live keys may still carry, not only the workspaces' current ones.
#[derive(Debug, Clone, Default)]
pub struct FormatIndex {
    by_prefix: HashMap<Box<str>, Summary>,
}

impl FormatIndex {
    /// An index of `formats`.
    pub fn new(formats: impl IntoIterator<Item = KeyFormat>) -> Self {
        let mut index = Self::default();
        index.extend(formats);
        index
    }

    /// Adds one format (a new workspace, or a workspace's new format).
    pub fn insert(&mut self, format: &KeyFormat) {
        let summary = self
            .by_prefix
            .entry(Box::from(format.prefix.as_str()))
            .or_default();
        if !format.checksum {
            summary.unchecked = true;
            return;
        }
        let shape = Shape {
            body_len: usize::try_from(format.length)
                .unwrap_or(usize::MAX)
                .saturating_add(CHECKSUM_LEN),
            alphabet: format.alphabet,
        };
        if !summary.shapes.contains(&shape) {
            summary.shapes.push(shape);
        }
    }

    /// Adds several formats.
    pub fn extend(&mut self, formats: impl IntoIterator<Item = KeyFormat>) {
        for format in formats {
            self.insert(&format);
        }
    }

    /// Replaces the whole index with `formats`.
    pub fn rebuild(&mut self, formats: impl IntoIterator<Item = KeyFormat>) {
        self.by_prefix.clear();
        self.extend(formats);
    }

    /// How many distinct prefixes the index knows.
    pub fn prefixes(&self) -> usize {
        self.by_prefix.len()
    }

    /// Step 1 of verify: whether `key` is worth hashing and looking up. Allocation-free.
    ///
    /// [`Precheck::RejectChecksum`] only when every known format with the key's prefix is
    /// checksummed, the body has the length and the alphabet of one of them (and a base62
    /// checksum), and the checksum fails. Imported keys of any other shape are looked up.
    pub fn precheck(&self, key: &str) -> Precheck {
        let bytes = key.as_bytes();
        if bytes.is_empty()
            || bytes.len() > MAX_KEY_BYTES
            || !bytes.iter().all(u8::is_ascii_graphic)
        {
            return Precheck::RejectShape;
        }
        // From here on the key is printable ASCII: byte offsets are character offsets.
        let Some((prefix, body)) = key.split_once('_') else {
            return Precheck::LookUp;
        };
        let Some(summary) = self.by_prefix.get(prefix) else {
            return Precheck::LookUp;
        };
        if summary.unchecked {
            return Precheck::LookUp;
        }
        let body = body.as_bytes();
        if body.len() <= CHECKSUM_LEN {
            return Precheck::LookUp;
        }
        let (random, check) = body.split_at(body.len() - CHECKSUM_LEN);
        if !check.iter().all(u8::is_ascii_alphanumeric) {
            return Precheck::LookUp;
        }
        let has_shape = summary.shapes.iter().any(|shape| {
            shape.body_len == body.len() && random.iter().all(|&c| in_alphabet(shape.alphabet, c))
        });
        if !has_shape || checksum_matches(bytes) {
            Precheck::LookUp
        } else {
            Precheck::RejectChecksum
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALPHABETS: [Alphabet; 3] = [Alphabet::Base62, Alphabet::Hex, Alphabet::Base36];

    fn fmt(prefix: &str, alphabet: Alphabet, length: u32, checksum: bool) -> KeyFormat {
        KeyFormat {
            prefix: prefix.into(),
            alphabet,
            length,
            checksum,
        }
    }

    /// A fixed default-format key and its pinned checksum (computed independently with
    /// Python's `zlib.crc32`: 0xEED53FD9 = 4006952921 = base62 `4NAlUv`).
    const KNOWN: &str = "kr_0123456789abcdefghijABCDEFGHIJ4NAlUv";

    fn all_in(s: &str, alphabet: Alphabet) -> bool {
        s.bytes().all(|c| alphabet.chars().contains(&c))
    }

    #[test]
    fn crc_is_ieee_and_base62_is_zero_padded_big_endian() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(&checksum_digits(b"123456789"), b"3jZRME");
        assert_eq!(&encode_base62(0), b"000000");
        assert_eq!(&encode_base62(61), b"00000z");
        assert_eq!(&encode_base62(62), b"000010");
        assert_eq!(&encode_base62(u32::MAX), b"4gfFC3");
        assert_eq!(BASE62, Alphabet::Base62.chars());
    }

    #[test]
    fn known_vector_is_pinned() {
        assert_eq!(
            &checksum_digits(&KNOWN.as_bytes()[..KNOWN.len() - 6]),
            b"4NAlUv"
        );
        assert_eq!(checksum_ok(KNOWN), Some(true));
        let index = FormatIndex::new([KeyFormat::default()]);
        assert_eq!(index.precheck(KNOWN), Precheck::LookUp);
        assert_eq!(display_prefix(KNOWN), "kr_0123");
    }

    #[test]
    fn default_key_is_kr_plus_36() {
        let key = generate(&KeyFormat::default());
        let key = key.expose();
        assert_eq!(key.len(), 3 + 36);
        assert!(key.starts_with("kr_"));
        assert!(all_in(&key[3..], Alphabet::Base62));
        assert_eq!(checksum_ok(key), Some(true));
    }

    #[test]
    fn contract_examples_are_expressible() {
        let sgw = fmt("sgw", Alphabet::Hex, 32, false);
        sgw.validate().unwrap();
        let key = generate(&sgw);
        let key = key.expose();
        assert_eq!(key.len(), 4 + 32);
        assert!(key.starts_with("sgw_"));
        assert!(
            key[4..]
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        );
        assert_eq!(display_prefix(key), format!("sgw_{}", &key[4..8]));

        let gr = fmt("gr", Alphabet::Base36, 20, false);
        gr.validate().unwrap();
        let key = generate(&gr);
        let key = key.expose();
        assert_eq!(key.len(), 3 + 20);
        assert!(key.starts_with("gr_"));
        assert!(
            key[3..]
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'z'))
        );

        // The contract's literal examples have those shapes, and are looked up.
        let index = FormatIndex::new([sgw.clone(), gr.clone()]);
        assert_eq!(
            index.precheck("sgw_a1b2c3d4e5f6789012345678abcdef90"),
            Precheck::LookUp
        );
        assert_eq!(index.precheck("gr_4k7n9m2p8q3r5t6v8w1x"), Precheck::LookUp);
        assert_eq!(display_prefix("sgw_6f45a1b2"), "sgw_6f45");
    }

    #[test]
    fn rejection_sampling_is_unbiased() {
        for alphabet in ALPHABETS {
            let n = alphabet.chars().len();
            let mut counts = vec![0u32; n];
            let mut rejected = 0;
            for b in 0..=255u8 {
                match sample(b, n) {
                    Some(i) => counts[i] += 1,
                    None => rejected += 1,
                }
            }
            assert!(counts.iter().all(|&c| c == 256 / n as u32), "{alphabet:?}");
            assert_eq!(rejected, 256 % n);
        }
    }

    #[test]
    fn in_alphabet_matches_alphabet_chars() {
        for alphabet in ALPHABETS {
            for c in 0..=255u8 {
                assert_eq!(
                    in_alphabet(alphabet, c),
                    alphabet.chars().contains(&c),
                    "{alphabet:?} {c}"
                );
            }
        }
    }

    #[test]
    fn display_prefix_cases() {
        assert_eq!(display_prefix("kr_abcdefgh"), "kr_abcd");
        assert_eq!(display_prefix("kr_ab"), "kr_ab");
        assert_eq!(display_prefix("kr_"), "kr_");
        assert_eq!(display_prefix("sk_live_abcdef"), "sk_live");
        assert_eq!(display_prefix("kr_ééééé"), "kr_éééé");
        // Not a workspace prefix: only the first 4 characters.
        assert_eq!(display_prefix("AKIAABCDEFGH"), "AKIA");
        assert_eq!(display_prefix("averyveryverylongsecret_x"), "aver");
        assert_eq!(display_prefix("_abcdef"), "_abc");
        assert_eq!(display_prefix("éé"), "éé");
        assert_eq!(display_prefix(""), "");
    }

    #[test]
    fn checksum_ok_cases() {
        assert_eq!(checksum_ok(""), None);
        assert_eq!(checksum_ok("kr"), None);
        assert_eq!(checksum_ok("kr_"), None);
        assert_eq!(checksum_ok("kr_abcdef"), None); // 6 chars: no room for random
        assert_eq!(checksum_ok("_abcdefgh"), None); // no prefix
        assert_eq!(checksum_ok("kr_éééééé"), None); // 6 characters, 12 bytes
        assert_eq!(checksum_ok("kr_abcdefg"), Some(false));
        assert_eq!(checksum_ok("kr_aéééééé"), Some(false));
        // A minimal valid one.
        let head = "kr_a";
        let digits = checksum_digits(head.as_bytes());
        let key = format!("{head}{}", std::str::from_utf8(&digits).unwrap());
        assert_eq!(checksum_ok(&key), Some(true));
        // The prefix is covered too.
        assert_eq!(checksum_ok(&KNOWN.replacen("kr", "ks", 1)), Some(false));
    }

    #[test]
    fn every_single_character_flip_of_the_body_is_rejected() {
        let formats = [
            KeyFormat::default(),
            fmt("sgw", Alphabet::Hex, 32, true),
            fmt("gr", Alphabet::Base36, 20, true),
        ];
        let index = FormatIndex::new(formats.clone());
        let mut keys: Vec<String> = formats
            .iter()
            .map(|f| generate(f).expose().to_owned())
            .collect();
        keys.push(KNOWN.to_owned());
        for (key, format) in keys.iter().zip(formats.iter().chain([&formats[0]])) {
            assert_eq!(index.precheck(key), Precheck::LookUp);
            let body_start = format.prefix.len() + 1;
            let random_end = key.len() - CHECKSUM_LEN;
            for pos in body_start..key.len() {
                let alphabet = if pos < random_end {
                    format.alphabet
                } else {
                    Alphabet::Base62
                };
                for &c in alphabet.chars() {
                    if c == key.as_bytes()[pos] {
                        continue;
                    }
                    let mut flipped = key.clone().into_bytes();
                    flipped[pos] = c;
                    let flipped = String::from_utf8(flipped).unwrap();
                    assert_eq!(
                        index.precheck(&flipped),
                        Precheck::RejectChecksum,
                        "{flipped}"
                    );
                    assert_eq!(checksum_ok(&flipped), Some(false));
                }
            }
        }
    }

    #[test]
    fn reject_shape() {
        let index = FormatIndex::new([KeyFormat::default()]);
        for bad in [
            "",
            " kr_0123456789abcdefghijABCDEFGHIJ4NAlUv",
            "kr_0123456789abcdefghijABCDEFGHIJ4NAlUv\n",
            "kr_0123456789abcdefghij ABCDEFGHIJ4NAlU",
            "kr_0123456789abcdefghij\tBCDEFGHIJ4NAlUv",
            "kr_0123456789abcdefghij\u{7f}BCDEFGHIJ4NAlUv",
            "kr_0123456789abcdefghijéBCDEFGHIJ4NAlU",
            "ключ",
        ] {
            assert_eq!(index.precheck(bad), Precheck::RejectShape, "{bad:?}");
        }
        let max = "a".repeat(MAX_KEY_BYTES);
        assert_eq!(index.precheck(&max), Precheck::LookUp);
        let over = "a".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(index.precheck(&over), Precheck::RejectShape);
        assert_eq!(FormatIndex::default().precheck(""), Precheck::RejectShape);
    }

    #[test]
    fn other_shapes_are_looked_up() {
        let bad = "kr_0123456789abcdefghijABCDEFGHIJ4NAlUw"; // last char flipped
        let mut index = FormatIndex::new([KeyFormat::default()]);
        assert_eq!(index.precheck(bad), Precheck::RejectChecksum);

        // Unknown prefix, no underscore, wrong length, characters outside the alphabet, a
        // checksum slot that is not base62: all imported-key shapes, looked up.
        for key in [
            "ks_0123456789abcdefghijABCDEFGHIJ4NAlUw",
            "kr0123456789abcdefghijABCDEFGHIJ4NAlUw",
            "kr_0123456789abcdefghijABCDEFGHIJ4NAlU",
            "kr_0123456789abcdefghijABCDEFGHIJK4NAlUw",
            "kr_0123456789abcdefghij-BCDEFGHIJ4NAlUw",
            "kr_0123456789abcdefghijABCDEFGHIJ4NA-Uw",
            "kr_live_123456789abcdefghABCDEFGHIJ4NAlUw",
            "kr_abc",
            "kr_",
            "_",
        ] {
            assert_eq!(index.precheck(key), Precheck::LookUp, "{key}");
        }

        // Another workspace with the same prefix but no checksum: anything may be genuine.
        index.insert(&fmt("kr", Alphabet::Base62, 36, false));
        assert_eq!(index.precheck(bad), Precheck::LookUp);
        assert_eq!(index.prefixes(), 1);

        // Rebuilding forgets it.
        index.rebuild([KeyFormat::default()]);
        assert_eq!(index.precheck(bad), Precheck::RejectChecksum);
        index.rebuild(Vec::<KeyFormat>::new());
        assert_eq!(index.precheck(bad), Precheck::LookUp);
        assert_eq!(index.prefixes(), 0);
    }

    #[test]
    fn several_checksummed_formats_under_one_prefix() {
        let hex40 = fmt("kr", Alphabet::Hex, 40, true);
        let index = FormatIndex::new([KeyFormat::default(), hex40.clone()]);
        let a = generate(&KeyFormat::default());
        let b = generate(&hex40);
        for key in [a.expose(), b.expose()] {
            assert_eq!(index.precheck(key), Precheck::LookUp);
            let mut broken = key.to_owned().into_bytes();
            let last = broken.len() - 1;
            broken[last] = if broken[last] == b'0' { b'1' } else { b'0' };
            let broken = String::from_utf8(broken).unwrap();
            assert_eq!(index.precheck(&broken), Precheck::RejectChecksum);
        }
        // A hex-format length filled with base62 letters matches neither shape.
        let odd = format!("kr_{}{}", "Z".repeat(40), "000000");
        assert_eq!(index.precheck(&odd), Precheck::LookUp);
    }

    #[test]
    fn base62_output_covers_the_alphabet_evenly() {
        let format = KeyFormat::default();
        let mut counts = [0u32; 128];
        for _ in 0..2000 {
            let key = generate(&format);
            let body = &key.expose()[3..3 + 30];
            for c in body.bytes() {
                counts[usize::from(c)] += 1;
            }
        }
        // 60,000 draws over 62 characters: about 968 each, standard deviation about 31.
        let expected = 2000.0 * 30.0 / 62.0;
        for &c in Alphabet::Base62.chars() {
            let n = f64::from(counts[usize::from(c)]);
            assert!(n > 0.0, "{} never appears", char::from(c));
            assert!(
                (n - expected).abs() < 0.2 * expected,
                "{} appears {n} times, expected about {expected}",
                char::from(c)
            );
        }
        let total: u32 = counts.iter().sum();
        assert_eq!(total, 60_000);
    }

    #[test]
    fn keys_do_not_repeat() {
        let format = KeyFormat::default();
        let keys: std::collections::HashSet<String> = (0..1000)
            .map(|_| generate(&format).expose().to_owned())
            .collect();
        assert_eq!(keys.len(), 1000);
    }

    fn arb_alphabet() -> impl Strategy<Value = Alphabet> {
        prop_oneof![
            Just(Alphabet::Base62),
            Just(Alphabet::Hex),
            Just(Alphabet::Base36)
        ]
    }

    /// The shortest valid length for `alphabet` (at least 96 bits of randomness).
    fn min_length(alphabet: Alphabet) -> u32 {
        (0..=KeyFormat::MAX_LENGTH)
            .find(|&length| fmt("a", alphabet, length, true).validate().is_ok())
            .unwrap()
    }

    fn arb_format() -> impl Strategy<Value = KeyFormat> {
        ("[a-z][a-z0-9]{0,15}", arb_alphabet(), any::<bool>()).prop_flat_map(
            |(prefix, alphabet, checksum)| {
                (min_length(alphabet)..=KeyFormat::MAX_LENGTH)
                    .prop_map(move |length| fmt(&prefix, alphabet, length, checksum))
            },
        )
    }

    proptest! {
        #[test]
        fn generated_keys_are_well_formed(format in arb_format(), others in prop::collection::vec(arb_format(), 0..4)) {
            prop_assert!(format.validate().is_ok());
            let key = generate(&format);
            let key = key.expose();
            let p = format.prefix.len();
            let extra = if format.checksum { CHECKSUM_LEN } else { 0 };
            prop_assert_eq!(key.len(), p + 1 + format.length as usize + extra);
            prop_assert_eq!(&key[..p], format.prefix.as_str());
            prop_assert_eq!(&key[p..=p], "_");
            let random = &key[p + 1..key.len() - extra];
            prop_assert!(all_in(random, format.alphabet), "{}", key);
            if format.checksum {
                prop_assert_eq!(checksum_ok(key), Some(true));
                prop_assert!(all_in(&key[key.len() - CHECKSUM_LEN..], Alphabet::Base62));
            }
            prop_assert_eq!(display_prefix(key), format!("{}_{}", format.prefix, &key[p + 1..p + 5]));

            let mut index = FormatIndex::new([format.clone()]);
            prop_assert_eq!(index.precheck(key), Precheck::LookUp);
            index.extend(others);
            prop_assert_eq!(index.precheck(key), Precheck::LookUp);
        }

        #[test]
        fn any_single_change_to_a_checksummed_body_is_rejected(
            format in arb_format(), pos in any::<prop::sample::Index>(), pick in any::<prop::sample::Index>(),
        ) {
            let format = KeyFormat { checksum: true, ..format };
            let index = FormatIndex::new([format.clone()]);
            let key = generate(&format);
            let key = key.expose();
            let body_start = format.prefix.len() + 1;
            let pos = body_start + pos.index(key.len() - body_start);
            let alphabet = if pos < key.len() - CHECKSUM_LEN { format.alphabet } else { Alphabet::Base62 };
            let original = key.as_bytes()[pos];
            let choices: Vec<u8> = alphabet.chars().iter().copied().filter(|&c| c != original).collect();
            let mut flipped = key.as_bytes().to_vec();
            flipped[pos] = *pick.get(&choices);
            let flipped = String::from_utf8(flipped).unwrap();
            prop_assert_eq!(index.precheck(&flipped), Precheck::RejectChecksum);
        }

        #[test]
        fn precheck_agrees_with_checksum_ok_on_the_shape(random in "[0-9A-Za-z]{30}", check in "[0-9A-Za-z]{6}") {
            let index = FormatIndex::new([KeyFormat::default()]);
            let key = format!("kr_{random}{check}");
            let expected = if checksum_ok(&key) == Some(true) { Precheck::LookUp } else { Precheck::RejectChecksum };
            prop_assert_eq!(index.precheck(&key), expected);
        }

        #[test]
        fn nothing_panics_on_arbitrary_strings(s in any::<String>(), t in "\\PC{0,40}", u in "[a-z]{1,3}_.{0,40}") {
            let index = FormatIndex::new([
                KeyFormat::default(),
                fmt("a", Alphabet::Hex, 24, true),
                fmt("ab", Alphabet::Base36, 19, true),
                fmt("abc", Alphabet::Base62, 17, false),
            ]);
            for input in [s.as_str(), t.as_str(), u.as_str()] {
                let verdict = index.precheck(input);
                let printable = !input.is_empty() && input.len() <= MAX_KEY_BYTES
                    && input.bytes().all(|c| c.is_ascii_graphic());
                prop_assert_eq!(verdict == Precheck::RejectShape, !printable);
                if checksum_ok(input).is_some() {
                    prop_assert!(input.contains('_'));
                }
                let shown = display_prefix(input);
                prop_assert!(shown.chars().count() <= MAX_PREFIX_LEN + 1 + DISPLAY_BODY_CHARS);
                prop_assert!(input.starts_with(&shown));
            }
        }
    }
}
