// Shared pieces of the console's browser tests: Debian's chromium through playwright-core
// (no browser download), the server's address, screenshots, and the few API calls a test
// makes beside the browser (verifying a key as a backend would, enabling MFA).
import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const BASE = process.env.KEYRAIL_URL;
if (!BASE) throw new Error("KEYRAIL_URL is not set: run these through `cargo test --test browser`");
export const PASSWORD = "correct horse battery staple 42";
const SHOTS = process.env.SCREENSHOT_DIR || "screenshots";
mkdirSync(SHOTS, { recursive: true });

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/// A fresh browser context (its own cookies) and page, failing the test on any script error or
/// dialog (an `alert` would mean injected markup ran).
export async function newPage(browser, t) {
  const context = await browser.newContext({ baseURL: BASE, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("dialog", async (d) => {
    problems.push(`dialog: ${d.message()}`);
    await d.dismiss();
  });
  page.on("console", (m) => {
    // A page answered 4xx on purpose (a refused form) is reported as a failed load: not a fault.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  page.on("requestfailed", (r) => {
    // A navigation cancels what the previous page was still loading: not a fault.
    if (r.failure()?.errorText !== "net::ERR_ABORTED") problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  // Every asset must come from the server itself.
  page.on("request", (r) => {
    if (!r.url().startsWith(BASE) && !r.url().startsWith("data:")) problems.push(`off-site request: ${r.url()}`);
  });
  t.after(async () => {
    await context.close();
    if (problems.length) throw new Error(problems.join("\n"));
  });
  return page;
}

let counter = 0;
export function uniqueEmail(who) {
  counter += 1;
  return `${who}-${Date.now().toString(36)}-${counter}@example.com`;
}

/// Checks a page the way an accessibility audit would, for what the console promises: a
/// language, a title, one h1, a label for every field, a name for every button and link, and
/// no horizontal scroll at 360 px (checked in `shoot`).
export async function checkAccessible(page, name) {
  const problems = await page.evaluate(() => {
    const out = [];
    if (!document.documentElement.lang) out.push("no lang on <html>");
    if (!document.title.trim()) out.push("no <title>");
    const h1 = document.querySelectorAll("h1").length;
    if (h1 !== 1) out.push(`${h1} h1 elements`);
    for (const el of document.querySelectorAll("input, select, textarea")) {
      if (el.type === "hidden") continue;
      const named = el.labels?.length || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
      if (!named) out.push(`field without a label: ${el.outerHTML.slice(0, 80)}`);
    }
    for (const el of document.querySelectorAll("button, a[href]")) {
      if (!(el.textContent.trim() || el.getAttribute("aria-label"))) out.push(`nameless: ${el.outerHTML.slice(0, 80)}`);
    }
    const ids = [...document.querySelectorAll("[id]")].map((e) => e.id);
    const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
    if (dup.length) out.push(`duplicate ids: ${dup.join(", ")}`);
    return out;
  });
  if (problems.length) throw new Error(`${name}: ${problems.join("; ")}`);
}

/// Screenshots of the page as it is, at 1280 px and 360 px wide (and checks it: see
/// `checkAccessible`; at 360 px nothing may scroll sideways but a wide table in its own box).
export async function shoot(page, name) {
  await checkAccessible(page, name);
  await page.setViewportSize({ width: 360, height: 740 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) {
    const wide = await page.evaluate(() => [...document.querySelectorAll("body *")]
      .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".table-wrap table"))
      .slice(0, 5).map((e) => e.outerHTML.slice(0, 100)));
    throw new Error(`${name}: ${overflow}px wider than a 360px screen: ${wide.join(" | ")}`);
  }
  for (const width of [1280, 360]) {
    await page.setViewportSize({ width, height: width === 360 ? 740 : 900 });
    await page.screenshot({ path: join(SHOTS, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

export async function api(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

export async function signUpOverApi(email, name = "Test User") {
  const r = await api("POST", "/api/v1/auth/signup", { body: { email, password: PASSWORD, name } });
  if (r.status !== 201) throw new Error(`signup: ${r.status} ${JSON.stringify(r.body)}`);
  const login = await api("POST", "/api/v1/auth/login", { body: { email, password: PASSWORD } });
  return login.body.access_token;
}

/// RFC 6238 (SHA-1, 6 digits, 30 s) from a base32 secret.
export function totp(secretB32, at = Date.now()) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secretB32.replace(/=+$/, "").toUpperCase()) {
    bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  const counterBuf = Buffer.alloc(8);
  counterBuf.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / 30)));
  const mac = createHmac("sha1", Buffer.from(bytes)).update(counterBuf).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return code.toString().padStart(6, "0");
}

/// Signs in through the form (no MFA).
export async function signIn(page, email, password = PASSWORD) {
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/// The session's CSRF token, as the console's forms carry it.
export async function csrfOf(page) {
  const cookies = await page.context().cookies();
  return cookies.find((c) => c.name === "keyrail_csrf")?.value ?? "";
}
