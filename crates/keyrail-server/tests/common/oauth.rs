//! An MCP client's part in the OAuth flow, and the person's on the consent page: register,
//! open `/oauth/authorize`, press Allow, trade the code.

use keyrail_core::apps::oauth::s256;
use serde_json::{Value, json};

use super::console::{Console, Page, form_body};
use super::{TestServer, json};

/// A PKCE verifier the helpers use (its challenge is `s256(VERIFIER)`).
pub const VERIFIER: &str = "a-verifier-of-forty-three-characters-at-least-0123";
/// The redirect URI clients register (loopback: any port matches).
pub const REDIRECT: &str = "http://127.0.0.1/callback";
/// The redirect URI the helpers' requests use.
pub const REDIRECT_AT: &str = "http://127.0.0.1:49152/callback";

/// Registers a public client; its id.
pub async fn new_client(s: &TestServer, name: &str) -> String {
    let (status, body) = json(
        s.post_json(
            "/oauth/register",
            &json!({"client_name": name, "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["client_id"].as_str().unwrap().to_owned()
}

/// `<public_url>/mcp`, as the protected-resource metadata names it.
pub async fn resource(s: &TestServer) -> String {
    let (_, prm) = json(s.get("/.well-known/oauth-protected-resource").await).await;
    prm["resource"].as_str().unwrap().to_owned()
}

pub fn authorize_path(params: &[(&str, &str)]) -> String {
    format!("/oauth/authorize?{}", form_body(params))
}

/// The parameters of an authorization request, `overrides` replacing or removing (empty value)
/// some.
pub fn params<'a>(
    client_id: &'a str,
    resource: &'a str,
    challenge: &'a str,
    overrides: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT_AT),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("state", "xyz-state"),
        ("resource", resource),
        ("scope", "keys:read keys:write members:admin"),
    ];
    for (k, v) in overrides {
        p.retain(|(name, _)| name != k);
        if !v.is_empty() {
            p.push((k, v));
        }
    }
    p
}

/// The hidden fields of a page's form, unescaped.
pub fn hidden_fields(page: &Page) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = page.html.as_str();
    let marker = "<input type=\"hidden\" name=\"";
    while let Some(at) = rest.find(marker) {
        let after = &rest[at + marker.len()..];
        let name_end = after.find('"').unwrap();
        let name = after[..name_end].to_owned();
        let v_at = after.find("value=\"").unwrap() + 7;
        let v_end = after[v_at..].find('"').unwrap();
        out.push((name, unescape(&after[v_at..v_at + v_end])));
        rest = &after[v_at + v_end..];
    }
    out
}

/// HTML character references as askama writes them.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';').map(|e| at + e).unwrap();
        let entity = &rest[at + 1..end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            e if e.starts_with("#x") => {
                char::from_u32(u32::from_str_radix(&e[2..], 16).unwrap()).unwrap()
            }
            e if e.starts_with('#') => char::from_u32(e[1..].parse().unwrap()).unwrap(),
            e => panic!("unknown entity &{e};"),
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The query parameter `name` of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Opens the consent page for `p` and presses Allow in `ws`: the answer (a redirect).
pub async fn consent(c: &mut Console<'_>, p: &[(&str, &str)], ws: &str) -> Page {
    let page = c.get(&authorize_path(p)).await;
    assert_eq!(page.status, 200, "{}", page.html);
    allow(c, &page, ws).await
}

/// [`consent`], then the code from the redirect.
pub async fn code_for(c: &mut Console<'_>, p: &[(&str, &str)], ws: &str) -> String {
    let back = consent(c, p, ws).await;
    assert_eq!(back.status, 303, "{}", back.html);
    query_param(back.location(), "code").expect("a code")
}

/// Presses Allow on a consent page (`page`) in `ws`.
pub async fn allow(c: &mut Console<'_>, page: &Page, ws: &str) -> Page {
    let mut fields: Vec<(String, String)> = hidden_fields(page)
        .into_iter()
        .filter(|(k, _)| k != "csrf_token")
        .collect();
    fields.push(("workspace_id".into(), ws.into()));
    fields.push(("decision".into(), "allow".into()));
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    c.post("/oauth/authorize", &refs).await
}

/// `POST /oauth/token` with a form: status, headers and JSON.
pub async fn form(
    s: &TestServer,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = s
        .http
        .post(s.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(fields))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Trades a code (with [`VERIFIER`] unless told otherwise).
pub async fn exchange(
    s: &TestServer,
    client: &str,
    code: &str,
    verifier: &str,
    redirect: &str,
    resource: &str,
) -> (u16, Value) {
    let (status, _, body) = form(
        s,
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", redirect),
            ("resource", resource),
        ],
    )
    .await;
    (status, body)
}

/// The whole flow for the signed-in `c` in `ws`, asking for `scope`: the client id and the
/// token answer (`access_token`, `refresh_token`, `scope`).
pub async fn connect(
    s: &TestServer,
    c: &mut Console<'_>,
    ws: &str,
    scope: &str,
) -> (String, Value) {
    let client = new_client(s, "Agent").await;
    let res = resource(s).await;
    let challenge = s256(VERIFIER);
    let p = params(&client, &res, &challenge, &[("scope", scope)]);
    let code = code_for(c, &p, ws).await;
    let (status, tokens) = exchange(s, &client, &code, VERIFIER, REDIRECT_AT, &res).await;
    assert_eq!(status, 200, "{tokens}");
    (client, tokens)
}
