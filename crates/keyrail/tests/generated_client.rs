//! A client generated from the running server's OpenAPI document, with a mainstream generator
//! (openapi-python-client), drives a key's lifecycle and refused calls
//! (`tests/generated_client/drive.py`): every answer comes back as the typed model the document
//! declares, errors included (a 401 documented nowhere would come back as `None`).
//!
//! Needs openapi-python-client 0.29.1 (`python3 -m pip install openapi-python-client==0.29.1`).
//! Without it the test prints `SKIPPED: ...` and passes, except under `CI`, where it fails.

mod common;

use std::process::{Command, Stdio};

use common::{init_superuser, python_tool, request, serve_with};

const VERSION: &str = "0.29.1";

#[test]
fn a_generated_client_gets_typed_answers_for_a_keys_lifecycle_and_its_refusals() {
    if !python_tool("openapi-python-client", VERSION, "generated-client") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (created, _) = init_superuser(dir.path());
    let (_server, port) = serve_with(dir.path(), &[]);

    let spec = request(port, "GET", "/api/v1/openapi.json", &[], None).unwrap();
    assert_eq!(spec.status, 200);
    let spec_path = dir.path().join("openapi.json");
    std::fs::write(&spec_path, &spec.body).unwrap();
    let out = dir.path().join("generated");
    let generated = Command::new("openapi-python-client")
        .arg("generate")
        .arg("--path")
        .arg(&spec_path)
        .arg("--output-path")
        .arg(out.join("keyrail_client"))
        .args(["--meta", "none"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "the generator refused the document:\n{}\n{}",
        String::from_utf8_lossy(&generated.stdout),
        String::from_utf8_lossy(&generated.stderr)
    );

    let driver = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/generated_client/drive.py"
    );
    let ran = Command::new("python3")
        .arg(driver)
        .env("PYTHONPATH", &out)
        .env("KEYRAIL_URL", format!("http://127.0.0.1:{port}"))
        .env("KEYRAIL_API_KEY", created["api_key"].as_str().unwrap())
        .env(
            "KEYRAIL_WORKSPACE",
            created["workspace_id"].as_str().unwrap(),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        ran.status.success() && said.trim_end().ends_with("ok"),
        "{said}"
    );
}
