//! The tools of `/mcp`. Each one reads its arguments, builds the caller's `Access` in the named
//! workspace and calls the same code as the API's handler for that operation, so authorization,
//! the no-escalation rule and audit entries are the API's. Results carry the API's JSON answer
//! as structured content; a refusal is an error result holding the API's `{"error", "code"}`.

use std::sync::{Arc, LazyLock};

use axum::http::request::Parts;
use keyrail_core::audit::RequestMeta;
use keyrail_core::keys::manage::NewKey;
use keyrail_core::model::KeyRateLimit;
use keyrail_core::secret::Secret;
use keyrail_core::workspaces::Actor;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::McpCaller;
use crate::error::ApiError;
use crate::routes;
use crate::routes::common::{AuditParams, ListParams};
use crate::routes::keys::{KeyListParams, KeyOut, NewKeyOut, verify_out};
use crate::state::AppState;

const INSTRUCTIONS: &str = "keyrail manages API keys, members, app grants and audit logs. Every \
tool takes `workspace_id` (`ws_...`) and acts in that workspace with the caller's scopes there, \
exactly as keyrail's HTTP API does: a refused call is an error result whose text starts with the \
API's error code (e.g. `insufficient_scope`). A key created or rotated by a tool is shown once, in \
that tool's result.";

/// The MCP server of one request (the transport is stateless: it is made per request).
#[derive(Clone)]
pub struct KeyrailTools {
    state: AppState,
}

impl KeyrailTools {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

// ---- arguments ---------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct KeysListArgs {
    /// The workspace to act in (`ws_...`).
    #[schemars(length(min = 1, max = 64))]
    workspace_id: String,
    /// Only keys with this status: `active`, `expired`, `revoked` or `disabled`.
    #[schemars(pattern(r"^(active|expired|revoked|disabled)$"))]
    status: Option<String>,
    /// Only keys with this external id.
    #[schemars(length(min = 1, max = 255))]
    external_id: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[schemars(range(min = 1, max = 200))]
    limit: Option<u32>,
    /// Where the previous page stopped (its `next_cursor`).
    #[schemars(pattern(r"^[A-Za-z0-9_]{0,64}$"))]
    cursor: Option<String>,
}

