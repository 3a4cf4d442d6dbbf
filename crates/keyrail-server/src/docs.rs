//! The `/docs` page: a self-contained HTML reference rendered from the OpenAPI document at
//! start. No scripts or styles from elsewhere, so it works with no internet.

use std::fmt::Write;

use serde_json::Value;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn anchor(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A compact one-line rendering of a schema: `$ref`s become links.
fn schema_summary(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{}\">{}</a>", anchor(name), esc(name));
    }
    if let Some(items) = schema.get("items") {
        return format!("array of {}", schema_summary(items));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(alts)) = schema.get(key) {
            let parts: Vec<String> = alts.iter().map(schema_summary).collect();
            return parts.join(if key == "allOf" { " &amp; " } else { " | " });
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) => esc(t),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(esc)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    }
}

fn content_summary(content: Option<&Value>) -> String {
    let Some(Value::Object(map)) = content else {
        return String::new();
    };
    map.iter()
        .map(|(ct, media)| {
            let schema = media.get("schema").map(schema_summary).unwrap_or_default();
            format!("<code>{}</code> {}", esc(ct), schema)
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fff}\
header{background:#14213d;color:#fff;padding:1rem 2rem}header h1{margin:0;font-size:1.4rem}\
main{max-width:72rem;margin:0 auto;padding:1rem 2rem}nav ul{columns:2;padding-left:1rem}\
section.op{border:1px solid #d0d7de;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}\
.m{display:inline-block;min-width:4.5rem;font-weight:700;font-family:monospace}\
.get{color:#0969da}.post{color:#1a7f37}.patch,.put{color:#9a6700}.delete{color:#cf222e}\
code,pre{font-family:ui-monospace,monospace;background:#f6f8fa;padding:0 .2rem}\
pre{padding:.5rem;overflow:auto}table{border-collapse:collapse;width:100%}\
td,th{border-top:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}";

/// Renders the whole page from the OpenAPI document.
pub fn render(spec: &Value) -> String {
    let title = spec["info"]["title"].as_str().unwrap_or("API");
    let version = spec["info"]["version"].as_str().unwrap_or("");
    let description = spec["info"]["description"].as_str().unwrap_or("");
    let mut ops: Vec<(String, String, &Value)> = Vec::new();
    if let Some(Value::Object(paths)) = spec.get("paths") {
        for (path, item) in paths {
            if let Value::Object(methods) = item {
                for (method, op) in methods {
                    if matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                        ops.push((path.clone(), method.clone(), op));
                    }
                }
            }
        }
    }
    let tag_of = |op: &Value| {
        op["tags"][0]
            .as_str()
            .map_or_else(|| "other".to_owned(), str::to_owned)
    };
    ops.sort_by(|a, b| (tag_of(a.2), &a.0, &a.1).cmp(&(tag_of(b.2), &b.0, &b.1)));

    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{t} API reference</title><style>{STYLE}</style></head><body>\
         <header><h1>{t} API reference <small>{v}</small></h1></header><main>\
         <p>{d}</p><p>The machine-readable document is at <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p>\
         <nav aria-label=\"Endpoints\"><h2>Endpoints</h2><ul>",
        t = esc(title),
        v = esc(version),
        d = esc(description)
    );
    for (path, method, _) in &ops {
        let _ = write!(
            h,
            "<li><a href=\"#{a}\"><span class=\"m {m}\">{M}</span> {p}</a></li>",
            a = anchor(&format!("{method}{path}")),
            m = esc(method),
            M = esc(&method.to_uppercase()),
            p = esc(path)
        );
    }
    h.push_str("</ul></nav><h2>Operations</h2>");
    for (path, method, op) in &ops {
        let _ = write!(
            h,
            "<section class=\"op\" id=\"{a}\"><h3><span class=\"m {m}\">{M}</span> <code>{p}</code></h3>",
            a = anchor(&format!("{method}{path}")),
            m = esc(method),
            M = esc(&method.to_uppercase()),
            p = esc(path)
        );
        for key in ["summary", "description"] {
            if let Some(s) = op.get(key).and_then(Value::as_str) {
                let _ = write!(h, "<p>{}</p>", esc(s));
            }
        }
        if let Some(Value::Array(sec)) = op.get("security") {
            let names: Vec<String> = sec
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|o| o.keys().cloned())
                .collect();
            if !names.is_empty() {
                let _ = write!(h, "<p>Credentials: {}</p>", esc(&names.join(", ")));
            }
        }
        if let Some(Value::Array(params)) = op.get("parameters") {
            h.push_str(
                "<table><tr><th>Parameter</th><th>In</th><th>Type</th><th>Description</th></tr>",
            );
            for p in params {
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(p["name"].as_str().unwrap_or("")),
                    if p["required"].as_bool() == Some(true) {
                        " (required)"
                    } else {
                        ""
                    },
                    esc(p["in"].as_str().unwrap_or("")),
                    p.get("schema").map(schema_summary).unwrap_or_default(),
                    esc(p["description"].as_str().unwrap_or(""))
                );
            }
            h.push_str("</table>");
        }
        if let Some(body) = op.get("requestBody") {
            let _ = write!(
                h,
                "<p>Request body: {}</p>",
                content_summary(body.get("content"))
            );
        }
        h.push_str("<table><tr><th>Status</th><th>Description</th><th>Body</th></tr>");
        if let Some(Value::Object(responses)) = op.get("responses") {
            for (status, r) in responses {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(status),
                    esc(r["description"].as_str().unwrap_or("")),
                    content_summary(r.get("content"))
                );
            }
        }
        h.push_str("</table></section>");
    }
    h.push_str("<h2>Schemas</h2>");
    if let Some(Value::Object(schemas)) = spec.pointer("/components/schemas") {
        for (name, schema) in schemas {
            let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
            let _ = write!(
                h,
                "<section class=\"op\" id=\"schema-{}\"><h3>{}</h3><pre>{}</pre></section>",
                anchor(name),
                esc(name),
                esc(&pretty)
            );
        }
    }
    h.push_str("</main></body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_it_renders() {
        let spec = serde_json::json!({
            "info": {"title": "<x>", "version": "1"},
            "paths": {"/a": {"get": {"summary": "<script>alert(1)</script>", "responses": {"200": {"description": "ok"}}}}}
        });
        let html = render(&spec);
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("<code>/a</code>"));
    }
}
