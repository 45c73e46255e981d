#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance) against a real
# tenant: `mcplatform up` on a scratch database, an org with one server whose admin switched
# on `conformance_fixtures`, then the suite's server scenarios for the 2025-11-25 and
# 2026-07-28 requirement sets. Scenarios that cannot pass are listed, each with its reason, in
# conformance/baseline-*.yml; any other failure, or a listed scenario that now passes, fails.
#
# Then the suite's authorization-server scenarios (`conformance authorization`, alpha line)
# against the authorization server of a second server, `signin`, in `oauth` mode: its identity
# provider is the loopback oidc-provider (tests/support/oidc_provider.mjs), the client is
# registered by DCR with the suite's callback, and a scripted browser consents where the suite
# waits for a person (tests/clients/python/conformance_authorization.py). The baseline and the
# reasons the suite's other auth scenarios do not run are in conformance/authorization.yml.
# CONFORMANCE_PARTS="server authorization" (the default) chooses what runs.
#
# Needs: scripts/setup-test-clients.sh (Node 24, the suite, oidc-provider), a built binary
# (cargo build), Postgres and NATS on 127.0.0.1.
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
# The identity provider of the sign-in tenant is on loopback: the outbound guard admits it
# (over plain http) only for networks listed here.
export MCPLATFORM_OUTBOUND_ALLOW="127.0.0.0/8"
PARTS=${CONFORMANCE_PARTS:-server authorization}
free_port() { "$TOOLS/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
OIDC_PORT=$(free_port)
CALLBACK_PORT=$(free_port)
OIDC_PID=""
RESULTS=$(mktemp -d)

LOG=$(mktemp)
"$BIN" up >"$LOG" 2>&1 &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  if [ -n "$OIDC_PID" ]; then kill "$OIDC_PID" 2>/dev/null || true; wait "$OIDC_PID" 2>/dev/null || true; fi
  rm -rf "$RESULTS"
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
case " $PARTS " in *" server "*)
echo "== conformance 2025-11-25 (suite $(cd "$TOOLS/conformance/stable" && node -p 'require("@modelcontextprotocol/conformance/package.json").version'))"
(cd "$TOOLS/conformance/stable" && npx --no-install conformance server --url "$URL" \
   --expected-failures "$ROOT/conformance/baseline-2025-11-25.yml") || status=1
echo "== conformance 2026-07-28 (suite $(cd "$TOOLS/conformance/alpha" && node -p 'require("@modelcontextprotocol/conformance/package.json").version'))"
(cd "$TOOLS/conformance/alpha" && npx --no-install conformance server --url "$URL" \
   --requirements 2026-07-28 \
   --expected-failures "$ROOT/conformance/baseline-2026-07-28.yml") || status=1
;; esac

case " $PARTS " in *" authorization "*)
echo "== conformance authorization (suite $(cd "$TOOLS/conformance/alpha" && node -p 'require("@modelcontextprotocol/conformance/package.json").version'))"
BASE="http://127.0.0.1:$PORT"
ISSUER="$BASE/s/signin"
# The identity provider: one confidential client (the platform, redirecting to the sign-in
# server's callback) and one account, signed in without a person.
OIDC_LOG="$RESULTS/oidc.log"
: >"$OIDC_LOG"
node "$ROOT/tests/support/oidc_provider.mjs" "$OIDC_PORT" "$("$TOOLS/venv/bin/python" - "$ISSUER" <<'PY'
import json, sys
print(json.dumps({
    "clients": [{"client_id": "mcplatform-conformance", "client_secret": "conformance-idp-secret-0123456789",
                 "redirect_uris": [sys.argv[1] + "/oauth/callback"]}],
    "accounts": [{"sub": "conformance", "email": "signin@example.com", "email_verified": True, "name": "Conformance"}],
    "auto_login": "conformance",
}))
PY
)" >"$OIDC_LOG" 2>&1 &
OIDC_PID=$!
for _ in $(seq 1 60); do
  grep -q "^ready " "$OIDC_LOG" && break
  sleep 0.5
done
grep -q "^ready " "$OIDC_LOG" || { cat "$OIDC_LOG"; echo "oidc-provider did not start" >&2; exit 1; }

# The sign-in server and a client registered (RFC 7591) with the suite's callback.
CLIENT_ID=$("$TOOLS/venv/bin/python" - "$BASE" "http://127.0.0.1:$OIDC_PORT" "$CALLBACK_PORT" <<'PY'
import json, sys, urllib.request
base, idp, callback_port = sys.argv[1:4]
def call(method, path, body, token=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method,
                                 headers={"content-type": "application/json"})
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req) as r:
        return json.load(r)
token = call("POST", "/api/v1/auth/login", {"email": "conformance@example.com",
             "password": "conformance passphrase"})["access_token"]
provider = call("POST", "/api/v1/orgs/conformance/identity-providers", {
    "name": "Conformance IdP", "kind": "oidc", "issuer": idp,
    "client_id": "mcplatform-conformance", "client_secret": "conformance-idp-secret-0123456789",
    "scopes": ["email", "profile"]}, token)["id"]
call("POST", "/api/v1/orgs/conformance/servers", {"name": "Sign-in", "slug": "signin"}, token)
call("PATCH", "/api/v1/orgs/conformance/servers/signin",
     {"auth_mode": "oauth", "identity_provider_id": provider}, token)
client = call("POST", "/s/signin/oauth/register", {"client_name": "MCP conformance suite",
              "redirect_uris": [f"http://127.0.0.1:{callback_port}/callback"],
              "token_endpoint_auth_method": "none"})
print(client["client_id"])
PY
)
"$TOOLS/venv/bin/python" "$ROOT/tests/clients/python/conformance_authorization.py" \
  --suite "$TOOLS/conformance/alpha" --issuer "$ISSUER" --client-id "$CLIENT_ID" \
  --resource "$ISSUER/mcp" --port "$CALLBACK_PORT" \
  --baseline "$ROOT/conformance/authorization.yml" --output-dir "$RESULTS/authorization" || status=1
;; esac
exit $status
