"""An MCP client built on the official MCP Python SDK (`mcp` on PyPI), against a running keyrail.

Usage: sdk_client.py BASE_URL

A person (signed up here through the API) owns a workspace. The SDK client discovers the
protected-resource and authorization-server metadata from /mcp's 401, registers itself
dynamically, and runs the authorization code flow with PKCE. Its "browser" is this script: it
opens the authorization URL with the person's console session, reads the consent page, picks the
workspace and presses Allow, and hands the code from the redirect back to the SDK. Then the
client lists the tools, creates a key and revokes it through tools (checked over the API), and
after the person revokes the grant it gets 401 and cannot go on.

Prints one JSON line per step ({"step": ..., ...}) and exits 0 when every check held.
"""

import asyncio
import html.parser
import json
import secrets
import sys
from urllib.parse import parse_qs, urlparse

import httpx2 as httpx
from mcp import ClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

BASE = sys.argv[1].rstrip("/")
MCP_URL = f"{BASE}/mcp"
REDIRECT_URI = "http://127.0.0.1:33418/callback"


def step(name, **fields):
    print(json.dumps({"step": name, **fields}), flush=True)


def check(cond, what):
    if not cond:
        step("FAILED", what=what)
        raise SystemExit(1)


class Memory(TokenStorage):
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull):
        self.client = client_info


class Fields(html.parser.HTMLParser):
    """The hidden inputs, the select's options and the buttons of the consent page."""

    def __init__(self):
        super().__init__()
        self.hidden = []
        self.options = []
        self.buttons = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden":
            self.hidden.append((a["name"], a.get("value", "")))
        elif tag == "option":
            self.options.append(a.get("value"))
        elif tag == "button":
            self.buttons.append((a.get("name"), a.get("value")))

    def handle_data(self, data):
        self.text.append(data)


class Person:
    """A signed-up user with a console session (cookies) and an API token."""

    def __init__(self, http: httpx.AsyncClient):
        self.http = http
        self.consents = 0
        self.allow = True
        self.asked_again = False
        self.pending = None
        self.refused = False

    async def sign_up(self):
        email = f"mcp-{secrets.token_hex(4)}@example.com"
        password = "correct horse battery staple 42"
        r = await self.http.post(
            f"{BASE}/api/v1/auth/signup",
            json={"email": email, "password": password, "name": "Grace Hopper"},
        )
        check(r.status_code == 201, f"signup: {r.status_code} {r.text}")
        r = await self.http.post(
            f"{BASE}/api/v1/auth/login", json={"email": email, "password": password}
        )
        check(r.status_code == 200, f"login: {r.status_code} {r.text}")
        self.token = r.json()["access_token"]
        r = await self.api("POST", "/api/v1/workspaces", json={"name": "MCP test"})
        check(r.status_code == 201, f"workspace: {r.status_code} {r.text}")
        self.ws = r.json()["id"]
        step("signed_up", workspace=self.ws)

    async def api(self, method, path, **kw):
        return await self.http.request(
            method, f"{BASE}{path}", headers={"Authorization": f"Bearer {self.token}"}, **kw
        )

    async def open_authorization(self, url: str):
        """What a browser does with the authorization URL: the consent page, then Allow."""
        self.consents += 1
        if not self.allow:
            # After the revocation the SDK's refresh fails and it asks the person again; the
            # person is not there.
            self.asked_again = True
            raise PermissionError("the person did not authorize the client again")
        check(url.startswith(f"{BASE}/oauth/authorize?"), f"authorization URL {url}")
        query = parse_qs(urlparse(url).query)
        check(query.get("code_challenge_method") == ["S256"], "PKCE S256")
        check(query.get("resource") == [MCP_URL], f"resource {query.get('resource')}")
        page = await self.http.get(url)
        check(page.status_code == 200, f"consent page: {page.status_code} {page.text[:300]}")
        fields = Fields()
        fields.feed(page.text)
        text = " ".join(fields.text)
        check("SDK test client" in text, "the consent page names the client")
        # The SDK asks for the protected resource's scopes_supported; the page lists them.
        for scope in query.get("scope", [""])[0].split():
            check(scope in text, f"the consent page lists {scope}")
        check(self.ws in fields.options, "the workspace is offered")
        check(("decision", "allow") in fields.buttons and ("decision", "deny") in fields.buttons,
              "Allow and Deny")
        form = dict(fields.hidden)
        form.update({"workspace_id": self.ws, "decision": "allow"})
        r = await self.http.post(f"{BASE}/oauth/authorize", data=form, follow_redirects=False)
        check(r.status_code == 303, f"allow: {r.status_code} {r.text[:300]}")
        location = r.headers["location"]
        check(location.startswith(REDIRECT_URI + "?"), f"redirect {location}")
        back = parse_qs(urlparse(location).query)
        self.pending = AuthorizationCodeResult(
            code=back["code"][0], state=back.get("state", [None])[0], iss=back.get("iss", [None])[0]
        )
        step("consented", scopes=query.get("scope", [""])[0])

    async def callback(self) -> AuthorizationCodeResult:
        result, self.pending = self.pending, None
        check(result is not None, "no authorization code")
        return result


