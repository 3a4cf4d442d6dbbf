//! Emails as keyrail compares them. Two addresses a person cannot tell apart must be one
//! account: `ａｄａ@example.com` (fullwidth), `ada\u{200B}@example.com` (a zero-width space),
//! `аda@example.com` (a Cyrillic `а`) and `ada̲@example.com` (a combining mark) would otherwise
//! each sign up beside `ada@example.com` and pass for it in a member list or an audit log.
//!
//! So an email is NFKC-normalised and lower-cased; invisible characters and combining marks
//! left after normalisation are refused; and an address may not mix Latin, Greek and Cyrillic
//! letters, the scripts whose letters look alike (an address wholly in one of them is fine).

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Why an email was refused (the API answers 400 on `email` with this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailError {
    Shape,
    Invisible,
    MixedScripts,
}

impl EmailError {
    pub fn message(self) -> &'static str {
        match self {
            Self::Shape => "email is not a valid address",
            Self::Invisible => "email holds invisible characters or combining marks",
            Self::MixedScripts => {
                "email mixes Latin, Greek or Cyrillic letters (look-alike characters)"
            }
        }
    }
}

/// Normalises (trim, NFKC, lower case) and checks an email.
pub fn normalize(raw: &str) -> Result<String, EmailError> {
    let folded: String = raw.trim().nfkc().collect::<String>().to_lowercase();
    // Lower-casing can leave a string that is no longer NFKC (rarely); normalise once more.
    let email: String = folded.nfkc().collect();
    if email.chars().any(|c| invisible(c) || is_combining_mark(c)) {
        return Err(EmailError::Invisible);
    }
    let (local, domain) = email.split_once('@').ok_or(EmailError::Shape)?;
    let shape_ok = !local.is_empty()
        && local.len() <= 64
        && email.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !domain.contains('@')
        && email.chars().all(|c| {
            !c.is_whitespace() && !c.is_control() && !matches!(c, '<' | '>' | ',' | ';' | '"')
        });
    if !shape_ok {
        return Err(EmailError::Shape);
    }
    let mut seen: Option<Script> = None;
    for script in email.chars().filter_map(confusable_script) {
        match seen {
            None => seen = Some(script),
            Some(s) if s != script => return Err(EmailError::MixedScripts),
            Some(_) => {}
        }
    }
    Ok(email)
}

/// Characters that render as nothing (or as a space) and are not whitespace: zero-width
/// spaces and joiners, direction marks, fillers, variation selectors, tags.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Greek,
    Cyrillic,
}

/// The script of a letter, for the three whose letters are confused with each other.
fn confusable_script(c: char) -> Option<Script> {
    match c {
        'a'..='z' | 'A'..='Z' => Some(Script::Latin),
        '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}' if c.is_alphabetic() => {
            Some(Script::Latin)
        }
        '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' if c.is_alphabetic() => {
            Some(Script::Greek)
        }
        '\u{0400}'..='\u{052F}' | '\u{1C80}'..='\u{1C8F}' | '\u{A640}'..='\u{A69F}'
            if c.is_alphabetic() =>
        {
            Some(Script::Cyrillic)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_are_one_address_or_refused() {
        assert_eq!(normalize("  Ada@Example.COM ").unwrap(), "ada@example.com");
        // Fullwidth letters fold to ASCII.
        assert_eq!(
            normalize("ＡＤＡ@ｅｘａｍｐｌｅ.com").unwrap(),
            "ada@example.com"
        );
        // A precomposed and a decomposed é are the same address.
        assert_eq!(
            normalize("jose\u{0301}@example.com").unwrap(),
            normalize("jos\u{00E9}@example.com").unwrap()
        );
        for invisible in [
            "ada\u{200B}@example.com",
            "a\u{200D}da@example.com",
            "ada@exam\u{00AD}ple.com",
            "\u{FEFF}ada@example.com",
            "ada\u{E0061}@example.com",
            "ada\u{0332}@example.com",
        ] {
            assert_eq!(
                normalize(invisible),
                Err(EmailError::Invisible),
                "{invisible:?}"
            );
        }
        for mixed in [
            "\u{0430}da@example.com",
            "ada@ex\u{0430}mple.com",
            "\u{03BF}mega@example.com",
        ] {
            assert_eq!(normalize(mixed), Err(EmailError::MixedScripts), "{mixed:?}");
        }
        // Wholly in one script, or with a script that has no look-alikes, is fine.
        assert!(normalize("\u{0438}\u{0432}\u{0430}\u{043D}@\u{043F}\u{0440}\u{0438}\u{043C}\u{0435}\u{0440}.\u{0440}\u{0444}").is_ok());
        assert!(normalize("用户@example.com").is_ok());
        assert!(normalize("müller@example.de").is_ok());
    }

    #[test]
    fn shapes_are_checked() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@.com",
            "ada@example..com",
            "a@b@example.com",
            "<ada>@example.com",
        ] {
            assert_eq!(normalize(bad), Err(EmailError::Shape), "{bad}");
        }
    }

    proptest::proptest! {
        /// Normalising is idempotent and never panics.
        #[test]
        fn normalising_twice_changes_nothing(raw in "\\PC{0,40}@\\PC{1,20}\\.[a-z]{2,4}") {
            if let Ok(once) = normalize(&raw) {
                proptest::prop_assert_eq!(normalize(&once), Ok(once.clone()));
            }
        }
    }
}
