//! Fixtures shared by the parts of the suite: values, assertions and small steps.

use keyrail_core::id::{AuditId, KeyId, MemberId, RoleId, UserId, WorkspaceId};
use keyrail_core::model::{
    ActorType, ApiKey, AuditEntry, AuditFilter, CustomRole, KeyFormat, Member, Page, StoredScope,
    User, Workspace, WorkspaceStatus,
};
use keyrail_core::secret::Secret;
use keyrail_core::{Store, StoreError, Timestamp};

/// An arbitrary instant with a non-zero millisecond part, so truncation would show.
pub(crate) const T0: i64 = 1_795_449_020_123;

pub(crate) fn ts(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

pub(crate) fn user(email: &str, name: &str, at: i64) -> User {
    User {
        id: UserId::new(),
        email: email.to_owned(),
        name: name.to_owned(),
        password_hash: Secret::new(format!(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${}",
            email.len()
        )),
        mfa_enabled: false,
        superuser: false,
        created_at: ts(at),
        updated_at: ts(at),
    }
}

pub(crate) fn workspace(name: &str, at: i64, key_format: KeyFormat) -> Workspace {
    Workspace {
        id: WorkspaceId::new(),
        name: name.to_owned(),
        status: WorkspaceStatus::Active,
        key_format,
        created_at: ts(at),
        updated_at: ts(at),
    }
}

pub(crate) fn member(ws: &Workspace, user: &User, role: &str, at: i64) -> Member {
    Member {
        id: MemberId::new(),
        workspace_id: ws.id.clone(),
        user_id: user.id.clone(),
        role: role.to_owned(),
        created_at: ts(at),
    }
}

pub(crate) fn assert_same_user(a: &User, b: &User) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.email, b.email);
    assert_eq!(a.name, b.name);
    assert_eq!(a.password_hash.expose(), b.password_hash.expose());
    assert_eq!(a.mfa_enabled, b.mfa_enabled);
    assert_eq!(a.superuser, b.superuser);
    assert_eq!(a.created_at, b.created_at);
    assert_eq!(a.updated_at, b.updated_at);
}

pub(crate) fn assert_same_workspace(a: &Workspace, b: &Workspace) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.name, b.name);
    assert_eq!(a.status, b.status);
    assert_eq!(a.key_format, b.key_format);
    assert_eq!(a.created_at, b.created_at);
    assert_eq!(a.updated_at, b.updated_at);
}

pub(crate) fn assert_same_member(a: &Member, b: &Member) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.workspace_id, b.workspace_id);
    assert_eq!(a.user_id, b.user_id);
    assert_eq!(a.role, b.role);
    assert_eq!(a.created_at, b.created_at);
}

pub(crate) fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict(w)) => assert_eq!(w, what),
        other => panic!("expected Conflict({what}), got {other:?}"),
    }
}

pub(crate) async fn new_user(store: &dyn Store, email: &str, at: i64) -> User {
    let u = user(email, "Identity", at);
    store.insert_user(&u).await.unwrap();
    u
}

/// A SHA-256-hex-like digest, distinct per label.
pub(crate) fn digest(label: &str) -> String {
    let mut out = String::with_capacity(64);
    for (i, b) in label.bytes().cycle().take(32).enumerate() {
        out.push_str(&format!("{:02x}", b ^ (i as u8)));
    }
    out.push_str(&format!("{:02x}", label.len()));
    out
}

/// An audit entry of `action`, for a change to write with it (who and where do not matter to
/// the store; `target` tells entries apart).
pub(crate) fn entry(action: &str) -> AuditEntry {
    AuditEntry {
        id: AuditId::new(),
        at: ts(0),
        workspace_id: None,
        actor_type: ActorType::User,
        actor_id: Some("usr_suite".to_owned()),
        action: action.to_owned(),
        target: Some(format!("suite-{}", AuditId::new())),
        ip: None,
        user_agent: None,
        outcome: "success".to_owned(),
        event: None,
    }
}

/// An entry of `action` whose id is taken already (written on its own first): a change given
/// it must fail as a whole, with a `Conflict` on the audit entry.
pub(crate) async fn taken_entry(store: &dyn Store, action: &str) -> AuditEntry {
    let e = entry(action);
    store.insert_audit(&e).await.unwrap();
    AuditEntry {
        target: Some("the second write of this id".to_owned()),
        ..e
    }
}

