//! The authorization regression net: every endpoint of the workspace, member, role, scope and
//! audit API, called by each built-in role, by a user of another workspace and by a platform
//! superuser, with the outcome API.md implies: allowed, 403 `insufficient_scope` (with the
//! missing scope in `required`), or 404 for a workspace the caller cannot see. Later issues add
//! their endpoints to `endpoints()`.

mod common;

use common::{PASSWORD, TestServer};
use keyrail_core::authz::BuiltinRole;
use serde_json::{Value, json};

struct Endpoint {
    method: &'static str,
    /// `{ws}` and `{target}` are filled in per call.
    path: &'static str,
    /// The scope the endpoint needs.
    scope: &'static str,
    body: Option<Value>,
    /// What `{target}` is: made fresh before each call so destructive calls do not interfere.
    target: Target,
}

#[derive(Clone, Copy)]
enum Target {
    Nothing,
    Member,
    Role,
    Scope,
    Workspace,
}

fn endpoints() -> Vec<Endpoint> {
    use Target::*;
    let e = |method, path, scope, body: Option<Value>, target| Endpoint {
        method,
        path,
        scope,
        body,
        target,
    };
    vec![
        e("GET", "/api/v1/w/{ws}", "workspace:read", None, Nothing),
        e(
            "PATCH",
            "/api/v1/w/{ws}",
            "workspace:write",
            Some(json!({"name": "renamed"})),
            Nothing,
        ),
        e(
            "DELETE",
            "/api/v1/w/{target}",
            "workspace:delete",
            None,
            Workspace,
        ),
        e(
            "GET",
            "/api/v1/w/{ws}/members",
            "members:read",
            None,
            Nothing,
        ),
        e(
            "POST",
            "/api/v1/w/{ws}/members",
            "members:write",
            Some(json!({"email": "{fresh_email}", "role": "viewer"})),
            Nothing,
        ),
        e(
            "PATCH",
            "/api/v1/w/{ws}/members/{target}",
            "members:write",
            Some(json!({"role": "member"})),
            Member,
        ),
        e(
            "DELETE",
            "/api/v1/w/{ws}/members/{target}",
            "members:write",
            None,
            Member,
        ),
        e(
            "GET",
            "/api/v1/w/{ws}/roles",
            "members:admin",
            None,
            Nothing,
        ),
        e(
            "POST",
            "/api/v1/w/{ws}/roles",
            "members:admin",
            Some(json!({"name": "{fresh_name}", "scopes": ["keys:read"]})),
            Nothing,
        ),
        e(
            "PATCH",
            "/api/v1/w/{ws}/roles/{target}",
            "members:admin",
            Some(json!({"scopes": ["keys:read", "members:read"]})),
            Role,
        ),
        e(
            "DELETE",
            "/api/v1/w/{ws}/roles/{target}",
            "members:admin",
            None,
            Role,
        ),
        e(
            "GET",
            "/api/v1/w/{ws}/scopes",
            "workspace:write",
            None,
            Nothing,
        ),
        e(
            "POST",
            "/api/v1/w/{ws}/scopes",
            "workspace:write",
            Some(json!({"name": "{fresh_scope}", "description": "x"})),
            Nothing,
        ),
        e(
            "DELETE",
            "/api/v1/w/{ws}/scopes/{target}",
            "workspace:write",
            None,
            Scope,
        ),
        e("GET", "/api/v1/w/{ws}/audit", "audit:read", None, Nothing),
    ]
}

struct World {
    ws: String,
    owner: String,
    tokens: Vec<(String, String)>,
}

struct Fixture {
    s: TestServer,
    owner_token: String,
    /// role name -> (email, token)
    role_users: Vec<(BuiltinRole, String, String)>,
    outsider: String,
    superuser: String,
    counter: std::sync::atomic::AtomicUsize,
}

impl Fixture {
    async fn new() -> Self {
        let s = TestServer::start().await;
        let owner = s.user("owner@example.com").await;
        let owner_token = owner["access_token"].as_str().unwrap().to_owned();
        let mut role_users = Vec::new();
        for role in BuiltinRole::ALL {
            let email = format!("{}@example.com", role.as_str());
            let body = if role == BuiltinRole::Owner {
                s.login_as("owner@example.com", PASSWORD).await.1
            } else {
                s.user(&email).await
            };
            let email = if role == BuiltinRole::Owner {
                "owner@example.com".to_owned()
            } else {
                email
            };
            role_users.push((
                role,
                email,
                body["access_token"].as_str().unwrap().to_owned(),
            ));
        }
        let outsider = s.user("outsider@example.com").await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let root = s.user("root@example.com").await;
        let store = &s.server.as_ref().unwrap().state.store;
        let root_id =
            keyrail_core::id::UserId::parse(root["user"]["id"].as_str().unwrap()).unwrap();
        store
            .set_superuser(&root_id, true, keyrail_core::Timestamp::now())
            .await
            .unwrap();
        for i in 0..40 {
            s.signup(&format!("extra{i}@example.com")).await;
        }
        Self {
            s,
            owner_token,
            role_users,
            outsider,
            superuser: root["access_token"].as_str().unwrap().to_owned(),
            counter: Default::default(),
        }
    }

