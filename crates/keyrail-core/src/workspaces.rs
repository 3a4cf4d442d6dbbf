//! Workspaces, members, roles and custom scopes, and the question every endpoint of a workspace
//! asks first: who is calling, and what may they do here? The HTTP layer, the console and the
//! CLI call these use cases; the rules live here once.

use std::sync::Arc;

use crate::audit::{self, RequestMeta};
use crate::authz::{
    self, BuiltinRole, Catalog, CatalogEntry, CustomScope, Role, ScopeSet, closure,
};
use crate::clock::Clock;
use crate::error::Error;
use crate::events::OutboxEvent;
use crate::id::{MemberId, RoleId, UserId, WorkspaceId};
use crate::identity::normalize_email;
use crate::model::{
    ActorType, AuditEntry, AuditFilter, CustomRole, KeyFormat, Member, MemberView, OwnerGuarded,
    Page, StoredScope, User, Workspace, WorkspaceStatus,
};
use crate::store::{Store, StoreError};
use crate::time::Timestamp;

/// Who is acting. Later credentials (API keys bound to one workspace, app grants) add variants.
#[derive(Debug, Clone)]
pub enum Actor {
    User {
        user_id: UserId,
        superuser: bool,
    },
    /// An API key: bound to its workspace, acting with its own (closed) scopes.
    Key {
        key_id: crate::id::KeyId,
        workspace_id: WorkspaceId,
        effective: ScopeSet,
    },
    /// An app acting through a grant: as the grant's member, in the grant's workspace, within
    /// the grant's scopes and the member's current ones.
    App(crate::apps::AppSession),
}

impl Actor {
    pub fn audit_actor(&self) -> (ActorType, Option<String>) {
        match self {
            Actor::User { user_id, .. } => (ActorType::User, Some(user_id.to_string())),
            Actor::Key { key_id, .. } => (ActorType::Key, Some(key_id.to_string())),
            Actor::App(app) => (ActorType::App, Some(app.client_id.clone())),
        }
    }

    /// How `created_by` names this actor.
    pub fn reference(&self) -> String {
        match self {
            Actor::User { user_id, .. } => user_id.to_string(),
            Actor::Key { key_id, .. } => key_id.to_string(),
            Actor::App(app) => app.client_id.clone(),
        }
    }

    pub fn is_superuser(&self) -> bool {
        match self {
            Actor::User { superuser, .. } => *superuser,
            Actor::Key { effective, .. } => effective.is_superuser(),
            Actor::App(_) => false,
        }
    }

    pub(crate) fn user_only(&self) -> Result<&UserId, Error> {
        match self {
            Actor::User { user_id, .. } => Ok(user_id),
            Actor::Key { .. } => Err(Error::forbidden(
                "forbidden",
                "API keys are bound to their workspace; log in as a user for this",
            )),
            Actor::App(_) => Err(Error::forbidden(
                "forbidden",
                "App tokens act in their grant's workspace only; log in as a user for this",
            )),
        }
    }
}

/// What a principal may do in one workspace.
#[derive(Debug, Clone)]
pub struct Access {
    pub actor: Actor,
    pub workspace: Workspace,
    pub catalog: Catalog,
    /// Closed under implication.
    pub effective: ScopeSet,
    /// The caller's membership, when a member.
    pub member: Option<Member>,
}

impl Access {
    pub fn require(&self, scopes: &[&str]) -> Result<(), Error> {
        authz::require(&self.effective, scopes)
    }
}

fn superuser_set() -> ScopeSet {
    ScopeSet::parse(&[authz::SUPERUSER], "scopes").expect("valid")
}

fn not_found_ws() -> Error {
    Error::NotFound { what: "workspace" }
}

pub fn tenant_suspended() -> Error {
    Error::forbidden("tenant_suspended", "Tenant suspended or inactive")
}

fn clean_workspace_name(raw: &str) -> Result<String, Error> {
    let name = raw.trim();
    let n = name.chars().count();
    if n == 0 || n > 100 || name.chars().any(char::is_control) {
        return Err(Error::invalid("name", "name must be 1 to 100 characters"));
    }
    Ok(name.to_owned())
}

pub struct Workspaces {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Told about key-format changes and workspace deletion (its cache and format index).
    pub verifier: Arc<crate::keys::verify::KeyVerifier>,
}

