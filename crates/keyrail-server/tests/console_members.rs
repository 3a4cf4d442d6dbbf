//! The console's members, roles and settings pages over HTTP, as a browser sees them without
//! running script: what a page changes is what the API then shows, the API's rules (no
//! escalation, the last owner, key formats under 96 bits) answer on the page with the API's
//! messages, and controls a person may not use are neither shown nor accepted.

mod common;

use common::console::Console;
use common::{PASSWORD, TestServer, json};
use serde_json::json;

/// The members as the API lists them: (email, role, member id).
async fn members(s: &TestServer, token: &str, ws: &str) -> Vec<(String, String, String)> {
    let (status, body) = json(s.get_with(&format!("/api/v1/w/{ws}/members"), token).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
                m["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn member_id(list: &[(String, String, String)], email: &str) -> String {
    list.iter()
        .find(|m| m.0 == email)
        .unwrap_or_else(|| panic!("{email} in {list:?}"))
        .2
        .clone()
}

fn role_of(list: &[(String, String, String)], email: &str) -> String {
    list.iter()
        .find(|m| m.0 == email)
        .unwrap_or_else(|| panic!("{email} in {list:?}"))
        .1
        .clone()
}

/// Adds `email` (signed up already) to `ws` with `role`, over the API.
async fn add(s: &TestServer, token: &str, ws: &str, email: &str, role: &str) {
    let (status, body) = json(
        s.post_with(
            &format!("/api/v1/w/{ws}/members"),
            token,
            &json!({"email": email, "role": role}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

fn escaped(html: &str, raw: &str, escaped_forms: &[&str]) {
    assert!(!html.contains(raw), "raw markup on the page");
    assert!(
        escaped_forms.iter().any(|e| html.contains(e)),
        "escaped text on the page: {html}"
    );
}

#[tokio::test]
async fn a_member_invited_on_the_page_and_given_another_role_is_so_over_the_api() {
    let s = TestServer::start().await;
    let (token, ws) = s.owner_with_workspace("ada@example.com").await;
    s.signup("bob@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;

    let page = c.get(&format!("/w/{ws}/members")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("ada@example.com"));
    assert!(
        page.html
            .contains("<label for=\"invite-email\">Email</label>")
    );
    assert!(
        page.html
            .contains("<label for=\"invite-role\">Role</label>")
    );
    assert!(page.html.contains(">Invite</button>"));
    // The owner may give every built-in role.
    for role in ["owner", "admin", "developer", "member", "viewer"] {
        assert!(page.html.contains(&format!("value=\"{role}\"")), "{role}");
    }

    // Nobody signed up under that address: said next to the field, the values kept.
    let page = c
        .post(
            &format!("/w/{ws}/members"),
            &[("email", "nobody@example.com"), ("role", "developer")],
        )
        .await;
    assert_eq!(page.status, 404, "{}", page.html);
    assert!(page.html.contains("User not found"), "{}", page.html);
    assert!(page.html.contains("value=\"nobody@example.com\""));

    let page = c
        .post(
            &format!("/w/{ws}/members"),
            &[("email", "bob@example.com"), ("role", "developer")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    assert_eq!(page.location(), format!("/w/{ws}/members?done=added"));
    let list = members(&s, &token, &ws).await;
    assert_eq!(role_of(&list, "bob@example.com"), "developer");
    let bob = member_id(&list, "bob@example.com");

    let page = c.get(&format!("/w/{ws}/members?done=added")).await;
    assert!(page.html.contains("The member is added."));
    assert_eq!(page.testid(&format!("role-{bob}")).unwrap(), "developer");
    assert!(page.html.contains(">Change role</button>"));
    assert!(page.html.contains(">Remove</button>"));

    // Twice: the API's conflict, on the form.
    let page = c
        .post(
            &format!("/w/{ws}/members"),
            &[("email", "bob@example.com"), ("role", "viewer")],
        )
        .await;
    assert_eq!(page.status, 409);
    assert!(
        page.html
            .contains("This user is already a member of the workspace")
    );

    let page = c
        .post(
            &format!("/w/{ws}/members/{bob}/role"),
            &[("role", "viewer")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    assert_eq!(
        role_of(&members(&s, &token, &ws).await, "bob@example.com"),
        "viewer"
    );
    let page = c.get(page.location()).await;
    assert_eq!(page.testid(&format!("role-{bob}")).unwrap(), "viewer");

    // Remove asks first; Confirm removes.
    let confirm = c.get(&format!("/w/{ws}/members/{bob}/remove")).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.html.contains(">Confirm</button>"));
    assert!(confirm.html.contains("bob@example.com"));
    assert_eq!(
        members(&s, &token, &ws).await.len(),
        2,
        "asking is not removing"
    );
    let done = c.post(&format!("/w/{ws}/members/{bob}/remove"), &[]).await;
    assert_eq!(done.status, 303, "{}", done.html);
    assert_eq!(done.location(), format!("/w/{ws}/members?done=removed"));
    let list = members(&s, &token, &ws).await;
    assert_eq!(list.len(), 1, "{list:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_member_who_may_only_read_members_sees_no_controls_and_is_refused_anyway() {
    let s = TestServer::start().await;
    let (token, ws) = s.owner_with_workspace("ada@example.com").await;
    s.signup("bob@example.com").await;
    s.signup("carol@example.com").await;
    // `member`: workspace:read and members:read.
    add(&s, &token, &ws, "bob@example.com", "member").await;
    let ada = member_id(&members(&s, &token, &ws).await, "ada@example.com");
    let mut c = Console::sign_in(&s, "bob@example.com", PASSWORD).await;

    let page = c.get(&format!("/w/{ws}/members")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("ada@example.com"), "the list is there");
    for control in [
        ">Invite</button>",
        ">Change role</button>",
        ">Remove</button>",
        "/roles\"",
    ] {
        assert!(!page.html.contains(control), "{control} shown");
    }

    let page = c
        .post(
            &format!("/w/{ws}/members"),
            &[("email", "carol@example.com"), ("role", "viewer")],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.html);
    assert!(page.html.contains("Insufficient scope"));
    let page = c
        .post(
            &format!("/w/{ws}/members/{ada}/role"),
            &[("role", "viewer")],
        )
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(
        c.get(&format!("/w/{ws}/members/{ada}/remove")).await.status,
        403
    );
    assert_eq!(
        c.post(&format!("/w/{ws}/members/{ada}/remove"), &[])
            .await
            .status,
        403
    );
    // Roles need members:admin.
    assert_eq!(c.get(&format!("/w/{ws}/roles")).await.status, 403);
    let page = c
        .post(
            &format!("/w/{ws}/roles"),
            &[("name", "sneaky"), ("scopes", "workspace:read")],
        )
        .await;
    assert_eq!(page.status, 403);

    let list = members(&s, &token, &ws).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(role_of(&list, "ada@example.com"), "owner");
    s.stop().await;
}

#[tokio::test]
async fn an_admin_is_not_offered_the_owner_role_and_the_api_refuses_it_on_the_page() {
    let s = TestServer::start().await;
    let (token, ws) = s.owner_with_workspace("ada@example.com").await;
    s.signup("bob@example.com").await;
    s.signup("carol@example.com").await;
    // `admin`: members:write, but not workspace:delete (an owner scope).
    add(&s, &token, &ws, "bob@example.com", "admin").await;
    let list = members(&s, &token, &ws).await;
    let ada = member_id(&list, "ada@example.com");
    let mut c = Console::sign_in(&s, "bob@example.com", PASSWORD).await;

    let page = c.get(&format!("/w/{ws}/members")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains(">Invite</button>"));
    assert!(page.html.contains("value=\"admin\""));
    assert!(page.html.contains("value=\"viewer\""));
    assert!(
        !page.html.contains("value=\"owner\""),
        "only roles the admin may give are offered"
    );
    assert!(
        !page.html.contains(&format!("/members/{ada}/remove")),
        "no controls on an owner's row"
    );

    // Posting it anyway: the API's no-escalation answer.
    let page = c
        .post(
            &format!("/w/{ws}/members"),
            &[("email", "carol@example.com"), ("role", "owner")],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.html);
    assert!(page.html.contains("Insufficient scope"), "{}", page.html);
    let page = c
        .post(
            &format!("/w/{ws}/members/{ada}/role"),
            &[("role", "viewer")],
        )
        .await;
    assert_eq!(page.status, 403, "an admin cannot demote an owner");

    let list = members(&s, &token, &ws).await;
    assert_eq!(list.len(), 2, "carol was not added: {list:?}");
    assert_eq!(role_of(&list, "ada@example.com"), "owner");

    // What the admin may give, the page does.
    let page = c
        .post(
            &format!("/w/{ws}/members"),
            &[("email", "carol@example.com"), ("role", "developer")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    assert_eq!(
        role_of(&members(&s, &token, &ws).await, "carol@example.com"),
        "developer"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_last_owner_can_be_neither_demoted_nor_removed_and_the_page_says_why() {
    let s = TestServer::start().await;
    let (token, ws) = s.owner_with_workspace("ada@example.com").await;
    let ada = member_id(&members(&s, &token, &ws).await, "ada@example.com");
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let message = "The last owner of a workspace cannot be removed or demoted";

    let page = c
        .post(&format!("/w/{ws}/members/{ada}/role"), &[("role", "admin")])
        .await;
    assert_eq!(page.status, 409, "{}", page.html);
    assert!(page.html.contains(message), "{}", page.html);
    assert!(
        page.html.contains("ada@example.com"),
        "the list is shown again"
    );

    let page = c.post(&format!("/w/{ws}/members/{ada}/remove"), &[]).await;
    assert_eq!(page.status, 409, "{}", page.html);
    assert!(page.html.contains(message));

    assert_eq!(
        role_of(&members(&s, &token, &ws).await, "ada@example.com"),
        "owner"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_custom_role_made_on_the_page_can_be_given_edited_and_not_deleted_while_held() {
    let s = TestServer::start().await;
    let (token, ws) = s.owner_with_workspace("ada@example.com").await;
    s.signup("bob@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;

    let members_page = c.get(&format!("/w/{ws}/members")).await;
    assert!(
        members_page.html.contains(&format!("/w/{ws}/roles\"")),
        "Roles link"
    );
    let page = c.get(&format!("/w/{ws}/roles")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("No custom roles yet"));
    let form = c.get(&format!("/w/{ws}/roles/new")).await;
    assert_eq!(form.status, 200);
    assert!(form.html.contains("value=\"keys:read\""), "scope picker");
    assert!(form.html.contains("dangerous"), "dangerous scopes marked");

    // A bad name: the API's message, the ticked scopes kept.
    let page = c
        .post(
            &format!("/w/{ws}/roles"),
            &[("name", "owner"), ("scopes", "keys:read")],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert!(page.html.contains("value=\"keys:read\" checked"));

    let page = c
        .post(
            &format!("/w/{ws}/roles"),
            &[
                ("name", "support"),
                ("scopes", "workspace:read"),
                ("scopes", "keys:read"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    let (_, roles) = json(s.get_with(&format!("/api/v1/w/{ws}/roles"), &token).await).await;
    let support = roles["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "support")
        .cloned()
        .expect("the role is there");
    let mut scopes: Vec<&str> = support["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["keys:read", "workspace:read"]);
    let role_id = support["id"].as_str().unwrap().to_owned();

    // The invite form offers it; giving it works.
    let page = c.get(&format!("/w/{ws}/members")).await;
    assert!(page.html.contains(&format!("value=\"{role_id}\"")));
    let page = c
        .post(
            &format!("/w/{ws}/members"),
            &[("email", "bob@example.com"), ("role", &role_id)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    assert_eq!(
        role_of(&members(&s, &token, &ws).await, "bob@example.com"),
        "support"
    );

    // Edit: the form shows what it has; saving changes it.
    let edit = c.get(&format!("/w/{ws}/roles/{role_id}")).await;
    assert_eq!(edit.status, 200);
    assert!(edit.html.contains("value=\"keys:read\" checked"));
    let page = c
        .post(
            &format!("/w/{ws}/roles/{role_id}"),
            &[
                ("name", "support"),
                ("scopes", "workspace:read"),
                ("scopes", "members:read"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    let (_, roles) = json(s.get_with(&format!("/api/v1/w/{ws}/roles"), &token).await).await;
    let support = roles["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "support")
        .cloned()
        .unwrap();
    assert!(
        support["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("members:read"))
    );
    assert!(
        !support["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("keys:read"))
    );

    // Held by bob: the API's 409 on the confirmation page.
    let confirm = c.get(&format!("/w/{ws}/roles/{role_id}/delete")).await;
    assert!(confirm.html.contains(">Confirm</button>"));
    let page = c
        .post(&format!("/w/{ws}/roles/{role_id}/delete"), &[])
        .await;
    assert_eq!(page.status, 409, "{}", page.html);
    assert!(
        page.html.contains("1 member(s) hold this role"),
        "{}",
        page.html
    );
    s.stop().await;
}

#[tokio::test]
async fn a_key_format_changed_on_the_page_shapes_the_next_key() {
    let s = TestServer::start().await;
    let (_, ws) = s.owner_with_workspace("ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;

    let page = c.get(&format!("/w/{ws}/settings")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    let default_shape = format!("kr_{}cccccc", "x".repeat(30));
    assert_eq!(page.testid("key-shape").unwrap(), default_shape);
    assert!(page.html.contains("<option value=\"base62\" selected>"));

    // Under 96 bits: the API's message, the values kept.
    let page = c
        .post(
            &format!("/w/{ws}/settings/key-format"),
            &[("prefix", "acme"), ("alphabet", "hex"), ("length", "20")],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert!(
        page.html
            .contains("key_format gives 80 bits of randomness; at least 96 are required"),
        "{}",
        page.html
    );
    assert!(page.html.contains("value=\"acme\""));
    assert!(page.html.contains("<option value=\"hex\" selected>"));

    let page = c
        .post(
            &format!("/w/{ws}/settings/key-format"),
            &[("prefix", "acme"), ("alphabet", "hex"), ("length", "32")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    let page = c.get(page.location()).await;
    assert!(page.html.contains("Saved."));
    assert_eq!(
        page.testid("key-shape").unwrap(),
        format!("acme_{}", "x".repeat(32))
    );

    let page = c.post(&format!("/w/{ws}/keys"), &[("name", "next")]).await;
    assert_eq!(page.status, 200, "{}", page.html);
    let key = page.testid("new-key").unwrap();
    let random = key.strip_prefix("acme_").expect(&key);
    assert_eq!(random.len(), 32, "{key}");
    assert!(random.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    assert_eq!(s.verify_code(&key).await, "VALID");
    s.stop().await;
}

#[tokio::test]
async fn a_custom_scope_made_in_settings_is_offered_for_keys_until_deleted() {
    let s = TestServer::start().await;
    let (_, ws) = s.owner_with_workspace("ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;

    let page = c.get(&format!("/w/{ws}/scopes")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("No custom scopes yet"));
    // keyrail's own resources are the API's to refuse.
    let page = c
        .post(&format!("/w/{ws}/scopes"), &[("name", "keys:steal")])
        .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert!(page.html.contains("value=\"keys:steal\""));

    let page = c
        .post(
            &format!("/w/{ws}/scopes"),
            &[
                ("name", "chats:purge"),
                ("description", "Delete every chat"),
                ("dangerous", "true"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    let page = c.get(page.location()).await;
    assert!(
        page.html
            .contains("<code>chats:purge</code> <span class=\"tag danger\">")
    );

    let form = c.get(&format!("/w/{ws}/keys/new")).await;
    assert!(form.html.contains("value=\"chats:purge\""), "{}", form.html);
    assert!(form.html.contains("Delete every chat"));
    let page = c
        .post(
            &format!("/w/{ws}/keys"),
            &[("name", "purger"), ("scopes", "chats:purge")],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.html);
    let key = page.testid("new-key").unwrap();
    let (_, v) = json(
        s.post_json(
            "/api/v1/keys/verify",
            &json!({"key": key, "scopes": ["chats:purge"]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["code"], "VALID", "{v}");

    let confirm = c.get(&format!("/w/{ws}/scopes/chats:purge/delete")).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.html.contains(">Confirm</button>"));
    let page = c
        .post(&format!("/w/{ws}/scopes/chats:purge/delete"), &[])
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    let form = c.get(&format!("/w/{ws}/keys/new")).await;
    assert!(!form.html.contains("chats:purge"));
    // A built-in scope cannot be deleted: the API's answer.
    let page = c.get(&format!("/w/{ws}/scopes/keys:read/delete")).await;
    assert_eq!(page.status, 400);
    s.stop().await;
}

#[tokio::test]
async fn a_workspace_is_renamed_and_deleted_in_settings_only_by_whoever_may() {
    let s = TestServer::start().await;
    let (token, ws) = s.owner_with_workspace("ada@example.com").await;
    s.signup("bob@example.com").await;
    add(&s, &token, &ws, "bob@example.com", "admin").await;

    // An admin may rename but not delete.
    let mut bob = Console::sign_in(&s, "bob@example.com", PASSWORD).await;
    let page = bob.get(&format!("/w/{ws}/settings")).await;
    assert!(page.html.contains(">Rename</button>"));
    assert!(!page.html.contains("Delete workspace"));
    assert_eq!(bob.get(&format!("/w/{ws}/delete")).await.status, 403);
    let page = bob
        .post(&format!("/w/{ws}/delete"), &[("confirm_name", "Acme")])
        .await;
    assert_eq!(page.status, 403);

    let page = bob
        .post(&format!("/w/{ws}/settings/name"), &[("name", "   ")])
        .await;
    assert_eq!(page.status, 400);
    assert!(page.html.contains("name must be 1 to 100 characters"));
    let page = bob
        .post(&format!("/w/{ws}/settings/name"), &[("name", "Acme Corp")])
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    let (_, w) = json(s.get_with(&format!("/api/v1/w/{ws}"), &token).await).await;
    assert_eq!(w["name"], "Acme Corp");

    let mut ada = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let page = ada.get(&format!("/w/{ws}/settings")).await;
    assert!(page.html.contains(">Delete workspace</button>"));
    let confirm = ada.get(&format!("/w/{ws}/delete")).await;
    assert!(confirm.html.contains(">Confirm</button>"));
    let page = ada
        .post(&format!("/w/{ws}/delete"), &[("confirm_name", "Acme")])
        .await;
    assert_eq!(page.status, 400, "the name must match");
    assert_eq!(
        s.get_with(&format!("/api/v1/w/{ws}"), &token)
            .await
            .status(),
        200
    );
    let page = ada
        .post(&format!("/w/{ws}/delete"), &[("confirm_name", "Acme Corp")])
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    assert_eq!(page.location(), "/workspaces?done=workspace_deleted");
    let list = ada.get(page.location()).await;
    assert!(
        list.html.contains("The workspace is deleted"),
        "{}",
        list.html
    );
    assert!(!list.html.contains("Acme Corp"), "gone from the list");
    assert_eq!(
        s.get_with(&format!("/api/v1/w/{ws}"), &token)
            .await
            .status(),
        404
    );
    s.stop().await;
}

#[tokio::test]
async fn markup_in_a_member_name_a_role_name_or_a_scope_is_shown_as_text() {
    let s = TestServer::start().await;
    let (token, ws) = s.owner_with_workspace("ada@example.com").await;
    let evil = "<script>alert(1)</script>";
    let (status, body) = json(
        s.post_json(
            "/api/v1/auth/signup",
            &json!({"email": "eve@example.com", "password": PASSWORD, "name": evil}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    add(&s, &token, &ws, "eve@example.com", "viewer").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let forms = [
        "&#60;script&#62;alert(1)&#60;/script&#62;",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
    ];

    let page = c.get(&format!("/w/{ws}/members")).await;
    escaped(&page.html, evil, &forms);
    let eve = member_id(&members(&s, &token, &ws).await, "eve@example.com");
    let page = c.get(&format!("/w/{ws}/members/{eve}/remove")).await;
    escaped(&page.html, evil, &forms);

    // A role name the API refuses comes back in the form, as text.
    let page = c
        .post(
            &format!("/w/{ws}/roles"),
            &[("name", evil), ("scopes", "workspace:read")],
        )
        .await;
    assert_eq!(page.status, 400);
    escaped(&page.html, evil, &forms);

    // A scope's description is shown wherever the scope is offered.
    let page = c
        .post(
            &format!("/w/{ws}/scopes"),
            &[("name", "chats:read"), ("description", evil)],
        )
        .await;
    let description_ok = page.status == 303;
    if description_ok {
        escaped(&c.get(&format!("/w/{ws}/scopes")).await.html, evil, &forms);
        escaped(
            &c.get(&format!("/w/{ws}/keys/new")).await.html,
            evil,
            &forms,
        );
    } else {
        escaped(&page.html, evil, &forms);
    }
    s.stop().await;
}

/// Every input and select of these pages has a label, and no page carries inline style or
/// script (the CSP would block them).
#[tokio::test]
async fn the_pages_label_every_field_and_carry_no_inline_style() {
    let s = TestServer::start().await;
    let (token, ws) = s.owner_with_workspace("ada@example.com").await;
    s.signup("bob@example.com").await;
    add(&s, &token, &ws, "bob@example.com", "developer").await;
    let bob = member_id(&members(&s, &token, &ws).await, "bob@example.com");
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    for path in [
        format!("/w/{ws}/members"),
        format!("/w/{ws}/members/{bob}/remove"),
        format!("/w/{ws}/roles"),
        format!("/w/{ws}/roles/new"),
        format!("/w/{ws}/settings"),
        format!("/w/{ws}/scopes"),
        format!("/w/{ws}/delete"),
    ] {
        let page = c.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.html);
        assert!(!page.html.contains("style=\""), "{path}");
        assert!(!page.html.contains("<script>"), "{path}");
        let mut fields = 0;
        for tag in ["<input ", "<select "] {
            for (at, _) in page.html.match_indices(tag) {
                let element = &page.html[at..at + page.html[at..].find('>').unwrap()];
                if element.contains("type=\"hidden\"") || element.contains("type=\"checkbox\"") {
                    continue;
                }
                let id = element
                    .split("id=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_else(|| panic!("{path}: a field without an id: {element}"));
                assert!(
                    page.html.contains(&format!("<label for=\"{id}\"")),
                    "{path}: no label for {id}"
                );
                fields += 1;
            }
        }
        assert!(
            fields > 0 || path.ends_with("/roles") || path.ends_with("/remove"),
            "{path}: no fields seen"
        );
        assert!(
            page.html.contains("name=\"csrf_token\""),
            "{path}: forms carry the token"
        );
    }
    s.stop().await;
}