async def main():
    async with httpx.AsyncClient(timeout=30) as http:
        # Without credentials: 401 and the RFC 9728 challenge.
        r = await http.post(MCP_URL, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        check(r.status_code == 401, f"anonymous /mcp: {r.status_code}")
        check(
            r.headers.get("www-authenticate")
            == f'Bearer resource_metadata="{BASE}/.well-known/oauth-protected-resource"',
            f"challenge: {r.headers.get('www-authenticate')}",
        )
        person = Person(http)
        await person.sign_up()

        storage = Memory()
        auth = OAuthClientProvider(
            server_url=MCP_URL,
            client_metadata=OAuthClientMetadata(
                client_name="SDK test client",
                redirect_uris=[REDIRECT_URI],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                token_endpoint_auth_method="none",
            ),
            storage=storage,
            redirect_handler=person.open_authorization,
            callback_handler=person.callback,
        )
        async with httpx.AsyncClient(auth=auth, timeout=30) as mcp_http:
            async with streamable_http_client(MCP_URL, http_client=mcp_http) as (read, write):
                async with ClientSession(read, write) as session:
                    init = await session.initialize()
                    step("initialized", protocol=init.protocol_version, server=init.server_info.name)
                    check(storage.client is not None, "dynamic registration")
                    check(storage.client.client_id.startswith("kr_app_"), "client id")
                    check(storage.tokens is not None and storage.tokens.refresh_token, "tokens")
                    tools = await session.list_tools()
                    names = sorted(t.name for t in tools.tools)
                    step("tools", names=names)
                    for want in ["keys_create", "keys_list", "keys_revoke", "keys_rotate",
                                 "keys_verify", "members_list", "members_set_role",
                                 "grants_list", "grants_revoke", "audit_search", "logs_search"]:
                        check(want in names, f"tool {want}")
                    for t in tools.tools:
                        check("workspace_id" in (t.input_schema.get("required") or []),
                              f"{t.name} requires workspace_id")

                    made = await session.call_tool(
                        "keys_create",
                        {"workspace_id": person.ws, "name": "made by MCP", "scopes": ["keys:read"]},
                    )
                    check(not made.is_error, f"keys_create: {made}")
                    created = made.structured_content
                    key_id, secret = created["id"], created["key"]
                    step("key_created", id=key_id)
                    r = await http.post(f"{BASE}/api/v1/keys/verify", json={"key": secret})
                    check(r.status_code == 200 and r.json()["valid"], f"verify: {r.text}")

                    gone = await session.call_tool(
                        "keys_revoke", {"workspace_id": person.ws, "key_id": key_id}
                    )
                    check(not gone.is_error, f"keys_revoke: {gone}")
                    r = await http.post(f"{BASE}/api/v1/keys/verify", json={"key": secret})
                    check(not r.json()["valid"] and r.json()["code"] == "REVOKED", f"after revoke: {r.text}")
                    step("key_revoked", id=key_id)

                    # The audit log names the app as the actor of what the tools did.
                    r = await person.api("GET", f"/api/v1/w/{person.ws}/audit?action=key.create")
                    entry = r.json()["data"][0]
                    check(entry["actor"] == {"type": "app", "id": storage.client.client_id},
                          f"audit actor {entry['actor']}")

                    # The person revokes the grant: the client's token stops at once.
                    r = await person.api("GET", f"/api/v1/w/{person.ws}/grants")
                    grants = [g for g in r.json()["data"]
                              if g["client_id"] == storage.client.client_id]
                    check(len(grants) == 1, f"one grant: {r.text}")
                    r = await person.api("DELETE", f"/api/v1/w/{person.ws}/grants/{grants[0]['id']}")
                    check(r.status_code == 204, f"revoke grant: {r.status_code} {r.text}")
                    step("grant_revoked", id=grants[0]["id"])

                    old = storage.tokens.access_token
                    r = await http.post(
                        MCP_URL,
                        headers={"Authorization": f"Bearer {old}",
                                 "Accept": "application/json, text/event-stream"},
                        json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"},
                    )
                    check(r.status_code == 401, f"old token after revoke: {r.status_code}")
                    check("invalid_token" in r.headers.get("www-authenticate", ""),
                          "error=invalid_token in the challenge")

                    # The SDK cannot go on: its refresh token died with the grant, and the
                    # person is not there to consent again.
                    person.allow = False
                    failed = None
                    try:
                        await session.call_tool("keys_list", {"workspace_id": person.ws})
                    except BaseException as e:  # noqa: BLE001 - any failure will do
                        failed = e
                    check(failed is not None, "a tool call after the grant was revoked failed")
                    check(person.asked_again, "the SDK had to ask the person to authorize again")
                    person.refused = True
                    step("refused_after_revoke", error=type(failed).__name__)
    step("ok")


async def run():
    try:
        await main()
    except* PermissionError:
        # Raised into the SDK's task group by the absent person, after the checks above.
        step("ok")


try:
    asyncio.run(run())
except SystemExit:
    raise
except BaseException as e:  # noqa: BLE001
    # The expected end: the session fails after the grant is revoked, which anyio may raise
    # as a group out of the context managers once the checks above have passed.
    print(json.dumps({"step": "exception", "error": repr(e)[:2000]}), flush=True)
    raise SystemExit(2)