/// Whether the audit log holds `e` (by id and target: a refused second write of a taken id
/// is not there).
pub(crate) async fn audited(store: &dyn Store, e: &AuditEntry) -> bool {
    let filter = AuditFilter {
        action: Some(e.action.clone()),
        ..AuditFilter::default()
    };
    store
        .list_audit(&filter, &Page::first(1000))
        .await
        .unwrap()
        .iter()
        .any(|x| x.id == e.id && x.target == e.target)
}

pub(crate) fn assert_same_audit(a: &AuditEntry, b: &AuditEntry) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.at, b.at);
    assert_eq!(a.workspace_id, b.workspace_id);
    assert_eq!(a.actor_type, b.actor_type);
    assert_eq!(a.actor_id, b.actor_id);
    assert_eq!(a.action, b.action);
    assert_eq!(a.target, b.target);
    assert_eq!(a.ip, b.ip);
    assert_eq!(a.user_agent, b.user_agent);
    assert_eq!(a.outcome, b.outcome);
}

/// The change log entries after `before`, as (kind, subject, at).
pub(crate) async fn changes_since(
    store: &dyn Store,
    before: i64,
) -> Vec<(String, String, Timestamp)> {
    let mut out = Vec::new();
    let mut after = before;
    loop {
        let page = store.changes_after(after, 1000).await.unwrap();
        let done = page.len() < 1000;
        for c in page {
            after = c.seq;
            out.push((c.kind, c.subject, c.at));
        }
        if done {
            return out;
        }
    }
}

pub(crate) fn change(
    kind: &str,
    subject: impl ToString,
    at: Timestamp,
) -> (String, String, Timestamp) {
    (kind.to_owned(), subject.to_string(), at)
}

/// Creates a workspace owned by a new user; returns it with the owner's membership.
pub(crate) async fn new_workspace(store: &dyn Store, tag: &str, at: i64) -> (Workspace, Member) {
    let owner = new_user(store, &format!("{tag}-owner@example.com"), at).await;
    let ws = workspace(tag, at, KeyFormat::default());
    let m = member(&ws, &owner, "owner", at);
    store.create_workspace(&ws, &m).await.unwrap();
    (ws, m)
}

/// Adds a new user to `ws` with `role`.
pub(crate) async fn new_member(
    store: &dyn Store,
    ws: &Workspace,
    email: &str,
    role: &str,
    at: i64,
) -> Member {
    let u = new_user(store, email, at).await;
    let m = member(ws, &u, role, at);
    store.insert_member(&m, &entry("member.add")).await.unwrap();
    m
}

pub(crate) fn scope(name: &str, description: &str, dangerous: bool, at: i64) -> StoredScope {
    StoredScope {
        name: name.to_owned(),
        description: description.to_owned(),
        dangerous,
        created_at: ts(at),
    }
}

pub(crate) fn role(ws: &Workspace, name: &str, scopes: &[&str], at: i64) -> CustomRole {
    CustomRole {
        id: RoleId::new(),
        workspace_id: ws.id.clone(),
        name: name.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        created_at: ts(at),
        updated_at: ts(at),
    }
}

/// A key of `ws` with only the required fields set; its hash is `digest(label)`.
pub(crate) fn api_key(ws: &Workspace, label: &str, at: i64) -> ApiKey {
    let hash = digest(label);
    ApiKey {
        id: KeyId::new(),
        workspace_id: ws.id.clone(),
        name: label.to_owned(),
        prefix: format!("kr_{}", &hash[..4]),
        hash,
        scopes: vec!["keys:read".to_owned()],
        created_at: ts(at),
        created_by: None,
        updated_at: ts(at),
        expires_at: None,
        revoked_at: None,
        disabled: false,
        last_used_at: None,
        rate_limit: None,
        remaining: None,
        meta: None,
        external_id: None,
        sealed_key: None,
        replaced_by: None,
    }
}

/// Polls the futures together on this task (the store is borrowed, so no spawning); returns
/// their outputs in the order given.
pub(crate) async fn join_all<T, F: std::future::Future<Output = T>>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<T> {
    let mut futs: Vec<_> = futs.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, out) in futs.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("polled to completion"))
        .collect()
}

/// A fresh audit entry of `action` (each call a new id), for writes that carry their entry.
pub(crate) fn audit_of(action: &str) -> keyrail_core::model::AuditEntry {
    keyrail_core::model::AuditEntry {
        id: keyrail_core::id::AuditId::new(),
        at: ts(0),
        workspace_id: None,
        actor_type: keyrail_core::model::ActorType::Anonymous,
        actor_id: None,
        action: action.to_owned(),
        target: None,
        ip: None,
        user_agent: None,
        outcome: "success".into(),
        event: None,
    }
}
