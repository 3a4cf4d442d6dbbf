//! The console's apps and webhooks pages over HTTP, as a browser sees them without script: a
//! builder profile and an app made through forms, the client secret read from the page and used
//! over the API, a grant made and revoked through forms (its token stops at once), a new secret
//! (the old one stops), the shared checkbox only for who may share, and webhook endpoints and the
//! signing secret as the API sees them.

mod common;

use common::console::{Console, Page};
use common::{PASSWORD, TestServer, api_token, mint};
use serde_json::{Value, json};

async fn start() -> TestServer {
    TestServer::start_full(
        common::Backend::Sqlite,
        |c| {
            // The webhook endpoint of the tests is on the loopback address.
            c.webhooks_allow_private = true;
        },
        None,
    )
    .await
    .expect("sqlite always runs")
}

/// The value of the first `<option value="...">` on the page.
fn first_option(page: &Page) -> String {
    let at = page.html.find("<option value=\"").expect("an option") + 15;
    let end = page.html[at..].find('"').unwrap();
    page.html[at..at + end].to_owned()
}

/// Whether the page shows the app name `<script>alert(1)</script>` as text (escaped).
fn escaped(html: &str) -> bool {
    html.contains("&lt;script&gt;alert(1)") || html.contains("&#60;script&#62;alert(1)")
}