/// A per-key rate limit: at most `limit` requests per `window_seconds`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RateLimitArg {
    #[schemars(range(min = 1))]
    limit: u32,
    /// At most 30 days.
    #[schemars(range(min = 1, max = 2592000))]
    window_seconds: u32,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct KeysCreateArgs {
    /// The workspace to act in (`ws_...`).
    #[schemars(length(min = 1, max = 64))]
    workspace_id: String,
    /// 1 to 255 characters (not only spaces, no control characters).
    #[schemars(length(min = 1, max = 255))]
    name: String,
    /// The key's scopes (`resource:action`); only scopes the caller holds.
    #[serde(default)]
    #[schemars(
        length(max = 100),
        inner(pattern(r"^[a-z][a-z0-9_-]{0,30}:[a-z][a-z0-9_-]{0,30}$"))
    )]
    scopes: Vec<String>,
    /// 1 to 365; absent = never expires.
    #[schemars(range(min = 1, max = 365))]
    expires_in_days: Option<u32>,
    rate_limit: Option<RateLimitArg>,
    /// Usage credits; absent = unlimited.
    #[schemars(range(min = 0))]
    remaining: Option<i64>,
    /// A JSON object, at most 16 KiB.
    meta: Option<Map<String, Value>>,
    /// Your own id for the key's owner: 1 to 255 characters, no control characters.
    #[schemars(length(min = 1, max = 255))]
    external_id: Option<String>,
    /// Keep the key (encrypted) so that it can be revealed again later.
    #[serde(default)]
    recoverable: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct KeyIdArgs {
    /// The workspace to act in (`ws_...`).
    #[schemars(length(min = 1, max = 64))]
    workspace_id: String,
    /// The key (`key_...`).
    #[schemars(length(min = 1, max = 64))]
    key_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct KeysRotateArgs {
    /// The workspace to act in (`ws_...`).
    #[schemars(length(min = 1, max = 64))]
    workspace_id: String,
    /// The key to replace (`key_...`).
    #[schemars(length(min = 1, max = 64))]
    key_id: String,
    /// 0 to 86400 (default 0): how long the old key keeps working.
    #[serde(default)]
    #[schemars(range(max = 86400))]
    grace_seconds: u32,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct KeysVerifyArgs {
    /// The workspace whose keys count: a key of any other workspace is `NOT_FOUND`.
    #[schemars(length(min = 1, max = 64))]
    workspace_id: String,
    /// The key to check.
    #[schemars(with = "String", length(min = 1, max = 512))]
    key: Secret,
    /// Scopes the key must all hold.
    #[serde(default)]
    #[schemars(length(max = 100), inner(length(min = 1, max = 64)))]
    scopes: Vec<String>,
    /// Credits (and rate-limit tokens) this check spends, as the API's `cost` (default 1; 0
    /// only looks).
    #[serde(default = "crate::routes::keys::one")]
    cost: u32,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PageArgs {
    /// The workspace to act in (`ws_...`).
    #[schemars(length(min = 1, max = 64))]
    workspace_id: String,
    /// Page size, 1 to 200 (default 50).
    #[schemars(range(min = 1, max = 200))]
    limit: Option<u32>,
    /// Where the previous page stopped (its `next_cursor`).
    #[schemars(pattern(r"^[A-Za-z0-9_]{0,64}$"))]
    cursor: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MemberRoleArgs {
    /// The workspace to act in (`ws_...`).
    #[schemars(length(min = 1, max = 64))]
    workspace_id: String,
    /// The member (`mem_...`).
    #[schemars(length(min = 1, max = 64))]
    member_id: String,
    /// A built-in role (`owner`, `admin`, `developer`, `member`, `viewer`) or a custom role's
    /// id or name. The caller must hold every scope of the current and the new role.
    #[schemars(pattern(r"^[a-z0-9_-]{1,64}$"))]
    role: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GrantsListArgs {
    /// The workspace to act in (`ws_...`).
    #[schemars(length(min = 1, max = 64))]
    workspace_id: String,
    /// Only this app's grants.
    #[schemars(length(min = 1, max = 64))]
    client_id: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[schemars(range(min = 1, max = 200))]
    limit: Option<u32>,
    /// Where the previous page stopped (its `next_cursor`).
    #[schemars(pattern(r"^[A-Za-z0-9_]{0,64}$"))]
    cursor: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GrantIdArgs {
    /// The workspace to act in (`ws_...`).
    #[schemars(length(min = 1, max = 64))]
    workspace_id: String,
    /// The grant (`grt_...`).
    #[schemars(length(min = 1, max = 64))]
    grant_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AuditArgs {
    /// The workspace to act in (`ws_...`).
    #[schemars(length(min = 1, max = 64))]
    workspace_id: String,
    /// Only this action (e.g. `key.revoke`).
    #[schemars(length(min = 1, max = 64))]
    action: Option<String>,
    /// Only this actor's entries (a user, key or grant id).
    #[schemars(length(min = 1, max = 64))]
    actor_id: Option<String>,
    /// RFC 3339; entries at or after.
    #[schemars(length(max = 64))]
    since: Option<String>,
    /// RFC 3339; entries before.
    #[schemars(length(max = 64))]
    until: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[schemars(range(min = 1, max = 200))]
    limit: Option<u32>,
    /// Where the previous page stopped (its `next_cursor`).
    #[schemars(pattern(r"^[A-Za-z0-9_]{0,64}$"))]
    cursor: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct LogsArgs {
    /// The workspace to act in (`ws_...`).
    #[schemars(length(min = 1, max = 64))]
    workspace_id: String,
    /// One status code (`404`) or a class (`4xx`, `5xx`, ...).
    #[schemars(pattern(r"^[1-5]([0-9]{2}|[xX]{2})$"))]
    status: Option<String>,
    /// Only this principal's requests: a key id, user id or grant id.
    #[schemars(length(min = 1, max = 64))]
    principal: Option<String>,
    /// RFC 3339; requests at or after.
    #[schemars(length(max = 64))]
    since: Option<String>,
    /// RFC 3339; requests before.
    #[schemars(length(max = 64))]
    until: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[schemars(range(min = 1, max = 200))]
    limit: Option<u32>,
    /// Where the previous page stopped (its `next_cursor`, `log_<n>`).
    #[schemars(pattern(r"^(log_[1-9][0-9]{0,17})?$"))]
    cursor: Option<String>,
}

// ---- the catalog ---------------------------------------------------------------------------

/// Every tool, in the order `tools/list` names them.
pub const TOOL_NAMES: [&str; 11] = [
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
];

fn schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    // Every argument type is a struct: its schema is an object (a failure is a bug found by the
    // tests, which list the tools).
    rmcp::handler::server::common::schema_for_input::<T>().unwrap_or_else(|e| {
        tracing::error!(error = %e, "an MCP tool's input schema is not an object");
        rmcp::handler::server::common::schema_for_empty_input()
    })
}

fn tool(
    name: &'static str,
    description: &'static str,
    input: Arc<JsonObject>,
    annotations: ToolAnnotations,
) -> Tool {
    let mut t = Tool::new(name, description, input);
    t.annotations = Some(annotations);
    t
}

fn read_only() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(false)
}

fn writes(destructive: bool, idempotent: bool) -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(false)
        .destructive(destructive)
        .idempotent(idempotent)
        .open_world(false)
}

/// The tools, made once.
fn catalog() -> &'static [Tool] {
    static CATALOG: LazyLock<Vec<Tool>> = LazyLock::new(make_catalog);
    &CATALOG
}

fn make_catalog() -> Vec<Tool> {
    vec![
        tool(
            "keys_list",
            "List the workspace's API keys (metadata only, never the keys), oldest first. Needs keys:read.",
            schema::<KeysListArgs>(),
            read_only(),
        ),
        tool(
            "keys_create",
            "Create an API key. Needs keys:write, and only scopes the caller holds. The result holds the new key (`key`) this once.",
            schema::<KeysCreateArgs>(),
            writes(false, false),
        ),
        tool(
            "keys_revoke",
            "Revoke an API key: irreversible, in force at once. Needs keys:delete.",
            schema::<KeyIdArgs>(),
            writes(true, true),
        ),
        tool(
            "keys_rotate",
            "Rotate an API key: a new key with the same settings (shown this once in the result); the old one stops now or after grace_seconds. Needs keys:write.",
            schema::<KeysRotateArgs>(),
            writes(true, false),
        ),
        tool(
            "keys_verify",
            "Check an API key as `POST /api/v1/keys/verify` does, bound to the workspace: `valid` and `code` (VALID, NOT_FOUND, EXPIRED, REVOKED, DISABLED, INSUFFICIENT_SCOPE, RATE_LIMITED, USAGE_EXCEEDED, TENANT_SUSPENDED).",
            schema::<KeysVerifyArgs>(),
            // A cost above 0 (the default, as the API) spends credits.
            writes(false, false),
        ),
        tool(
            "members_list",
            "List the workspace's members with their roles. Needs members:read.",
            schema::<PageArgs>(),
            read_only(),
        ),
        tool(
            "members_set_role",
            "Change a member's role. Needs members:write and every scope of both the member's current and new role; the last owner cannot be demoted.",
            schema::<MemberRoleArgs>(),
            writes(false, true),
        ),
        tool(
            "grants_list",
            "List app grants in the workspace: all of them with apps:read, otherwise the caller's own.",
            schema::<GrantsListArgs>(),
            read_only(),
        ),
        tool(
            "grants_revoke",
            "Revoke an app's grant: its tokens stop at once. Needs apps:read and apps:write (and workspace:write for a shared grant); only a person signed in may revoke a grant of their own without them, so through MCP the scopes are always needed.",
            schema::<GrantIdArgs>(),
            writes(true, true),
        ),
        tool(
            "audit_search",
            "Search the workspace's audit log, newest first. Needs audit:read.",
            schema::<AuditArgs>(),
            read_only(),
        ),
        tool(
            "logs_search",
            "Search the workspace's API request log, newest first. Needs audit:read.",
            schema::<LogsArgs>(),
            read_only(),
        ),
    ]
}

// ---- running a tool ------------------------------------------------------------------------

type ToolResult = Result<Value, ApiError>;

fn to_value(v: impl serde::Serialize) -> ToolResult {
    serde_json::to_value(v).map_err(|e| ApiError::internal(format!("tool result: {e}")))
}

fn limit_str(limit: Option<u32>) -> Option<String> {
    limit.map(|l| l.to_string())
}

/// The arguments as the tool's type, with the API's 400 `invalid_request` (naming the field)
/// for anything else.
fn args<T: DeserializeOwned>(arguments: Option<JsonObject>) -> Result<T, ApiError> {
    let bytes = serde_json::to_vec(&Value::Object(arguments.unwrap_or_default()))
        .map_err(|e| ApiError::internal(format!("tool arguments: {e}")))?;
    crate::json::parse(&bytes).map_err(|mut e| {
        // The body of a tools/call is its `arguments`.
        if e.extra.get("field").and_then(Value::as_str) == Some("body") {
            e.extra.insert("field".into(), "arguments".into());
        }
        e
    })
}

impl KeyrailTools {
    async fn run(&self, name: &str, arguments: Option<JsonObject>, who: &Who) -> ToolResult {
        let state = &self.state;
        let (actor, meta) = (&who.actor, &who.meta);
        match name {
            "keys_list" => {
                let a: KeysListArgs = args(arguments)?;
                let params = KeyListParams {
                    status: a.status,
                    external_id: a.external_id,
                    limit: limit_str(a.limit),
                    cursor: a.cursor,
                };
                to_value(routes::keys::keys_page(state, actor, &a.workspace_id, params).await?)
            }
            "keys_create" => {
                let a: KeysCreateArgs = args(arguments)?;
                let access = state.workspaces.access(actor, &a.workspace_id).await?;
                let (key, secret) = state
                    .keys
                    .create(
                        &access,
                        meta,
                        NewKey {
                            name: a.name,
                            scopes: a.scopes,
                            expires_in_days: a.expires_in_days,
                            rate_limit: a.rate_limit.map(|r| KeyRateLimit {
                                limit: r.limit,
                                window_seconds: r.window_seconds,
                            }),
                            remaining: a.remaining,
                            meta: a.meta.map(Value::Object),
                            external_id: a.external_id,
                            recoverable: a.recoverable,
                        },
                    )
                    .await?;
                to_value(NewKeyOut::new(key, &secret, state.clock.now()))
            }
            "keys_revoke" => {
                let a: KeyIdArgs = args(arguments)?;
                let access = state.workspaces.access(actor, &a.workspace_id).await?;
                let key = state.keys.revoke(&access, meta, &a.key_id).await?;
                to_value(KeyOut::new(key, state.clock.now()))
            }
            "keys_rotate" => {
                let a: KeysRotateArgs = args(arguments)?;
                let access = state.workspaces.access(actor, &a.workspace_id).await?;
                let (key, secret) = state
                    .keys
                    .rotate(&access, meta, &a.key_id, a.grace_seconds)
                    .await?;
                to_value(NewKeyOut::new(key, &secret, state.clock.now()))
            }
            "keys_verify" => {
                let a: KeysVerifyArgs = args(arguments)?;
                // The API's verify takes no credential (the key is one); a tool still acts only
                // in a workspace the caller belongs to.
                state.workspaces.access(actor, &a.workspace_id).await?;
                let required: Vec<&str> = a.scopes.iter().map(String::as_str).collect();
                let v = state
                    .verifier
                    .verify(a.key.expose(), &required, a.cost, Some(&a.workspace_id))
                    .await?;
                to_value(verify_out(&v))
            }
            "members_list" => {
                let a: PageArgs = args(arguments)?;
                let params = ListParams {
                    limit: limit_str(a.limit),
                    cursor: a.cursor,
                };
                to_value(
                    routes::workspaces::members_page(state, actor, &a.workspace_id, params).await?,
                )
            }
            "members_set_role" => {
                let a: MemberRoleArgs = args(arguments)?;
                to_value(
                    routes::workspaces::set_member_role(
                        state,
                        actor,
                        meta,
                        &a.workspace_id,
                        &a.member_id,
                        &a.role,
                    )
                    .await?,
                )
            }
            "grants_list" => {
                let a: GrantsListArgs = args(arguments)?;
                let params = routes::apps::GrantParams {
                    client_id: a.client_id,
                    limit: limit_str(a.limit),
                    cursor: a.cursor,
                };
                to_value(routes::apps::grants_page(state, actor, &a.workspace_id, params).await?)
            }
            "grants_revoke" => {
                let a: GrantIdArgs = args(arguments)?;
                let access = state.workspaces.access(actor, &a.workspace_id).await?;
                state.apps.revoke_grant(&access, meta, &a.grant_id).await?;
                // The API answers 204; the tool says what happened.
                Ok(serde_json::json!({"revoked": true, "grant_id": a.grant_id}))
            }
            "audit_search" => {
                let a: AuditArgs = args(arguments)?;
                let params = AuditParams {
                    action: a.action,
                    actor_id: a.actor_id,
                    since: a.since,
                    until: a.until,
                    limit: limit_str(a.limit),
                    cursor: a.cursor,
                };
                to_value(
                    routes::workspaces::audit_page(state, actor, &a.workspace_id, params).await?,
                )
            }
            "logs_search" => {
                let a: LogsArgs = args(arguments)?;
                let params = routes::logs::LogParams {
                    status: a.status,
                    principal: a.principal,
                    since: a.since,
                    until: a.until,
                    limit: limit_str(a.limit),
                    cursor: a.cursor,
                };
                to_value(routes::logs::logs_page(state, actor, &a.workspace_id, params).await?)
            }
            other => Err(ApiError::invalid("name", format!("No tool named {other}"))),
        }
    }
}

/// The caller of one tool call and where the request came from.
struct Who {
    actor: Actor,
    meta: RequestMeta,
}

fn who(ctx: &RequestContext<RoleServer>) -> Result<Who, ErrorData> {
    // The transport puts the HTTP request's parts into the context; `require_caller` put the
    // caller into the parts. Without either, the router was built wrong: an internal error.
    let parts = ctx
        .extensions
        .get::<Parts>()
        .ok_or_else(|| ErrorData::internal_error("Internal server error", None))?;
    let McpCaller(actor) = parts
        .extensions
        .get::<McpCaller>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!("an MCP tool call without an authenticated caller");
            ErrorData::internal_error("Internal server error", None)
        })?;
    Ok(Who {
        actor,
        meta: crate::auth::request_meta(parts),
    })
}

/// A tool's answer: the API's JSON as structured content, and as text.
fn success(value: Value) -> CallToolResult {
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    let mut r = CallToolResult::structured(value);
    r.content = vec![ContentBlock::text(text)];
    r
}

/// A refusal: `{"error", "code", ...}` as the API answers it (with `retry_after`, in seconds,
/// where the API sends `Retry-After`), and `code: message` as text.
fn refusal(e: ApiError) -> CallToolResult {
    if e.status.is_server_error() && e.code == "internal_error" {
        // Details stay in the log, as for the API.
        tracing::error!(code = %e.code, status = %e.status, "MCP tool failed: {e:?}");
    }
    let mut body = Map::new();
    body.insert("error".into(), Value::from(e.message.as_ref()));
    body.insert("code".into(), Value::from(e.code.as_ref()));
    for (k, v) in e.extra {
        body.entry(k).or_insert(v);
    }
    if let Some(secs) = e.retry_after {
        body.insert("retry_after".into(), Value::from(secs));
    }
    let mut text = format!("{}: {}", e.code, e.message);
    if let Some(required) = body.get("required").and_then(Value::as_array) {
        let names: Vec<&str> = required.iter().filter_map(Value::as_str).collect();
        text.push_str(&format!(" (requires {})", names.join(", ")));
    }
    let mut r = CallToolResult::structured_error(Value::Object(body));
    r.content = vec![ContentBlock::text(text)];
    r
}

impl ServerHandler for KeyrailTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("keyrail", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(catalog().to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        catalog().iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !TOOL_NAMES.contains(&request.name.as_ref()) {
            // An unknown tool is a protocol error (the request cannot be routed).
            return Err(ErrorData::invalid_params(
                format!("Unknown tool: {}", request.name),
                None,
            ));
        }
        let who = who(&context)?;
        let result = match self.run(&request.name, request.arguments, &who).await {
            Ok(value) => success(value),
            Err(e) => refusal(e),
        };
        Ok(result.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_takes_a_workspace_and_has_an_object_schema() {
        let tools = catalog();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, TOOL_NAMES);
        for t in tools {
            let s = &t.input_schema;
            assert_eq!(s.get("type"), Some(&Value::from("object")), "{}", t.name);
            let required = s.get("required").and_then(Value::as_array).unwrap();
            assert!(
                required.contains(&Value::from("workspace_id")),
                "{} must require workspace_id",
                t.name
            );
            let ws = &s["properties"]["workspace_id"];
            assert_eq!(ws["maxLength"], 64, "{}", t.name);
            assert!(ws["description"].as_str().is_some(), "{}", t.name);
        }
    }

    #[test]
    fn bad_arguments_name_the_field() {
        let mut a = JsonObject::new();
        a.insert("workspace_id".into(), Value::from("ws_x"));
        a.insert("bogus".into(), Value::from(1));
        let e = args::<PageArgs>(Some(a)).err().unwrap();
        assert_eq!(e.code, "invalid_request");
        let e = args::<PageArgs>(None).err().unwrap();
        assert_eq!(e.code, "invalid_request");
        assert_eq!(e.extra["field"], "workspace_id");
    }
}
