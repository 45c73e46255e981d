#!/usr/bin/env python3
"""The official Python SDK's OAuth client (`mcp.client.auth.OAuthClientProvider`, `mcp` 2.x)
signing in to an MCP server, for the end-to-end tests.

Everything OAuth is the SDK's own: the 401 challenge, protected resource metadata (RFC 9728),
authorization server metadata (RFC 8414 / OpenID discovery), client registration (dynamic,
RFC 7591, or a URL client id, a Client ID Metadata Document), PKCE, `resource` (RFC 8707),
`state` and `iss` (RFC 9207) checks, the token request and refresh. What a person would do is
done by `oauth_browser.Browser`: the SDK's `redirect_handler` opens the authorization URL in
it, it walks our consent page and the identity provider, and the SDK's `callback_handler`
gets the redirect back to the client (nothing listens on the redirect URI).

    python mcp_oauth_client.py --url http://127.0.0.1:PORT/s/SLUG/mcp \
        [--cimd] [--redirect-uri URI] [--era 2025|2026] [--list-tools] \
        [--call TOOL [--args JSON]]... [--refresh] [--reauthorize] [--decision allow|deny] \
        [--client-name NAME] [--no-offline-access] [--timeout S]

Registration:
  default  dynamic client registration at the advertised registration_endpoint.
  --cimd   a Client ID Metadata Document, served by this script from a loopback origin
           (http://127.0.0.1:{free port}/oauth/client-metadata.json). The platform fetches it
           through its outbound guard, which admits plain http only for the networks of
           MCPLATFORM_OUTBOUND_ALLOW (the tests set 127.0.0.0/8). The SDK's constructor only
           accepts https client ids (CIMD URLs are https in production), so the URL is set on
           the provider's context after construction; from there on the SDK's own CIMD path
           runs unchanged (it checks the server advertises
           client_id_metadata_document_supported and uses the URL as client_id, no
           registration request).

Phases, in order, each on a fresh MCP connection through the same provider and browser:
  1. connect (signs in), negotiate the era, --list-tools, the --call's;
  2. --refresh: the access token is made stale; the SDK refreshes it (refresh_token grant)
     before the next request, then tools/list;
  3. --reauthorize: the tokens are forgotten (client registration kept); the SDK authorizes
     again in the same browser, whose cookie remembers the consent (unless the SDK sends
     prompt=consent, which it does when it asks for offline_access), then tools/list.

--decision deny: the browser denies on the consent page; the report carries the error
redirect (`authorization_error`) instead of tools and results, and the exit code is 0.

Output: ONE JSON object on stdout:
  {"registration": "dcr"|"cimd", "client_id", "client_info", "issuer", "resource",
   "challenge": the first 401's WWW-Authenticate,
   "authorizations": [{"params": {authorization request}, "consent_pages": [..],
                       "steps": [..], "redirect": {"state_ok", "iss", "has_code", "error"...}}],
   "tokens": {"access_token", "refresh_token", "scope", "token_type", "expires_in"},
   "refreshed": {"before": tokens, "after": tokens} (with --refresh),
   "protocol_version", "server_info", "tools", "results", "reauthorized_tools",
   "cimd_fetches": [..] (with --cimd), "authorization_error" (with --decision deny),
   "http": [[method, url, status], ...]}
On failure stdout stays empty, the reason goes to stderr, exit code 1 (2: bad command line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import anyio  # noqa: E402
import httpx2  # noqa: E402
import mcp_client as base  # noqa: E402  (the plain client: era negotiation, calls, logging)
from oauth_browser import Browser, BrowserError  # noqa: E402

from mcp.client.auth import OAuthClientProvider, TokenStorage  # noqa: E402
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402
from mcp.shared.auth import (  # noqa: E402
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

Failure = base.Failure


class Denied(Exception):
    """The authorization server redirected back with an error instead of a code."""

    def __init__(self, params: dict[str, str]) -> None:
        super().__init__(f"authorization answered with an error: {params}")
        self.params = params


# --------------------------------------------------------------------------- storage


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def _tokens(token: OAuthToken | None) -> dict[str, Any] | None:
    if token is None:
        return None
    return {
        "access_token": token.access_token,
        "refresh_token": token.refresh_token,
        "scope": token.scope,
        "token_type": token.token_type,
        "expires_in": token.expires_in,
    }


# --------------------------------------------------------------------------- CIMD origin


class CimdOrigin:
    """A loopback origin serving this client's metadata document (and counting fetches)."""

    PATH = "/oauth/client-metadata.json"

    def __init__(self, redirect_uri: str, client_name: str) -> None:
        origin = self
        self.fetches: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                origin.fetches.append({"path": self.path, "user_agent": self.headers.get("user-agent")})
                if self.path != CimdOrigin.PATH:
                    self.send_error(404)
                    return
                body = json.dumps(origin.document()).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("cache-control", "max-age=300")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{self.PATH}"
        self.redirect_uri = redirect_uri
        self.client_name = client_name
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def document(self) -> dict[str, Any]:
        return {
            "client_id": self.url,
            "client_name": self.client_name,
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="MCP OAuth client test driver (python mcp SDK 2.x)")
    p.add_argument("--url", required=True, help="the MCP endpoint, e.g. http://127.0.0.1:8080/s/acme/mcp")
    p.add_argument("--era", choices=["2025", "2026"], default="2025")
    p.add_argument("--cimd", action="store_true", help="use a Client ID Metadata Document instead of DCR")
    p.add_argument(
        "--redirect-uri",
        default="http://127.0.0.1:33418/callback",
        help="the client's redirect URI (nothing listens there; the browser stops at it)",
    )
    p.add_argument("--client-name", default="pymcp-oauth-e2e")
    p.add_argument("--list-tools", action="store_true")
    p.add_argument("--call", action=base._CallAction, metavar="TOOL")
    p.add_argument("--args", action=base._ArgsAction, metavar="JSON")
    p.add_argument("--refresh", action="store_true", help="make the access token stale; the SDK refreshes it")
    p.add_argument("--reauthorize", action="store_true", help="forget the tokens; authorize again in the same browser")
    p.add_argument("--decision", choices=["allow", "deny"], default="allow")
    p.add_argument(
        "--no-offline-access",
        action="store_true",
        help="declare only the authorization_code grant: the SDK then asks for no offline_access "
        "and so sends no prompt=consent (it adds both when the server offers offline_access and "
        "the client declares refresh_token)",
    )
    p.add_argument("--timeout", type=float, default=60.0)
    ns = p.parse_args(argv)
    ns.calls = [(tool, args if args is not None else {}) for tool, args in (getattr(ns, "calls", None) or [])]
    # What mcp_client._session_body reads.
    ns.protocol_version = None
    ns.resume_session = None
    ns.no_discover = False
    ns.allow_rpc_errors = True
    return ns


