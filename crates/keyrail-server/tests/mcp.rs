//! Black-box tests of `/mcp`: the Model Context Protocol over Streamable HTTP, spoken with plain
//! HTTP (JSON-RPC) and an API key as the credential. Tools act with the key's scopes, exactly as
//! the API does, and a refusal is a tool error result holding the API's error code.

mod common;

use common::{Backend, TestServer, json};
use serde_json::{Value, json};

const PUBLIC_URL: &str = "https://keys.example.com";

struct M {
    s: TestServer,
    owner: String,
    ws: String,
}

impl M {
    async fn new() -> Self {
        let s = TestServer::start_with(
            Backend::Sqlite,
            |c| c.public_url = serde_json::from_value(json!(PUBLIC_URL)).unwrap(),
            None,
        )
        .await
        .unwrap();
        let (owner, ws) = s.owner_with_workspace("owner@example.com").await;
        Self { s, owner, ws }
    }

    /// A key of the workspace, made through the API by its owner: (id, secret).
    async fn key(&self, scopes: &[&str]) -> (String, String) {
        let (status, body) = self
            .s
            .call(
                "POST",
                &format!("/api/v1/w/{}/keys", self.ws),
                &self.owner,
                Some(&json!({"name": "agent", "scopes": scopes})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["id"].as_str().unwrap().to_owned(),
            body["key"].as_str().unwrap().to_owned(),
        )
    }

    /// The ids of the workspace's keys, as the API lists them.
    async fn key_ids(&self) -> Vec<String> {
        let (status, body) = self
            .s
            .call(
                "GET",
                &format!("/api/v1/w/{}/keys?limit=200", self.ws),
                &self.owner,
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// POSTs one JSON-RPC message to `/mcp`: the response and its JSON-RPC message.
    async fn rpc_raw(&self, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self
            .s
            .http
            .post(self.s.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let sse = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
        let text = resp.text().await.unwrap();
        (status, message_of(&text, sse))
    }

    /// A JSON-RPC request's `result` (panics on a JSON-RPC error).
    async fn rpc(&self, token: &str, method: &str, params: Value) -> Value {
        let (status, msg) = self
            .rpc_raw(
                Some(token),
                &json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}),
            )
            .await;
        assert_eq!(status, 200, "{msg}");
        assert_eq!(msg["id"], 7, "{msg}");
        assert!(msg.get("error").is_none(), "{msg}");
        msg["result"].clone()
    }

    /// `tools/call`: the tool result (`content`, `structuredContent`, `isError`).
    async fn tool(&self, token: &str, name: &str, arguments: Value) -> Value {
        self.rpc(
            token,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
        .await
    }

    /// A tool call that must succeed: its structured content (checked against its text).
    async fn ok(&self, token: &str, name: &str, arguments: Value) -> Value {
        let r = self.tool(token, name, arguments).await;
        assert_eq!(r["isError"], false, "{name}: {r}");
        let text = r["content"][0]["text"].as_str().unwrap();
        let structured = r["structuredContent"].clone();
        assert_eq!(
            serde_json::from_str::<Value>(text).unwrap(),
            structured,
            "the text renders the structured content"
        );
        structured
    }

    /// A tool call that must be refused: (code, text, structured content).
    async fn refused(&self, token: &str, name: &str, arguments: Value) -> (String, String, Value) {
        let r = self.tool(token, name, arguments).await;
        assert_eq!(r["isError"], true, "{name}: {r}");
        let text = r["content"][0]["text"].as_str().unwrap().to_owned();
        let s = r["structuredContent"].clone();
        let code = s["code"].as_str().unwrap().to_owned();
        assert!(s["error"].as_str().is_some_and(|e| !e.is_empty()), "{s}");
        assert!(text.starts_with(&format!("{code}: ")), "{text}");
        (code, text, s)
    }
}

/// The JSON-RPC message of an answer: the body itself, or the SSE event that holds a response.
fn message_of(text: &str, sse: bool) -> Value {
    if !sse {
        return serde_json::from_str(text).unwrap_or(Value::Null);
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|m| m.get("id").is_some())
        .unwrap_or(Value::Null)
}

/// POSTs `tools/list` padded with `pad` spaces to `/mcp` in 64 KiB chunks (no Content-Length):
/// the answer's status.
async fn chunked_post_status(s: &TestServer, key: &str, pad: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec();
    body.extend(std::iter::repeat_n(b' ', pad));
    // The server may answer (and stop reading) before the body ends.
    for chunk in body.chunks(64 * 1024) {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if conn.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer}"))
}

#[tokio::test]
async fn without_a_usable_credential_the_answer_is_the_rfc_9728_challenge() {
    let m = M::new().await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let challenge =
        format!("Bearer resource_metadata=\"{PUBLIC_URL}/.well-known/oauth-protected-resource\"");

    let resp =
        m.s.http
            .post(m.s.url("/mcp"))
            .json(&init)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], challenge.as_str());

    // A person's session token is for the API, not for `/mcp`.
    for bad in [m.owner.as_str(), "kr_not_a_key_at_all_0000000000"] {
        let resp =
            m.s.http
                .post(m.s.url("/mcp"))
                .bearer_auth(bad)
                .json(&init)
                .send()
                .await
                .unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()["www-authenticate"],
            format!("{challenge}, error=\"invalid_token\"").as_str()
        );
    }
    m.s.stop().await;
}