/// A role as listed by `GET W/roles`.
#[derive(Debug, Clone)]
pub struct RoleView {
    pub id: Option<RoleId>,
    pub name: String,
    pub scopes: Vec<String>,
    pub builtin: bool,
}

impl Workspaces {
    /// The audit entry of an action in the workspace, for the store to write with the change.
    fn audit_entry(
        &self,
        access: &Access,
        meta: &RequestMeta,
        action: &str,
        target: String,
        at: Timestamp,
    ) -> AuditEntry {
        audit::entry(
            at,
            meta,
            Some(access.workspace.id.clone()),
            access.actor.audit_actor(),
            action,
            Some(target),
            true,
        )
    }

    /// The workspace's catalog: built-in scopes and its own.
    pub async fn catalog(&self, ws: &WorkspaceId) -> Result<Catalog, Error> {
        let custom: Vec<CustomScope> = self
            .store
            .scopes_of(ws)
            .await?
            .into_iter()
            .filter_map(|s| CustomScope::new(&s.name, &s.description, s.dangerous).ok())
            .collect();
        Ok(Catalog::with_custom(&custom))
    }

    /// Resolves a member's role reference (built-in name or custom role id).
    async fn role(&self, ws: &WorkspaceId, reference: &str) -> Result<Option<Role>, Error> {
        if let Some(b) = BuiltinRole::parse(reference) {
            return Ok(Some(Role::Builtin(b)));
        }
        let Some(id) = RoleId::parse(reference) else {
            return Ok(None);
        };
        Ok(self.store.role_by_id(ws, &id).await?.map(role_of_custom))
    }

    /// Resolves a role named in a request: a built-in name, a custom role's id or its name.
    async fn role_named(&self, ws: &WorkspaceId, given: &str) -> Result<Role, Error> {
        if let Some(role) = self.role(ws, given).await? {
            return Ok(role);
        }
        let custom = self.store.roles_of(ws).await?;
        custom
            .into_iter()
            .find(|r| r.name == given)
            .map(role_of_custom)
            .ok_or_else(|| {
                Error::invalid(
                    "role",
                    format!("role: no role named {given:?} in this workspace"),
                )
            })
    }

    /// Who may do what in `ws_id`. Workspaces the caller cannot see answer 404, whether they
    /// exist or not; a suspended workspace answers 403 `tenant_suspended` to all but superusers.
    pub async fn access(&self, actor: &Actor, ws_id: &str) -> Result<Access, Error> {
        let id = WorkspaceId::parse(ws_id).ok_or_else(not_found_ws)?;
        let workspace = self
            .store
            .workspace_by_id(&id)
            .await?
            .ok_or_else(not_found_ws)?;
        let catalog = self.catalog(&id).await?;
        let (effective, member) = match actor {
            Actor::Key {
                workspace_id,
                effective,
                ..
            } => {
                if *workspace_id == id {
                    (effective.clone(), None)
                } else if effective.is_superuser() {
                    (
                        closure(&superuser_set(), &catalog).union(&superuser_set()),
                        None,
                    )
                } else {
                    return Err(not_found_ws());
                }
            }
            Actor::App(app) => {
                if app.workspace_id != id {
                    return Err(not_found_ws());
                }
                // Grants go with their member, so a missing member means the grant just went.
                let member = self
                    .store
                    .member_by_id(&id, &app.member_id)
                    .await?
                    .ok_or_else(Error::invalid_token)?;
                let held = self
                    .role(&id, &member.role)
                    .await?
                    .map(|r| r.effective(&catalog))
                    .unwrap_or_default();
                let granted = closure(&app.scopes, &catalog);
                (granted.intersection(&held), Some(member))
            }
            Actor::User { user_id, superuser } => {
                let member = self.store.member_of(&id, user_id).await?;
                let role_scopes = match &member {
                    Some(m) => self
                        .role(&id, &m.role)
                        .await?
                        .map(|r| r.effective(&catalog))
                        .unwrap_or_default(),
                    None if *superuser => ScopeSet::new(),
                    None => return Err(not_found_ws()),
                };
                let effective = if *superuser {
                    role_scopes
                        .union(&closure(&superuser_set(), &catalog))
                        .union(&superuser_set())
                } else {
                    role_scopes
                };
                (effective, member)
            }
        };
        if workspace.status == WorkspaceStatus::Suspended && !actor.is_superuser() {
            return Err(tenant_suspended());
        }
        Ok(Access {
            actor: actor.clone(),
            workspace,
            catalog,
            effective,
            member,
        })
    }

