// Every console page not shot by the other tests, each checked (labels, names, one h1, no
// sideways scroll at 360 px) and shot at 1280 and 360 px: a workspace with a key, a custom role,
// a custom scope, an app with a grant and a webhook endpoint, made over the API first.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, launch, newPage, shoot, signIn, signUpOverApi, uniqueEmail } from "./harness.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("a tour of the remaining pages", async (t) => {
  const email = uniqueEmail("tour");
  const token = await signUpOverApi(email, "Tour Guide");
  const call = async (method, path, body) => {
    const r = await api(method, path, { token, body });
    assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const ws = (await call("POST", "/api/v1/workspaces", { name: "Tour" })).id;
  const W = `/api/v1/w/${ws}`;
  const key = await call("POST", `${W}/keys`, {
    name: "reporting", scopes: ["keys:read"], rate_limit: { limit: 10, window_seconds: 60 },
    remaining: 500, external_id: "cus_42", recoverable: true, expires_in_days: 30,
  });
  await call("POST", `${W}/scopes`, { name: "invoices:read", description: "Read invoices", dangerous: false });
  const role = await call("POST", `${W}/roles`, { name: "support", scopes: ["workspace:read", "keys:read"] });
  const profile = await call("POST", "/api/v1/builder-profiles", { name: "Tour Apps", website: "https://tour.example" });
  const app = await call("POST", "/api/v1/apps", {
    name: "Reporter", description: "Builds reports", builder_profile_id: profile.id, workspace_restrictions: null,
  });
  await call("POST", `${W}/grants`, { client_id: app.client_id, scopes: ["keys:read"], shared: false });
  const hook = await call("POST", `${W}/webhooks`, { url: "https://93.184.215.14/hook", events: ["key.created"] });

  const page = await newPage(browser, t);
  for (const [path, name] of [["/forgot-password", "forgot-password"], ["/reset-password?token=example", "reset-password"]]) {
    await page.goto(path);
    await shoot(page, name);
  }
  await signIn(page, email);
  await page.waitForURL(new RegExp(`/w/${ws}/keys`));
  const pages = [
    [`/w/${ws}/keys/new`, "key-new"],
    [`/w/${ws}/keys/${key.id}`, "key"],
    [`/w/${ws}/roles`, "roles"],
    [`/w/${ws}/roles/new`, "role-new"],
    [`/w/${ws}/roles/${role.id}`, "role-edit"],
    [`/w/${ws}/settings`, "settings"],
    [`/w/${ws}/scopes`, "scopes"],
    [`/w/${ws}/webhooks/${hook.id}`, "webhook-deliveries"],
    [`/apps/${app.client_id}`, "developer-app"],
    ["/workspaces", "workspaces"],
    [`/w/${ws}/keys/key_doesnotexist`, "error-not-found"],
  ];
  for (const [path, name] of pages) {
    const resp = await page.goto(path);
    assert.equal(resp.status(), name.startsWith("error") ? 404 : 200, `${path}: ${resp.status()}`);
    await shoot(page, name);
  }
  // The key's page offers what an owner may do with a recoverable key.
  await page.goto(`/w/${ws}/keys/${key.id}`);
  for (const action of ["Rotate", "Disable", "Reveal", "Revoke"]) {
    await page.getByRole("button", { name: action, exact: true }).waitFor();
  }
  await page.getByRole("button", { name: "Reveal", exact: true }).click();
  assert.equal((await page.getByTestId("new-key").textContent()).trim(), key.key);
  await shoot(page, "key-revealed");
});
