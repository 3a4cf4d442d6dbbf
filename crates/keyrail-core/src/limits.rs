//! Configuration values for limits: a rate written `N/window` (`"30/15m"`) and a duration written
//! `15m`, `30s`, `1h` or `2d`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time in whole seconds, written `<n><s|m|h|d>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    secs: u64,
}

impl Span {
    pub const fn from_secs(secs: u64) -> Self {
        Self { secs }
    }

    pub const fn secs(self) -> u64 {
        self.secs
    }
}

fn unit_secs(unit: &str) -> Option<u64> {
    match unit {
        "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        "d" => Some(86_400),
        _ => None,
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let err =
            || format!("expected a duration like \"30s\", \"15m\", \"1h\" or \"2d\", got {s:?}");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (digits, unit) = s.split_at(split);
        let n: u64 = if digits.is_empty() {
            1
        } else {
            digits.parse().map_err(|_| err())?
        };
        let secs = n
            .checked_mul(unit_secs(unit).ok_or_else(err)?)
            .ok_or_else(err)?;
        if secs == 0 || secs > 366 * 86_400 {
            return Err(format!("{s:?} must be between 1s and 366d"));
        }
        Ok(Self { secs })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.secs;
        match () {
            _ if s.is_multiple_of(86_400) => write!(f, "{}d", s / 86_400),
            _ if s.is_multiple_of(3600) => write!(f, "{}h", s / 3600),
            _ if s.is_multiple_of(60) => write!(f, "{}m", s / 60),
            _ => write!(f, "{s}s"),
        }
    }
}

/// At most `count` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub window: Span,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (count, window) = s
            .split_once('/')
            .ok_or_else(|| format!("expected \"N/window\" like \"30/15m\", got {s:?}"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("expected \"N/window\" like \"30/15m\", got {s:?}"))?;
        if count == 0 {
            return Err(format!("{s:?}: the count must be at least 1"));
        }
        let window: Span = window.trim().parse()?;
        Ok(Self { count, window })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.window)
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(Span);
serde_via_str!(Rate);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_defaults() {
        let r: Rate = "30/15m".parse().unwrap();
        assert_eq!((r.count, r.window.secs()), (30, 900));
        assert_eq!("6000/1m".parse::<Rate>().unwrap().window.secs(), 60);
        assert_eq!("10/1h".parse::<Rate>().unwrap().window.secs(), 3600);
        assert_eq!("100/m".parse::<Rate>().unwrap().window.secs(), 60);
        assert_eq!("15m".parse::<Span>().unwrap().secs(), 900);
        assert_eq!("30m".parse::<Span>().unwrap().to_string(), "30m");
        assert_eq!("90s".parse::<Span>().unwrap().to_string(), "90s");
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let e = "ten".parse::<Rate>().unwrap_err();
        assert!(e.contains("N/window") && e.contains("ten"), "{e}");
        for bad in [
            "0/1m",
            "5/0m",
            "5/1w",
            "5/",
            "/1m",
            "-1/1m",
            "5/1.5m",
            "99999999999/1m",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        for bad in ["", "m5", "5", "5 m", "400d"] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn rate_display_round_trips(count in 1u32..1_000_000, secs in 1u64..(366 * 86_400)) {
            let r = Rate { count, window: Span::from_secs(secs) };
            prop_assert_eq!(r.to_string().parse::<Rate>(), Ok(r));
        }

        #[test]
        fn rate_parse_never_panics(s in "\\PC{0,20}") {
            let _ = s.parse::<Rate>();
        }
    }
}
