#!/usr/bin/env bash
# Fuzzes service one against its own OpenAPI document with Schemathesis (bounded: 20 examples per
# operation and phase, 45 s at most, fixed seed): every schema-valid request must be accepted,
# every invalid one refused with a documented status and an application/problem+json body.
# Schemathesis is installed once, pinned, in a virtualenv under ~/.cache/cruncan. Needs `make up`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VERSION=4.32.5
VENV="$HOME/.cache/cruncan/schemathesis-$VERSION"
if [[ ! -x "$VENV/bin/st" ]]; then
  echo "schemathesis: installing $VERSION into $VENV (once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$VERSION"
fi
eval "$(scripts/stack.sh env)"
cargo build -q -p one
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PORT=18380
LOG="$(mktemp -t cruncan-schemathesis-one.XXXXXX.log)"
APP_DATABASE__NAME="schemathesis_one_$(date +%s)_$$" APP_DATABASE__CREATE_IF_MISSING=true \
  APP_TELEMETRY__LOG_FILTER=warn env -u DATABASE_URL \
  "$TARGET/debug/one" --config-dir "$ROOT/flow/one/config" --port "$PORT" --node-id 1 --topic "schemathesis-t$(date +%s)-$(od -An -N4 -tx4 /dev/urandom | tr -d " ")" >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  kill -0 $PID 2>/dev/null || { echo "schemathesis: one did not start; its log:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.2
done
"$VENV/bin/st" --config-file flow/one/schemathesis.toml run "http://127.0.0.1:$PORT/openapi.json" \
  --checks all --max-examples 20 --seed 1 --max-time 45 --no-color