# --------------------------------------------------------------------------- flow


class Person:
    """The SDK's redirect and callback handlers: a browser that consents."""

    def __init__(self, redirect_uri: str, decision: str) -> None:
        self.browser = Browser(decision=decision)
        self.redirect_uri = redirect_uri
        self.authorizations: list[dict[str, Any]] = []
        self._pending: str | None = None

    async def redirect_handler(self, url: str) -> None:
        params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        record: dict[str, Any] = {"url": url, "params": params}
        self.authorizations.append(record)
        try:
            outcome = await self.browser.authorize(url, self.redirect_uri)
        except BrowserError as e:
            raise Failure(f"browser: {e}") from e
        record["consent_pages"] = outcome.consent_pages
        record["steps"] = outcome.steps
        self._pending = outcome.redirect

    async def callback_handler(self) -> AuthorizationCodeResult:
        redirect, self._pending = self._pending, None
        if redirect is None:
            raise Failure("callback handler called without a redirect")
        record = self.authorizations[-1]
        query = {k: v[0] for k, v in parse_qs(urlsplit(redirect).query).items()}
        sent_state = record["params"].get("state")
        record["redirect"] = {
            "state_ok": query.get("state") == sent_state,
            "iss": query.get("iss"),
            "has_code": bool(query.get("code")),
            "error": query.get("error"),
            "error_description": query.get("error_description"),
            "keys": sorted(query),
        }
        if "error" in query:
            raise Denied(query)
        if "code" not in query:
            raise Failure(f"redirect to the client carries neither code nor error: {redirect}")
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    for leaf in base._leaf_exceptions(exc):
        seen: BaseException | None = leaf
        while seen is not None:
            if isinstance(seen, kind):
                return seen
            seen = seen.__cause__ or seen.__context__
    return None


async def _connect(ns: argparse.Namespace, http: httpx2.AsyncClient, body) -> None:
    async with streamable_http_client(ns.url, http_client=http, terminate_on_close=False) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=ns.timeout, client_info=base.CLIENT_INFO) as session:
            await body(session)


