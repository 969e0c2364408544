#!/usr/bin/env bash
# `make demo`: one request through the whole flow, proven end to end.
# Uses a running `make run`, or starts one in the background (and stops it afterwards).
# Prints the request id, the trace id, the row in PostgreSQL and the body /three received;
# exits 0 only when all of that happened.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ONE=http://127.0.0.1:8080
STUB=http://127.0.0.1:8090
fail() { printf '\033[31mdemo: %s\033[0m\n' "$*" >&2; exit 1; }
say() { printf '\033[1m%s\033[0m\n' "$*"; }

if ! curl -sf -o /dev/null "$ONE/readyz"; then
  mkdir -p .stack/logs
  say "demo: the flow is not running; starting it (logs: .stack/logs/flow.log)"
  setsid scripts/run-flow.sh >.stack/logs/flow.log 2>&1 &
  flow=$!
  trap 'kill -TERM -- -$flow 2>/dev/null || true; wait $flow 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "$ONE/readyz" && curl -sf -o /dev/null "$STUB/healthz" && curl -sf -o /dev/null http://127.0.0.1:8081/readyz && break
    kill -0 "$flow" 2>/dev/null || { tail -n 30 .stack/logs/flow.log >&2; fail "the flow failed to start; see .stack/logs/flow.log"; }
    sleep 1
  done
  curl -sf -o /dev/null "$ONE/readyz" || fail "service one did not become ready within 10 minutes; see .stack/logs/flow.log"
fi

body='{"user_id":"demo-user","prompt":"Summarise the cruncan flow in one sentence.","data":[{"key":"lang","value":"en"},{"key":"source","value":"make demo"}]}'
response=$(curl -s -w '\n%{http_code}' -XPOST "$ONE/one" -H 'content-type: application/json' -d "$body") \
  || fail "POST $ONE/one did not answer"
status=${response##*$'\n'}
json=${response%$'\n'*}
[[ "$status" == 201 ]] || fail "POST /one answered $status, expected 201: $json"
id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["request_id"])' "$json")
say "request id:   $id"

received=""
for _ in $(seq 1 120); do
  received=$(curl -sf "$STUB/received/$id") && break
  received=""
  sleep 0.5
done
[[ -n "$received" ]] || fail "the stub did not receive $id within 60 s (is service two running? see its logs)"

trace=$(python3 -c 'import json,sys; tp=json.loads(sys.argv[1])[0]["traceparent"] or ""; print(tp.split("-")[1] if tp.count("-")==3 else "")' "$received")
[[ -n "$trace" ]] || fail "the call to /three carried no traceparent"
say "trace id:     $trace   (grep it in the logs of one and two: one trace from POST /one to POST /three)"

say "row in PostgreSQL (database one, table request):"
if command -v psql >/dev/null; then
  PGPASSWORD=postgres psql -h 127.0.0.1 -p "${CRUNCAN_PG_PORT:-15432}" -U postgres -d one -P pager=off \
    -c "SELECT req_id, user_id, created_at, req FROM request WHERE req_id = '$id'" \
    || fail "could not read the row"
else
  curl -sf "$ONE/one/$id" | python3 -m json.tool || fail "could not read the stored request"
fi

say "body /three received:"
python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])[0]["body"], indent=2))' "$received"
say "demo: ok — accepted, stored, published, consumed, delivered"
