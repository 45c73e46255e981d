#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance) against a real
# tenant: `mcplatform up` on a scratch database, an org with one server whose admin switched
# on `conformance_fixtures`, then the suite's server scenarios for the 2025-11-25 and
# 2026-07-28 requirement sets. Scenarios that cannot pass are listed, each with its reason, in
# conformance/baseline-*.yml; any other failure, or a listed scenario that now passes, fails.
#
# Needs: scripts/setup-test-clients.sh (Node 24 + the suite), a built binary (cargo build),
# Postgres and NATS on 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${MCPLATFORM_BIN:-$ROOT/target/debug/mcplatform}
TOOLS="$ROOT/.tools"
PORT=${CONFORMANCE_PORT:-18471}
DB="mcpl_conformance_$$"
export PATH="$TOOLS/bin:$PATH"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
# One stream for every run: messages of earlier runs belong to other event stores and are
# skipped by the projectors.
export MCPLATFORM_NATS_PREFIX="mcplconformance"
export MCPLATFORM_BIND="127.0.0.1:$PORT"
export MCPLATFORM_SECRET="conformance-run-secret-0123456789"
export RUST_LOG=${RUST_LOG:-warn}

LOG=$(mktemp)
"$BIN" up >"$LOG" 2>&1 &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  "$TOOLS/venv/bin/python" - "$DB" <<'PY' || true
import subprocess, sys
subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'DROP DATABASE IF EXISTS "{sys.argv[1]}" WITH (FORCE)'], check=False)
PY
  rm -f "$LOG"
}
trap cleanup EXIT

for _ in $(seq 1 60); do
  grep -q "mcplatform listening" "$LOG" && break
  sleep 0.5
done
grep -q "mcplatform listening" "$LOG" || { cat "$LOG"; echo "mcplatform did not start" >&2; exit 1; }

# An owner, an org and a server with the conformance fixtures, through the public API.
"$TOOLS/venv/bin/python" - "http://127.0.0.1:$PORT" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
def call(path, body, token=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req) as r:
        return json.load(r)
token = call("/api/v1/auth/signup", {"email": "conformance@example.com",
             "password": "conformance passphrase", "name": "Conformance"})["access_token"]
call("/api/v1/orgs", {"name": "Conformance", "slug": "conformance"}, token)
call("/api/v1/orgs/conformance/servers", {"name": "Conformance", "slug": "everything",
     "conformance_fixtures": True}, token)
PY

URL="http://localhost:$PORT/s/everything/mcp"
if [ -n "${CONFORMANCE_ONLY:-}" ]; then
  (cd "$TOOLS/conformance/alpha" && npx --no-install conformance server --url "$URL" $CONFORMANCE_ONLY)
  exit $?
fi
status=0
echo "== conformance 2025-11-25 (suite $(cd "$TOOLS/conformance/stable" && node -p 'require("@modelcontextprotocol/conformance/package.json").version'))"
(cd "$TOOLS/conformance/stable" && npx --no-install conformance server --url "$URL" \
   --expected-failures "$ROOT/conformance/baseline-2025-11-25.yml") || status=1
echo "== conformance 2026-07-28 (suite $(cd "$TOOLS/conformance/alpha" && node -p 'require("@modelcontextprotocol/conformance/package.json").version'))"
(cd "$TOOLS/conformance/alpha" && npx --no-install conformance server --url "$URL" \
   --requirements 2026-07-28 \
   --expected-failures "$ROOT/conformance/baseline-2026-07-28.yml") || status=1
exit $status
