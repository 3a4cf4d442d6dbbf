//! `GET /api/v1/w/{workspace_id}/export`: the workspace as one JSON document, streamed.
//!
//! The body is produced section by section ([`SECTIONS`]) by a task that reads the store in
//! pages of [`EXPORT_PAGE`] rows and serialises them as it goes, handing chunks of about
//! [`CHUNK`] bytes to the response through a small bounded channel: a workspace with a million
//! keys exports in bounded memory, and a client that stops reading stops the reading task.
//!
//! A failure after the headers were sent (the store goes away mid-export) is logged and ends the
//! body with an error: the connection is closed without the chunked terminator, so the client
//! sees a broken transfer and an incomplete JSON document, never a complete-looking one.

use std::io;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use keyrail_core::Timestamp;
use keyrail_core::export::{EXPORT_PAGE, WorkspaceExport};
use keyrail_core::model::StoredScope;
use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Meta;
use crate::error::{ApiError, ErrorBody};
use crate::routes::apps::GrantOut;
use crate::routes::common::{AuditOut, Caller};
use crate::routes::keys::KeyOut;
use crate::routes::webhooks::WebhookOut;
use crate::routes::workspaces::{RoleOut, WorkspaceOut};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export))
}

/// Bytes gathered before a chunk goes to the client.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the reading task and the response.
const CHANNEL: usize = 4;
/// The `format` of an export document, and its `version`.
const FORMAT: &str = "keyrail-export";
const VERSION: u32 = 1;

/// A member, as exported: no email unless `export:read-all`.
#[derive(Serialize, ToSchema)]
pub struct ExportMember {
    id: String,
    user_id: String,
    name: String,
    /// Only with `export:read-all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// A built-in role name or a custom role's name.
    role: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

/// A scope the workspace defined for its own API.
#[derive(Serialize, ToSchema)]
pub struct ExportScope {
    name: String,
    description: String,
    dangerous: bool,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

impl From<StoredScope> for ExportScope {
    fn from(s: StoredScope) -> Self {
        Self {
            name: s.name,
            description: s.description,
            dangerous: s.dangerous,
            created_at: s.created_at,
        }
    }
}

/// The export document (for the OpenAPI spec; the body is written section by section, in this
/// order).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ExportDoc {
    /// `keyrail-export`.
    format: String,
    /// 1.
    version: u32,
    #[schema(value_type = String, format = DateTime)]
    exported_at: Timestamp,
    /// True with `export:read-all`: member emails and the audit log are included.
    sensitive: bool,
    /// Settings, including the key format.
    workspace: WorkspaceOut,
    members: Vec<ExportMember>,
    /// Built-in roles, then the workspace's own.
    roles: Vec<RoleOut>,
    /// The workspace's own scopes (the built-in catalog is `GET /api/v1/scopes`).
    scopes: Vec<ExportScope>,
    /// Key metadata: never the key, its hash or its sealed copy.
    keys: Vec<KeyOut>,
    grants: Vec<GrantOut>,
    /// Webhook endpoints (never the webhook secret).
    webhooks: Vec<WebhookOut>,
    /// Newest first; only with `export:read-all`.
    audit: Option<Vec<AuditOut>>,
}

/// The parts of the document, in order. Each is a top-level field of the JSON object.
#[derive(Clone, Copy, Debug)]
enum Section {
    Workspace,
    Members,
    Roles,
    Scopes,
    Keys,
    Grants,
    /// Endpoints (URL, events, status), never the webhook secret.
    Webhooks,
    Audit,
}

const SECTIONS: &[Section] = &[
    Section::Workspace,
    Section::Members,
    Section::Roles,
    Section::Scopes,
    Section::Keys,
    Section::Grants,
    Section::Webhooks,
    Section::Audit,
];

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Workspace => "workspace",
            Section::Members => "members",
            Section::Roles => "roles",
            Section::Scopes => "scopes",
            Section::Keys => "keys",
            Section::Grants => "grants",
            Section::Webhooks => "webhooks",
            Section::Audit => "audit",
        }
    }

    /// Sections only `export:read-all` sees.
    fn sensitive(self) -> bool {
        matches!(self, Section::Audit)
    }
}

/// Why writing the body stopped.
enum Stop {
    /// The client went away: nothing to report.
    Gone,
    Failed(String),
}