#[tokio::test]
async fn initialize_and_the_tool_catalog() {
    let m = M::new().await;
    let (_, key) = m.key(&["keys:read"]).await;
    let init = m
        .rpc(
            &key,
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"}
            }),
        )
        .await;
    assert_eq!(init["protocolVersion"], "2025-11-25", "{init}");
    assert_eq!(init["serverInfo"]["name"], "keyrail");
    assert_eq!(init["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(init["capabilities"]["tools"].is_object(), "{init}");
    assert!(
        init["instructions"]
            .as_str()
            .unwrap()
            .contains("workspace_id")
    );
    // A client asking for a revision the server lacks gets the newest one with `initialize`;
    // an older known one is kept.
    for (asked, agreed) in [("2099-01-01", "2025-11-25"), ("2025-06-18", "2025-06-18")] {
        let resp =
            m.s.http
                .post(m.s.url("/mcp"))
                .bearer_auth(&key)
                .header("accept", "application/json, text/event-stream")
                .json(
                    &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": asked, "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"}}}),
                )
                .send()
                .await
                .unwrap();
        let (status, msg) = json(resp).await;
        assert_eq!(status, 200, "{msg}");
        assert_eq!(msg["result"]["protocolVersion"], agreed, "{msg}");
    }
    // Stateless: no session to carry between requests.
    let resp =
        m.s.http
            .post(m.s.url("/mcp"))
            .bearer_auth(&key)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("mcp-session-id").is_none());

    let list = m.rpc(&key, "tools/list", json!({})).await;
    let tools = list["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "keys_list",
            "keys_create",
            "keys_revoke",
            "keys_rotate",
            "keys_verify",
            "members_list",
            "members_set_role",
            "grants_list",
            "grants_revoke",
            "audit_search",
            "logs_search",
        ]
    );
    for t in tools {
        let schema = &t["inputSchema"];
        assert_eq!(schema["type"], "object", "{t}");
        assert!(
            schema["required"]
                .as_array()
                .unwrap()
                .contains(&json!("workspace_id")),
            "{t}"
        );
        assert!(schema["properties"]["workspace_id"]["description"].is_string());
        assert!(t["description"].as_str().is_some_and(|d| d.len() > 10));
    }
    let create = tools.iter().find(|t| t["name"] == "keys_create").unwrap();
    let props = &create["inputSchema"]["properties"];
    for field in [
        "name",
        "scopes",
        "expires_in_days",
        "external_id",
        "recoverable",
    ] {
        assert!(props.get(field).is_some(), "keys_create lacks {field}");
    }
    assert_eq!(props["name"]["maxLength"], 255);

    // GET (a server-to-client stream) is not offered by a stateless server.
    let resp =
        m.s.http
            .get(m.s.url("/mcp"))
            .bearer_auth(&key)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 405);
    m.s.stop().await;
}