    pub async fn create(&self, actor: &Actor, name: &str) -> Result<Workspace, Error> {
        let user_id = actor.user_only()?;
        let name = clean_workspace_name(name)?;
        let now = self.clock.now();
        let ws = Workspace {
            id: WorkspaceId::new(),
            name,
            status: WorkspaceStatus::Active,
            key_format: KeyFormat::default(),
            created_at: now,
            updated_at: now,
        };
        let owner = Member {
            id: MemberId::new(),
            workspace_id: ws.id.clone(),
            user_id: user_id.clone(),
            role: BuiltinRole::Owner.as_str().into(),
            created_at: now,
        };
        self.store.create_workspace(&ws, &owner).await?;
        Ok(ws)
    }

    /// The caller's workspaces with the name of their role in each.
    pub async fn list_mine(&self, actor: &Actor) -> Result<Vec<(Workspace, String)>, Error> {
        if let Actor::App(app) = actor {
            let ws = self
                .store
                .workspace_by_id(&app.workspace_id)
                .await?
                .ok_or_else(not_found_ws)?;
            return Ok(vec![(ws, "app".to_owned())]);
        }
        if let Actor::Key { workspace_id, .. } = actor {
            let ws = self
                .store
                .workspace_by_id(workspace_id)
                .await?
                .ok_or_else(not_found_ws)?;
            return Ok(vec![(ws, "api_key".to_owned())]);
        }
        let user_id = actor.user_only()?;
        let mut out = Vec::new();
        for (ws, m) in self.store.memberships_of_user(user_id).await? {
            let role = self
                .role(&ws.id, &m.role)
                .await?
                .map_or_else(|| m.role.clone(), |r| r.name().to_owned());
            out.push((ws, role));
        }
        Ok(out)
    }

    pub fn get(&self, access: &Access) -> Result<Workspace, Error> {
        access.require(&["workspace:read"])?;
        Ok(access.workspace.clone())
    }

    pub async fn update(
        &self,
        access: &Access,
        meta: &RequestMeta,
        name: Option<&str>,
        key_format: Option<KeyFormat>,
    ) -> Result<Workspace, Error> {
        access.require(&["workspace:write"])?;
        let mut ws = access.workspace.clone();
        if let Some(name) = name {
            ws.name = clean_workspace_name(name)?;
        }
        let format_changed = key_format.is_some();
        if let Some(format) = key_format {
            format.validate()?;
            ws.key_format = format;
        }
        let new_format = ws.key_format.clone();
        ws.updated_at = self.clock.now();
        let entry = self.audit_entry(
            access,
            meta,
            "workspace.update",
            ws.id.to_string(),
            ws.updated_at,
        );
        if !self.store.update_workspace(&ws, &entry).await? {
            return Err(not_found_ws());
        }
        if format_changed {
            self.verifier.add_format(&new_format);
        }
        Ok(ws)
    }

    pub async fn delete(&self, access: &Access, meta: &RequestMeta) -> Result<(), Error> {
        access.require(&["workspace:delete"])?;
        let id = access.workspace.id.clone();
        let now = self.clock.now();
        // Written with the deletion (audit entries outlive their workspace).
        let entry = self.audit_entry(access, meta, "workspace.delete", id.to_string(), now);
        let deleted = self.store.delete_workspace(&id, now, &entry).await;
        self.verifier.evict_workspace(&id);
        if !deleted? {
            return Err(not_found_ws());
        }
        Ok(())
    }

    // members

    pub async fn members(&self, access: &Access, page: &Page) -> Result<Vec<MemberView>, Error> {
        access.require(&["members:read"])?;
        Ok(self.store.list_members(&access.workspace.id, page).await?)
    }

    /// The name of a member's role, for display.
    pub async fn role_name(&self, ws: &WorkspaceId, reference: &str) -> Result<String, Error> {
        Ok(self
            .role(ws, reference)
            .await?
            .map_or_else(|| reference.to_owned(), |r| r.name().to_owned()))
    }