/// The body being written: a buffer handed to the response in chunks.
struct Out {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl Out {
    fn raw(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn value<T: Serialize>(&mut self, v: &T) -> Result<(), Stop> {
        serde_json::to_writer(&mut self.buf, v).map_err(|e| Stop::Failed(e.to_string()))
    }

    async fn flush_if_full(&mut self) -> Result<(), Stop> {
        if self.buf.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.send(Ok(chunk)).await.map_err(|_| Stop::Gone)
    }

    /// Writes `[item, ...]` of every page `next(after)` yields until an empty or short page;
    /// `cursor` gives the id the next page starts after.
    async fn paged<R, T, F, Fut>(
        &mut self,
        mut next: F,
        cursor: impl Fn(&R) -> String,
        out: impl Fn(R) -> T,
    ) -> Result<(), Stop>
    where
        T: Serialize,
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<Vec<R>, keyrail_core::Error>>,
    {
        self.raw("[");
        let mut after: Option<String> = None;
        let mut first = true;
        loop {
            let rows = next(after.take())
                .await
                .map_err(|e| Stop::Failed(e.to_string()))?;
            let full = rows.len() >= EXPORT_PAGE as usize;
            let last = rows.last().map(&cursor);
            for row in rows {
                if !first {
                    self.raw(",");
                }
                first = false;
                self.value(&out(row))?;
                self.flush_if_full().await?;
            }
            match last {
                Some(id) if full => after = Some(id),
                _ => break,
            }
        }
        self.raw("]");
        Ok(())
    }
}

async fn write_section(out: &mut Out, ex: &WorkspaceExport, s: Section) -> Result<(), Stop> {
    match s {
        Section::Workspace => out.value(&WorkspaceOut::new(ex.workspace.clone(), None)),
        Section::Roles => {
            let roles: Vec<RoleOut> = ex.roles.iter().cloned().map(RoleOut::from).collect();
            out.value(&roles)
        }
        Section::Scopes => {
            let scopes = ex.scopes().await.map_err(|e| Stop::Failed(e.to_string()))?;
            let scopes: Vec<ExportScope> = scopes.into_iter().map(ExportScope::from).collect();
            out.value(&scopes)
        }
        Section::Members => {
            out.paged(
                |after| ex.members(after),
                |m| m.member.id.to_string(),
                |m| ExportMember {
                    id: m.member.id.to_string(),
                    user_id: m.member.user_id.to_string(),
                    name: m.name,
                    email: ex.sensitive.then_some(m.email),
                    role: ex.role_name(&m.member.role),
                    created_at: m.member.created_at,
                },
            )
            .await
        }
        Section::Keys => {
            out.paged(
                |after| ex.keys(after),
                |k| k.id.to_string(),
                |k| KeyOut::new(k, ex.at),
            )
            .await
        }
        Section::Grants => {
            out.paged(
                |after| ex.grants(after),
                |g| g.grant.id.to_string(),
                GrantOut::from,
            )
            .await
        }
        Section::Webhooks => {
            out.paged(
                |after| ex.webhooks(after),
                |w| w.id.to_string(),
                WebhookOut::from,
            )
            .await
        }
        Section::Audit => {
            out.paged(
                |after| ex.audit(after),
                |e| e.id.to_string(),
                AuditOut::from,
            )
            .await
        }
    }
}

async fn write_document(out: &mut Out, ex: &WorkspaceExport) -> Result<(), Stop> {
    out.raw("{\"format\":");
    out.value(&FORMAT)?;
    out.raw(",\"version\":");
    out.value(&VERSION)?;
    out.raw(",\"exported_at\":");
    out.value(&ex.at)?;
    out.raw(",\"sensitive\":");
    out.value(&ex.sensitive)?;
    for &s in SECTIONS {
        if s.sensitive() && !ex.sensitive {
            continue;
        }
        out.raw(",\"");
        out.raw(s.name());
        out.raw("\":");
        write_section(out, ex, s).await.map_err(|e| match e {
            Stop::Failed(m) => Stop::Failed(format!("section {}: {m}", s.name())),
            gone => gone,
        })?;
        out.flush_if_full().await?;
    }
    out.raw("}\n");
    out.flush().await
}

/// Export the workspace as one JSON document: settings (with the key format), members (without
/// emails), roles, the workspace's own scopes, key metadata and grants; with
/// `export:read-all` also member emails and the audit log; webhook endpoints. Never a key, hash, sealed secret or
/// password. Streamed section by section; a failure midway breaks the transfer (the JSON is
/// then incomplete). Recorded in the audit log as `workspace.export` (`workspace.export_all`
/// with sensitive data). [export:read]
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}/export", tag = "export",
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The export", body = ExportDoc, headers(("Cache-Control" = String, description = "`no-store`: the body may hold member emails and the audit log"))),
        (status = 403, description = "`insufficient_scope` or `tenant_suspended`", body = ErrorBody),
        (status = 404, description = "No such workspace visible to the caller", body = ErrorBody),
    ))]
pub async fn export(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(ws): Path<String>,
) -> Result<Response, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let ex = state.workspaces.export(&access, &meta).await?;
    let filename = format!("attachment; filename=\"keyrail-{}.json\"", ex.workspace.id);
    let (tx, mut rx) = mpsc::channel(CHANNEL);
    tokio::spawn(async move {
        let mut out = Out {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(Stop::Failed(e)) = write_document(&mut out, &ex).await {
            tracing::error!(workspace = %ex.workspace.id, error = %e, "export failed midway; the response is cut short");
            let _ = out
                .tx
                .send(Err(io::Error::other("export failed midway")))
                .await;
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = Body::from_stream(stream).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&filename) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
