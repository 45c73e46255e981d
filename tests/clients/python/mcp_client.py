#!/usr/bin/env python3
"""Small MCP Streamable-HTTP test client built on the official Python SDK (`mcp` 2.x).

Meant to be shelled out to by an end-to-end test. It connects to one MCP endpoint,
negotiates a protocol era, optionally lists tools, performs tool calls in order and
prints exactly ONE JSON object on stdout. On failure stdout stays empty, a message goes
to stderr and the exit code is non-zero (1 = MCP/HTTP failure, 2 = bad command line).

    python mcp_client.py --url http://127.0.0.1:PORT/mcp \
        [--era 2025|2026|auto] [--protocol-version V] [--list-tools] \
        [--call TOOL [--args JSON]]... [--resume-session ID] [--terminate] \
        [--allow-rpc-errors] [--header 'Name: value']... [--timeout S] [--trace] [--no-discover]

Eras:
  2025  initialize handshake (offers 2025-11-25 unless --protocol-version says otherwise),
        server assigns an Mcp-Session-Id, every later request carries it and
        MCP-Protocol-Version.
  2026  2026-07-28 stateless era: no initialize, no session; `server/discover` is probed
        (unless --no-discover) and every request carries `_meta`
        io.modelcontextprotocol/protocolVersion plus MCP-Protocol-Version / Mcp-Method /
        Mcp-Name headers.
  auto  the SDK's own policy: probe server/discover, fall back to initialize.

--resume-session ID (2025 era only): do NOT initialize; send every request with
Mcp-Session-Id: ID and MCP-Protocol-Version (--protocol-version, default 2025-11-25).
Use it to continue on server process B a session that was created on process A.

The SDK deletes the session (HTTP DELETE) on close by default; this script does not,
unless --terminate is given (then it sends the DELETE itself and reports the status).

Output:
  {"era", "protocol_version", "session_id", "resumed", "server_info", "tools",
   "results": [{"tool", "is_error", "text", "structured", "content", "rpc_error"}],
   "terminated", "terminate_status", ["http": [...] with --trace]}
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp_types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
    LATEST_MODERN_VERSION,
    MODERN_PROTOCOL_VERSIONS,
)

from mcp.client.session import ClientSession
from mcp.client.streamable_http import MCP_SESSION_ID, streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER

CLIENT_INFO = types.Implementation(name="pymcp-e2e-client", version="0.1.0")


class Failure(Exception):
    """A failure with a message meant for stderr."""


# --------------------------------------------------------------------------- CLI


class _CallAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        calls = getattr(namespace, "calls", None) or []
        calls.append([values, None])
        namespace.calls = calls


class _ArgsAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        calls = getattr(namespace, "calls", None) or []
        if not calls:
            parser.error("--args must follow a --call")
        if calls[-1][1] is not None:
            parser.error(f"--call {calls[-1][0]} already has --args")
        try:
            parsed = json.loads(values)
        except json.JSONDecodeError as e:
            parser.error(f"--args for {calls[-1][0]!r} is not valid JSON: {e}")
        if not isinstance(parsed, dict):
            parser.error(f"--args for {calls[-1][0]!r} must be a JSON object")
        calls[-1][1] = parsed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="MCP Streamable-HTTP test client (python mcp SDK 2.x)")
    p.add_argument("--url", required=True, help="endpoint URL, e.g. http://127.0.0.1:8080/mcp (exact path!)")
    p.add_argument("--era", choices=["2025", "2026", "auto"], default="2025")
    p.add_argument(
        "--protocol-version",
        help="2025 era: version offered in initialize / used on resume (default 2025-11-25); "
        "2026 era: must be 2026-07-28",
    )
    p.add_argument("--list-tools", action="store_true", help="call tools/list and report tool names")
    p.add_argument("--call", action=_CallAction, metavar="TOOL", help="tool to call (repeatable, in order)")
    p.add_argument("--args", action=_ArgsAction, metavar="JSON", help="JSON object of arguments for the preceding --call")
    p.add_argument("--resume-session", metavar="ID", help="continue an existing session id without initialize (2025 era)")
    p.add_argument("--terminate", action="store_true", help="send HTTP DELETE for the session at the end")
    p.add_argument(
        "--allow-rpc-errors",
        action="store_true",
        help="record a JSON-RPC error from tools/call in results instead of failing",
    )
    p.add_argument("--header", action="append", default=[], metavar="'Name: value'", help="extra HTTP header (repeatable)")
    p.add_argument("--timeout", type=float, default=30.0, help="overall deadline in seconds (default 30)")
    p.add_argument("--no-discover", action="store_true", help="2026 era: adopt 2026-07-28 without a server/discover probe")
    p.add_argument("--trace", action="store_true", help="include an 'http' log of requests/responses in the output")
    ns = p.parse_args(argv)
    ns.calls = [(tool, args if args is not None else {}) for tool, args in (getattr(ns, "calls", None) or [])]
    headers: dict[str, str] = {}
    for h in ns.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            p.error(f"--header must look like 'Name: value', got {h!r}")
        headers[name.strip()] = value.strip()
    ns.headers = headers
    if ns.resume_session is not None:
        if ns.era != "2025":
            p.error("--resume-session only makes sense with --era 2025 (2026-07-28 has no sessions)")
        if not ns.resume_session:
            p.error("--resume-session needs a non-empty id")
    if ns.protocol_version is not None:
        if ns.era == "2025" and ns.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
            p.error(f"--protocol-version for era 2025 must be one of {list(HANDSHAKE_PROTOCOL_VERSIONS)}")
        if ns.era == "2026" and ns.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            p.error(f"--protocol-version for era 2026 must be one of {list(MODERN_PROTOCOL_VERSIONS)}")
        if ns.era == "auto":
            p.error("--protocol-version cannot be combined with --era auto")
    return ns


# --------------------------------------------------------------------------- HTTP tracing

_TRACE_HEADERS = (
    "host",
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "location",
)


def _body_json(request: httpx2.Request) -> Any:
    try:
        raw = request.content
    except Exception:  # streaming body not yet read
        return None
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class HttpLog:
    """httpx2 event hooks: remember every exchange and the session id the server assigned."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.assigned_session_id: str | None = None
        self._pending: dict[int, dict[str, Any]] = {}

    async def on_request(self, request: httpx2.Request) -> None:
        entry = {
            "method": request.method,
            "url": str(request.url),
            "request_headers": {k: v for k, v in request.headers.items() if k.lower() in _TRACE_HEADERS},
            "request_body": _body_json(request),
            "status": None,
        }
        self.entries.append(entry)
        self._pending[id(request)] = entry

    async def on_response(self, response: httpx2.Response) -> None:
        entry = self._pending.pop(id(response.request), None)
        if entry is not None:
            entry["status"] = response.status_code
            entry["response_headers"] = {k: v for k, v in response.headers.items() if k.lower() in _TRACE_HEADERS}
        sid = response.headers.get(MCP_SESSION_ID)
        # The session id is the one on the (2xx) answer to initialize - the first 2xx that carries one.
        if sid and self.assigned_session_id is None and 200 <= response.status_code < 300:
            self.assigned_session_id = sid

    def tail(self, n: int = 8) -> str:
        lines = []
        for e in self.entries[-n:]:
            lines.append(
                f"  {e['method']} {e['url']} -> {e['status']}"
                f" req={json.dumps(e['request_headers'])} resp={json.dumps(e.get('response_headers', {}))}"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def _dump(model: Any) -> Any:
    if model is None:
        return None
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def _result_entry(tool: str, result: types.CallToolResult) -> dict[str, Any]:
    text = "".join(block.text for block in result.content if isinstance(block, types.TextContent))
    return {
        "tool": tool,
        "is_error": bool(result.is_error),
        "text": text,
        "structured": result.structured_content,
        "content": [_dump(c) for c in result.content],
        "rpc_error": None,
    }


def _leaf_exceptions(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for e in exc.exceptions:
            out.extend(_leaf_exceptions(e))
        return out
    return [exc]


def _describe(exc: BaseException) -> str:
    leaves = _leaf_exceptions(exc)
    parts = []
    for e in leaves:
        if isinstance(e, MCPError):
            parts.append(f"MCP error {e.code}: {e.message}" + (f" (data={e.data!r})" if e.data is not None else ""))
        elif isinstance(e, Failure):
            parts.append(str(e))
        else:
            parts.append(f"{type(e).__name__}: {e}")
    return "; ".join(parts)


async def _handshake_2025(session: ClientSession, version: str) -> None:
    """initialize + notifications/initialized at `version` (the SDK's initialize() always offers the latest)."""
    if version == LATEST_HANDSHAKE_VERSION:
        await session.initialize()
        return
    result = await session.send_request(
        types.InitializeRequest(
            params=types.InitializeRequestParams(
                protocol_version=version,
                capabilities=types.ClientCapabilities(),
                client_info=CLIENT_INFO,
            )
        ),
        types.InitializeResult,
    )
    if result.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
        raise Failure(f"server answered initialize with unsupported protocolVersion {result.protocol_version!r}")
    session.adopt(result)
    await session.send_notification(types.InitializedNotification())


async def _negotiate_auto(session: ClientSession) -> None:
    try:
        from mcp.client._probe import negotiate_auto  # private, but it is exactly Client(mode="auto")
    except ImportError:  # pragma: no cover - fallback if the private module moves
        try:
            await session.discover()
        except MCPError:
            await session.initialize()
        return
    await negotiate_auto(session)


# --------------------------------------------------------------------------- main flow


async def run(ns: argparse.Namespace) -> dict[str, Any]:
    log = HttpLog()
    ns.http_log = log
    default_headers = dict(ns.headers)
    resumed = ns.resume_session is not None
    if resumed:
        # The transport only learns a session id from an initialize response, so for a resumed
        # session we put Mcp-Session-Id on the client's default headers: the transport merges
        # its own headers over these, and it never sets one itself because it never initializes.
        default_headers[MCP_SESSION_ID] = ns.resume_session

    http_client = create_mcp_http_client(headers=default_headers or None)
    http_client.event_hooks = {"request": [log.on_request], "response": [log.on_response]}

    out: dict[str, Any] = {
        "era": ns.era,
        "protocol_version": None,
        "session_id": None,
        "resumed": resumed,
        "server_info": None,
        "tools": None,
        "results": [],
        "terminated": False,
        "terminate_status": None,
    }
    try:
        async with http_client:
            try:
                # terminate_on_close=False: the SDK default (True) would DELETE the session on exit,
                # which breaks "create on process A, continue on process B" tests.
                async with streamable_http_client(ns.url, http_client=http_client, terminate_on_close=False) as (
                    read_stream,
                    write_stream,
                ):
                    async with ClientSession(
                        read_stream, write_stream, read_timeout_seconds=ns.timeout, client_info=CLIENT_INFO
                    ) as session:
                        await _session_body(ns, session, out)
            except Exception as exc:  # cancellation (the --timeout deadline) is a BaseException: let it through
                raise Failure(_describe(exc) + "\nlast HTTP exchanges:\n" + log.tail()) from exc

            out["session_id"] = ns.resume_session if resumed else log.assigned_session_id

            if ns.terminate:
                sid = out["session_id"]
                if not sid:
                    print("mcp_client: --terminate: no session id (stateless server or 2026-07-28 era); no DELETE sent",
                          file=sys.stderr)
                else:
                    headers = {MCP_SESSION_ID: sid}
                    if out["protocol_version"]:
                        headers[MCP_PROTOCOL_VERSION_HEADER] = out["protocol_version"]
                    resp = await http_client.delete(ns.url, headers=headers)
                    out["terminate_status"] = resp.status_code
                    out["terminated"] = resp.status_code in (200, 202, 204)
    finally:
        if ns.trace:
            out["http"] = log.entries
    return out


async def _session_body(ns: argparse.Namespace, session: ClientSession, out: dict[str, Any]) -> None:
    if ns.era == "2025":
        version = ns.protocol_version or LATEST_HANDSHAKE_VERSION
        if ns.resume_session is not None:
            # No wire traffic: install a stand-in InitializeResult so every request is stamped
            # with MCP-Protocol-Version: <version>. The real server info is unknown here.
            session.adopt(
                types.InitializeResult(
                    protocol_version=version,
                    capabilities=types.ServerCapabilities(),
                    server_info=types.Implementation(name="(resumed session)", version=""),
                )
            )
        else:
            await _handshake_2025(session, version)
    elif ns.era == "2026":
        version = ns.protocol_version or LATEST_MODERN_VERSION
        if ns.no_discover:
            session.adopt(
                types.DiscoverResult(
                    supported_versions=[version],
                    capabilities=types.ServerCapabilities(),
                    result_type="complete",
                    ttl_ms=0,
                    cache_scope="public",
                )
            )
        else:
            await session.discover()
    else:
        await _negotiate_auto(session)

    out["protocol_version"] = session.protocol_version
    if ns.resume_session is None:
        out["server_info"] = _dump(session.server_info)

    if ns.list_tools:
        names: list[str] = []
        cursor: str | None = None
        for _ in range(100):  # bounded pagination
            page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
            names.extend(t.name for t in page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        out["tools"] = names

    for tool, arguments in ns.calls:
        try:
            result = await session.call_tool(tool, arguments)
        except MCPError as e:
            if not ns.allow_rpc_errors:
                raise Failure(f"tools/call {tool!r} failed: {_describe(e)}") from e
            out["results"].append(
                {
                    "tool": tool,
                    "is_error": None,
                    "text": None,
                    "structured": None,
                    "content": None,
                    "rpc_error": {"code": e.code, "message": e.message, "data": e.data},
                }
            )
            continue
        out["results"].append(_result_entry(tool, result))


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
        print(f"mcp_client: error: {e}", file=sys.stderr)
        return 1
    except BaseException as e:  # noqa: BLE001 - last resort: still a clean non-zero exit
        if isinstance(e, KeyboardInterrupt):
            raise
        print(f"mcp_client: error: {_describe(e)}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
