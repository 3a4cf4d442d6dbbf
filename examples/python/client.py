#!/usr/bin/env python3
"""A keyrail app acting for a member through a grant, as an integrator would write it.

Reads KEYRAIL_URL, KEYRAIL_CLIENT_ID, KEYRAIL_CLIENT_SECRET and KEYRAIL_GRANT_ID, then:
1. POST {url}/api/v1/apps/{client_id}/tokens (HTTP Basic client_id:client_secret,
   body {"grant_id": ...}) -> {"token": "<client_id>:<compact JWE>", "expires_in": 300};
2. decrypts the JWE (alg "dir", enc "A128GCM", key = the 16 bytes of the base64url secret)
   into {api_token, grant_id, workspace_id, member_id, scopes, exp};
3. GET {url}/api/v1/w/{workspace_id} with "Authorization: Bearer <api_token>";
4. prints one JSON line: {"workspace": ..., "grant_id", "workspace_id", "member_id", "scopes", "exp"}.

HTTP uses only the standard library; the JWE uses jwcrypto (requirements.txt).
Exit status: 0 on success, 1 on any HTTP or token error, 2 on a missing setting.
"""

import base64
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

from jwcrypto import jwe, jwk
from jwcrypto.common import JWException

TIMEOUT_SECONDS = 30


class ClientError(Exception):
    """Anything that stops the client; the message goes to stderr."""


def setting(name):
    value = os.environ.get(name, "").strip()
    if not value:
        print(f"client.py: the environment variable {name} is not set", file=sys.stderr)
        sys.exit(2)
    return value


def http_json(method, url, headers, body=None):
    """One request; the JSON answer, or ClientError naming the status and the body."""
    data = None
    headers = dict(headers, Accept="application/json")
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_SECONDS) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        text = e.read().decode("utf-8", "replace")
        raise ClientError(f"{method} {url} failed: HTTP {e.code}: {text}") from None
    except urllib.error.URLError as e:
        raise ClientError(f"{method} {url} failed: {e.reason}") from None
    try:
        return json.loads(raw)
    except ValueError:
        raise ClientError(f"{method} {url}: the answer is not JSON: {raw[:200]!r}") from None


def secret_key(client_secret):
    """The client secret is base64url without padding of 16 bytes: the AES-128 key."""
    unpadded = client_secret.rstrip("=")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", unpadded):
        raise ClientError("KEYRAIL_CLIENT_SECRET is not base64url")
    try:
        raw = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except ValueError:
        raise ClientError("KEYRAIL_CLIENT_SECRET is not base64url") from None
    if len(raw) != 16:
        raise ClientError(f"KEYRAIL_CLIENT_SECRET decodes to {len(raw)} bytes, not 16")
    k = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return jwk.JWK(kty="oct", k=k)


def open_token(token, client_id, key):
    """`<client_id>:<compact JWE>` -> the decrypted claims (a dict)."""
    prefix = client_id + ":"
    if not token.startswith(prefix):
        raise ClientError(f"the token does not start with {prefix!r}")
    compact = token[len(prefix):]
    if compact.count(".") != 4:
        raise ClientError("the token's JWE is not in compact form (five parts)")
    envelope = jwe.JWE(algs=["dir", "A128GCM"])
    try:
        envelope.deserialize(compact, key=key)
    except JWException as e:
        raise ClientError(f"cannot decrypt the token (wrong or rotated secret?): {e}") from None
    header = envelope.jose_header
    if header.get("alg") != "dir" or header.get("enc") != "A128GCM":
        raise ClientError(f"unexpected JWE header {header!r}, wanted dir/A128GCM")
    try:
        claims = json.loads(envelope.payload)
    except ValueError:
        raise ClientError("the token's payload is not JSON") from None
    missing = [k for k in ("api_token", "grant_id", "workspace_id", "member_id", "scopes", "exp")
               if k not in claims]
    if missing:
        raise ClientError(f"the token's payload lacks {', '.join(missing)}")
    return claims


def run():
    url = setting("KEYRAIL_URL").rstrip("/")
    client_id = setting("KEYRAIL_CLIENT_ID")
    client_secret = setting("KEYRAIL_CLIENT_SECRET")
    grant_id = setting("KEYRAIL_GRANT_ID")
    key = secret_key(client_secret)

    basic = base64.b64encode(f"{client_id}:{client_secret}".encode("utf-8")).decode("ascii")
    issued = http_json(
        "POST",
        f"{url}/api/v1/apps/{urllib.parse.quote(client_id, safe='')}/tokens",
        {"Authorization": f"Basic {basic}"},
        {"grant_id": grant_id},
    )
    token = issued.get("token") if isinstance(issued, dict) else None
    if not isinstance(token, str):
        raise ClientError(f"the token endpoint answered without a token: {issued!r}")
    claims = open_token(token, client_id, key)

    workspace_id = claims["workspace_id"]
    workspace = http_json(
        "GET",
        f"{url}/api/v1/w/{urllib.parse.quote(workspace_id, safe='')}",
        {"Authorization": f"Bearer {claims['api_token']}"},
    )
    print(json.dumps({
        "workspace": workspace,
        "grant_id": claims["grant_id"],
        "workspace_id": workspace_id,
        "member_id": claims["member_id"],
        "scopes": claims["scopes"],
        "exp": claims["exp"],
    }))


def main():
    try:
        run()
    except ClientError as e:
        print(f"client.py: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