#[tokio::test]
async fn a_key_manages_keys_through_tools_and_the_core_audits_it() {
    let m = M::new().await;
    let (agent_id, agent) = m.key(&["keys:read", "keys:write", "keys:delete"]).await;
    let ws = m.ws.clone();

    let created = m
        .ok(
            &agent,
            "keys_create",
            json!({"workspace_id": ws, "name": "made by an agent", "scopes": ["keys:read"],
                   "external_id": "cus_1", "expires_in_days": 30}),
        )
        .await;
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "made by an agent");
    assert_eq!(created["scopes"], json!(["keys:read"]));
    assert_eq!(created["status"], "active");
    assert_eq!(created["external_id"], "cus_1");
    assert!(created["expires_at"].is_string());
    assert!(m.key_ids().await.contains(&id));
    // The key works at the API's verify.
    assert_eq!(m.s.verify_code(&secret).await, "VALID");

    let v = m
        .ok(
            &agent,
            "keys_verify",
            json!({"workspace_id": ws, "key": secret, "scopes": ["keys:read"]}),
        )
        .await;
    assert_eq!(
        (v["valid"].clone(), v["code"].clone()),
        (json!(true), json!("VALID"))
    );
    assert_eq!(v["key_id"], id.as_str());
    let v = m
        .ok(
            &agent,
            "keys_verify",
            json!({"workspace_id": ws, "key": secret, "scopes": ["keys:write"]}),
        )
        .await;
    assert_eq!(v["code"], "INSUFFICIENT_SCOPE");

    let listed = m
        .ok(
            &agent,
            "keys_list",
            json!({"workspace_id": ws, "external_id": "cus_1"}),
        )
        .await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    assert!(
        listed["data"][0].get("key").is_none(),
        "a listing never shows a key"
    );
    assert!(listed.get("next_cursor").is_some());

    // keys_verify spends as the API's verify does: one credit unless told otherwise.
    let metered = m
        .ok(
            &agent,
            "keys_create",
            json!({"workspace_id": ws, "name": "metered", "remaining": 2}),
        )
        .await;
    let metered_key = metered["key"].as_str().unwrap().to_owned();
    let verify = |cost: Option<u32>| {
        let mut args = json!({"workspace_id": ws, "key": metered_key});
        if let Some(c) = cost {
            args["cost"] = json!(c);
        }
        args
    };
    let looked = m.ok(&agent, "keys_verify", verify(Some(0))).await;
    assert_eq!(looked["code"], "VALID");
    for _ in 0..2 {
        let spent = m.ok(&agent, "keys_verify", verify(None)).await;
        assert_eq!(spent["code"], "VALID", "{spent}");
    }
    let spent = m.ok(&agent, "keys_verify", verify(None)).await;
    assert_eq!(
        spent["code"], "USAGE_EXCEEDED",
        "two credits, two default verifies"
    );

    let rotated = m
        .ok(
            &agent,
            "keys_rotate",
            json!({"workspace_id": ws, "key_id": id}),
        )
        .await;
    let new_secret = rotated["key"].as_str().unwrap().to_owned();
    let new_id = rotated["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_eq!(m.s.verify_code(&secret).await, "REVOKED");
    assert_eq!(m.s.verify_code(&new_secret).await, "VALID");

    let revoked = m
        .ok(
            &agent,
            "keys_revoke",
            json!({"workspace_id": ws, "key_id": new_id}),
        )
        .await;
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked.get("key").is_none());
    let v = m
        .ok(
            &agent,
            "keys_verify",
            json!({"workspace_id": ws, "key": new_secret}),
        )
        .await;
    assert_eq!(
        (v["valid"].clone(), v["code"].clone()),
        (json!(false), json!("REVOKED"))
    );

    // The API's audit log: the actor is the key that called the tools.
    let (status, audit) =
        m.s.call("GET", &format!("/api/v1/w/{ws}/audit"), &m.owner, None)
            .await;
    assert_eq!(status, 200, "{audit}");
    for action in ["key.create", "key.rotate", "key.revoke"] {
        let entry = audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == action && e["actor"]["id"] == agent_id.as_str())
            .unwrap_or_else(|| panic!("no {action} by the agent key in {audit}"));
        assert_eq!(entry["actor"]["type"], "key");
    }
    m.s.stop().await;
}