    fn next(&self) -> usize {
        self.counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.s.call(method, path, token, body).await
    }

    /// A workspace with one member of each built-in role.
    async fn world(&self) -> World {
        let (status, ws) = self
            .call(
                "POST",
                "/api/v1/workspaces",
                &self.owner_token,
                Some(&json!({"name": "acme"})),
            )
            .await;
        assert_eq!(status, 201, "{ws}");
        let ws = ws["id"].as_str().unwrap().to_owned();
        for (role, email, _) in &self.role_users {
            if *role == BuiltinRole::Owner {
                continue;
            }
            let (status, b) = self
                .call(
                    "POST",
                    &format!("/api/v1/w/{ws}/members"),
                    &self.owner_token,
                    Some(&json!({"email": email, "role": role.as_str()})),
                )
                .await;
            assert_eq!(status, 201, "{b}");
        }
        World {
            ws,
            owner: self.owner_token.clone(),
            tokens: Vec::new(),
        }
    }

    async fn make_target(&self, world: &World, target: Target) -> String {
        let n = self.next();
        let ws = &world.ws;
        match target {
            Target::Nothing => String::new(),
            Target::Member => {
                let (status, b) = self
                    .call("POST", &format!("/api/v1/w/{ws}/members"), &world.owner, Some(&json!({"email": format!("extra{}@example.com", n % 40), "role": "viewer"})))
                    .await;
                assert_eq!(status, 201, "{b}");
                b["id"].as_str().unwrap().to_owned()
            }
            Target::Role => {
                let (status, b) = self
                    .call(
                        "POST",
                        &format!("/api/v1/w/{ws}/roles"),
                        &world.owner,
                        Some(&json!({"name": format!("target-{n}"), "scopes": ["keys:read"]})),
                    )
                    .await;
                assert_eq!(status, 201, "{b}");
                b["id"].as_str().unwrap().to_owned()
            }
            Target::Scope => {
                let name = format!("target{n}:read");
                let (status, b) = self
                    .call(
                        "POST",
                        &format!("/api/v1/w/{ws}/scopes"),
                        &world.owner,
                        Some(&json!({"name": name})),
                    )
                    .await;
                assert_eq!(status, 201, "{b}");
                name
            }
            Target::Workspace => ws.clone(),
        }
    }

    fn fill(&self, text: &str, ws: &str, target: &str) -> String {
        let n = self.next();
        text.replace("{ws}", ws)
            .replace("{target}", target)
            .replace("{fresh_email}", &format!("extra{}@example.com", n % 40))
            .replace("{fresh_name}", &format!("role-{n}"))
            .replace("{fresh_scope}", &format!("fresh{n}:read"))
    }
}

#[tokio::test]
async fn every_workspace_endpoint_for_every_role() {
    let f = Fixture::new().await;
    let mut checked = 0;
    for ep in endpoints() {
        let mut callers: Vec<(String, String, Option<bool>)> = f
            .role_users
            .iter()
            .map(|(role, _, token)| {
                (
                    role.as_str().to_owned(),
                    token.clone(),
                    Some(role.scopes().contains(ep.scope)),
                )
            })
            .collect();
        callers.push(("outsider".into(), f.outsider.clone(), None));
        callers.push(("superuser".into(), f.superuser.clone(), Some(true)));
        for (who, token, allowed) in callers {
            // Destructive calls get a world of their own.
            let world = f.world().await;
            let target = f.make_target(&world, ep.target).await;
            let path = f.fill(ep.path, &world.ws, &target);
            let body = ep.body.as_ref().map(|b| {
                serde_json::from_str::<Value>(&f.fill(&b.to_string(), &world.ws, &target)).unwrap()
            });
            // The extra users must not already be members when added.
            let (status, resp) = f.call(ep.method, &path, &token, body.as_ref()).await;
            let label = format!("{} {} as {who}", ep.method, ep.path);
            match allowed {
                Some(true) => assert!(
                    (200..300).contains(&status),
                    "{label}: expected success, got {status} {resp}"
                ),
                Some(false) => {
                    assert_eq!(status, 403, "{label}: {resp}");
                    assert_eq!(resp["code"], "insufficient_scope", "{label}: {resp}");
                    assert_eq!(resp["error"], "Insufficient scope", "{label}");
                    assert!(
                        resp["required"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|r| r == ep.scope),
                        "{label}: {resp}"
                    );
                }
                None => assert_eq!(
                    (status, resp["code"].as_str()),
                    (404, Some("not_found")),
                    "{label}: another workspace's user must not learn it exists"
                ),
            }
            let _ = world.tokens.len();
            checked += 1;
        }
    }
    assert_eq!(checked, endpoints().len() * (BuiltinRole::ALL.len() + 2));
    // A workspace that does not exist looks the same as one the caller cannot see.
    let (status, _) = f
        .call(
            "GET",
            "/api/v1/w/ws_00000000000000000000000000",
            &f.owner_token,
            None,
        )
        .await;
    assert_eq!(status, 404);
    f.s.stop().await;
}
