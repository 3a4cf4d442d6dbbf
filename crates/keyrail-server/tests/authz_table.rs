//! The authorization regression net: every endpoint of the workspace, member, role, scope and
//! audit API, called by each built-in role, by a user of another workspace and by a platform
//! superuser, with the outcome API.md implies: allowed, 403 `insufficient_scope` (with the
//! missing scope in `required`), or 404 for a workspace the caller cannot see. Later issues add
//! their endpoints to `endpoints()`.
//!
//! App grants (issue 6) are not decided by one scope, so their rows carry a [`Rule`]: a personal
//! grant is for any member, a shared one needs `apps:write` and `workspace:write`, members
//! without `apps:read` see only their own grants (404 for the others'), and only people who are
//! members hold grants (API keys and non-member superusers get 403 `forbidden`). These rows are
//! also called with an API key of the workspace.

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
    /// How the outcome follows from the caller.
    rule: Rule,
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Nothing,
    Member,
    Role,
    Scope,
    Workspace,
    /// A personal grant of the owner.
    Grant,
    /// A shared grant, made by the owner.
    SharedGrant,
    /// A personal grant of the caller (the owner's, for callers who cannot hold one).
    OwnGrant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Allowed with `scope`, else 403 naming it.
    Scope,
    /// `POST W/grants`, personal: any member (within their own scopes).
    PersonalGrant,
    /// `POST W/grants`, shared: a member with `apps:write` and `workspace:write`.
    SharedGrant,
    /// `GET W/grants`: any member (all of them with `apps:read`, else their own).
    ListGrants,
    /// `DELETE W/grants/{id}` of someone else's grant: `apps:read` to see it, then `apps:write`
    /// (and `workspace:write` for a shared grant). The owner's own grants are the owner's.
    RevokeGrant { shared: bool },
    /// `DELETE W/grants/{id}` of the caller's own grant: always allowed.
    RevokeOwnGrant,
}

/// The scopes of the API key the grant rows are also called with.
const KEY_SCOPES: [&str; 4] = [
    "workspace:read",
    "workspace:write",
    "apps:read",
    "apps:write",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Role(BuiltinRole),
    /// A user of another workspace.
    Outsider,
    /// A platform superuser who is not a member.
    Superuser,
    /// An API key of the workspace with [`KEY_SCOPES`].
    ApiKey,
}

impl Who {
    fn label(self) -> String {
        match self {
            Who::Role(r) => r.as_str().to_owned(),
            Who::Outsider => "outsider".into(),
            Who::Superuser => "superuser".into(),
            Who::ApiKey => "API key".into(),
        }
    }

    fn holds(self, scope: &str) -> bool {
        match self {
            Who::Role(r) => r.scopes().contains(scope),
            Who::Outsider => false,
            Who::Superuser => true,
            Who::ApiKey => KEY_SCOPES.contains(&scope),
        }
    }

    fn is_member(self) -> bool {
        matches!(self, Who::Role(_))
    }
}

#[derive(Debug)]
enum Expect {
    /// 2xx.
    Allowed,
    /// 403 `insufficient_scope` naming (at least) these scopes.
    Denied(Vec<String>),
    /// 404 `not_found`: the caller must not learn it exists.
    Hidden,
    /// 403 `forbidden`: not the kind of caller this endpoint serves.
    Forbidden,
}