    /// The caller must hold every scope of the member's current role to change or remove them:
    /// an admin cannot demote or remove an owner.
    async fn require_outranks(&self, access: &Access, target: &Member) -> Result<(), Error> {
        if let Some(current) = self.role(&access.workspace.id, &target.role).await? {
            authz::can_grant(
                &access.effective,
                &current.effective(&access.catalog),
                &access.catalog,
            )?;
        }
        Ok(())
    }

    /// The roles the caller may give a member (built-in first, strongest first, then the
    /// workspace's custom roles): the rule of [`Self::add_member`] and [`Self::update_member`],
    /// for a form that offers only what would be accepted.
    pub async fn grantable_roles(&self, access: &Access) -> Result<Vec<RoleView>, Error> {
        access.require(&["members:write"])?;
        let mut out = Vec::new();
        let builtin = BuiltinRole::ALL.iter().map(|r| Role::Builtin(*r));
        let custom = self
            .store
            .roles_of(&access.workspace.id)
            .await?
            .into_iter()
            .map(role_of_custom);
        for role in builtin.chain(custom) {
            if require_grantable(access, &role).is_ok() {
                out.push(RoleView {
                    id: RoleId::parse(role.reference()),
                    name: role.name().to_owned(),
                    scopes: role.scopes().names(),
                    builtin: role.is_builtin(),
                });
            }
        }
        Ok(out)
    }

