// A keyrail app acting for a member through a grant, as an integrator would write it.
//
// Reads KEYRAIL_URL, KEYRAIL_CLIENT_ID, KEYRAIL_CLIENT_SECRET and KEYRAIL_GRANT_ID, then:
// 1. POST {url}/api/v1/apps/{client_id}/tokens (HTTP Basic client_id:client_secret,
//    body {"grant_id": ...}) -> {"token": "<client_id>:<compact JWE>", "expires_in": 300};
// 2. decrypts the JWE (alg "dir", enc "A128GCM", key = the 16 bytes of the base64url secret)
//    into {api_token, grant_id, workspace_id, member_id, scopes, exp};
// 3. GET {url}/api/v1/w/{workspace_id} with "Authorization: Bearer <api_token>";
// 4. prints one JSON line: {"workspace": ..., "grant_id", "workspace_id", "member_id", "scopes", "exp"}.
//
// HTTP is Node's global fetch; the JWE is `compactDecrypt` from `jose`.
// Exit status: 0 on success, 1 on any HTTP or token error, 2 on a missing setting.
//
// Run: npx tsx client.ts

import { base64url, compactDecrypt } from "jose";

const TIMEOUT_MS = 30_000;

/** Anything that stops the client; the message goes to stderr. */
class ClientError extends Error {}

interface Claims {
  api_token: string;
  grant_id: string;
  workspace_id: string;
  member_id: string;
  scopes: string[];
  exp: number;
}

function setting(name: string): string {
  const value = (process.env[name] ?? "").trim();
  if (!value) {
    process.stderr.write(`client.ts: the environment variable ${name} is not set\n`);
    process.exit(2);
  }
  return value;
}

/** One request; the JSON answer, or ClientError naming the status and the body. */
async function httpJson(
  method: string,
  url: string,
  headers: Record<string, string>,
  body?: unknown,
): Promise<unknown> {
  const init: RequestInit = {
    method,
    headers: { ...headers, Accept: "application/json" },
    signal: AbortSignal.timeout(TIMEOUT_MS),
  };
  if (body !== undefined) {
    init.headers = { ...init.headers, "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  let resp: Response;
  try {
    resp = await fetch(url, init);
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : "";
    throw new ClientError(`${method} ${url} failed: ${String(e)}${cause}`);
  }
  const text = await resp.text();
  if (!resp.ok) {
    throw new ClientError(`${method} ${url} failed: HTTP ${resp.status}: ${text}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ClientError(`${method} ${url}: the answer is not JSON: ${text.slice(0, 200)}`);
  }
}

/** The client secret is base64url without padding of 16 bytes: the AES-128 key. */
function secretKey(clientSecret: string): Uint8Array {
  const unpadded = clientSecret.replace(/=+$/, "");
  if (!/^[A-Za-z0-9_-]+$/.test(unpadded)) {
    throw new ClientError("KEYRAIL_CLIENT_SECRET is not base64url");
  }
  const key = base64url.decode(unpadded);
  if (key.length !== 16) {
    throw new ClientError(`KEYRAIL_CLIENT_SECRET decodes to ${key.length} bytes, not 16`);
  }
  return key;
}

/** `<client_id>:<compact JWE>` -> the decrypted claims. */
async function openToken(
  token: string,
  clientId: string,
  key: Uint8Array,
): Promise<Claims> {
  const prefix = `${clientId}:`;
  if (!token.startsWith(prefix)) {
    throw new ClientError(`the token does not start with ${JSON.stringify(prefix)}`);
  }
  const compact = token.slice(prefix.length);
  if (compact.split(".").length !== 5) {
    throw new ClientError("the token's JWE is not in compact form (five parts)");
  }
  let plaintext: Uint8Array;
  let header: { alg?: string; enc?: string };
  try {
    ({ plaintext, protectedHeader: header } = await compactDecrypt(compact, key, {
      keyManagementAlgorithms: ["dir"],
      contentEncryptionAlgorithms: ["A128GCM"],
    }));
  } catch (e) {
    throw new ClientError(`cannot decrypt the token (wrong or rotated secret?): ${String(e)}`);
  }
  if (header.alg !== "dir" || header.enc !== "A128GCM") {
    throw new ClientError(`unexpected JWE header ${JSON.stringify(header)}, wanted dir/A128GCM`);
  }
  let claims: unknown;
  try {
    claims = JSON.parse(new TextDecoder().decode(plaintext));
  } catch {
    throw new ClientError("the token's payload is not JSON");
  }
  if (typeof claims !== "object" || claims === null) {
    throw new ClientError("the token's payload is not a JSON object");
  }
  const fields = ["api_token", "grant_id", "workspace_id", "member_id", "scopes", "exp"];
  const missing = fields.filter((k) => !(k in claims));
  if (missing.length > 0) {
    throw new ClientError(`the token's payload lacks ${missing.join(", ")}`);
  }
  return claims as Claims;
}

async function run(): Promise<void> {
  const url = setting("KEYRAIL_URL").replace(/\/+$/, "");
  const clientId = setting("KEYRAIL_CLIENT_ID");
  const clientSecret = setting("KEYRAIL_CLIENT_SECRET");
  const grantId = setting("KEYRAIL_GRANT_ID");
  const key = secretKey(clientSecret);

  const basic = Buffer.from(`${clientId}:${clientSecret}`, "utf8").toString("base64");
  const issued = await httpJson(
    "POST",
    `${url}/api/v1/apps/${encodeURIComponent(clientId)}/tokens`,
    { Authorization: `Basic ${basic}` },
    { grant_id: grantId },
  );
  const token =
    typeof issued === "object" && issued !== null && "token" in issued ? issued.token : undefined;
  if (typeof token !== "string") {
    throw new ClientError(`the token endpoint answered without a token: ${JSON.stringify(issued)}`);
  }
  const claims = await openToken(token, clientId, key);

  const workspace = await httpJson(
    "GET",
    `${url}/api/v1/w/${encodeURIComponent(claims.workspace_id)}`,
    { Authorization: `Bearer ${claims.api_token}` },
  );
  process.stdout.write(
    JSON.stringify({
      workspace,
      grant_id: claims.grant_id,
      workspace_id: claims.workspace_id,
      member_id: claims.member_id,
      scopes: claims.scopes,
      exp: claims.exp,
    }) + "\n",
  );
}

run().catch((e: unknown) => {
  process.stderr.write(`client.ts: ${e instanceof ClientError ? e.message : String(e)}\n`);
  process.exit(1);
});
