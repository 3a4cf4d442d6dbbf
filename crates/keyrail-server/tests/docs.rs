//! The API reference at `/docs` (API.md "Conventions": served by the binary itself, works
//! offline): Swagger UI over `/api/v1/openapi.json`, its scripts and styles served by this
//! server under a strict Content-Security-Policy, and a document it can show well: every
//! operation under a described tag, an example for every request body and every shared error.

mod common;

use common::{TestServer, json};
use serde_json::Value;

/// The `src` and `href` values of the page's tags.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').expect("a closed attribute");
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

/// Every `http://` or `https://` URL in `text`.
fn urls(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for scheme in ["http://", "https://"] {
        for (i, _) in text.match_indices(scheme) {
            let url: String = text[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '<' | ')'))
                .collect();
            out.push(url);
        }
    }
    out
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn the_page_loads_swagger_ui_from_this_server_only() {
    let s = TestServer::start().await;
    let resp = s.get("/docs").await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/html"));
    let csp = header(&resp, "content-security-policy").to_owned();
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for wanted in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(directives.contains(&wanted), "{wanted} not in {csp}");
    }
    assert!(
        !directives
            .iter()
            .any(|d| d.starts_with("script-src") && (d.contains("unsafe") || d.contains(':'))),
        "scripts must come from this server only: {csp}"
    );
    assert_eq!(header(&resp, "x-frame-options"), "DENY");
    assert_eq!(header(&resp, "referrer-policy"), "no-referrer");
    let html = resp.text().await.unwrap();

    // Nothing from elsewhere, and no inline script: every script has a `src` on this server.
    let own = s.url("/");
    let foreign: Vec<String> = urls(&html)
        .into_iter()
        .filter(|u| !u.starts_with(&own))
        .collect();
    assert!(
        foreign.is_empty(),
        "the page names other hosts: {foreign:?}"
    );
    assert!(!html.contains("src=\"//") && !html.contains("href=\"//"));
    let scripts = html.matches("<script").count();
    let with_src = html.matches("<script src=\"/").count();
    assert!(
        scripts >= 2 && scripts == with_src,
        "inline script in:\n{html}"
    );
    assert!(
        !html
            .split_whitespace()
            .any(|w| w.starts_with("on") && w.contains('=') || w.contains("javascript:")),
        "inline event handler in:\n{html}"
    );
    assert!(!html.contains("<style"), "inline style element in:\n{html}");

    // What it names is served, each with its type; the Swagger UI files for good (their path
    // names the version), the page's own script asked again every time.
    let refs = references(&html);
    let mut kinds = Vec::new();
    for r in refs.iter().filter(|r| *r != "data:,") {
        assert!(r.starts_with('/'), "{r}");
        let resp = s.get(r).await;
        assert_eq!(resp.status(), 200, "{r}");
        let ty = header(&resp, "content-type").to_owned();
        let cache = header(&resp, "cache-control").to_owned();
        assert_eq!(header(&resp, "x-content-type-options"), "nosniff", "{r}");
        let body = resp.bytes().await.unwrap();
        if r.ends_with(".js") {
            assert!(ty.starts_with("text/javascript"), "{r}: {ty}");
        } else if r.ends_with(".css") {
            assert!(ty.starts_with("text/css"), "{r}: {ty}");
        } else {
            assert!(ty.starts_with("application/json"), "{r}: {ty}");
            continue;
        }
        if r.contains("/swagger-ui-5.") {
            assert_eq!(cache, "public, max-age=31536000, immutable", "{r}");
            assert!(body.len() > 100_000, "{r}: {} bytes", body.len());
            kinds.push(if r.ends_with(".js") { "bundle" } else { "css" });
        } else {
            assert_eq!(cache, "no-cache", "{r}");
            let init = String::from_utf8(body.to_vec()).unwrap();
            for setting in [
                "SwaggerUIBundle(",
                "url: \"/api/v1/openapi.json\"",
                "filter: true",
                "deepLinking: true",
                "tryItOutEnabled: true",
                "persistAuthorization: false",
                "validatorUrl: null",
            ] {
                assert!(init.contains(setting), "{r} lacks {setting}:\n{init}");
            }
            assert!(urls(&init).is_empty(), "{r} names other hosts");
            kinds.push("init");
        }
    }
    kinds.sort_unstable();
    assert_eq!(kinds, ["bundle", "css", "init"], "{refs:?}");
    // The init script comes after the bundle it starts.
    let bundle_at = html.find("swagger-ui-bundle.js").unwrap();
    let init_at = html.find("/docs/init.js").unwrap();
    assert!(bundle_at < init_at);
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_takes_gzip_gets_the_same_assets_gzipped() {
    use std::io::Read;
    let s = TestServer::start().await;
    let html = s.get("/docs").await.text().await.unwrap();
    let assets: Vec<String> = references(&html)
        .into_iter()
        .filter(|r| r.contains("/swagger-ui-5."))
        .collect();
    assert_eq!(assets.len(), 2, "{assets:?}");
    for path in assets {
        let plain = s.get(&path).await;
        assert_eq!(header(&plain, "content-encoding"), "", "{path}");
        let plain = plain.bytes().await.unwrap();
        let zipped = s
            .http
            .get(s.url(&path))
            .header("accept-encoding", "gzip, br")
            .send()
            .await
            .unwrap();
        assert_eq!(zipped.status(), 200);
        assert_eq!(header(&zipped, "content-encoding"), "gzip", "{path}");
        assert!(
            header(&zipped, "vary")
                .to_ascii_lowercase()
                .contains("accept-encoding")
        );
        let zipped = zipped.bytes().await.unwrap();
        assert!(zipped.len() * 2 < plain.len(), "{path}: not much smaller");
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert!(unpacked == plain, "{path}: the gzipped copy differs");

        let refused = s
            .http
            .get(s.url(&path))
            .header("accept-encoding", "gzip;q=0, identity")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&refused, "content-encoding"), "", "{path}");
    }
    s.stop().await;
}