fn expect(ep: &Endpoint, who: Who) -> Expect {
    if who == Who::Outsider {
        return Expect::Hidden;
    }
    let needs = |scopes: &[&str]| {
        let missing: Vec<String> = scopes
            .iter()
            .filter(|s| !who.holds(s))
            .map(|s| (*s).to_owned())
            .collect();
        if missing.is_empty() {
            Expect::Allowed
        } else {
            Expect::Denied(missing)
        }
    };
    let revoke_others = |shared: bool| {
        if !who.holds("apps:read") {
            Expect::Hidden
        } else if shared {
            needs(&["apps:write", "workspace:write"])
        } else {
            needs(&["apps:write"])
        }
    };
    match ep.rule {
        Rule::Scope => needs(&[ep.scope]),
        Rule::PersonalGrant if who.is_member() => Expect::Allowed,
        Rule::SharedGrant if who.is_member() => needs(&["apps:write", "workspace:write"]),
        Rule::PersonalGrant | Rule::SharedGrant => Expect::Forbidden,
        Rule::ListGrants => Expect::Allowed,
        Rule::RevokeGrant { .. } if who == Who::Role(BuiltinRole::Owner) => Expect::Allowed,
        Rule::RevokeGrant { shared } => revoke_others(shared),
        Rule::RevokeOwnGrant if who.is_member() => Expect::Allowed,
        Rule::RevokeOwnGrant => revoke_others(false),
    }
}

