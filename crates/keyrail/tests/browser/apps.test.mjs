// Apps in a real browser: a developer creates a builder profile and an app (the client secret
// shown once), a member grants it in their workspace, the app's token works, revoking the
// grant stops it at once.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { BASE, api, launch, newPage, shoot, signIn, signUpOverApi, uniqueEmail } from "./harness.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/// An app token (the outer JWE, as the API hands it out) for the client credentials.
async function appToken(clientId, secret, grantId) {
  const resp = await fetch(`${BASE}/api/v1/apps/${clientId}/tokens`, {
    method: "POST",
    headers: {
      authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString("base64")}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({ grant_id: grantId }),
  });
  return { status: resp.status, body: await resp.json() };
}

test("create an app and a grant; revoking the grant stops the app at once", async (t) => {
  const email = uniqueEmail("dev");
  const token = await signUpOverApi(email);
  const ws = (await api("POST", "/api/v1/workspaces", { token, body: { name: "Shop" } })).body.id;

  const page = await newPage(browser, t);
  await signIn(page, email);
  await page.waitForURL(new RegExp(`/w/${ws}/keys`));
  await page.getByRole("link", { name: "Developer" }).click();
  await page.getByRole("heading", { name: "Your apps" }).waitFor();
  await shoot(page, "developer-apps-empty");
  await page.goto("/apps/profiles");
  await page.getByLabel("Name").fill("Acme Integrations");
  await page.getByLabel("Website").fill("https://acme.example");
  await page.getByRole("button", { name: "Create profile" }).click();
  await page.getByRole("cell", { name: "Acme Integrations" }).waitFor();
  await shoot(page, "developer-profiles");

  await page.goto("/apps");
  await page.getByRole("button", { name: "Create app" }).click();
  await page.getByLabel("Name").fill("Invoice sync");
  await page.getByLabel("Description").fill("Copies invoices");
  await shoot(page, "developer-app-new");
  await page.getByRole("button", { name: "Create", exact: true }).click();
  const clientId = (await page.getByTestId("client-id").textContent()).trim();
  const secret = (await page.getByTestId("client-secret").textContent()).trim();
  assert.ok(clientId && secret);
  await shoot(page, "developer-app-created");

  await page.goto(`/w/${ws}/keys`);
  await page.getByRole("link", { name: "Apps" }).click();
  await page.getByRole("heading", { name: "Apps" }).waitFor();
  await shoot(page, "apps-grants-empty");
  await page.getByRole("button", { name: "Grant an app" }).click();
  await page.getByLabel("Client id").fill(clientId);
  await page.getByRole("checkbox", { name: "keys:read" }).check();
  await shoot(page, "apps-grant");
  await page.getByRole("button", { name: "Grant", exact: true }).click();
  const row = page.getByRole("row", { name: /Invoice sync/ });
  await row.waitFor();
  await shoot(page, "apps-grants");

  const grants = (await api("GET", `/api/v1/w/${ws}/grants`, { token })).body.data;
  assert.equal(grants.length, 1);
  assert.deepEqual(grants[0].scopes, ["keys:read"]);
  const grantId = grants[0].id;
  const issued = await appToken(clientId, secret, grantId);
  assert.equal(issued.status, 200, JSON.stringify(issued.body));

  await row.getByRole("button", { name: "Revoke" }).click();
  await page.getByRole("button", { name: "Confirm" }).click();
  await page.getByRole("status").waitFor();
  assert.equal(await page.getByRole("row", { name: /Invoice sync/ }).count(), 0);
  assert.notEqual((await appToken(clientId, secret, grantId)).status, 200, "no token after the grant is revoked");
});

test("webhooks: add an endpoint and show the signing secret", async (t) => {
  const email = uniqueEmail("hooks");
  const token = await signUpOverApi(email);
  const ws = (await api("POST", "/api/v1/workspaces", { token, body: { name: "Hooked" } })).body.id;
  const page = await newPage(browser, t);
  await signIn(page, email);
  await page.waitForURL(new RegExp(`/w/${ws}/keys`));
  await page.getByRole("link", { name: "Webhooks" }).click();
  await page.getByRole("heading", { name: "Webhooks" }).waitFor();
  await page.getByLabel("URL").fill("https://93.184.215.14/keyrail");
  await page.getByRole("checkbox", { name: "key.revoked" }).check();
  await page.getByRole("button", { name: "Add endpoint" }).click();
  await page.getByRole("cell", { name: /93\.184\.215\.14/ }).waitFor();
  await shoot(page, "webhooks");
  const endpoints = (await api("GET", `/api/v1/w/${ws}/webhooks`, { token })).body.data;
  assert.equal(endpoints.length, 1);
  await page.getByRole("button", { name: "Show signing secret" }).click();
  const secret = (await page.getByTestId("webhook-secret").textContent()).trim();
  assert.equal(secret, (await api("GET", `/api/v1/w/${ws}/webhooks/secret`, { token })).body.secret);
  await shoot(page, "webhooks-secret");
});
