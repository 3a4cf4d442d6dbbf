// Platform administration in a real browser, as the superuser `keyrail init` made: suspend a
// workspace (its keys stop), activate it again.
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

const ADMIN = process.env.KEYRAIL_SUPERUSER_EMAIL;
const ADMIN_PASSWORD = process.env.KEYRAIL_SUPERUSER_PASSWORD;

test("a superuser suspends a workspace and activates it again", async (t) => {
  assert.ok(ADMIN && ADMIN_PASSWORD, "KEYRAIL_SUPERUSER_EMAIL and KEYRAIL_SUPERUSER_PASSWORD are set by browser.rs");
  const owner = uniqueEmail("tenant");
  const token = await signUpOverApi(owner);
  const ws = (await api("POST", "/api/v1/workspaces", { token, body: { name: "Tenant to suspend" } })).body;
  const key = (await api("POST", `/api/v1/w/${ws.id}/keys`, { token, body: { name: "k" } })).body.key;
  assert.equal((await api("POST", "/api/v1/keys/verify", { body: { key } })).body.code, "VALID");

  const page = await newPage(browser, t);
  await signIn(page, ADMIN, ADMIN_PASSWORD);
  await page.getByRole("navigation", { name: "Account" }).getByRole("link", { name: "Admin", exact: true }).click();
  await shoot(page, "admin-users");
  await page.getByRole("heading", { name: "Platform administration" }).waitFor();
  await page.getByRole("link", { name: "Workspaces", exact: true }).click();
  await page.waitForURL(/\/admin\/workspaces/);
  const row = page.getByRole("row", { name: /Tenant to suspend/ });
  await shoot(page, "admin-workspaces");
  await row.getByRole("button", { name: "Suspend" }).click();
  await page.getByRole("button", { name: "Confirm" }).click();
  await page.getByRole("row", { name: /Tenant to suspend/ }).getByText("suspended").waitFor();
  assert.equal((await api("POST", "/api/v1/keys/verify", { body: { key } })).body.code, "TENANT_SUSPENDED");
  await page.getByRole("row", { name: /Tenant to suspend/ }).getByRole("button", { name: "Activate" }).click();
  await page.getByRole("row", { name: /Tenant to suspend/ }).getByText("active").waitFor();
  assert.equal((await api("POST", "/api/v1/keys/verify", { body: { key } })).body.code, "VALID");
});

test("someone who is not a superuser has no Admin link and gets 403", async (t) => {
  const email = uniqueEmail("plain");
  await signUpOverApi(email);
  const page = await newPage(browser, t);
  await signIn(page, email);
  await page.waitForURL(/\/workspaces/);
  assert.equal(await page.getByRole("link", { name: "Admin" }).count(), 0);
  const resp = await page.goto("/admin");
  assert.equal(resp.status(), 403);
});
