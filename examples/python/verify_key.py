#!/usr/bin/env python3
"""A backend checking its own customers' API keys with keyrail, as a service owner would write it.

Your API belongs to one keyrail workspace; your customers call it with keys made in that
workspace. For each request, ask keyrail whether the key is good for this workspace and these
scopes:

    POST {url}/api/v1/keys/verify  {"key": ..., "scopes": [...], "workspace_id": ...}

Always pass `workspace_id`. Custom scope names are per workspace and anyone can sign up, so
anyone can make a workspace with its own `orders:read` scope and a key carrying it. Without
`workspace_id` keyrail answers VALID for that stranger's key too; with it, a key of any other
workspace is NOT_FOUND.

As a script: KEYRAIL_URL and KEYRAIL_WORKSPACE_ID from the environment, the key as the first line
of standard input (never on the command line, where other users of the machine can read it),
the required scopes as arguments:

    echo "$CUSTOMER_KEY" | python3 verify_key.py orders:read

Prints one JSON line {"code", "key_id", "workspace_id", "external_id", "scopes"}.
Exit status: 0 when the key is VALID; 1 when keyrail refused it (the code, e.g. NOT_FOUND,
EXPIRED, INSUFFICIENT_SCOPE, RATE_LIMITED, also goes to stderr); 2 on a missing setting or key;
3 when keyrail could not give an answer (unreachable, an HTTP error, not JSON). Your API should
answer 401/403 for 1 and fail closed (503) for 3.

Only the standard library.
"""

import json
import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 10


class VerifyError(Exception):
    """keyrail gave no usable answer; the key's fate is unknown, so refuse the request."""


def verify_key(url, key, scopes, workspace_id):
    """Asks keyrail about `key` and returns its answer (a dict): `answer["valid"]` is True only
    when the key is VALID, belongs to `workspace_id` and holds all `scopes`; else
    `answer["code"]` says why not.

    Raises VerifyError when keyrail cannot be asked or gives no verdict.
    """
    body = json.dumps({"key": key, "scopes": list(scopes), "workspace_id": workspace_id})
    req = urllib.request.Request(
        f"{url.rstrip('/')}/api/v1/keys/verify",
        data=body.encode("utf-8"),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_SECONDS) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        text = e.read().decode("utf-8", "replace")
        raise VerifyError(f"keyrail answered HTTP {e.code}: {text}") from None
    except (urllib.error.URLError, OSError) as e:
        raise VerifyError(f"cannot reach keyrail: {getattr(e, 'reason', e)}") from None
    try:
        answer = json.loads(raw)
    except ValueError:
        raise VerifyError(f"keyrail's answer is not JSON: {raw[:200]!r}") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("code"), str):
        raise VerifyError(f"keyrail's answer has no code: {answer!r}")
    if answer.get("valid") is True and answer["code"] == "VALID":
        # keyrail already refuses keys of other workspaces; checking again costs nothing.
        if answer.get("workspace_id") != workspace_id:
            raise VerifyError(
                f"keyrail answered VALID for a key of workspace {answer.get('workspace_id')!r}"
            )
    else:
        answer["valid"] = False
    return answer


def setting(name):
    value = os.environ.get(name, "").strip()
    if not value:
        print(f"verify_key.py: the environment variable {name} is not set", file=sys.stderr)
        sys.exit(2)
    return value


def main():
    url = setting("KEYRAIL_URL")
    workspace_id = setting("KEYRAIL_WORKSPACE_ID")
    key = sys.stdin.readline().strip()
    if not key:
        print("verify_key.py: no key on standard input", file=sys.stderr)
        sys.exit(2)
    scopes = sys.argv[1:]
    try:
        answer = verify_key(url, key, scopes, workspace_id)
    except VerifyError as e:
        print(f"verify_key.py: {e}", file=sys.stderr)
        sys.exit(3)
    print(json.dumps({k: answer.get(k) for k in
                      ("code", "key_id", "workspace_id", "external_id", "scopes")}))
    if not answer["valid"]:
        print(f"verify_key.py: key refused: {answer['code']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
