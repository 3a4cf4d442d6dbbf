//! Black-box tests of workspaces, members, roles, custom scopes, suspension, the audit log and
//! platform administration.

mod common;

use common::{PASSWORD, TestServer, json};
use serde_json::{Value, json};

struct Ctx {
    s: TestServer,
}

impl Ctx {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.s.call(method, path, token, body.as_ref()).await
    }

    async fn token(&self, email: &str) -> String {
        self.s.user(email).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn workspace(&self, token: &str) -> String {
        let (status, ws) = self
            .call(
                "POST",
                "/api/v1/workspaces",
                token,
                Some(json!({"name": "Acme"})),
            )
            .await;
        assert_eq!(status, 201, "{ws}");
        ws["id"].as_str().unwrap().to_owned()
    }

    async fn add(&self, ws: &str, token: &str, email: &str, role: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/w/{ws}/members"),
            token,
            Some(json!({"email": email, "role": role})),
        )
        .await
    }
}

async fn ctx() -> Ctx {
    Ctx {
        s: TestServer::start().await,
    }
}

#[tokio::test]
async fn create_list_get_update_and_delete_a_workspace() {
    let c = ctx().await;
    let t = c.token("ada@example.com").await;
    let (status, ws) = c
        .call(
            "POST",
            "/api/v1/workspaces",
            &t,
            Some(json!({"name": "Acme"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(ws["status"], "active");
    assert_eq!(
        ws["key_format"],
        json!({"prefix": "kr", "alphabet": "base62", "length": 30, "checksum": true})
    );
    let id = ws["id"].as_str().unwrap();
    assert!(id.starts_with("ws_"));
    let (_, list) = c.call("GET", "/api/v1/workspaces", &t, None).await;
    assert_eq!(list["data"][0]["id"], id);
    assert_eq!(list["data"][0]["role"], "owner");

    let (status, upd) = c
        .call("PATCH", &format!("/api/v1/w/{id}"), &t, Some(json!({"name": "Acme Inc", "key_format": {"prefix": "sgw", "alphabet": "hex", "length": 32, "checksum": false}})))
        .await;
    assert_eq!(status, 200, "{upd}");
    assert_eq!(upd["name"], "Acme Inc");
    assert_eq!(upd["key_format"]["prefix"], "sgw");
    let (status, weak) = c
        .call("PATCH", &format!("/api/v1/w/{id}"), &t, Some(json!({"key_format": {"prefix": "kr", "alphabet": "hex", "length": 16, "checksum": true}})))
        .await;
    assert_eq!(
        (status, weak["code"].as_str()),
        (400, Some("invalid_request")),
        "{weak}"
    );
    let (status, _) = c
        .call(
            "PATCH",
            &format!("/api/v1/w/{id}"),
            &t,
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(status, 400, "status is not writable by members");

    let (status, _) = c.call("DELETE", &format!("/api/v1/w/{id}"), &t, None).await;
    assert_eq!(status, 204);
    let (status, _) = c.call("GET", &format!("/api/v1/w/{id}"), &t, None).await;
    assert_eq!(status, 404);
    c.s.stop().await;
}

#[tokio::test]
async fn the_last_owner_stays() {
    let c = ctx().await;
    let owner = c.token("owner@example.com").await;
    let ws = c.workspace(&owner).await;
    let (_, members) = c
        .call("GET", &format!("/api/v1/w/{ws}/members"), &owner, None)
        .await;
    let me = members["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(members["data"][0]["role"], "owner");
    let (status, b) = c
        .call(
            "PATCH",
            &format!("/api/v1/w/{ws}/members/{me}"),
            &owner,
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!((status, b["code"].as_str()), (409, Some("last_owner")));
    let (status, b) = c
        .call(
            "DELETE",
            &format!("/api/v1/w/{ws}/members/{me}"),
            &owner,
            None,
        )
        .await;
    assert_eq!((status, b["code"].as_str()), (409, Some("last_owner")));
    // With a second owner, the first may step down.
    c.token("second@example.com").await;
    let (status, second) = c.add(&ws, &owner, "second@example.com", "owner").await;
    assert_eq!(status, 201, "{second}");
    let (status, _) = c
        .call(
            "PATCH",
            &format!("/api/v1/w/{ws}/members/{me}"),
            &owner,
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(status, 200);
    c.s.stop().await;
}

#[tokio::test]
async fn nobody_grants_what_they_do_not_hold() {
    let c = ctx().await;
    let owner = c.token("owner@example.com").await;
    let ws = c.workspace(&owner).await;
    let admin = c.token("admin@example.com").await;
    c.add(&ws, &owner, "admin@example.com", "admin").await;
    c.token("pat@example.com").await;

    // An admin lacks workspace:delete: cannot make owners, nor roles with it.
    let (status, b) = c.add(&ws, &admin, "pat@example.com", "owner").await;
    assert_eq!(
        (status, b["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{b}"
    );
    assert_eq!(b["required"], json!(["workspace:delete"]));
    let (status, b) = c
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/roles"),
            &admin,
            Some(json!({"name": "deleter", "scopes": ["workspace:delete"]})),
        )
        .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    // Nor demote or remove an owner.
    let (_, members) = c
        .call("GET", &format!("/api/v1/w/{ws}/members"), &owner, None)
        .await;
    let owner_member = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "owner")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = c
        .call(
            "DELETE",
            &format!("/api/v1/w/{ws}/members/{owner_member}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 403);
    // admin:superuser is never given to a workspace role, even by a superuser.
    let (status, b) = c
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/roles"),
            &owner,
            Some(json!({"name": "root", "scopes": ["admin:superuser"]})),
        )
        .await;
    assert_eq!(status, 403, "{b}");
    // A custom role within the admin's scopes is fine, and can be given to members.
    let (status, role) = c
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/roles"),
            &admin,
            Some(json!({"name": "key-reader", "scopes": ["keys:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{role}");
    let (status, m) = c.add(&ws, &admin, "pat@example.com", "key-reader").await;
    assert_eq!(
        (status, m["role"].as_str()),
        (201, Some("key-reader")),
        "{m}"
    );
    let role_id = role["id"].as_str().unwrap();
    let (status, b) = c
        .call(
            "DELETE",
            &format!("/api/v1/w/{ws}/roles/{role_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!((status, b["code"].as_str()), (409, Some("role_in_use")));
    let (_, roles) = c
        .call("GET", &format!("/api/v1/w/{ws}/roles"), &admin, None)
        .await;
    let names: Vec<&str> = roles["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "owner",
            "admin",
            "developer",
            "member",
            "viewer",
            "key-reader"
        ]
    );
    c.s.stop().await;
}

#[tokio::test]
async fn members_must_exist_and_join_once() {
    let c = ctx().await;
    let owner = c.token("owner@example.com").await;
    let ws = c.workspace(&owner).await;
    let (status, b) = c.add(&ws, &owner, "ghost@example.com", "viewer").await;
    assert_eq!((status, b["code"].as_str()), (404, Some("not_found")));
    c.token("pat@example.com").await;
    assert_eq!(c.add(&ws, &owner, "pat@example.com", "viewer").await.0, 201);
    let (status, b) = c.add(&ws, &owner, "pat@example.com", "viewer").await;
    assert_eq!((status, b["code"].as_str()), (409, Some("member_exists")));
    let (status, b) = c.add(&ws, &owner, "pat@example.com", "wizard").await;
    assert_eq!((status, b["field"].as_str()), (400, Some("role")));
    c.s.stop().await;
}

#[tokio::test]
async fn custom_scopes_join_the_catalog() {
    let c = ctx().await;
    let owner = c.token("owner@example.com").await;
    let ws = c.workspace(&owner).await;
    let (status, scope) = c
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/scopes"),
            &owner,
            Some(json!({"name": "chats:read", "description": "Read chats", "dangerous": false})),
        )
        .await;
    assert_eq!(status, 201, "{scope}");
    assert_eq!(
        (scope["name"].as_str(), scope["builtin"].as_bool()),
        (Some("chats:read"), Some(false))
    );
    c.call(
        "POST",
        &format!("/api/v1/w/{ws}/scopes"),
        &owner,
        Some(json!({"name": "chats:admin", "dangerous": true})),
    )
    .await;
    let (_, catalog) = c
        .call("GET", &format!("/api/v1/w/{ws}/scopes"), &owner, None)
        .await;
    let admin = catalog["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "chats:admin")
        .unwrap();
    assert_eq!(admin["implies"], json!(["chats:read"]));
    for (bad, why) in [
        ("Chats:read", "pattern"),
        ("keys:launch", "reserved resource"),
        ("chats", "no action"),
        (&"a".repeat(70) as &str, "too long"),
    ] {
        let bad = if why == "too long" {
            format!("{bad}:read")
        } else {
            bad.to_owned()
        };
        let (status, b) = c
            .call(
                "POST",
                &format!("/api/v1/w/{ws}/scopes"),
                &owner,
                Some(json!({"name": bad})),
            )
            .await;
        assert_eq!(status, 400, "{why}: {b}");
    }
    let (status, b) = c
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/scopes"),
            &owner,
            Some(json!({"name": "chats:read"})),
        )
        .await;
    assert_eq!((status, b["code"].as_str()), (409, Some("scope_exists")));
    // Roles may carry custom scopes; unknown ones are 400.
    let (status, _) = c
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/roles"),
            &owner,
            Some(json!({"name": "chatter", "scopes": ["chats:read"]})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, b) = c
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/roles"),
            &owner,
            Some(json!({"name": "nope", "scopes": ["chats:write"]})),
        )
        .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    // A scope a role holds can be deleted: the role loses it.
    let (status, _) = c
        .call(
            "DELETE",
            &format!("/api/v1/w/{ws}/scopes/chats:read"),
            &owner,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = c
        .call(
            "DELETE",
            &format!("/api/v1/w/{ws}/scopes/keys:read"),
            &owner,
            None,
        )
        .await;
    assert_eq!(status, 400, "built-ins stay");
    let (status, _) = c
        .call(
            "DELETE",
            &format!("/api/v1/w/{ws}/scopes/chats:admin"),
            &owner,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = c
        .call(
            "DELETE",
            &format!("/api/v1/w/{ws}/scopes/chats:admin"),
            &owner,
            None,
        )
        .await;
    assert_eq!(status, 404);
    c.s.stop().await;
}

#[tokio::test]
async fn the_builtin_catalog_is_public() {
    let c = ctx().await;
    let (status, body) = json(c.s.get("/api/v1/scopes").await).await;
    assert_eq!(status, 200);
    let data = body["data"].as_array().unwrap();
    let get = |n: &str| {
        data.iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("{n}"))
            .clone()
    };
    assert_eq!(get("workspace:delete")["dangerous"], true);
    assert_eq!(get("keys:reveal")["dangerous"], true);
    assert_eq!(get("keys:read")["dangerous"], false);
    assert_eq!(
        get("members:admin")["implies"],
        json!(["members:read", "members:write"])
    );
    assert_eq!(
        get("admin:superuser")["implies"].as_array().unwrap().len(),
        17
    );
    assert_eq!(data.len(), 18);
    c.s.stop().await;
}

async fn superuser(c: &Ctx) -> String {
    let root = c.s.user("root@example.com").await;
    let store = &c.s.server.as_ref().unwrap().state.store;
    let id = keyrail_core::id::UserId::parse(root["user"]["id"].as_str().unwrap()).unwrap();
    store
        .set_superuser(&id, true, keyrail_core::Timestamp::now())
        .await
        .unwrap();
    root["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn suspension_locks_members_out_until_activation() {
    let c = ctx().await;
    let owner = c.token("owner@example.com").await;
    let ws = c.workspace(&owner).await;
    let root = superuser(&c).await;
    let (status, b) = c
        .call(
            "POST",
            &format!("/api/v1/admin/workspaces/{ws}/suspend"),
            &owner,
            None,
        )
        .await;
    assert_eq!(
        (status, b["required"].clone()),
        (403, json!(["admin:superuser"]))
    );
    let (status, b) = c
        .call(
            "POST",
            &format!("/api/v1/admin/workspaces/{ws}/suspend"),
            &root,
            None,
        )
        .await;
    assert_eq!(
        (status, b["status"].as_str()),
        (200, Some("suspended")),
        "{b}"
    );
    let (status, b) = c
        .call("GET", &format!("/api/v1/w/{ws}"), &owner, None)
        .await;
    assert_eq!(
        (status, b["error"].as_str(), b["code"].as_str()),
        (
            403,
            Some("Tenant suspended or inactive"),
            Some("tenant_suspended")
        )
    );
    let (status, _) = c
        .call("GET", &format!("/api/v1/w/{ws}/members"), &owner, None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = c.call("GET", &format!("/api/v1/w/{ws}"), &root, None).await;
    assert_eq!(status, 200, "the platform admin still sees it");
    let (_, list) = c.call("GET", "/api/v1/workspaces", &owner, None).await;
    assert_eq!(list["data"][0]["status"], "suspended");
    let (status, _) = c
        .call(
            "POST",
            &format!("/api/v1/admin/workspaces/{ws}/activate"),
            &root,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .call("GET", &format!("/api/v1/w/{ws}"), &owner, None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .call(
            "POST",
            "/api/v1/admin/workspaces/ws_00000000000000000000000000/suspend",
            &root,
            None,
        )
        .await;
    assert_eq!(status, 404);
    c.s.stop().await;
}

#[tokio::test]
async fn every_mutation_is_audited_and_filterable() {
    let c = ctx().await;
    let owner = c.token("owner@example.com").await;
    let ws = c.workspace(&owner).await;
    c.token("pat@example.com").await;
    let (_, m) = c.add(&ws, &owner, "pat@example.com", "viewer").await;
    let mid = m["id"].as_str().unwrap().to_owned();
    c.call(
        "PATCH",
        &format!("/api/v1/w/{ws}/members/{mid}"),
        &owner,
        Some(json!({"role": "member"})),
    )
    .await;
    let (_, role) = c
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/roles"),
            &owner,
            Some(json!({"name": "r1", "scopes": ["keys:read"]})),
        )
        .await;
    let rid = role["id"].as_str().unwrap().to_owned();
    c.call(
        "PATCH",
        &format!("/api/v1/w/{ws}/roles/{rid}"),
        &owner,
        Some(json!({"name": "r2"})),
    )
    .await;
    c.call(
        "DELETE",
        &format!("/api/v1/w/{ws}/roles/{rid}"),
        &owner,
        None,
    )
    .await;
    c.call(
        "PATCH",
        &format!("/api/v1/w/{ws}"),
        &owner,
        Some(json!({"name": "Acme 2"})),
    )
    .await;
    c.call(
        "DELETE",
        &format!("/api/v1/w/{ws}/members/{mid}"),
        &owner,
        None,
    )
    .await;

    let (status, log) = c
        .call("GET", &format!("/api/v1/w/{ws}/audit"), &owner, None)
        .await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "member.remove",
            "workspace.update",
            "role.delete",
            "role.update",
            "role.create",
            "member.update",
            "member.add"
        ],
        "newest first"
    );
    let first = &log["data"][6];
    assert_eq!(first["actor"]["type"], "user");
    assert_eq!(first["target"], mid);
    assert_eq!(first["outcome"], "success");
    assert!(first["at"].as_str().unwrap().ends_with('Z'));

    let (_, only) = c
        .call(
            "GET",
            &format!("/api/v1/w/{ws}/audit?action=role.create"),
            &owner,
            None,
        )
        .await;
    assert_eq!(only["data"].as_array().unwrap().len(), 1);
    let (_, page1) = c
        .call(
            "GET",
            &format!("/api/v1/w/{ws}/audit?limit=3"),
            &owner,
            None,
        )
        .await;
    assert_eq!(page1["data"].as_array().unwrap().len(), 3);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = c
        .call(
            "GET",
            &format!("/api/v1/w/{ws}/audit?limit=3&cursor={cursor}"),
            &owner,
            None,
        )
        .await;
    assert_eq!(page2["data"][0]["action"], "role.update");
    let (status, _) = c
        .call(
            "GET",
            &format!("/api/v1/w/{ws}/audit?since=yesterday"),
            &owner,
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = c
        .call(
            "GET",
            &format!("/api/v1/w/{ws}/audit?limit=500"),
            &owner,
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (_, future) = c
        .call(
            "GET",
            &format!("/api/v1/w/{ws}/audit?since=2999-01-01T00:00:00Z"),
            &owner,
            None,
        )
        .await;
    assert_eq!(future["data"], json!([]));
    c.s.stop().await;
}

#[tokio::test]
async fn platform_administration() {
    let c = ctx().await;
    let ada = c.token("ada@example.com").await;
    let root = superuser(&c).await;
    let (status, _) = c.call("GET", "/api/v1/admin/users", &ada, None).await;
    assert_eq!(status, 403);
    let (status, users) = c.call("GET", "/api/v1/admin/users", &root, None).await;
    assert_eq!(status, 200);
    assert_eq!(users["data"].as_array().unwrap().len(), 2);
    assert!(
        users["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u.get("password_hash").is_none())
    );

    for _ in 0..5 {
        c.s.login_as("ada@example.com", "wrong password here").await;
    }
    assert_eq!(c.s.login_as("ada@example.com", PASSWORD).await.0, 429);
    let ada_id = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "ada@example.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = c
        .call(
            "POST",
            &format!("/api/v1/admin/users/{ada_id}/unlock"),
            &root,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(c.s.login_as("ada@example.com", PASSWORD).await.0, 200);

    let (status, log) = c
        .call("GET", "/api/v1/admin/audit?action=user.unlock", &root, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(log["data"][0]["target"], ada_id.as_str());
    let (status, _) = c.call("GET", "/api/v1/admin/audit", &ada, None).await;
    assert_eq!(status, 403);
    c.s.stop().await;
}

#[tokio::test]
async fn assigning_a_builtin_role_counts_the_workspace_scopes_it_gives() {
    let c = ctx().await;
    let owner = c.token("owner@example.com").await;
    let ws = c.workspace(&owner).await;
    // A custom role with every built-in scope of `developer`, and members:write to assign roles.
    let (_, roles) = c
        .call("GET", &format!("/api/v1/w/{ws}/roles"), &owner, None)
        .await;
    let developer = roles["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "developer")
        .unwrap()["scopes"]
        .as_array()
        .unwrap()
        .clone();
    let mut scopes = developer.clone();
    scopes.push(json!("members:write"));
    let (status, b) = c
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/roles"),
            &owner,
            Some(json!({"name": "almost-dev", "scopes": scopes})),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let lead = c.token("lead@example.com").await;
    assert_eq!(
        c.add(&ws, &owner, "lead@example.com", "almost-dev").await.0,
        201
    );
    // The workspace's own API: `developer` covers its `:read` scopes, `almost-dev` does not.
    let (status, b) = c
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/scopes"),
            &owner,
            Some(json!({"name": "chats:read", "description": "Read chats"})),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    c.token("pat@example.com").await;
    let (status, b) = c.add(&ws, &lead, "pat@example.com", "developer").await;
    assert_eq!(
        (status, b["code"].as_str(), &b["required"]),
        (403, Some("insufficient_scope"), &json!(["chats:read"])),
        "{b}"
    );
    // Nor may they change a developer's role, which would take chats:read away from them.
    let (status, m) = c.add(&ws, &owner, "pat@example.com", "developer").await;
    assert_eq!(status, 201, "{m}");
    let (status, b) = c
        .call(
            "PATCH",
            &format!("/api/v1/w/{ws}/members/{}", m["id"].as_str().unwrap()),
            &lead,
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{b}"
    );
    c.s.stop().await;
}

/// Names in `GET path` (`data[].field`).
async fn names(c: &Ctx, token: &str, path: &str, field: &str) -> Vec<String> {
    let (status, list) = c.call("GET", path, token, None).await;
    assert_eq!(status, 200, "{list}");
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap().to_owned())
        .collect()
}

/// A change to a workspace, its members, roles or scopes and its audit entry commit together
/// or not at all: when the entry cannot be written, nothing changes (500); when the change
/// fails, no entry claims it happened.
#[tokio::test]
async fn a_workspace_change_whose_audit_entry_fails_is_not_made() {
    for backend in [common::Backend::Sqlite, common::Backend::Postgres] {
        let Some(s) = TestServer::start_with(backend, |_| {}, None).await else {
            return;
        };
        let c = Ctx { s };
        workspace_changes_fail_with_their_audit(&c).await;
        c.s.stop().await;
    }
}

async fn workspace_changes_fail_with_their_audit(c: &Ctx) {
    let owner = c.token("owner@example.com").await;
    let ws = c.workspace(&owner).await;
    let root = superuser(c).await;
    c.token("pat@example.com").await;
    let w = |rest: &str| format!("/api/v1/w/{ws}{rest}");
    let refused_500 = async |action: &str, method: &str, path: String, body: Option<Value>| {
        let trigger = c.s.refuse_audit(action).await;
        let token = if path.starts_with("/api/v1/admin") {
            &root
        } else {
            &owner
        };
        let (status, b) = c.call(method, &path, token, body).await;
        assert_eq!(status, 500, "{action}: {b}");
        c.s.allow(&trigger).await;
    };

    refused_500(
        "member.add",
        "POST",
        w("/members"),
        Some(json!({"email": "pat@example.com", "role": "viewer"})),
    )
    .await;
    assert_eq!(names(c, &owner, &w("/members"), "email").await.len(), 1);
    let (status, m) = c.add(&ws, &owner, "pat@example.com", "viewer").await;
    assert_eq!(status, 201, "{m}");
    let mid = m["id"].as_str().unwrap().to_owned();
    refused_500(
        "member.update",
        "PATCH",
        w(&format!("/members/{mid}")),
        Some(json!({"role": "member"})),
    )
    .await;
    let roles = names(c, &owner, &w("/members"), "role").await;
    assert!(roles.contains(&"viewer".to_owned()), "{roles:?}");
    refused_500(
        "member.remove",
        "DELETE",
        w(&format!("/members/{mid}")),
        None,
    )
    .await;
    assert_eq!(names(c, &owner, &w("/members"), "email").await.len(), 2);

    refused_500(
        "role.create",
        "POST",
        w("/roles"),
        Some(json!({"name": "r1", "scopes": ["keys:read"]})),
    )
    .await;
    assert!(
        !names(c, &owner, &w("/roles"), "name")
            .await
            .contains(&"r1".to_owned())
    );
    let (status, role) = c
        .call(
            "POST",
            &w("/roles"),
            &owner,
            Some(json!({"name": "r1", "scopes": ["keys:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{role}");
    let rid = role["id"].as_str().unwrap().to_owned();
    refused_500(
        "role.update",
        "PATCH",
        w(&format!("/roles/{rid}")),
        Some(json!({"name": "r2"})),
    )
    .await;
    refused_500("role.delete", "DELETE", w(&format!("/roles/{rid}")), None).await;
    let role_names = names(c, &owner, &w("/roles"), "name").await;
    assert!(role_names.contains(&"r1".to_owned()), "{role_names:?}");
    assert!(!role_names.contains(&"r2".to_owned()), "{role_names:?}");

    refused_500(
        "scope.create",
        "POST",
        w("/scopes"),
        Some(json!({"name": "chats:read"})),
    )
    .await;
    assert!(
        !names(c, &owner, &w("/scopes"), "name")
            .await
            .contains(&"chats:read".to_owned())
    );
    let (status, _) = c
        .call(
            "POST",
            &w("/scopes"),
            &owner,
            Some(json!({"name": "chats:read"})),
        )
        .await;
    assert_eq!(status, 201);
    refused_500("scope.delete", "DELETE", w("/scopes/chats:read"), None).await;
    assert!(
        names(c, &owner, &w("/scopes"), "name")
            .await
            .contains(&"chats:read".to_owned())
    );

    refused_500(
        "workspace.update",
        "PATCH",
        w(""),
        Some(json!({"name": "Acme 2"})),
    )
    .await;
    let (_, got) = c.call("GET", &w(""), &owner, None).await;
    assert_eq!(got["name"], "Acme");
    let admin = |verb: &str| format!("/api/v1/admin/workspaces/{ws}/{verb}");
    refused_500("workspace.suspend", "POST", admin("suspend"), None).await;
    let (status, _) = c.call("GET", &w(""), &owner, None).await;
    assert_eq!(status, 200, "still active");
    let (status, _) = c.call("POST", &admin("suspend"), &root, None).await;
    assert_eq!(status, 200);
    refused_500("workspace.activate", "POST", admin("activate"), None).await;
    let (status, _) = c.call("GET", &w(""), &owner, None).await;
    assert_eq!(status, 403, "still suspended");
    let (status, _) = c.call("POST", &admin("activate"), &root, None).await;
    assert_eq!(status, 200);

    refused_500("workspace.delete", "DELETE", w(""), None).await;
    let (status, _) = c.call("GET", &w(""), &owner, None).await;
    assert_eq!(status, 200, "not deleted");
    // The deletion itself fails: no entry says it happened.
    let trigger =
        c.s.refuse("workspaces", "DELETE", &format!("OLD.id = '{ws}'"))
            .await;
    let (status, _) = c.call("DELETE", &w(""), &owner, None).await;
    assert_eq!(status, 500);
    c.s.allow(&trigger).await;

    let actions = names(c, &owner, &w("/audit"), "action").await;
    assert_eq!(
        actions,
        [
            "workspace.activate",
            "workspace.suspend",
            "scope.create",
            "role.create",
            "member.add"
        ],
        "newest first"
    );
    // Deleted for real: its entry is written with it, and stays.
    let (status, _) = c.call("DELETE", &w(""), &owner, None).await;
    assert_eq!(status, 204);
    let (_, log) = c
        .call(
            "GET",
            "/api/v1/admin/audit?action=workspace.delete",
            &root,
            None,
        )
        .await;
    let entries = log["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(entries[0]["target"], json!(ws));
}

/// Deleting a custom scope takes it off every key, grant and custom role of the workspace, so
/// a scope made again under the same name gives nothing to what held the old one.
#[tokio::test]
async fn a_deleted_scope_leaves_no_trace() {
    let c = ctx().await;
    let owner = c.token("owner@example.com").await;
    let ws = c.workspace(&owner).await;
    let w = |rest: &str| format!("/api/v1/w/{ws}{rest}");
    let create_scope = async || {
        let (status, b) = c
            .call(
                "POST",
                &w("/scopes"),
                &owner,
                Some(json!({"name": "chats:read"})),
            )
            .await;
        assert_eq!(status, 201, "{b}");
    };
    create_scope().await;
    let (status, key) = c
        .call(
            "POST",
            &w("/keys"),
            &owner,
            Some(json!({"name": "bot", "scopes": ["chats:read", "keys:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let secret = key["key"].as_str().unwrap().to_owned();
    let verify = async |scopes: Value| {
        let (status, v) = json(
            c.s.post_json(
                "/api/v1/keys/verify",
                &json!({"key": secret, "scopes": scopes}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{v}");
        v["code"].as_str().unwrap().to_owned()
    };
    assert_eq!(verify(json!(["chats:read"])).await, "VALID");
    let (status, role) = c
        .call(
            "POST",
            &w("/roles"),
            &owner,
            Some(json!({"name": "chatter", "scopes": ["chats:read", "keys:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{role}");
    let (_, profile) = c
        .call(
            "POST",
            "/api/v1/builder-profiles",
            &owner,
            Some(json!({"name": "Dev"})),
        )
        .await;
    let (status, app) = c
        .call(
            "POST",
            "/api/v1/apps",
            &owner,
            Some(json!({"name": "Sync", "builder_profile_id": profile["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let (status, grant) = c
        .call(
            "POST",
            &w("/grants"),
            &owner,
            Some(json!({"client_id": app["client_id"], "scopes": ["chats:read", "keys:read"], "shared": true})),
        )
        .await;
    assert_eq!(status, 201, "{grant}");

    let (status, b) = c
        .call("DELETE", &w("/scopes/chats:read"), &owner, None)
        .await;
    assert_eq!(status, 204, "{b}");
    create_scope().await;

    assert_eq!(verify(json!(["chats:read"])).await, "INSUFFICIENT_SCOPE");
    assert_eq!(verify(json!(["keys:read"])).await, "VALID");
    let (_, got) = c
        .call(
            "GET",
            &w(&format!("/keys/{}", key["id"].as_str().unwrap())),
            &owner,
            None,
        )
        .await;
    assert_eq!(got["scopes"], json!(["keys:read"]), "{got}");
    let (_, grants) = c.call("GET", &w("/grants"), &owner, None).await;
    assert_eq!(
        grants["data"][0]["scopes"],
        json!(["keys:read"]),
        "{grants}"
    );
    let (_, roles) = c.call("GET", &w("/roles"), &owner, None).await;
    let chatter = roles["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "chatter")
        .unwrap()
        .clone();
    assert_eq!(chatter["scopes"], json!(["keys:read"]), "{chatter}");
    c.s.stop().await;
}