async def run(ns: argparse.Namespace) -> dict[str, Any]:
    log = base.HttpLog()
    ns.http_log = log
    person = Person(ns.redirect_uri, ns.decision)
    storage = MemoryStorage()
    cimd = CimdOrigin(ns.redirect_uri, ns.client_name) if ns.cimd else None
    grant_types = ["authorization_code"] if ns.no_offline_access else ["authorization_code", "refresh_token"]
    metadata = OAuthClientMetadata(
        client_name=ns.client_name,
        redirect_uris=[ns.redirect_uri],
        grant_types=grant_types,
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    provider = OAuthClientProvider(
        server_url=ns.url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
    )
    if cimd is not None:
        # See the module doc: the SDK's constructor takes https client ids only.
        provider.context.client_metadata_url = cimd.url

    challenge: dict[str, str | None] = {"value": None}

    async def on_response(response: httpx2.Response) -> None:
        await log.on_response(response)
        if response.status_code == 401 and challenge["value"] is None:
            challenge["value"] = response.headers.get("www-authenticate")

    http = create_mcp_http_client(auth=provider)
    http.event_hooks = {"request": [log.on_request], "response": [on_response]}

    out: dict[str, Any] = {
        "registration": "cimd" if cimd else "dcr",
        "era": ns.era,
        "protocol_version": None,
        "server_info": None,
        "tools": None,
        "results": [],
    }

    def finish() -> None:
        ctx = provider.context
        out["challenge"] = challenge["value"]
        out["client_id"] = ctx.client_info.client_id if ctx.client_info else None
        out["client_info"] = base._dump(ctx.client_info)
        out["issuer"] = str(ctx.oauth_metadata.issuer) if ctx.oauth_metadata else None
        prm = ctx.protected_resource_metadata
        out["resource"] = str(prm.resource) if prm and prm.resource else None
        out["tokens"] = _tokens(ctx.current_tokens)
        out["authorizations"] = person.authorizations
        out["http"] = [[e["method"], e["url"], e["status"]] for e in log.entries]
        if cimd is not None:
            out["cimd_url"] = cimd.url
            out["cimd_fetches"] = cimd.fetches

    try:
        async with http:
            try:
                await _connect(ns, http, lambda session: base._session_body(ns, session, out))
            except Exception as exc:
                denied = _find(exc, Denied)
                if denied is None:
                    raise Failure(base._describe(exc) + "\nlast HTTP exchanges:\n" + log.tail()) from exc
                out["authorization_error"] = denied.params  # type: ignore[attr-defined]
                finish()
                return out

            def tools_only(into: str):
                async def body(session: ClientSession) -> None:
                    if ns.era == "2025":
                        await session.initialize()
                    else:
                        await session.discover()
                    page = await session.list_tools()
                    out[into] = [t.name for t in page.tools]

                return body

            if ns.refresh:
                before = _tokens(provider.context.current_tokens)
                # The SDK refreshes a token it holds as expired before sending the next request.
                provider.context.token_expiry_time = time.time() - 1
                try:
                    await _connect(ns, http, tools_only("refreshed_tools"))
                except Exception as exc:
                    raise Failure("after refresh: " + base._describe(exc) + "\n" + log.tail()) from exc
                out["refreshed"] = {"before": before, "after": _tokens(provider.context.current_tokens)}

            if ns.reauthorize:
                storage.tokens = None
                provider.context.clear_tokens()
                try:
                    await _connect(ns, http, tools_only("reauthorized_tools"))
                except Exception as exc:
                    raise Failure("reauthorize: " + base._describe(exc) + "\n" + log.tail()) from exc
    finally:
        if cimd is not None:
            cimd.close()
    finish()
    return out


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)

    async def _main() -> dict[str, Any]:
        try:
            with anyio.fail_after(ns.timeout):
                return await run(ns)
        except TimeoutError as e:
            log = getattr(ns, "http_log", None)
            tail = "\nlast HTTP exchanges:\n" + log.tail() if log is not None else ""
            raise Failure(f"timed out after {ns.timeout}s (--timeout){tail}") from e

    try:
        out = anyio.run(_main)
    except Failure as e:
        print(f"mcp_oauth_client: error: {e}", file=sys.stderr)
        return 1
    except BaseException as e:  # noqa: BLE001 - still a clean non-zero exit
        if isinstance(e, KeyboardInterrupt):
            raise
        print(f"mcp_oauth_client: error: {base._describe(e)}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