/// A `$ref`'s target, or the value itself.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(ptr) => doc
            .pointer(ptr.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{ptr} missing")),
        None => v,
    }
}

fn has_example(v: &Value) -> bool {
    v.get("example").is_some_and(|e| !e.is_null())
        || v.get("examples")
            .is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty()) || e.is_object())
}

#[tokio::test]
async fn every_operation_has_a_described_tag_examples_and_its_errors() {
    let s = TestServer::start().await;
    let (status, doc) = json(s.get("/api/v1/openapi.json").await).await;
    assert_eq!(status, 200);
    let tags: Vec<(&str, &str)> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["description"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let mut used = std::collections::BTreeSet::new();
    let mut bodies = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{} {path}", method.to_uppercase());
            let op_tags = op["tags"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            assert_eq!(op_tags.len(), 1, "{what}: tags {op_tags:?}");
            let tag = op_tags[0].as_str().unwrap();
            assert!(
                tags.iter().any(|(n, d)| *n == tag && !d.is_empty()),
                "{what}: tag {tag} is not described in the document's tags"
            );
            used.insert(tag);
            if let Some(body) = op.get("requestBody") {
                bodies += 1;
                // JSON, or a form for the OAuth endpoints (RFC 6749).
                let media = resolve(&doc, body)["content"]
                    .as_object()
                    .and_then(|c| c.values().next())
                    .unwrap_or_else(|| panic!("{what}: a request body without content"));
                let schema = resolve(&doc, &media["schema"]);
                assert!(
                    has_example(media) || has_example(schema),
                    "{what}: the request body has no example"
                );
            }
            let responses = &op["responses"];
            for status in ["408", "500"] {
                let r = resolve(&doc, &responses[status]);
                assert!(r["description"].is_string(), "{what}: no {status}");
            }
        }
    }
    assert!(bodies > 20, "{bodies} request bodies");
    assert_eq!(
        used.len(),
        tags.len(),
        "a tag no operation uses: {tags:?} vs {used:?}"
    );

    // The shared error answers, each with an example body as the server sends it.
    let shared = doc["components"]["responses"].as_object().unwrap();
    let mut examples = std::collections::BTreeMap::new();
    for (name, r) in shared {
        let media = &r["content"]["application/json"];
        let example = &media["example"];
        assert!(
            example["error"].is_string() && example["code"].is_string(),
            "{name}: {r}"
        );
        assert_eq!(
            media["schema"]["$ref"], "#/components/schemas/ErrorBody",
            "{name}"
        );
        examples.insert(name.as_str(), example.clone());
    }
    assert_eq!(
        examples["Unauthorized"],
        serde_json::json!({"error": "Missing or invalid API key", "code": "missing_credentials"})
    );
    assert_eq!(
        examples["Forbidden"],
        serde_json::json!({"error": "Insufficient scope", "code": "insufficient_scope", "required": ["keys:write"]})
    );
    assert_eq!(examples["TooManyRequests"]["code"], "too_many_requests");
    assert_eq!(examples["ServiceUnavailable"]["code"], "store_unavailable");
    assert_eq!(
        examples["InternalError"],
        serde_json::json!({"error": "Internal server error", "code": "internal_error"})
    );
    assert_eq!(
        examples["RequestTimeout"],
        serde_json::json!({"error": "Request timed out", "code": "request_timeout"})
    );
    // Where an operation describes such an answer itself, it shows the same example.
    let create_key = &doc["paths"]["/api/v1/w/{workspace_id}/keys"]["post"]["responses"];
    assert_eq!(
        resolve(&doc, &create_key["403"])["content"]["application/json"]["example"],
        examples["Forbidden"]
    );
    // A created key and a verify answer come with examples too.
    for schema in ["NewKeyOut", "VerifyOut"] {
        assert!(
            has_example(&doc["components"]["schemas"][schema]),
            "{schema} has no example"
        );
    }
    s.stop().await;
}

