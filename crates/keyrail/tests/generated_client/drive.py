"""Drives keyrail through a Python client generated from its own OpenAPI document.

`crates/keyrail/tests/generated_client.rs` generates the package `keyrail_client` with
openapi-python-client and runs this with it on PYTHONPATH; KEYRAIL_URL, KEYRAIL_API_KEY and
KEYRAIL_WORKSPACE name the server, a key that may manage keys, and its workspace. A key's
lifecycle (create, verify, revoke, verify again) and refused calls, each answered with the
typed model the document declares: never `None`, which is what a generated client gives for an
undeclared answer.
"""

import os
import sys

from keyrail_client import AuthenticatedClient, Client
from keyrail_client.api.keys import create_key, get_key, list_keys, revoke_key, verify
from keyrail_client.models import ErrorBody, KeyIn, KeyOut, ListKeyOut, NewKeyOut, VerifyIn, VerifyOut


def check(what, got, kind):
    if not isinstance(got, kind):
        sys.exit(f"{what}: expected {kind.__name__}, got {got!r}")
    return got


url = os.environ["KEYRAIL_URL"]
ws = os.environ["KEYRAIL_WORKSPACE"]
admin = AuthenticatedClient(base_url=url, token=os.environ["KEYRAIL_API_KEY"])
anyone = Client(base_url=url)

made = check("create", create_key.sync(ws, client=admin, body=KeyIn(name="generated", scopes=["keys:read"])), NewKeyOut)
assert made.key.startswith(made.prefix), made
outcome = check("verify", verify.sync(client=anyone, body=VerifyIn(key=made.key, scopes=["keys:read"])), VerifyOut)
assert (outcome.valid, outcome.code, outcome.key_id) == (True, "VALID", made.id), outcome
listed = check("list", list_keys.sync(ws, client=admin, limit=200), ListKeyOut)
assert made.id in [k.id for k in listed.data], listed

revoked = check("revoke", revoke_key.sync(ws, made.id, client=admin), KeyOut)
assert revoked.status == "revoked", revoked
outcome = check("verify after revoke", verify.sync(client=anyone, body=VerifyIn(key=made.key)), VerifyOut)
assert (outcome.valid, outcome.code) == (False, "REVOKED"), outcome

# Refused calls come back typed, with the contract's code, not as None.
stranger = AuthenticatedClient(base_url=url, token="kr_not_a_key_at_all")
answer = list_keys.sync_detailed(ws, client=stranger)
assert answer.status_code == 401, answer
error = check("a bad key", answer.parsed, ErrorBody)
assert error.code == "invalid_credentials", error
# The revoked key itself, as a credential.
answer = get_key.sync_detailed(ws, made.id, client=AuthenticatedClient(base_url=url, token=made.key))
assert answer.status_code == 401, answer
check("a revoked key", answer.parsed, ErrorBody)
answer = get_key.sync_detailed(ws, "key_00000000000000000000000000", client=admin)
assert answer.status_code == 404, answer
check("an unknown key", answer.parsed, ErrorBody)
answer = create_key.sync_detailed(ws, client=admin, body=KeyIn(name="x", scopes=["nonsense:scope"]))
assert answer.status_code == 400, answer
error = check("an unknown scope", answer.parsed, ErrorBody)
print("ok")
