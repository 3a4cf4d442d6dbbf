//! Loading the configuration: embedded defaults, then the TOML file, then `KEYRAIL_*`
//! environment variables (`__` between nested keys). Errors name the offending key and where the
//! value came from. An unknown key in the file is an error; an environment variable `KEYRAIL_*`
//! that names no key is only a warning (wrappers and scripts set such variables for themselves).

use std::path::Path;
use std::sync::OnceLock;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use keyrail_server::config::{Config, DEFAULTS_TOML};

const ENV_PREFIX: &str = "KEYRAIL_";

/// The configuration and warnings to log once logging is set up.
pub fn load(file: Option<&Path>) -> Result<(Config, Vec<String>), String> {
    let mut figment = Figment::from(Toml::string(DEFAULTS_TOML));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(format!("config file {} not found", path.display()));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(
        Env::prefixed(ENV_PREFIX)
            .split("__")
            .filter(|key| is_key(key.as_str())),
    );
    let config: Config = figment.extract().map_err(describe)?;
    config.validate()?;
    let warnings =
        unknown_env_vars(std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()))
            .into_iter()
            .map(|name| format!("environment variable {name} names no configuration key; ignored"))
            .collect();
    Ok((config, warnings))
}

/// Whether `path` (`limits.login_per_ip`, any case) is a configuration key or table.
fn is_key(path: &str) -> bool {
    static DEFAULTS: OnceLock<toml::Table> = OnceLock::new();
    let defaults = DEFAULTS
        .get_or_init(|| toml::from_str(DEFAULTS_TOML).expect("the embedded defaults parse"));
    let path = path.to_ascii_lowercase();
    let mut segments = path.split('.');
    let Some(mut node) = segments.next().and_then(|first| defaults.get(first)) else {
        return false;
    };
    for segment in segments {
        match node.as_table().and_then(|t| t.get(segment)) {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

/// The `KEYRAIL_*` variables among `names` that name no configuration key (figment matches the
/// prefix in any case).
fn unknown_env_vars(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut unknown: Vec<String> = names
        .into_iter()
        .filter(|name| {
            name.get(..ENV_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
                && !is_key(&name[ENV_PREFIX.len()..].replace("__", "."))
        })
        .collect();
    unknown.sort();
    unknown
}

fn describe(err: figment::Error) -> String {
    let mut lines = Vec::new();
    for e in err {
        let key = e.path.join(".");
        let source = e
            .metadata
            .as_ref()
            .map(|m| match &m.source {
                Some(src) => format!(" ({} {src})", m.name),
                None => format!(" ({})", m.name),
            })
            .unwrap_or_default();
        let what = match &e.kind {
            figment::error::Kind::UnknownField(field, _) => {
                // figment's path may or may not already end at the unknown field.
                let full = if key.is_empty() {
                    field.clone()
                } else if key == *field || key.ends_with(&format!(".{field}")) {
                    key.clone()
                } else {
                    format!("{key}.{field}")
                };
                format!("unknown configuration key `{full}`{source}")
            }
            kind if key.is_empty() => format!("{kind}{source}"),
            kind => format!("configuration key `{key}`{source}: {kind}"),
        };
        lines.push(what);
    }
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_limit_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keyrail.toml");
        std::fs::write(&file, "[limits]\nlogin_per_ip = \"ten\"\n").unwrap();
        let e = load(Some(&file)).unwrap_err();
        assert!(e.contains("limits.login_per_ip"), "{e}");
        assert!(e.contains("ten"), "{e}");
    }

    #[test]
    fn unknown_keys_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keyrail.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let e = load(Some(&file)).unwrap_err();
        assert!(e.contains("`lisen`"), "{e}");
        let e = load(Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(e.contains("not found"), "{e}");
    }

    #[test]
    fn file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keyrail.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9999\"\n[limits]\nlogin_per_ip = \"100/15m\"\n",
        )
        .unwrap();
        let (c, _) = load(Some(&file)).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.limits.login_per_ip.count, 100);
        assert_eq!(c.limits.signup_per_ip.count, 10);
    }

    #[test]
    fn verify_per_ip_is_off_unless_set() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keyrail.toml");
        std::fs::write(&file, "").unwrap();
        assert!(load(Some(&file)).unwrap().0.limits.verify_per_ip.is_none());
        std::fs::write(&file, "[limits]\nverify_per_ip = \"100000/1m\"\n").unwrap();
        let rate = load(Some(&file)).unwrap().0.limits.verify_per_ip.unwrap();
        assert_eq!((rate.count, rate.window.secs()), (100_000, 60));
        std::fs::write(&file, "[limits]\nverify_per_ip = \"lots\"\n").unwrap();
        let e = load(Some(&file)).unwrap_err();
        assert!(e.contains("limits.verify_per_ip"), "{e}");
    }

    #[test]
    fn environment_variables_that_name_no_key_are_reported_not_fatal() {
        let names = [
            "KEYRAIL_LISTEN",
            "KEYRAIL_LIMITS__LOGIN_PER_IP",
            "keyrail_dev",
            "KEYRAIL_BIN",
            "KEYRAIL_LIMITS__NOPE",
            "KEYRAIL_LISTEN__PORT",
            "PATH",
            "KEYRAILX",
        ];
        assert_eq!(
            unknown_env_vars(names.iter().map(|s| s.to_string())),
            [
                "KEYRAIL_BIN",
                "KEYRAIL_LIMITS__NOPE",
                "KEYRAIL_LISTEN__PORT"
            ]
        );
        assert!(is_key("limits.login_per_ip") && is_key("LISTEN") && is_key("limits"));
        assert!(!is_key("bin") && !is_key("limits.nope") && !is_key(""));
    }
}
