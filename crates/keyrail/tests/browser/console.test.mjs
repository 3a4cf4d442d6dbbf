// Click-through tests of the console in a real browser (Debian's chromium), with the
// accessible names API.md "Web console" promises. Run by `cargo test --test browser`, which
// starts the server and sets KEYRAIL_URL.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  BASE, PASSWORD, api, csrfOf, launch, newPage, shoot, signIn, signUpOverApi, totp, uniqueEmail,
} from "./harness.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/// Signs up through the page and signs in; lands on the workspace list (no workspace yet).
async function signUpOnPage(page, email, name = "Ada Lovelace") {
  await page.goto("/");
  await assert.doesNotReject(page.waitForURL(/\/login/));
  await shoot(page, "sign-in");
  await page.getByRole("link", { name: "Create an account" }).click();
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await shoot(page, "sign-up");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(/\/login\?done=signed_up/);
  await signIn(page, email);
  await page.waitForURL(/\/workspaces/);
}

async function createWorkspace(page, name) {
  await page.goto("/workspaces");
  await page.getByLabel("Workspace name").fill(name);
  await page.getByRole("button", { name: "Create workspace" }).click();
  await page.waitForURL(/\/w\/[^/]+\/keys/);
  return page.url().match(/\/w\/([^/]+)\/keys/)[1];
}

async function createKey(page, name, scopes = []) {
  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByRole("button", { name: "Create API key" }).click();
  await page.getByLabel("Name").fill(name);
  for (const s of scopes) await page.getByRole("checkbox", { name: s }).check();
  await page.getByRole("button", { name: "Create", exact: true }).click();
  const key = (await page.getByTestId("new-key").textContent()).trim();
  return key;
}

test("sign up, create a key and read it from the page, verify it, revoke it with confirmation", async (t) => {
  const page = await newPage(browser, t);
  const email = uniqueEmail("ada");
  await signUpOnPage(page, email);
  await shoot(page, "workspaces-empty");
  await createWorkspace(page, "Acme");
  await shoot(page, "keys-empty");

  const key = await createKey(page, "billing service", ["keys:read"]);
  assert.match(key, /^kr_[A-Za-z0-9]{36}$/);
  await shoot(page, "key-created");
  // The copy button puts the key on the clipboard.
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  await page.getByRole("button", { name: "Copy" }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);

  const valid = await api("POST", "/api/v1/keys/verify", { body: { key } });
  assert.equal(valid.body.code, "VALID");

  await page.getByRole("link", { name: "API keys" }).click();
  const row = page.getByRole("row", { name: /billing service/ });
  await shoot(page, "keys");
  await page.emulateMedia({ colorScheme: "dark" });
  await shoot(page, "keys-dark");
  await page.emulateMedia({ colorScheme: "light" });
  await row.getByRole("button", { name: "Revoke" }).click();
  await shoot(page, "key-revoke-confirm");
  assert.equal((await api("POST", "/api/v1/keys/verify", { body: { key } })).body.code, "VALID",
    "asking is not revoking");
  await page.getByRole("button", { name: "Confirm" }).click();
  await page.getByText("The key was revoked.").waitFor();
  assert.equal((await api("POST", "/api/v1/keys/verify", { body: { key } })).body.code, "REVOKED");
  await assert.doesNotReject(page.getByRole("row", { name: /billing service/ }).getByText("revoked").waitFor());

  // The audit log has the revocation, by this person.
  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByRole("heading", { name: "Audit log" }).waitFor();
  const entry = page.getByRole("row", { name: /key\.revoke/ });
  await entry.waitFor();
  assert.match(await entry.textContent(), /user/);
  await shoot(page, "audit");
  await page.getByLabel("Action").fill("key.create");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.getByRole("row", { name: /key\.create/ }).waitFor();
  assert.equal(await page.getByRole("row", { name: /key\.revoke/ }).count(), 0);
});