fn endpoints() -> Vec<Endpoint> {
    use Target::*;
    let e = |method, path, scope, body: Option<Value>, target| Endpoint {
        method,
        path,
        scope,
        body,
        target,
        rule: Rule::Scope,
    };
    let g = |method, path, scope, body: Option<Value>, target, rule| Endpoint {
        method,
        path,
        scope,
        body,
        target,
        rule,
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
        e("GET", "/api/v1/w/{ws}/export", "export:read", None, Nothing),
        e("GET", "/api/v1/w/{ws}/logs", "audit:read", None, Nothing),
        g(
            "POST",
            "/api/v1/w/{ws}/grants",
            "workspace:read",
            Some(json!({"client_id": "{app}", "scopes": ["workspace:read"], "shared": false})),
            Nothing,
            Rule::PersonalGrant,
        ),
        g(
            "POST",
            "/api/v1/w/{ws}/grants",
            "workspace:write",
            Some(json!({"client_id": "{app}", "scopes": ["workspace:read"], "shared": true})),
            Nothing,
            Rule::SharedGrant,
        ),
        g(
            "GET",
            "/api/v1/w/{ws}/grants",
            "apps:read",
            None,
            Grant,
            Rule::ListGrants,
        ),
        g(
            "DELETE",
            "/api/v1/w/{ws}/grants/{target}",
            "apps:write",
            None,
            Grant,
            Rule::RevokeGrant { shared: false },
        ),
        g(
            "DELETE",
            "/api/v1/w/{ws}/grants/{target}",
            "workspace:write",
            None,
            SharedGrant,
            Rule::RevokeGrant { shared: true },
        ),
        g(
            "DELETE",
            "/api/v1/w/{ws}/grants/{target}",
            "apps:write",
            None,
            OwnGrant,
            Rule::RevokeOwnGrant,
        ),
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
    /// The client id of an app of the owner's, made when the first grant row needs it.
    app: tokio::sync::OnceCell<String>,
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
            app: Default::default(),
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

    /// An app (unrestricted, active) of the owner's: its client id.
    async fn app(&self) -> String {
        self.app
            .get_or_init(|| async {
                let (status, p) = self
                    .call(
                        "POST",
                        "/api/v1/builder-profiles",
                        &self.owner_token,
                        Some(&json!({"name": "Table Builder"})),
                    )
                    .await;
                assert_eq!(status, 201, "{p}");
                let (status, a) = self
                    .call(
                        "POST",
                        "/api/v1/apps",
                        &self.owner_token,
                        Some(&json!({"name": "Table App", "builder_profile_id": p["id"], "workspace_restrictions": null})),
                    )
                    .await;
                assert_eq!(status, 201, "{a}");
                a["client_id"].as_str().unwrap().to_owned()
            })
            .await
            .clone()
    }

    /// A grant of the app in the world, made by `token`: its id.
    async fn grant(&self, world: &World, token: &str, shared: bool) -> String {
        let app = self.app().await;
        let (status, b) = self
            .call(
                "POST",
                &format!("/api/v1/w/{}/grants", world.ws),
                token,
                Some(&json!({"client_id": app, "scopes": ["workspace:read"], "shared": shared})),
            )
            .await;
        assert_eq!(status, 201, "{b}");
        b["id"].as_str().unwrap().to_owned()
    }

    /// An API key of the world's workspace with [`KEY_SCOPES`].
    async fn api_key(&self, world: &World) -> String {
        let (status, b) = self
            .call(
                "POST",
                &format!("/api/v1/w/{}/keys", world.ws),
                &world.owner,
                Some(&json!({"name": "table key", "scopes": KEY_SCOPES})),
            )
            .await;
        assert_eq!(status, 201, "{b}");
        b["key"].as_str().unwrap().to_owned()
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

    /// `caller` is the token of the caller, `who` what they are (for [`Target::OwnGrant`]).
    async fn make_target(&self, world: &World, target: Target, caller: &str, who: Who) -> String {
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
            Target::Grant => self.grant(world, &world.owner, false).await,
            Target::SharedGrant => self.grant(world, &world.owner, true).await,
            Target::OwnGrant if who.is_member() => self.grant(world, caller, false).await,
            Target::OwnGrant => self.grant(world, &world.owner, false).await,
        }
    }

    fn fill(&self, text: &str, ws: &str, target: &str) -> String {
        let n = self.next();
        let app = self.app.get().map(String::as_str).unwrap_or("");
        text.replace("{ws}", ws)
            .replace("{app}", app)
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
    let mut expected_checks = 0;
    for ep in endpoints() {
        let mut callers: Vec<(Who, Option<String>)> = f
            .role_users
            .iter()
            .map(|(role, _, token)| (Who::Role(*role), Some(token.clone())))
            .collect();
        callers.push((Who::Outsider, Some(f.outsider.clone())));
        callers.push((Who::Superuser, Some(f.superuser.clone())));
        if ep.rule != Rule::Scope {
            // An API key belongs to one workspace: made in each world below.
            callers.push((Who::ApiKey, None));
            f.app().await;
        }
        expected_checks += callers.len();
        for (who, token) in callers {
            // Destructive calls get a world of their own.
            let world = f.world().await;
            let token = match token {
                Some(t) => t,
                None => f.api_key(&world).await,
            };
            let target = f.make_target(&world, ep.target, &token, who).await;
            let path = f.fill(ep.path, &world.ws, &target);
            let body = ep.body.as_ref().map(|b| {
                serde_json::from_str::<Value>(&f.fill(&b.to_string(), &world.ws, &target)).unwrap()
            });
            // The extra users must not already be members when added.
            let (status, resp) = f.call(ep.method, &path, &token, body.as_ref()).await;
            let label = match &ep.body {
                Some(b) => format!("{} {} {b} as {}", ep.method, ep.path, who.label()),
                None => format!(
                    "{} {} ({:?}) as {}",
                    ep.method,
                    ep.path,
                    ep.target,
                    who.label()
                ),
            };
            match expect(&ep, who) {
                Expect::Allowed => assert!(
                    (200..300).contains(&status),
                    "{label}: expected success, got {status} {resp}"
                ),
                Expect::Denied(missing) => {
                    assert_eq!(status, 403, "{label}: {resp}");
                    assert_eq!(resp["code"], "insufficient_scope", "{label}: {resp}");
                    assert_eq!(resp["error"], "Insufficient scope", "{label}");
                    for scope in &missing {
                        assert!(
                            resp["required"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|r| r == scope.as_str()),
                            "{label}: {scope} should be required: {resp}"
                        );
                    }
                }
                Expect::Hidden => assert_eq!(
                    (status, resp["code"].as_str()),
                    (404, Some("not_found")),
                    "{label}: the caller must not learn it exists: {resp}"
                ),
                Expect::Forbidden => assert_eq!(
                    (status, resp["code"].as_str()),
                    (403, Some("forbidden")),
                    "{label}: only a member can hold a grant: {resp}"
                ),
            }
            let _ = world.tokens.len();
            checked += 1;
        }
    }
    assert_eq!(checked, expected_checks);
    assert!(checked >= endpoints().len() * (BuiltinRole::ALL.len() + 2));
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
