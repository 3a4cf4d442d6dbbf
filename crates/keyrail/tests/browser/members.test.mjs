// Members in a real browser: invite a member by email and change their role; what the API
// then says about them.
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

test("invite a member and change their role", async (t) => {
  const ownerEmail = uniqueEmail("owner");
  const token = await signUpOverApi(ownerEmail, "Olive Owner");
  const ws = (await api("POST", "/api/v1/workspaces", { token, body: { name: "Team" } })).body.id;
  const bobEmail = uniqueEmail("bob");
  await signUpOverApi(bobEmail, "Bob Builder");

  const page = await newPage(browser, t);
  await signIn(page, ownerEmail);
  await page.waitForURL(new RegExp(`/w/${ws}/keys`));
  await page.getByRole("link", { name: "Members" }).click();
  await page.getByRole("heading", { name: "Members" }).waitFor();
  await page.getByLabel("Email").fill(bobEmail);
  await page.getByLabel("Role", { exact: true }).selectOption({ label: "viewer" });
  await page.getByRole("button", { name: "Invite" }).click();
  const row = page.getByRole("row", { name: new RegExp(bobEmail.replace(/[.+]/g, "\\$&")) });
  await row.waitFor();
  await shoot(page, "members");
  let members = (await api("GET", `/api/v1/w/${ws}/members`, { token })).body.data;
  assert.equal(members.find((m) => m.email === bobEmail)?.role, "viewer");

  await row.getByLabel(`Role of ${bobEmail}`).selectOption({ label: "developer" });
  await row.getByRole("button", { name: "Change role" }).click();
  await page.getByText("Saved.").or(page.getByRole("status")).first().waitFor();
  const roleCell = page.getByRole("row", { name: new RegExp(bobEmail.replace(/[.+]/g, "\\$&")) }).locator('td[data-testid^="role-"]');
  assert.equal((await roleCell.textContent()).trim(), "developer");
  members = (await api("GET", `/api/v1/w/${ws}/members`, { token })).body.data;
  assert.equal(members.find((m) => m.email === bobEmail)?.role, "developer");

  // Bob now sees the workspace, with the keys page a developer may use.
  const bob = await newPage(browser, t);
  await signIn(bob, bobEmail);
  await bob.waitForURL(new RegExp(`/w/${ws}/keys`));
  await bob.getByRole("button", { name: "Create API key" }).waitFor();
});
