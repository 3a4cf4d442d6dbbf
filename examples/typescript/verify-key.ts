// A backend checking its own customers' API keys with keyrail, as a service owner would write it.
//
// Your API belongs to one keyrail workspace; your customers call it with keys made in that
// workspace. For each request, ask keyrail whether the key is good for this workspace and these
// scopes:
//
//   POST {url}/api/v1/keys/verify  {"key": ..., "scopes": [...], "workspace_id": ...}
//
// Always pass `workspace_id`. Custom scope names are per workspace and anyone can sign up, so
// anyone can make a workspace with its own `orders:read` scope and a key carrying it. Without
// `workspace_id` keyrail answers VALID for that stranger's key too; with it, a key of any other
// workspace is NOT_FOUND.
//
// As a script: KEYRAIL_URL and KEYRAIL_WORKSPACE_ID from the environment, the key as the first
// line of standard input (never on the command line, where other users of the machine can read
// it), the required scopes as arguments:
//
//   echo "$CUSTOMER_KEY" | npx tsx verify-key.ts orders:read
//
// Prints one JSON line {"code", "key_id", "workspace_id", "external_id", "scopes"}.
// Exit status: 0 when the key is VALID; 1 when keyrail refused it (the code, e.g. NOT_FOUND,
// EXPIRED, INSUFFICIENT_SCOPE, RATE_LIMITED, also goes to stderr); 2 on a missing setting or key;
// 3 when keyrail could not give an answer (unreachable, an HTTP error, not JSON). Your API should
// answer 401/403 for 1 and fail closed (503) for 3.
//
// Node's global fetch only; no package is needed to run it.

import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const TIMEOUT_MS = 10_000;

/** keyrail gave no usable answer; the key's fate is unknown, so refuse the request. */
export class VerifyError extends Error {}

/** keyrail's answer to verify (fields of an unknown key are null). */
export interface Verdict {
  valid: boolean;
  code: string;
  key_id: string | null;
  workspace_id: string | null;
  name: string | null;
  scopes: string[] | null;
  meta: unknown;
  external_id: string | null;
  expires_at: string | null;
  remaining: number | null;
  rate_limit: { limit: number; remaining: number; reset: number } | null;
}

/**
 * Asks keyrail about `key` and returns its answer: `valid` is true only when the key is VALID,
 * belongs to `workspaceId` and holds all `scopes`; else `code` says why not.
 *
 * Throws VerifyError when keyrail cannot be asked or gives no verdict.
 */
export async function verifyKey(
  url: string,
  key: string,
  scopes: string[],
  workspaceId: string,
): Promise<Verdict> {
  let resp: Response;
  try {
    resp = await fetch(`${url.replace(/\/+$/, "")}/api/v1/keys/verify`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ key, scopes, workspace_id: workspaceId }),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : "";
    throw new VerifyError(`cannot reach keyrail: ${String(e)}${cause}`);
  }
  const text = await resp.text();
  if (!resp.ok) {
    throw new VerifyError(`keyrail answered HTTP ${resp.status}: ${text}`);
  }
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new VerifyError(`keyrail's answer is not JSON: ${text.slice(0, 200)}`);
  }
  if (
    typeof answer !== "object" ||
    answer === null ||
    !("code" in answer) ||
    typeof answer.code !== "string"
  ) {
    throw new VerifyError(`keyrail's answer has no code: ${text.slice(0, 200)}`);
  }
  const verdict = answer as Verdict;
  if (verdict.valid === true && verdict.code === "VALID") {
    // keyrail already refuses keys of other workspaces; checking again costs nothing.
    if (verdict.workspace_id !== workspaceId) {
      throw new VerifyError(
        `keyrail answered VALID for a key of workspace ${JSON.stringify(verdict.workspace_id)}`,
      );
    }
  } else {
    verdict.valid = false;
  }
  return verdict;
}

function setting(name: string): string {
  const value = (process.env[name] ?? "").trim();
  if (!value) {
    process.stderr.write(`verify-key.ts: the environment variable ${name} is not set\n`);
    process.exit(2);
  }
  return value;
}

async function main(): Promise<void> {
  const url = setting("KEYRAIL_URL");
  const workspaceId = setting("KEYRAIL_WORKSPACE_ID");
  const key = (readFileSync(0, "utf8").split("\n")[0] ?? "").trim();
  if (!key) {
    process.stderr.write("verify-key.ts: no key on standard input\n");
    process.exit(2);
  }
  const scopes = process.argv.slice(2);
  let verdict: Verdict;
  try {
    verdict = await verifyKey(url, key, scopes, workspaceId);
  } catch (e) {
    process.stderr.write(`verify-key.ts: ${e instanceof VerifyError ? e.message : String(e)}\n`);
    process.exit(3);
  }
  const { code, key_id, workspace_id, external_id } = verdict;
  process.stdout.write(
    JSON.stringify({ code, key_id, workspace_id, external_id, scopes: verdict.scopes }) + "\n",
  );
  if (!verdict.valid) {
    process.stderr.write(`verify-key.ts: key refused: ${code}\n`);
    process.exit(1);
  }
}

// Run as a script, not when imported for verifyKey.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    process.stderr.write(`verify-key.ts: ${String(e)}\n`);
    process.exit(3);
  });
}