test("turn MFA on in the profile (QR code, recovery codes once), then sign in with a code", async (t) => {
  const email = uniqueEmail("mfa");
  await signUpOverApi(email);
  const page = await newPage(browser, t);
  await signIn(page, email);
  await page.waitForURL(/\/workspaces/);
  await page.getByRole("link", { name: "Test User" }).click();
  await page.getByRole("heading", { name: "Profile" }).waitFor();
  await shoot(page, "profile");
  await page.getByRole("button", { name: "Set up MFA" }).click();
  assert.equal(await page.locator(".qr svg").count(), 1, "a QR code drawn by the server");
  const secret = (await page.getByTestId("totp-secret").textContent()).trim();
  await shoot(page, "profile-mfa-setup");
  await page.getByLabel("Code", { exact: true }).fill(totp(secret));
  await page.getByRole("button", { name: "Turn on MFA" }).click();
  const codes = (await page.getByTestId("recovery-codes").textContent()).trim().split(/\s+/);
  assert.equal(codes.length, 10);
  await shoot(page, "profile-recovery-codes");
  const enabledAt = Date.now();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/login/);

  await signIn(page, email);
  await page.getByLabel("Code").waitFor();
  await shoot(page, "sign-in-mfa");
  await page.getByLabel("Code").fill("000000");
  await page.getByRole("button", { name: "Verify" }).click();
  await page.getByText("Invalid").first().waitFor();
  // The code that turned MFA on cannot be spent again: wait for the next time step.
  while (totp(secret) === totp(secret, enabledAt) && Date.now() - enabledAt < 31_000) {
    await new Promise((r) => setTimeout(r, 500));
  }
  await page.getByLabel("Code").fill(totp(secret));
  await page.getByRole("button", { name: "Verify" }).click();
  await page.waitForURL(/\/workspaces|\/w\//);
  const cookies = await page.context().cookies();
  assert.ok(cookies.some((c) => c.name === "keyrail_token"), "signed in");
});

test("a member without keys:write sees no create button and gets 403 posting the form anyway", async (t) => {
  const ownerEmail = uniqueEmail("owner");
  const ownerToken = await signUpOverApi(ownerEmail);
  const ws = (await api("POST", "/api/v1/workspaces", { token: ownerToken, body: { name: "Readers" } })).body.id;
  const role = await api("POST", `/api/v1/w/${ws}/roles`, {
    token: ownerToken, body: { name: "reader", scopes: ["workspace:read", "keys:read"] },
  });
  assert.equal(role.status, 201, JSON.stringify(role.body));
  const memberEmail = uniqueEmail("reader");
  await signUpOverApi(memberEmail);
  const added = await api("POST", `/api/v1/w/${ws}/members`, {
    token: ownerToken, body: { email: memberEmail, role: role.body.id },
  });
  assert.equal(added.status, 201, JSON.stringify(added.body));

  const page = await newPage(browser, t);
  await signIn(page, memberEmail);
  await page.waitForURL(new RegExp(`/w/${ws}/keys`));
  await page.getByRole("heading", { name: "API keys" }).waitFor();
  assert.equal(await page.getByRole("button", { name: "Create API key" }).count(), 0);
  await shoot(page, "keys-read-only");

  const resp = await page.request.post(`/w/${ws}/keys`, {
    form: { csrf_token: await csrfOf(page), name: "sneaky" },
    maxRedirects: 0,
  });
  assert.equal(resp.status(), 403);
  assert.match(await resp.text(), /Insufficient scope/);
  const keys = await api("GET", `/api/v1/w/${ws}/keys`, { token: ownerToken });
  assert.deepEqual(keys.body.data, []);
});

test("a key name with markup is shown as text, and a form posted without its CSRF token fails", async (t) => {
  const email = uniqueEmail("esc");
  const token = await signUpOverApi(email);
  const ws = (await api("POST", "/api/v1/workspaces", { token, body: { name: "<b>bold</b> corp" } })).body.id;
  const page = await newPage(browser, t);
  await signIn(page, email);
  await page.waitForURL(new RegExp(`/w/${ws}/keys`));
  const markup = "<script>alert(1)</script><img src=x onerror=alert(2)>";
  await createKey(page, markup);
  await page.getByRole("link", { name: "API keys" }).click();
  // Shown literally (the dialog listener in newPage fails the test if anything ran).
  await page.getByRole("link", { name: markup }).waitFor();
  assert.equal(await page.locator("img[src=x]").count(), 0);
  await assert.doesNotReject(page.getByText("<b>bold</b> corp").first().waitFor());
  await shoot(page, "keys-escaped");

  const before = await api("GET", `/api/v1/w/${ws}/keys`, { token });
  for (const form of [{ name: "no token" }, { name: "bad token", csrf_token: "x".repeat(43) }]) {
    const resp = await page.request.post(`/w/${ws}/keys`, { form, maxRedirects: 0 });
    assert.equal(resp.status(), 403, JSON.stringify(form));
    assert.match(await resp.text(), /CSRF token missing or invalid/);
  }
  const afterwards = await api("GET", `/api/v1/w/${ws}/keys`, { token });
  assert.equal(afterwards.body.data.length, before.body.data.length, "nothing was created");
});

test("pages work at 360 px wide with no horizontal scroll on the frame", async (t) => {
  const email = uniqueEmail("narrow");
  const token = await signUpOverApi(email);
  await api("POST", "/api/v1/workspaces", { token, body: { name: "Narrow" } });
  const page = await newPage(browser, t);
  await page.setViewportSize({ width: 360, height: 740 });
  await signIn(page, email);
  await page.waitForURL(/\/w\/[^/]+\/keys/);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
  // Keyboard: the skip link comes first and focus is visible.
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
});
