//! Loading the configuration: embedded defaults, then the TOML file, then `KEYRAIL_*`
//! environment variables (`__` between nested keys). Errors name the offending key and where the
//! value came from.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use keyrail_server::config::{Config, DEFAULTS_TOML};

pub fn load(file: Option<&Path>) -> Result<Config, String> {
    let mut figment = Figment::from(Toml::string(DEFAULTS_TOML));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(format!("config file {} not found", path.display()));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Env::prefixed("KEYRAIL_").split("__"));
    let config: Config = figment.extract().map_err(describe)?;
    config.validate()?;
    Ok(config)
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
        let c = load(Some(&file)).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.limits.login_per_ip.count, 100);
        assert_eq!(c.limits.signup_per_ip.count, 10);
    }

    #[test]
    fn verify_per_ip_is_off_unless_set() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keyrail.toml");
        std::fs::write(&file, "").unwrap();
        assert!(load(Some(&file)).unwrap().limits.verify_per_ip.is_none());
        std::fs::write(&file, "[limits]\nverify_per_ip = \"100000/1m\"\n").unwrap();
        let rate = load(Some(&file)).unwrap().limits.verify_per_ip.unwrap();
        assert_eq!((rate.count, rate.window.secs()), (100_000, 60));
        std::fs::write(&file, "[limits]\nverify_per_ip = \"lots\"\n").unwrap();
        let e = load(Some(&file)).unwrap_err();
        assert!(e.contains("limits.verify_per_ip"), "{e}");
    }
}
