//! Exporting a workspace: who may, what they see, and reading it page by page.
//!
//! [`Workspaces::export`] checks the caller's scopes (`export:read`; `export:read-all` adds the
//! audit log and member emails), records the export in the audit log and returns a
//! [`WorkspaceExport`], whose methods read each part of the workspace in pages of
//! [`EXPORT_PAGE`] rows by cursor, so that the HTTP layer can stream a workspace of any size in
//! bounded memory. What it hands out carries no secret: key records are turned into metadata by
//! the caller (never the hash or sealed key), and emails only when `sensitive`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::audit::{self, RequestMeta};
use crate::error::Error;
use crate::model::{
    ApiKey, AuditEntry, AuditFilter, GrantFilter, GrantView, KeyFilter, MemberView, Page,
    StoredScope, Workspace,
};
use crate::store::Store;
use crate::time::Timestamp;
use crate::webhooks::WebhookEndpoint;
use crate::workspaces::{Access, RoleView, Workspaces};

/// Rows per store read of an export.
pub const EXPORT_PAGE: u32 = 500;

/// One export in progress: the workspace as the caller may see it.
pub struct WorkspaceExport {
    store: Arc<dyn Store>,
    pub workspace: Workspace,
    /// `export:read-all`: member emails and the audit log are included.
    pub sensitive: bool,
    /// When the export started (key statuses are evaluated at this time).
    pub at: Timestamp,
    /// Built-in roles then custom ones.
    pub roles: Vec<RoleView>,
    /// Custom role id -> name, to name members' roles.
    role_names: HashMap<String, String>,
}

impl Workspaces {
    /// Starts an export of the caller's workspace. [export:read]; `export:read-all` makes it
    /// `sensitive`. Records `workspace.export` (or `workspace.export_all` when sensitive) in the
    /// audit log before anything is read: an export that cannot be recorded does not happen.
    pub async fn export(
        &self,
        access: &Access,
        meta: &RequestMeta,
    ) -> Result<WorkspaceExport, Error> {
        access.require(&["export:read"])?;
        let sensitive = access.require(&["export:read-all"]).is_ok();
        let at = self.clock.now();
        let action = if sensitive {
            "workspace.export_all"
        } else {
            "workspace.export"
        };
        let entry = audit::entry(
            at,
            meta,
            Some(access.workspace.id.clone()),
            access.actor.audit_actor(),
            action,
            Some(access.workspace.id.to_string()),
            true,
        );
        self.store.insert_audit(&entry).await?;
        let custom = self.store.roles_of(&access.workspace.id).await?;
        let role_names = custom
            .iter()
            .map(|r| (r.id.to_string(), r.name.clone()))
            .collect();
        let mut roles: Vec<RoleView> = crate::authz::BuiltinRole::ALL
            .iter()
            .map(|r| RoleView {
                id: None,
                name: r.as_str().to_owned(),
                scopes: r.scopes().names(),
                builtin: true,
            })
            .collect();
        roles.extend(custom.into_iter().map(|r| RoleView {
            id: Some(r.id),
            name: r.name,
            scopes: r.scopes,
            builtin: false,
        }));
        Ok(WorkspaceExport {
            store: self.store.clone(),
            workspace: access.workspace.clone(),
            sensitive,
            at,
            roles,
            role_names,
        })
    }
}

fn page(after: Option<String>) -> Page {
    Page {
        limit: EXPORT_PAGE,
        after,
    }
}

impl WorkspaceExport {
    /// The name of a member's role (a built-in name, or a custom role's name for its id).
    pub fn role_name(&self, reference: &str) -> String {
        self.role_names
            .get(reference)
            .cloned()
            .unwrap_or_else(|| reference.to_owned())
    }

    /// The workspace's own scopes (not the built-in catalog).
    pub async fn scopes(&self) -> Result<Vec<StoredScope>, Error> {
        Ok(self.store.scopes_of(&self.workspace.id).await?)
    }

    /// Members after `after` (a member id), by id. Emails are the caller's to leave out
    /// unless [`WorkspaceExport::sensitive`].
    pub async fn members(&self, after: Option<String>) -> Result<Vec<MemberView>, Error> {
        Ok(self
            .store
            .list_members(&self.workspace.id, &page(after))
            .await?)
    }

    /// Keys after `after` (a key id), by id.
    pub async fn keys(&self, after: Option<String>) -> Result<Vec<ApiKey>, Error> {
        Ok(self
            .store
            .list_keys(
                &self.workspace.id,
                &KeyFilter::default(),
                self.at,
                &page(after),
            )
            .await?)
    }

    /// Grants after `after` (a grant id), by id.
    pub async fn grants(&self, after: Option<String>) -> Result<Vec<GrantView>, Error> {
        Ok(self
            .store
            .list_grants(&self.workspace.id, &GrantFilter::default(), &page(after))
            .await?)
    }

    /// Webhook endpoints after `after` (an endpoint id), by id: URL, events and status; the
    /// workspace's webhook secret is never part of an export.
    pub async fn webhooks(&self, after: Option<String>) -> Result<Vec<WebhookEndpoint>, Error> {
        Ok(self
            .store
            .list_webhooks(&self.workspace.id, &page(after))
            .await?)
    }

    /// Audit entries after `after`, newest first; empty unless `sensitive`.
    pub async fn audit(&self, after: Option<String>) -> Result<Vec<AuditEntry>, Error> {
        if !self.sensitive {
            return Ok(Vec::new());
        }
        let filter = AuditFilter {
            workspace_id: Some(self.workspace.id.clone()),
            ..AuditFilter::default()
        };
        Ok(self.store.list_audit(&filter, &page(after)).await?)
    }
}