    /// Whether the caller may change or remove this member at all (the rule of
    /// [`Self::update_member`] and [`Self::remove_member`]: members:write and every scope of
    /// the member's current role), for a page that hides what would be refused.
    pub async fn may_manage(&self, access: &Access, target: &Member) -> Result<bool, Error> {
        if access.require(&["members:write"]).is_err() {
            return Ok(false);
        }
        match self.require_outranks(access, target).await {
            Ok(()) => Ok(true),
            Err(Error::Forbidden { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn member(&self, access: &Access, id: &str) -> Result<Member, Error> {
        let id = MemberId::parse(id).ok_or(Error::NotFound { what: "member" })?;
        self.store
            .member_by_id(&access.workspace.id, &id)
            .await?
            .ok_or(Error::NotFound { what: "member" })
    }

    pub async fn add_member(
        &self,
        access: &Access,
        meta: &RequestMeta,
        email: &str,
        role: &str,
    ) -> Result<(Member, User, String), Error> {
        access.require(&["members:write"])?;
        let role = self.role_named(&access.workspace.id, role).await?;
        require_grantable(access, &role)?;
        let email = normalize_email(email).ok_or(Error::NotFound { what: "user" })?;
        let user = self
            .store
            .user_by_email(&email)
            .await?
            .ok_or(Error::NotFound { what: "user" })?;
        let member = Member {
            id: MemberId::new(),
            workspace_id: access.workspace.id.clone(),
            user_id: user.id.clone(),
            role: role.reference().to_owned(),
            created_at: self.clock.now(),
        };
        let entry = self
            .audit_entry(
                access,
                meta,
                "member.add",
                member.id.to_string(),
                member.created_at,
            )
            .with_event(OutboxEvent::new(
                "member.added",
                serde_json::json!({
                    "member_id": member.id,
                    "user_id": member.user_id,
                    "role": role.name(),
                }),
                access.workspace.id.clone(),
            ));
        match self.store.insert_member(&member, &entry).await {
            Ok(()) => {}
            Err(StoreError::Conflict(what)) if what == "member" => {
                return Err(Error::conflict(
                    "member_exists",
                    "This user is already a member of the workspace",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        Ok((member, user, role.name().to_owned()))
    }

    pub async fn update_member(
        &self,
        access: &Access,
        meta: &RequestMeta,
        id: &str,
        role: &str,
    ) -> Result<Member, Error> {
        access.require(&["members:write"])?;
        let mut member = self.member(access, id).await?;
        let role = self.role_named(&access.workspace.id, role).await?;
        self.require_outranks(access, &member).await?;
        require_grantable(access, &role)?;
        let now = self.clock.now();
        let entry = self.audit_entry(access, meta, "member.update", member.id.to_string(), now);
        match self
            .store
            .set_member_role(
                &access.workspace.id,
                &member.id,
                role.reference(),
                now,
                &entry,
            )
            .await?
        {
            OwnerGuarded::Done => {}
            OwnerGuarded::NotFound => return Err(Error::NotFound { what: "member" }),
            OwnerGuarded::LastOwner => return Err(last_owner()),
        }
        member.role = role.reference().to_owned();
        Ok(member)
    }

    pub async fn remove_member(
        &self,
        access: &Access,
        meta: &RequestMeta,
        id: &str,
    ) -> Result<(), Error> {
        access.require(&["members:write"])?;
        let member = self.member(access, id).await?;
        self.require_outranks(access, &member).await?;
        let now = self.clock.now();
        let entry = self
            .audit_entry(access, meta, "member.remove", member.id.to_string(), now)
            .with_event(OutboxEvent::new(
                "member.removed",
                serde_json::json!({"member_id": member.id, "user_id": member.user_id}),
                access.workspace.id.clone(),
            ));
        match self
            .store
            .remove_member(&access.workspace.id, &member.id, now, &entry)
            .await?
        {
            OwnerGuarded::Done => Ok(()),
            OwnerGuarded::NotFound => Err(Error::NotFound { what: "member" }),
            OwnerGuarded::LastOwner => Err(last_owner()),
        }
    }

    // roles

    pub async fn roles(&self, access: &Access) -> Result<Vec<RoleView>, Error> {
        access.require(&["members:admin"])?;
        let mut out: Vec<RoleView> = BuiltinRole::ALL
            .iter()
            .map(|r| RoleView {
                id: None,
                name: r.as_str().to_owned(),
                scopes: r.scopes().names(),
                builtin: true,
            })
            .collect();
        for r in self.store.roles_of(&access.workspace.id).await? {
            out.push(RoleView {
                id: Some(r.id),
                name: r.name,
                scopes: r.scopes,
                builtin: false,
            });
        }
        Ok(out)
    }

    pub async fn create_role(
        &self,
        access: &Access,
        meta: &RequestMeta,
        name: &str,
        scopes: &[String],
    ) -> Result<CustomRole, Error> {
        access.require(&["members:admin"])?;
        let set = authz::validate_custom_role(&access.effective, name, scopes, &access.catalog)?;
        let now = self.clock.now();
        let role = CustomRole {
            id: RoleId::new(),
            workspace_id: access.workspace.id.clone(),
            name: name.to_owned(),
            scopes: set.names(),
            created_at: now,
            updated_at: now,
        };
        let entry = self.audit_entry(access, meta, "role.create", role.id.to_string(), now);
        match self.store.insert_role(&role, &entry).await {
            Ok(()) => {}
            Err(StoreError::Conflict(what)) if what.starts_with("role") => {
                return Err(role_exists());
            }
            Err(e) => return Err(e.into()),
        }
        Ok(role)
    }

    async fn custom_role(&self, access: &Access, id: &str) -> Result<CustomRole, Error> {
        let id = RoleId::parse(id).ok_or(Error::NotFound { what: "role" })?;
        self.store
            .role_by_id(&access.workspace.id, &id)
            .await?
            .ok_or(Error::NotFound { what: "role" })
    }

    pub async fn update_role(
        &self,
        access: &Access,
        meta: &RequestMeta,
        id: &str,
        name: Option<&str>,
        scopes: Option<&[String]>,
    ) -> Result<CustomRole, Error> {
        access.require(&["members:admin"])?;
        let mut role = self.custom_role(access, id).await?;
        // Changing a role changes what its holders may do: the caller must hold what it gives
        // now and what it will give.
        let current = ScopeSet::parse(&role.scopes, "scopes").unwrap_or_default();
        authz::can_grant(&access.effective, &current, &access.catalog)?;
        if let Some(name) = name {
            authz::validate_role_name(name)?;
            role.name = name.to_owned();
        }
        if let Some(scopes) = scopes {
            let set = authz::validate_role_scopes(&access.effective, scopes, &access.catalog)?;
            role.scopes = set.names();
        }
        role.updated_at = self.clock.now();
        let entry = self.audit_entry(
            access,
            meta,
            "role.update",
            role.id.to_string(),
            role.updated_at,
        );
        match self.store.update_role(&role, &entry).await {
            Ok(true) => {}
            Ok(false) => return Err(Error::NotFound { what: "role" }),
            Err(StoreError::Conflict(what)) if what.starts_with("role") => {
                return Err(role_exists());
            }
            Err(e) => return Err(e.into()),
        }
        Ok(role)
    }

    pub async fn delete_role(
        &self,
        access: &Access,
        meta: &RequestMeta,
        id: &str,
    ) -> Result<(), Error> {
        access.require(&["members:admin"])?;
        let role = self.custom_role(access, id).await?;
        let now = self.clock.now();
        let entry = self.audit_entry(access, meta, "role.delete", role.id.to_string(), now);
        match self
            .store
            .delete_role(&access.workspace.id, &role.id, now, &entry)
            .await?
        {
            None => Err(Error::NotFound { what: "role" }),
            Some(0) => Ok(()),
            Some(n) => Err(Error::conflict(
                "role_in_use",
                format!("{n} member(s) hold this role; give them another role first"),
            )),
        }
    }

    // scopes

    pub fn scopes(&self, access: &Access) -> Result<Vec<CatalogEntry>, Error> {
        access.require(&["workspace:write"])?;
        Ok(access.catalog.entries().to_vec())
    }

    pub async fn create_scope(
        &self,
        access: &Access,
        meta: &RequestMeta,
        name: &str,
        description: &str,
        dangerous: bool,
    ) -> Result<CatalogEntry, Error> {
        access.require(&["workspace:write"])?;
        let scope = access.catalog.admit(name, description, dangerous)?;
        let stored = StoredScope {
            name: scope.name.as_str().to_owned(),
            description: scope.description.clone(),
            dangerous: scope.dangerous,
            created_at: self.clock.now(),
        };
        let entry = self.audit_entry(
            access,
            meta,
            "scope.create",
            stored.name.clone(),
            stored.created_at,
        );
        match self
            .store
            .insert_scope(&access.workspace.id, &stored, &entry)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(what)) if what == "scope" => {
                return Err(Error::conflict("scope_exists", "This scope already exists"));
            }
            Err(e) => return Err(e.into()),
        }
        let catalog = self.catalog(&access.workspace.id).await?;
        catalog
            .get(&stored.name)
            .cloned()
            .ok_or_else(|| Error::Internal("a created scope is missing from the catalog".into()))
    }

    pub async fn delete_scope(
        &self,
        access: &Access,
        meta: &RequestMeta,
        name: &str,
    ) -> Result<(), Error> {
        access.require(&["workspace:write"])?;
        access.catalog.check_deletable(name)?;
        let now = self.clock.now();
        let entry = self.audit_entry(access, meta, "scope.delete", name.to_owned(), now);
        // The scope goes from every key, grant and custom role of the workspace with it: a
        // scope made again under the same name gives them nothing.
        let deleted = self
            .store
            .delete_scope(&access.workspace.id, name, now, &entry)
            .await;
        // Keys carrying the scope lose it now (other nodes: through `scope.deleted`).
        self.verifier.evict_workspace(&access.workspace.id);
        if !deleted? {
            return Err(Error::NotFound { what: "scope" });
        }
        Ok(())
    }

    // audit

    pub async fn audit_log(
        &self,
        access: &Access,
        mut filter: AuditFilter,
        page: &Page,
    ) -> Result<Vec<AuditEntry>, Error> {
        access.require(&["audit:read"])?;
        filter.workspace_id = Some(access.workspace.id.clone());
        Ok(self.store.list_audit(&filter, page).await?)
    }
}

/// A stored custom role as a role a member can hold.
fn role_of_custom(r: CustomRole) -> Role {
    Role::Custom {
        id: r.id.to_string(),
        scopes: ScopeSet::parse(&r.scopes, "scopes").unwrap_or_default(),
        name: r.name,
    }
}

/// Nobody gives a role with scopes they do not hold: what the role gives here (built-in roles
/// also cover the workspace's own scopes) must be within the caller's own scopes.
fn require_grantable(access: &Access, role: &Role) -> Result<(), Error> {
    authz::can_grant(
        &access.effective,
        &role.effective(&access.catalog),
        &access.catalog,
    )
}

fn last_owner() -> Error {
    Error::conflict(
        "last_owner",
        "The last owner of a workspace cannot be removed or demoted",
    )
}

fn role_exists() -> Error {
    Error::conflict("role_exists", "A role with this name already exists")
}
