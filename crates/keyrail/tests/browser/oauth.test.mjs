// The OAuth consent page in a real browser, as an MCP client's user meets it: signed out, the
// sign-in form comes first and returns to the page; the page names the client and the scopes;
// Allow sends the browser to the client's loopback redirect URI with a code (the page's
// Content-Security-Policy lets the form lead there, and only there); the code gets a token that
// works on /mcp.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import { BASE, PASSWORD, api, launch, shoot, signUpOverApi, uniqueEmail } from "./harness.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

const CALLBACK = "http://127.0.0.1:49152/callback";

test("sign in, consent with Allow, and the client's token works on /mcp", async (t) => {
  const email = uniqueEmail("mcp");
  const token = await signUpOverApi(email, "Ada Lovelace");
  const ws = (await api("POST", "/api/v1/workspaces", { token, body: { name: "Analytical" } })).body.id;
  const reg = await api("POST", "/oauth/register", {
    body: { client_name: "Desk Agent", redirect_uris: ["http://127.0.0.1/callback"], token_endpoint_auth_method: "none" },
  });
  assert.equal(reg.status, 201);
  const clientId = reg.body.client_id;
  const prm = (await api("GET", "/.well-known/oauth-protected-resource")).body;
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const query = new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: CALLBACK,
    code_challenge: challenge,
    code_challenge_method: "S256",
    state: "st-123",
    resource: prm.resource,
    scope: "keys:read keys:write keys:reveal",
  });

  // Its own context: the client's redirect URI is another origin, answered here by the test.
  const context = await browser.newContext({ baseURL: BASE, viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text());
  });
  let reached = null;
  await page.route(`${CALLBACK}**`, (route) => {
    reached = route.request().url();
    return route.fulfill({ status: 200, contentType: "text/plain", body: "back at the client" });
  });

  await page.goto(`/oauth/authorize?${query}`);
  await page.waitForURL(/\/login\?next=/);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Allow Desk Agent?" }).waitFor();
  assert.ok(await page.getByText("keys:reveal").isVisible());
  assert.ok(await page.getByText("dangerous").first().isVisible(), "keys:reveal is marked dangerous");
  await page.getByLabel("Workspace").selectOption(ws);
  await shoot(page, "oauth-consent");

  await page.getByRole("button", { name: "Allow" }).click();
  await page.waitForURL(new RegExp(`^${CALLBACK}\\?code=`));
  assert.ok(reached, "the browser reached the client's redirect URI");
  const back = new URL(reached);
  assert.equal(back.searchParams.get("state"), "st-123");
  const issuer = (await api("GET", "/.well-known/oauth-authorization-server")).body.issuer;
  assert.equal(back.searchParams.get("iss"), issuer, "RFC 9207: the issuer comes back");

  const form = new URLSearchParams({
    grant_type: "authorization_code",
    client_id: clientId,
    code: back.searchParams.get("code"),
    code_verifier: verifier,
    redirect_uri: CALLBACK,
    resource: prm.resource,
  });
  const tokenResp = await fetch(`${BASE}/oauth/token`, { method: "POST", body: form });
  const tokens = await tokenResp.json();
  assert.equal(tokenResp.status, 200, JSON.stringify(tokens));
  assert.deepEqual(tokens.scope.split(" ").sort(), ["keys:read", "keys:reveal", "keys:write"]);
  const rpc = await fetch(`${BASE}/mcp`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${tokens.access_token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2025-11-25",
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "keys_list", arguments: { workspace_id: ws } } }),
  });
  const answer = await rpc.json();
  assert.equal(rpc.status, 200);
  assert.equal(answer.result.isError, false, JSON.stringify(answer));

  // The workspace's Apps page lists the grant, named after the client.
  await page.goto(`/w/${ws}/apps`);
  await page.getByRole("cell", { name: "Desk Agent" }).waitFor();
  assert.deepEqual(problems, []);
});

test("Deny sends access_denied back to the client", async (t) => {
  const email = uniqueEmail("mcp-deny");
  const token = await signUpOverApi(email);
  await api("POST", "/api/v1/workspaces", { token, body: { name: "Denied" } });
  const reg = await api("POST", "/oauth/register", { body: { client_name: "Nosy", redirect_uris: ["http://127.0.0.1/callback"] } });
  const prm = (await api("GET", "/.well-known/oauth-protected-resource")).body;
  const query = new URLSearchParams({
    response_type: "code",
    client_id: reg.body.client_id,
    redirect_uri: CALLBACK,
    code_challenge: createHash("sha256").update("x".repeat(43)).digest("base64url"),
    code_challenge_method: "S256",
    state: "st-9",
    resource: prm.resource,
  });
  const context = await browser.newContext({ baseURL: BASE });
  t.after(() => context.close());
  const page = await context.newPage();
  let reached = null;
  await page.route(`${CALLBACK}**`, (route) => {
    reached = route.request().url();
    return route.fulfill({ status: 200, contentType: "text/plain", body: "back" });
  });
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/w\//);
  await page.goto(`/oauth/authorize?${query}`);
  await page.getByRole("button", { name: "Deny" }).click();
  await page.waitForURL(new RegExp(`^${CALLBACK}\\?error=access_denied`));
  assert.equal(new URL(reached).searchParams.get("state"), "st-9");
});