#[tokio::test]
async fn refusals_are_error_results_and_change_nothing() {
    let m = M::new().await;
    let ws = m.ws.clone();
    let (_, reader) = m.key(&["keys:read"]).await;
    let (_, writer) = m.key(&["keys:read", "keys:write"]).await;
    let before = m.key_ids().await;

    // No keys:write.
    let (code, text, s) = m
        .refused(
            &reader,
            "keys_create",
            json!({"workspace_id": ws, "name": "x"}),
        )
        .await;
    assert_eq!(code, "insufficient_scope");
    assert_eq!(s["required"], json!(["keys:write"]), "{s}");
    assert!(text.contains("keys:write"), "{text}");

    // Escalation: a scope the caller does not hold. The API answers the same.
    let escalate = json!({"name": "x", "scopes": ["members:write"]});
    let (status, api) =
        m.s.call(
            "POST",
            &format!("/api/v1/w/{ws}/keys"),
            &writer,
            Some(&escalate),
        )
        .await;
    assert_eq!(status, 403, "{api}");
    let mut args = escalate.clone();
    args["workspace_id"] = json!(ws);
    let (code, _, s) = m.refused(&writer, "keys_create", args).await;
    assert_eq!(code, api["code"].as_str().unwrap());
    assert_eq!(s["error"], api["error"]);

    // Another workspace: the API's answer for a key of another workspace, nothing more.
    let (other_owner, other_ws) = m.s.owner_with_workspace("other@example.com").await;
    let (status, api) =
        m.s.call("GET", &format!("/api/v1/w/{other_ws}/keys"), &writer, None)
            .await;
    assert!(status == 403 || status == 404, "{status} {api}");
    let (code, _, s) = m
        .refused(&writer, "keys_list", json!({"workspace_id": other_ws}))
        .await;
    assert_eq!(code, api["code"].as_str().unwrap());
    assert_eq!(s["error"], api["error"]);
    let (code, _, _) = m
        .refused(
            &writer,
            "keys_create",
            json!({"workspace_id": other_ws, "name": "x"}),
        )
        .await;
    assert_eq!(code, api["code"].as_str().unwrap());
    let (code, _, _) = m
        .refused(
            &writer,
            "keys_verify",
            json!({"workspace_id": other_ws, "key": writer.clone()}),
        )
        .await;
    assert_eq!(code, api["code"].as_str().unwrap());
    let (status, theirs) =
        m.s.call(
            "GET",
            &format!("/api/v1/w/{other_ws}/keys"),
            &other_owner,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(theirs["data"], json!([]), "nothing was created there");

    // Bad arguments: invalid_request naming the field, as the API does.
    let (code, _, s) = m
        .refused(&writer, "keys_create", json!({"workspace_id": ws}))
        .await;
    assert_eq!(
        (code.as_str(), s["field"].as_str()),
        ("invalid_request", Some("name"))
    );
    let (code, _, s) = m
        .refused(
            &writer,
            "keys_create",
            json!({"workspace_id": ws, "name": "x", "nope": 1}),
        )
        .await;
    assert_eq!(
        (code.as_str(), s["field"].as_str()),
        ("invalid_request", Some("nope"))
    );
    let (code, _, _) = m
        .refused(
            &writer,
            "keys_list",
            json!({"workspace_id": ws, "status": "sleeping"}),
        )
        .await;
    assert_eq!(code, "invalid_request");
    let (code, _, _) = m
        .refused(
            &writer,
            "keys_list",
            json!({"workspace_id": ws, "limit": 0}),
        )
        .await;
    assert_eq!(code, "invalid_request");
    let (code, _, _) = m
        .refused(
            &writer,
            "keys_revoke",
            json!({"workspace_id": ws, "key_id": "key_nope"}),
        )
        .await;
    assert_eq!(code, "insufficient_scope", "revoking needs keys:delete");

    assert_eq!(m.key_ids().await, before, "no key was made or changed");

    // An unknown tool is a JSON-RPC error, not a result.
    let (status, msg) = m
        .rpc_raw(
            Some(&writer),
            &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                    "params": {"name": "keys_delete_everything", "arguments": {}}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(msg["error"]["code"], -32602, "{msg}");
    m.s.stop().await;
}

#[tokio::test]
async fn members_grants_audit_and_logs_have_the_apis_shapes() {
    let m = M::new().await;
    let ws = m.ws.clone();
    m.s.user("dev@example.com").await;
    let (status, added) =
        m.s.call(
            "POST",
            &format!("/api/v1/w/{ws}/members"),
            &m.owner,
            Some(&json!({"email": "dev@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let member_id = added["id"].as_str().unwrap().to_owned();

    // A key that may change roles, but holds none of the roles' other scopes.
    let (_, hr) = m.key(&["members:read", "members:write"]).await;
    let members = m.ok(&hr, "members_list", json!({"workspace_id": ws})).await;
    let (status, api) =
        m.s.call("GET", &format!("/api/v1/w/{ws}/members"), &m.owner, None)
            .await;
    assert_eq!(status, 200);
    assert_eq!(members, api, "the tool answers what the API answers");
    let roles: Vec<&str> = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["role"].as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"owner") && roles.contains(&"viewer"),
        "{members}"
    );

    // No escalation: the new role's scopes are not the key's.
    let (code, _, _) = m
        .refused(
            &hr,
            "members_set_role",
            json!({"workspace_id": ws, "member_id": member_id, "role": "admin"}),
        )
        .await;
    assert_eq!(code, "insufficient_scope");
    // With every scope of both roles (those of the owner's role, here), it is done.
    let (status, roles) =
        m.s.call("GET", &format!("/api/v1/w/{ws}/roles"), &m.owner, None)
            .await;
    assert_eq!(status, 200, "{roles}");
    let mut scopes: Vec<String> = Vec::new();
    for role in roles["data"].as_array().unwrap() {
        if role["name"] == "admin" || role["name"] == "viewer" {
            for s in role["scopes"].as_array().unwrap() {
                scopes.push(s.as_str().unwrap().to_owned());
            }
        }
    }
    scopes.extend(["members:read".to_owned(), "members:write".to_owned()]);
    scopes.sort();
    scopes.dedup();
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let (_, admin_key) = m.key(&scope_refs).await;
    let changed = m
        .ok(
            &admin_key,
            "members_set_role",
            json!({"workspace_id": ws, "member_id": member_id, "role": "admin"}),
        )
        .await;
    assert_eq!(changed["role"], "admin");
    assert_eq!(changed["id"], member_id.as_str());
    assert_eq!(changed["email"], "dev@example.com");

    // Grants: none yet; revoking an unknown one is the API's 404.
    let grants = m
        .ok(&admin_key, "grants_list", json!({"workspace_id": ws}))
        .await;
    assert_eq!(grants, json!({"data": [], "next_cursor": null}));
    let (code, _, _) = m
        .refused(
            &admin_key,
            "grants_revoke",
            json!({"workspace_id": ws, "grant_id": "grt_nope"}),
        )
        .await;
    assert_eq!(
        code, "not_found",
        "admin_key may revoke grants: the grant is unknown"
    );

    // Audit and request log need audit:read.
    let (code, _, _) = m
        .refused(&hr, "audit_search", json!({"workspace_id": ws}))
        .await;
    assert_eq!(code, "insufficient_scope");
    let (_, auditor) = m.key(&["audit:read"]).await;
    let audit = m
        .ok(
            &auditor,
            "audit_search",
            json!({"workspace_id": ws, "action": "member.update"}),
        )
        .await;
    let (status, api) =
        m.s.call(
            "GET",
            &format!("/api/v1/w/{ws}/audit?action=member.update"),
            &m.owner,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(audit, api);
    assert!(!audit["data"].as_array().unwrap().is_empty(), "{audit}");
    assert_eq!(audit["data"][0]["actor"]["type"], "key");
    let (code, _, s) = m
        .refused(
            &auditor,
            "audit_search",
            json!({"workspace_id": ws, "since": "yesterday"}),
        )
        .await;
    assert_eq!(
        (code.as_str(), s["field"].as_str()),
        ("invalid_request", Some("since"))
    );

    // The request log is written in batches: wait until this workspace's requests are in.
    let mut logs = Value::Null;
    for _ in 0..100 {
        logs = m
            .ok(
                &auditor,
                "logs_search",
                json!({"workspace_id": ws, "limit": 5}),
            )
            .await;
        if logs["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(logs.get("next_cursor").is_some(), "{logs}");
    let first = logs["data"]
        .as_array()
        .and_then(|d| d.first())
        .unwrap_or_else(|| panic!("the workspace's requests reach the log: {logs}"));
    for field in ["id", "at", "method", "route", "status", "request_id"] {
        assert!(first.get(field).is_some(), "{first}");
    }
    let (code, _, _) = m
        .refused(
            &auditor,
            "logs_search",
            json!({"workspace_id": ws, "status": "6xx"}),
        )
        .await;
    assert_eq!(code, "invalid_request");
    m.s.stop().await;
}

#[tokio::test]
async fn bodies_hosts_and_malformed_messages() {
    let m = M::new().await;
    let (_, key) = m.key(&["keys:read"]).await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let post = |host: Option<&str>| {
        let mut r =
            m.s.http
                .post(m.s.url("/mcp"))
                .bearer_auth(&key)
                .header("accept", "application/json, text/event-stream");
        if let Some(h) = host {
            r = r.header("host", h);
        }
        r
    };

    // Over the API's 64 KiB: 413.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"pad":"{}"}}}}"#,
        "x".repeat(64 * 1024 + 10)
    );
    let resp = post(None)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    let (status, body) = json(resp).await;
    assert_eq!(body["code"], "payload_too_large", "{body}");
    assert!(body["error"].as_str().unwrap().contains("64 KiB"));
    // The same without a declared length (chunked): still 413, never a 500.
    assert_eq!(status, 413);
    assert_eq!(chunked_post_status(&m.s, &key, 2 * 64 * 1024).await, 413);
    assert_eq!(chunked_post_status(&m.s, &key, 60 * 1024).await, 200);
    // No answer of /mcp is cached (a tool's result may hold a new key).
    let resp = post(None)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");

    // Malformed JSON, or JSON that is no JSON-RPC message: the protocol's JSON-RPC errors.
    for (body, code) in [
        ("{not json", -32700),
        (r#"{"hello": "world"}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":1}"#, -32600),
        ("[]", -32600),
    ] {
        let resp = post(None)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, v) = json(resp).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["jsonrpc"], "2.0", "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        assert_eq!(v["id"], Value::Null);
    }
    // Not JSON at all: the API's 415.
    let resp = post(None)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    let (status, v) = json(resp).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    // An unknown method is a JSON-RPC error.
    let (status, msg) = m
        .rpc_raw(
            Some(&key),
            &json!({"jsonrpc": "2.0", "id": 2, "method": "keys/explode", "params": {}}),
        )
        .await;
    assert_eq!(status, 200, "{msg}");
    assert!(msg["error"]["code"].is_i64(), "{msg}");

    // The public URL's host and loopback are served; any other Host is refused (DNS
    // rebinding guard).
    let resp = post(Some("keys.example.com"))
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = post(Some("evil.example.net"))
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let (status, body) = json(post(None).json(&list).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    m.s.stop().await;
}

/// An MCP client with an OAuth token acts as the member who consented, within the grant: a tool
/// needing a scope the grant lacks is an error result and changes nothing; asking for scopes
/// the member does not hold is refused (no escalation through a tool); its audit entries name
/// the app. Audiences do not mix: the API refuses the token, `/mcp` refuses the API's app
/// tokens; revoking the grant stops the token at once.
#[tokio::test]
async fn an_oauth_client_acts_for_the_member_within_the_grant() {
    use common::PASSWORD;
    use common::console::Console;
    use common::oauth::connect;

    // Plain-HTTP public URL: the console's cookies keep their plain names here.
    let s = TestServer::start().await;
    let (owner, ws) = s.owner_with_workspace("owner@example.com").await;
    let m = M { s, owner, ws };
    m.s.user("dev@example.com").await;
    let (status, body) =
        m.s.call(
            "POST",
            &format!("/api/v1/w/{}/members", m.ws),
            &m.owner,
            Some(&json!({"email": "dev@example.com", "role": "developer"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut c = Console::sign_in(&m.s, "dev@example.com", PASSWORD).await;
    let (client, tokens) = connect(&m.s, &mut c, &m.ws, "keys:read keys:write").await;
    assert_eq!(tokens["scope"], "keys:read keys:write");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let (victim, victim_secret) = m.key(&["keys:read"]).await;

    let listed = m
        .ok(&access, "keys_list", json!({"workspace_id": m.ws}))
        .await;
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == victim.as_str())
    );

    // Revoking needs keys:delete, which the developer holds but the grant does not.
    let (code, _, s) = m
        .refused(
            &access,
            "keys_revoke",
            json!({"workspace_id": m.ws, "key_id": victim}),
        )
        .await;
    assert_eq!(code, "insufficient_scope", "{s}");
    assert_eq!(m.s.verify_code(&victim_secret).await, "VALID");

    // A key with a scope the member does not hold: refused, nothing made.
    let before = m.key_ids().await;
    let (code, _, s) = m
        .refused(
            &access,
            "keys_create",
            json!({"workspace_id": m.ws, "name": "escalate", "scopes": ["members:admin"]}),
        )
        .await;
    assert!(code == "insufficient_scope", "{s}");
    assert_eq!(m.key_ids().await, before);

    // Within the grant it works, and the audit log names the app.
    let made = m
        .ok(
            &access,
            "keys_create",
            json!({"workspace_id": m.ws, "name": "by agent", "scopes": ["keys:read"]}),
        )
        .await;
    assert_eq!(
        m.s.verify_code(made["key"].as_str().unwrap()).await,
        "VALID"
    );
    let (_, audit) =
        m.s.call(
            "GET",
            &format!("/api/v1/w/{}/audit?action=key.create", m.ws),
            &m.owner,
            None,
        )
        .await;
    assert_eq!(
        audit["data"][0]["actor"],
        json!({"type": "app", "id": client})
    );

    // Another workspace's id: the grant's workspace only.
    let (_, other) = m.s.owner_with_workspace("other@example.com").await;
    let (code, _, _) = m
        .refused(&access, "keys_list", json!({"workspace_id": other}))
        .await;
    assert_eq!(code, "not_found", "another workspace is not the grant's");

    // The API refuses a token made for /mcp.
    let (status, _) =
        m.s.call("GET", &format!("/api/v1/w/{}/keys", m.ws), &access, None)
            .await;
    assert_eq!(status, 401);

    // /mcp refuses the API's app tokens (client credentials, no audience).
    let (_, profile) =
        m.s.call(
            "POST",
            "/api/v1/builder-profiles",
            &m.owner,
            Some(&json!({"name": "Acme"})),
        )
        .await;
    let (status, app) =
        m.s.call(
            "POST",
            "/api/v1/apps",
            &m.owner,
            Some(&json!({"name": "Sync", "builder_profile_id": profile["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["client_id"].as_str().unwrap();
    let secret = app["client_secret"].as_str().unwrap();
    let (status, grant) =
        m.s.call(
            "POST",
            &format!("/api/v1/w/{}/grants", m.ws),
            &m.owner,
            Some(&json!({"client_id": app_id, "scopes": ["keys:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{grant}");
    let api_token = common::api_token(&m.s, app_id, secret, grant["id"].as_str().unwrap()).await;
    let (status, _) =
        m.s.call("GET", &format!("/api/v1/w/{}/keys", m.ws), &api_token, None)
            .await;
    assert_eq!(status, 200, "the app token works on the API");
    let (status, _) = m
        .rpc_raw(
            Some(&api_token),
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!(status, 401, "but not on /mcp");

    // The member revokes the grant: the token stops at once.
    let (_, grants) =
        m.s.call(
            "GET",
            &format!("/api/v1/w/{}/grants?client_id={client}", m.ws),
            &m.owner,
            None,
        )
        .await;
    let gid = grants["data"][0]["id"].as_str().unwrap();
    let (status, _) =
        m.s.call(
            "DELETE",
            &format!("/api/v1/w/{}/grants/{gid}", m.ws),
            &m.owner,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = m
        .rpc_raw(
            Some(&access),
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!(status, 401);
}