/// Debian's `chromium`, headless, on `url`: what it wrote to stderr (console messages
/// included) and the output file, or `None` (after `SKIPPED:`) when it cannot run here.
fn chromium(url: &str, mode: &[&str]) -> Option<String> {
    let profile = tempfile::tempdir().unwrap();
    let run = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            // Runs the page's timers and requests (the document's fetch) before dumping.
            "--virtual-time-budget=15000",
            "--window-size=1280,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(mode)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .output();
    match run {
        Ok(out) if out.status.success() => Some(format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Ok(out) if !common::in_ci() => {
            eprintln!("SKIPPED: chromium failed here: {out:?}");
            None
        }
        Err(e) if !common::in_ci() => {
            eprintln!("SKIPPED: chromium cannot run here ({e}): apt-get install chromium");
            None
        }
        other => panic!("chromium must run under CI: {other:?}"),
    }
}

/// The page in a real browser, under its own Content-Security-Policy: every tag of the document
/// becomes a section with its operations, and the browser refuses nothing. A screenshot is
/// left at `target/docs/docs-1280.png`.
#[tokio::test]
async fn chromium_shows_every_operation_grouped_by_tag() {
    let s = TestServer::start().await;
    let (_, doc) = json(s.get("/api/v1/openapi.json").await).await;
    let url = s.url("/docs");
    let Some(out) = tokio::task::spawn_blocking(move || chromium(&url, &["--dump-dom"]))
        .await
        .unwrap()
    else {
        return s.stop().await;
    };
    let refused: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("Content Security Policy") || l.contains(":CONSOLE"))
        .collect();
    assert!(
        refused.is_empty(),
        "the browser said:\n{}",
        refused.join("\n")
    );
    for tag in doc["tags"].as_array().unwrap() {
        let name = tag["name"].as_str().unwrap();
        assert!(
            out.contains(&format!("id=\"operations-tag-{name}\"")),
            "no section for tag {name}"
        );
    }
    let mut ops = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops += 1;
            let id = format!(
                "id=\"operations-{}-{}\"",
                op["tags"][0].as_str().unwrap(),
                op["operationId"].as_str().unwrap()
            );
            assert!(out.contains(&id), "{method} {path} not shown ({id})");
        }
    }
    assert!(ops > 50);

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/docs");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("docs-1280.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let url = s.url("/docs");
    tokio::task::spawn_blocking(move || chromium(&url, &[&arg]))
        .await
        .unwrap();
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000));
    s.stop().await;
}
