//! The OpenAPI document against the real binary, checked by schemathesis (`--checks all`, a
//! superuser's key, a fixed seed and 20 examples per operation): no answer the document does
//! not declare (ST103), and no request the document calls valid refused (ST202), except the
//! two rules a JSON schema cannot say, each recognised by the server's exact message:
//! - a password that is long enough but easy to guess (signup, password reset, password change);
//! - forward-auth given `?workspace_id=` and `X-Keyrail-Workspace` naming different workspaces.
//!
//! Needs schemathesis 4.32.5 (`python3 -m pip install schemathesis==4.32.5`). Without it the
//! test prints `SKIPPED: ...` and passes, except under `CI`, where it fails.

mod common;

use common::{in_ci, keyrail, serve_with};

use std::process::{Command, Stdio};

const VERSION: &str = "4.32.5";

/// The refusals of schema-valid requests that the schema cannot rule out (see the module doc).
const UNEXPRESSIBLE: [(&str, &str); 4] = [
    ("POST /api/v1/auth/signup", "password is too easy to guess"),
    (
        "POST /api/v1/auth/password/reset",
        "password is too easy to guess",
    ),
    (
        "POST /api/v1/profile/password",
        "password is too easy to guess",
    ),
    (
        "GET /api/v1/forward-auth",
        "workspace_id and X-Keyrail-Workspace name different workspaces",
    ),
];

fn schemathesis_missing() -> Option<String> {
    match Command::new("schemathesis")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains(VERSION) => None,
        Ok(o) => Some(format!(
            "schemathesis is not {VERSION}: {}",
            String::from_utf8_lossy(&o.stdout).trim()
        )),
        Err(e) => Some(format!("schemathesis cannot run: {e}")),
    }
}

/// The failure blocks of schemathesis's text output: each from `Test Case ID` to the next.
fn failure_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut operation = String::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        let heading = line.trim_matches('_').trim();
        if line.starts_with("___") && heading.contains(" /") {
            if let Some(b) = block.take() {
                out.push((operation.clone(), b));
            }
            operation = heading.to_owned();
        } else if line.contains("Test Case ID:") {
            if let Some(b) = block.take() {
                out.push((operation.clone(), b));
            }
            block = Some(String::new());
        } else if line.starts_with("====") {
            if let Some(b) = block.take() {
                out.push((operation.clone(), b));
            }
        } else if let Some(b) = block.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    out
}

#[test]
fn the_openapi_document_declares_every_answer_and_accepts_every_valid_request() {
    if let Some(why) = schemathesis_missing() {
        let fix = format!("python3 -m pip install schemathesis=={VERSION}");
        if in_ci() {
            panic!("{why}; CI is set, so the schemathesis test must run: {fix}");
        }
        eprintln!("SKIPPED: {why} (to run it: {fix})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let init = keyrail(dir.path())
        .args(["init", "--email", "admin@example.com"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(init.status.success(), "keyrail init: {init:?}");
    let stdout = String::from_utf8_lossy(&init.stdout);
    let created: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("keyrail init printed no JSON: {stdout}"));
    let key = created["api_key"].as_str().expect("init gives an api_key");

    // schemathesis sends thousands of requests from one key and one address: the limits
    // would answer most of them 429 (still declared; the point is to test the rest).
    let high = "1000000/1m";
    let (_server, port) = serve_with(
        dir.path(),
        &[
            ("KEYRAIL_LIMITS__GLOBAL_PER_PRINCIPAL", high),
            ("KEYRAIL_LIMITS__LOGIN_PER_IP", high),
            ("KEYRAIL_LIMITS__SIGNUP_PER_IP", high),
            ("KEYRAIL_LIMITS__PASSWORD_RESET_PER_IP", high),
            ("KEYRAIL_LIMITS__FAILED_AUTH_PER_IP", high),
        ],
    );
    let report = dir.path().join("report.json");
    let out = Command::new("schemathesis")
        .arg("run")
        .arg(format!("http://127.0.0.1:{port}/api/v1/openapi.json"))
        .args(["--checks", "all", "--max-examples", "20", "--workers", "1"])
        .args(["--seed", "1", "--no-color", "--report", "json"])
        .arg("--report-json-path")
        .arg(&report)
        .arg("-H")
        .arg(format!("Authorization: Bearer {key}"))
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&report)
            .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{text}")),
    )
    .unwrap();
    let ops = &report["operations"];
    assert!(
        report["complete"] == true
            && ops["total"].as_u64().unwrap_or(0) > 50
            && ops["tested"] == ops["total"],
        "schemathesis did not test every operation: {ops}\n{text}"
    );

    let mut wrong = Vec::new();
    for failure in report["failures"].as_array().unwrap() {
        let code = failure["code"].as_str().unwrap_or("");
        let operations = failure["operations"].as_array().unwrap();
        match code {
            "ST103" => wrong.push(format!("ST103 undocumented status code in {operations:?}")),
            "ST202" => {
                for op in operations {
                    let op = op.as_str().unwrap_or("");
                    if !UNEXPRESSIBLE.iter().any(|(o, _)| *o == op) {
                        wrong.push(format!("ST202 schema-valid request rejected by {op}"));
                    }
                }
            }
            other => eprintln!("schemathesis also reports {other} in {operations:?}"),
        }
    }
    // Where an operation may refuse for a rule the schema cannot say, it must be that rule.
    for (op, block) in failure_blocks(&text) {
        if !block.contains("ST202") {
            continue;
        }
        let known = UNEXPRESSIBLE
            .iter()
            .any(|(o, message)| *o == op && block.contains(message));
        if !known {
            wrong.push(format!("ST202 in {op}:\n{block}"));
        }
    }
    assert!(wrong.is_empty(), "{}\n\n{text}", wrong.join("\n"));
}
