#!/usr/bin/env python3
"""Runs the MCP conformance suite's authorization-server scenarios against one of our
authorization servers, with a scripted browser in the person's place, and judges the result
against a baseline. Called by scripts/conformance.sh.

    python conformance_authorization.py --suite DIR --issuer URL --client-id ID \
        [--resource URL] --port PORT --baseline conformance/authorization.yml

`conformance authorization` (suite 0.2.0-alpha.x; the 0.1.x line has no such command) runs
`authorization-server-metadata-endpoint` (RFC 8414 metadata at the three well-known places,
exact issuer) and then `authorization-code-grant`: it listens on
http://127.0.0.1:PORT/callback, prints an authorization URL "to open in your browser" and
waits for the redirect. Here `oauth_browser.Browser` opens it, consents on our page, lets the
loopback identity provider sign its test account in, and delivers the redirect to the suite's
callback listener; the suite then redeems the code (PKCE, `resource`, `iss`, `no-store`).

The command takes no --expected-failures, so this script applies the suite's baseline rules
itself, with `authorization` in the baseline file as the list of scenarios expected to fail:
an unlisted scenario with a failing (or warning) check, or a listed one that passes, fails the
run. It also checks that every authorization-related scenario the suite has (its
authorization-server scenarios and its `auth/*` client scenarios) either ran here or is named
in the baseline's `not_run` with a reason, so a scenario a new suite version adds cannot go
unnoticed. Exit code 0 when all of that holds.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import httpx2  # noqa: E402
from oauth_browser import Browser, BrowserError  # noqa: E402

CALLBACK_PATH = "/callback"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", required=True, help="directory whose node_modules holds the suite (alpha line)")
    p.add_argument("--issuer", required=True)
    p.add_argument("--client-id", required=True, help="a client registered with http://127.0.0.1:PORT/callback")
    p.add_argument("--resource", help="the MCP server's canonical URL (RFC 8707)")
    p.add_argument("--port", type=int, required=True, help="the suite's callback port")
    p.add_argument("--baseline", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--timeout", type=float, default=120.0)
    return p.parse_args()


# The suite's CLI run by node itself (not through npx), so stopping it stops the suite.
CLI = ["node", "node_modules/@modelcontextprotocol/conformance/dist/index.js"]


def load_yaml(suite: str, path: str) -> dict:
    """The suite's own YAML parser (its `yaml` dependency), so no Python package is needed."""
    script = "const Y=require('yaml');process.stdout.write(JSON.stringify(Y.parse(require('fs').readFileSync(process.argv[1],'utf8'))??{}))"
    out = subprocess.run(["node", "-e", script, os.path.abspath(path)], cwd=suite, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def listed_scenarios(suite: str) -> tuple[list[str], list[str]]:
    """(authorization-server scenarios, auth/* client scenarios) as `conformance list` names them."""
    out = subprocess.run(CLI + ["list"], cwd=suite, check=True, capture_output=True, text=True).stdout
    section, servers, clients = None, [], []
    for line in out.splitlines():
        if line.startswith("Authorization server scenarios"):
            section = "as"
        elif line.startswith("Client scenarios"):
            section = "client"
        elif line.startswith("Server scenarios"):
            section = "server"
        m = re.match(r"\s+- (\S+)", line)
        if not m:
            continue
        if section == "as":
            servers.append(m.group(1))
        elif section == "client" and m.group(1).startswith("auth/"):
            clients.append(m.group(1))
    return servers, clients


async def run_suite(ns: argparse.Namespace) -> int:
    args = CLI + [
        "authorization", "--url", ns.issuer, "--client-id", ns.client_id,
        "--port", str(ns.port), "--output-dir", ns.output_dir,
    ]
    if ns.resource:
        args += ["--resource", ns.resource]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ns.suite, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    browser = Browser()
    redirect_uri = f"http://127.0.0.1:{ns.port}{CALLBACK_PATH}"
    authorize_prefix = f"{ns.issuer}/oauth/authorize?"
    try:
        async with asyncio.timeout(ns.timeout):
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\n")
                print(line, flush=True)
                if not line.startswith(authorize_prefix):
                    continue
                # The suite waits for a person; the browser stands in.
                try:
                    outcome = await browser.authorize(line.strip(), redirect_uri)
                except BrowserError as e:
                    print(f"[browser] the flow did not reach the suite's callback: {e}", flush=True)
                    # The suite would wait five minutes for a person.
                    proc.kill()
                    break
                print(f"[browser] {len(outcome.steps)} steps, {len(outcome.consent_pages)} consent page(s); "
                      f"delivering the redirect to the suite", flush=True)
                async with httpx2.AsyncClient(timeout=10.0) as http:
                    answer = await http.get(outcome.redirect)
                    print(f"[browser] callback answered {answer.status_code}", flush=True)
            return await proc.wait()
    except TimeoutError:
        print(f"[driver] the suite did not finish within {ns.timeout}s", flush=True)
        proc.kill()
        await proc.wait()
        return 1


def results(output_dir: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for path in glob.glob(os.path.join(output_dir, "authorization-server-*", "checks.json")):
        name = os.path.basename(os.path.dirname(path))
        scenario = re.sub(r"^authorization-server-", "", re.sub(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$", "", name))
        with open(path) as f:
            found[scenario] = json.load(f)
    return found


def main() -> int:
    ns = parse_args()
    os.makedirs(ns.output_dir, exist_ok=True)
    baseline = load_yaml(ns.suite, ns.baseline)
    expected = set(baseline.get("authorization") or [])
    not_run = baseline.get("not_run") or {}
    reasons = baseline.get("reasons") or {}
    problems: list[str] = []

    servers, clients = listed_scenarios(ns.suite)
    for name in clients:
        if name not in not_run:
            problems.append(f"{name}: the suite has this auth scenario; run it or say in {ns.baseline} why not")
    for name, reason in not_run.items():
        if name not in servers + clients:
            problems.append(f"{name}: listed as not run, but the suite has no such scenario (stale entry)")
        elif reason not in reasons:
            problems.append(f"{name}: reason {reason!r} is not one of {ns.baseline}'s reasons")
        elif name in servers:
            problems.append(f"{name}: listed as not run, but it runs here")

    code = asyncio.run(run_suite(ns))
    found = results(ns.output_dir)
    print("\n== authorization-server scenarios against", ns.issuer)
    for name in servers:
        checks = found.get(name)
        if checks is None:
            problems.append(f"{name}: no result (the suite did not run it)")
            continue
        bad = [c for c in checks if c.get("status") in ("FAILURE", "WARNING")]
        verdict = "fails" if bad else "passes"
        print(f"  {name}: {verdict} ({len(checks)} checks)")
        for c in bad:
            print(f"    {c.get('status')} {c.get('id')}: {c.get('errorMessage') or c.get('description')}")
        if bad and name not in expected:
            problems.append(f"{name}: unexpected failure")
        if not bad and name in expected:
            problems.append(f"{name}: passes but is listed as expected to fail (stale baseline)")
    print(f"  not run: {len(not_run)} client scenarios ({', '.join(sorted(set(not_run.values())))}), see {ns.baseline}")
    if code != 0 and not problems and not expected:
        problems.append(f"the suite exited {code}")
    for p in problems:
        print(f"  ✗ {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
