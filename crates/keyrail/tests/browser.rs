//! The console in a real browser: Debian's `chromium`, driven by `playwright-core` (npm, no
//! browser download) through the click-through tests in `tests/browser/*.test.mjs`, against
//! the real binary. Screenshots of each page at 1280 px and 360 px wide land in
//! `target/console-screenshots/`.
//!
//! Needs Node 20, `/usr/bin/chromium` (Debian packages `chromium`) and the test's packages
//! (`cd crates/keyrail/tests/browser && npm ci`). Without them the test prints `SKIPPED: ...`
//! and passes, except under `CI`, where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{in_ci, serve_with};

const CHROMIUM: &str = "/usr/bin/chromium";

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Why the browser tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    if !Path::new(&chromium).exists() {
        return Some(format!("{chromium} is missing (apt-get install chromium)"));
    }
    if !tests_dir().join("node_modules/playwright-core").is_dir() {
        return Some(
            "crates/keyrail/tests/browser/node_modules is missing (cd crates/keyrail/tests/browser && npm ci)"
                .into(),
        );
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("node --version failed: {}", o.status)),
        Err(e) => Some(format!("node cannot run: {e}")),
    }
}

#[test]
fn the_console_works_in_a_real_browser() {
    if let Some(why) = missing() {
        if in_ci() {
            panic!("{why}; CI is set, so the browser tests must run");
        }
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (created, init_stderr) = common::init_superuser(dir.path());
    let admin_password = init_stderr
        .lines()
        .find_map(|l| l.split("(shown once): ").nth(1))
        .expect("keyrail init prints the password it made")
        .trim()
        .to_owned();
    // Every test signs up its own people from this one address.
    let (_server, port) = serve_with(
        dir.path(),
        &[
            ("KEYRAIL_LIMITS__SIGNUP_PER_IP", "1000/1h"),
            ("KEYRAIL_LIMITS__LOGIN_PER_IP", "1000/15m"),
        ],
    );
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots");
    let out = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .current_dir(tests_dir())
        .env("KEYRAIL_URL", format!("http://127.0.0.1:{port}"))
        .env("SCREENSHOT_DIR", &shots)
        .env(
            "KEYRAIL_SUPERUSER_KEY",
            created["api_key"].as_str().unwrap(),
        )
        .env("KEYRAIL_SUPERUSER_EMAIL", "admin@example.com")
        .env("KEYRAIL_SUPERUSER_PASSWORD", admin_password)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(
        out.status.success(),
        "browser tests failed:\n{report}\nserver log:\n{}",
        std::fs::read_to_string(dir.path().join("keyrail.log")).unwrap_or_default()
    );
    assert!(
        shots.join("keys-1280.png").exists() && shots.join("keys-360.png").exists(),
        "screenshots in {}",
        shots.display()
    );
}