/// A profile and an app made through the forms: (client id, client secret).
async fn app_through_forms(c: &mut Console<'_>, name: &str) -> (String, String) {
    let profiles = c.get("/apps/profiles").await;
    assert_eq!(profiles.status, 200, "{}", profiles.html);
    assert!(profiles.html.contains("no builder profile yet"));
    let made = c
        .post(
            "/apps/profiles",
            &[
                ("name", "Builder Co"),
                ("website", "https://builder.example"),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.html);
    assert_eq!(made.location(), "/apps/profiles?done=created");
    let profiles = c.get(made.location()).await;
    assert!(profiles.html.contains("Builder Co"));
    assert!(profiles.html.contains("https://builder.example"));

    let form = c.get("/apps/new").await;
    assert_eq!(form.status, 200, "{}", form.html);
    let profile = first_option(&form);
    assert!(profile.starts_with("bld_"), "{profile}");
    let page = c
        .post(
            "/apps",
            &[
                ("builder_profile_id", &profile),
                ("name", name),
                ("description", "Syncs things"),
                ("restrict", "any"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert_eq!(page.header("cache-control"), "no-store");
    let client_id = page.testid("client-id").expect("the client id is shown");
    let secret = page.testid("client-secret").expect("the secret is shown");
    assert!(client_id.starts_with("kr_app_"), "{client_id}");
    assert!(
        page.html.contains("data-copy=\"client-secret\""),
        "a copy button"
    );
    (client_id, secret)
}

/// The workspace's grants over the API.
async fn grants(s: &TestServer, token: &str, ws: &str) -> Vec<Value> {
    let (status, b) = s
        .call("GET", &format!("/api/v1/w/{ws}/grants"), token, None)
        .await;
    assert_eq!(status, 200, "{b}");
    b["data"].as_array().unwrap().clone()
}

async fn workspace_with(s: &TestServer, api_token: &str, ws: &str) -> u16 {
    s.call("GET", &format!("/api/v1/w/{ws}"), api_token, None)
        .await
        .0
}

#[tokio::test]
async fn an_app_made_on_pages_gets_tokens_a_grant_revoked_there_stops_them_at_once() {
    let s = start().await;
    let (owner, ws) = s.owner_with_workspace("ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;

    let mine = c.get("/apps").await;
    assert!(mine.html.contains("You have no app yet"), "{}", mine.html);
    let (client_id, secret) = app_through_forms(&mut c, "Acme Sync").await;
    let mine = c.get("/apps").await;
    assert!(mine.html.contains("Acme Sync") && mine.html.contains(&client_id));
    assert!(
        !mine.html.contains(&secret),
        "the list never shows the secret"
    );
    let detail = c.get(&format!("/apps/{client_id}")).await;
    assert!(!detail.html.contains(&secret), "nor the app's page");

    // Grant it in the workspace through the form.
    let list = c.get(&format!("/w/{ws}/apps")).await;
    assert_eq!(list.status, 200);
    assert!(list.html.contains("No app is granted here yet"));
    assert!(
        list.html
            .contains("See the <a href=\"/apps\">Developer</a> pages"),
        "a link to the developer pages in the page itself"
    );
    let form = c.get(&format!("/w/{ws}/apps/grant")).await;
    assert!(form.html.contains("value=\"workspace:read\""), "scopes");
    assert!(
        form.html.contains("dangerous"),
        "dangerous scopes are marked"
    );
    assert!(form.html.contains("name=\"shared\""), "the owner may share");
    let granted = c
        .post(
            &format!("/w/{ws}/apps"),
            &[("client_id", &client_id), ("scopes", "workspace:read")],
        )
        .await;
    assert_eq!(granted.status, 303, "{}", granted.html);
    assert_eq!(granted.location(), format!("/w/{ws}/apps?done=granted"));
    let list = c.get(granted.location()).await;
    assert!(list.html.contains("The app is granted."));
    assert!(list.html.contains("Acme Sync") && list.html.contains("personal"));
    assert!(list.html.contains(">you<"), "who granted");

    let all = grants(&s, &owner, &ws).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["scopes"], json!(["workspace:read"]));
    assert_eq!(all[0]["shared"], false);
    let grant_id = all[0]["id"].as_str().unwrap().to_owned();

    let token = api_token(&s, &client_id, &secret, &grant_id).await;
    assert_eq!(workspace_with(&s, &token, &ws).await, 200);

    // Revoke asks first; Confirm revokes, and the token is refused at once.
    let confirm = c
        .get(&format!(
            "/w/{ws}/apps/grants/{grant_id}/revoke?client_id={client_id}"
        ))
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.html);
    assert!(confirm.html.contains("Acme Sync"));
    assert!(confirm.html.contains(">Confirm</button>"));
    assert_eq!(
        workspace_with(&s, &token, &ws).await,
        200,
        "asking is not revoking"
    );
    let done = c
        .post(&format!("/w/{ws}/apps/grants/{grant_id}/revoke"), &[])
        .await;
    assert_eq!(done.status, 303, "{}", done.html);
    assert_eq!(done.location(), format!("/w/{ws}/apps?done=grant_revoked"));
    assert_eq!(workspace_with(&s, &token, &ws).await, 401);
    assert!(grants(&s, &owner, &ws).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_new_secret_is_shown_once_and_the_old_one_stops() {
    let s = start().await;
    let (owner, ws) = s.owner_with_workspace("ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let (client_id, old) = app_through_forms(&mut c, "Acme Sync").await;
    let granted = c
        .post(
            &format!("/w/{ws}/apps"),
            &[("client_id", &client_id), ("scopes", "workspace:read")],
        )
        .await;
    assert_eq!(granted.status, 303, "{}", granted.html);
    let grant_id = grants(&s, &owner, &ws).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = api_token(&s, &client_id, &old, &grant_id).await;

    let confirm = c.get(&format!("/apps/{client_id}/secret")).await;
    assert_eq!(confirm.status, 200, "{}", confirm.html);
    assert!(confirm.html.contains(">Confirm</button>"));
    assert_eq!(
        mint(&s, &client_id, &old, &grant_id).await.0,
        200,
        "asking is not regenerating"
    );
    let page = c.post(&format!("/apps/{client_id}/secret"), &[]).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert_eq!(page.header("cache-control"), "no-store");
    let new = page.testid("client-secret").expect("the new secret");
    assert_ne!(new, old);
    assert_eq!(
        page.testid("client-id").as_deref(),
        Some(client_id.as_str())
    );

    let (status, b) = mint(&s, &client_id, &old, &grant_id).await;
    assert_eq!(
        (status, b["code"].as_str()),
        (401, Some("invalid_client")),
        "{b}"
    );
    assert_eq!(
        workspace_with(&s, &token, &ws).await,
        401,
        "old tokens stop"
    );
    let token = api_token(&s, &client_id, &new, &grant_id).await;
    assert_eq!(workspace_with(&s, &token, &ws).await, 200);

    // Deactivating on the app's page stops the token; activating brings it back.
    let off = c
        .post(&format!("/apps/{client_id}/active"), &[("active", "false")])
        .await;
    assert_eq!(off.status, 303, "{}", off.html);
    assert_eq!(workspace_with(&s, &token, &ws).await, 401);
    let page = c.get(off.location()).await;
    assert!(page.html.contains("inactive"));
    c.post(&format!("/apps/{client_id}/active"), &[("active", "true")])
        .await;
    assert_eq!(workspace_with(&s, &token, &ws).await, 200);

    // Delete asks first; Confirm deletes the app with its grants.
    let confirm = c.get(&format!("/apps/{client_id}/delete")).await;
    assert!(confirm.html.contains(">Confirm</button>"));
    let done = c.post(&format!("/apps/{client_id}/delete"), &[]).await;
    assert_eq!(done.location(), "/apps?done=deleted");
    assert_eq!(workspace_with(&s, &token, &ws).await, 401);
    assert_eq!(c.get(&format!("/apps/{client_id}")).await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn editing_an_app_keeps_the_api_rules_and_markup_in_its_name_is_escaped() {
    let s = start().await;
    let (owner, ws) = s.owner_with_workspace("ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let evil = "<script>alert(1)</script>";
    let (client_id, _) = app_through_forms(&mut c, evil).await;
    for path in ["/apps".to_owned(), format!("/apps/{client_id}")] {
        let page = c.get(&path).await;
        assert!(!page.html.contains(evil), "{path}");
        assert!(escaped(&page.html), "{path}");
    }
    c.post(
        &format!("/w/{ws}/apps"),
        &[("client_id", &client_id), ("scopes", "workspace:read")],
    )
    .await;
    let list = c.get(&format!("/w/{ws}/apps")).await;
    assert!(!list.html.contains(evil));
    assert!(escaped(&list.html));

    // Restrict it to this workspace through the edit form; the API sees it.
    let saved = c
        .post(
            &format!("/apps/{client_id}"),
            &[
                ("name", "Acme Sync"),
                ("description", ""),
                ("restrict", "only"),
                ("workspaces", &ws),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.html);
    let (_, app) = s
        .call("GET", &format!("/api/v1/apps/{client_id}"), &owner, None)
        .await;
    assert_eq!(app["name"], "Acme Sync");
    assert_eq!(app["workspace_restrictions"], json!([ws]));
    // "Only these" with none named: the API's message next to the field, values kept.
    let refused = c
        .post(
            &format!("/apps/{client_id}"),
            &[("name", "Kept name"), ("restrict", "only")],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.html);
    assert!(
        refused
            .html
            .contains("workspace_restrictions must list 1 to 100")
    );
    assert!(refused.html.contains("value=\"Kept name\""));
    // An unknown client id on the grant form is said next to its field.
    let unknown = c
        .post(
            &format!("/w/{ws}/apps"),
            &[("client_id", "kr_app_nope"), ("scopes", "workspace:read")],
        )
        .await;
    assert_eq!(unknown.status, 404, "the API's status: {}", unknown.html);
    assert!(unknown.html.contains("App not found"));
    assert!(unknown.html.contains("value=\"kr_app_nope\""));
    s.stop().await;
}

#[tokio::test]
async fn a_member_without_apps_write_sees_no_shared_box_and_a_shared_grant_is_refused() {
    let s = start().await;
    let (owner, ws) = s.owner_with_workspace("ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let (client_id, _) = app_through_forms(&mut c, "Acme Sync").await;

    s.user("bob@example.com").await;
    let (status, m) = s
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/members"),
            &owner,
            Some(&json!({"email": "bob@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(status, 201, "{m}");
    let mut bob = Console::sign_in(&s, "bob@example.com", PASSWORD).await;
    let form = bob.get(&format!("/w/{ws}/apps/grant")).await;
    assert_eq!(form.status, 200, "{}", form.html);
    assert!(!form.html.contains("name=\"shared\""), "no shared checkbox");
    assert!(
        !form.html.contains("value=\"keys:write\""),
        "only scopes bob holds"
    );
    let refused = bob
        .post(
            &format!("/w/{ws}/apps"),
            &[
                ("client_id", &client_id),
                ("scopes", "workspace:read"),
                ("shared", "true"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.html);
    assert!(refused.html.contains("Insufficient scope"));
    assert!(grants(&s, &owner, &ws).await.is_empty());
    // A personal grant is any member's to make; bob sees his own.
    let ok = bob
        .post(
            &format!("/w/{ws}/apps"),
            &[("client_id", &client_id), ("scopes", "workspace:read")],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.html);
    let list = bob.get(&format!("/w/{ws}/apps")).await;
    assert!(list.html.contains("The apps you granted access to"));
    assert!(
        list.html.contains(">Revoke</button>"),
        "his own grant is his to revoke"
    );
    // The owner sees it granted by bob, by name.
    let list = c.get(&format!("/w/{ws}/apps")).await;
    // (Every test user is "Test User", the owner included: the cell is bob's, not "you".)
    assert!(list.html.contains("<td>Test User</td>"), "{}", list.html);
    assert!(!list.html.contains("<td>you</td>"), "{}", list.html);
    // A member has no webhooks:read: the webhooks page and the secret are refused.
    assert_eq!(bob.get(&format!("/w/{ws}/webhooks")).await.status, 403);
    let secret = bob.post(&format!("/w/{ws}/webhooks/secret"), &[]).await;
    assert_eq!(secret.status, 403);
    assert!(!secret.html.contains("whsec_"));
    s.stop().await;
}

#[tokio::test]
async fn webhook_endpoints_added_on_the_page_are_the_apis_and_the_secret_is_the_same() {
    let s = start().await;
    let (owner, ws) = s.owner_with_workspace("ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;

    let page = c.get(&format!("/w/{ws}/webhooks")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("No endpoint yet"));
    for event in keyrail_core::events::EVENT_TYPES {
        assert!(page.html.contains(&format!("value=\"{event}\"")), "{event}");
    }
    // The API's message next to the field, the values kept.
    let refused = c
        .post(
            &format!("/w/{ws}/webhooks"),
            &[("url", "ftp://nope.example"), ("events", "key.created")],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.html);
    assert!(refused.html.contains("id=\"hook-url-error\""));
    assert!(refused.html.contains("value=\"ftp://nope.example\""));

    let url = "http://127.0.0.1:9/hook";
    let added = c
        .post(
            &format!("/w/{ws}/webhooks"),
            &[
                ("url", url),
                ("events", "key.created"),
                ("events", "grant.revoked"),
            ],
        )
        .await;
    assert_eq!(added.status, 303, "{}", added.html);
    assert_eq!(added.location(), format!("/w/{ws}/webhooks?done=created"));
    let (status, list) = s
        .call("GET", &format!("/api/v1/w/{ws}/webhooks"), &owner, None)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"][0]["url"], url);
    assert_eq!(
        list["data"][0]["events"],
        json!(["key.created", "grant.revoked"])
    );
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    let page = c.get(added.location()).await;
    assert!(page.html.contains(url) && page.html.contains(">Delete</button>"));

    // The endpoint's page lists its delivery attempts (none yet).
    let detail = c.get(&format!("/w/{ws}/webhooks/{id}")).await;
    assert_eq!(detail.status, 200, "{}", detail.html);
    assert!(detail.html.contains("No delivery yet"));

    // The signing secret: from a POST, no-store, the API's.
    let secret = c.post(&format!("/w/{ws}/webhooks/secret"), &[]).await;
    assert_eq!(secret.status, 200, "{}", secret.html);
    assert_eq!(secret.header("cache-control"), "no-store");
    let shown = secret.testid("webhook-secret").expect("the secret");
    let (_, api) = s
        .call(
            "GET",
            &format!("/api/v1/w/{ws}/webhooks/secret"),
            &owner,
            None,
        )
        .await;
    assert_eq!(api["secret"].as_str(), Some(shown.as_str()));
    assert!(secret.html.contains("data-copy=\"webhook-secret\""));

    // No inline style or script on these pages: the CSP would block them.
    for path in [
        format!("/w/{ws}/webhooks"),
        format!("/w/{ws}/webhooks/{id}"),
        format!("/w/{ws}/apps"),
        format!("/w/{ws}/apps/grant"),
        "/apps".to_owned(),
        "/apps/profiles".to_owned(),
    ] {
        let page = c.get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(
            !page.html.contains("style=\"") && !page.html.contains("<script>"),
            "{path}"
        );
    }

    // Delete asks first; Confirm deletes.
    let confirm = c.get(&format!("/w/{ws}/webhooks/{id}/delete")).await;
    assert!(confirm.html.contains(">Confirm</button>"));
    let done = c.post(&format!("/w/{ws}/webhooks/{id}/delete"), &[]).await;
    assert_eq!(done.status, 303, "{}", done.html);
    let (_, list) = s
        .call("GET", &format!("/api/v1/w/{ws}/webhooks"), &owner, None)
        .await;
    assert_eq!(list["data"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn only_webhooks_write_sees_add_and_delete_and_the_server_refuses_them() {
    let s = start().await;
    let (owner, ws) = s.owner_with_workspace("ada@example.com").await;
    let hook = s.subscribe_all(&owner, &ws).await;
    let (status, role) = s
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/roles"),
            &owner,
            Some(&json!({"name": "hook-reader", "scopes": ["workspace:read", "webhooks:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{role}");
    s.user("eve@example.com").await;
    let (status, m) = s
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/members"),
            &owner,
            Some(&json!({"email": "eve@example.com", "role": role["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{m}");
    let mut eve = Console::sign_in(&s, "eve@example.com", PASSWORD).await;
    let page = eve.get(&format!("/w/{ws}/webhooks")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        page.html.contains("nothing-listens"),
        "she sees the endpoint"
    );
    assert!(!page.html.contains("Add an endpoint"));
    assert!(!page.html.contains(">Delete</button>"));
    assert!(page.html.contains(">Show signing secret</button>"));
    let secret = eve.post(&format!("/w/{ws}/webhooks/secret"), &[]).await;
    assert_eq!(secret.status, 200);
    assert!(
        secret
            .testid("webhook-secret")
            .unwrap()
            .starts_with("whsec_")
    );
    let refused = eve
        .post(&format!("/w/{ws}/webhooks/{hook}/delete"), &[])
        .await;
    assert_eq!(refused.status, 403);
    let refused = eve
        .post(
            &format!("/w/{ws}/webhooks"),
            &[("url", "http://127.0.0.1:9/x"), ("events", "key.created")],
        )
        .await;
    assert_eq!(refused.status, 403);
    let (_, list) = s
        .call("GET", &format!("/api/v1/w/{ws}/webhooks"), &owner, None)
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    s.stop().await;
}
