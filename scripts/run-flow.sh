#!/usr/bin/env bash
# `make run`: the local stack, then service one, service two and the stub, with their logs prefixed
# and coloured per process. Ctrl-C (or SIGTERM) stops all three gracefully.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/stack.sh up >/dev/null
eval "$(scripts/stack.sh env)"
echo "flow: building one, two and the stub" >&2
cargo build --quiet -p one -p two -p stub
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

pids=()
# start NAME COLOUR CMD...: runs CMD with every output line prefixed by a coloured NAME.
start() {
  local name=$1 colour=$2
  shift 2
  local prefix
  prefix=$(printf '\033[%sm%-4s |\033[0m ' "$colour" "$name")
  # A bash loop, not awk: mawk reads pipes in blocks, so lines would appear late or never.
  "$@" > >(while IFS= read -r line; do printf '%s%s\n' "$prefix" "$line"; done) 2>&1 &
  pids+=("$!")
}

stop() {
  trap - INT TERM EXIT
  echo "flow: stopping one, two and the stub" >&2
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  exit 0
}
trap stop INT TERM EXIT

start stub 35 "$BIN/stub"
# Config folders named explicitly: a binary built by another checkout sharing the build
# directory would otherwise read that checkout's config.
start one 34 "$BIN/one" --config-dir "$ROOT/flow/one/config"
start two 32 "$BIN/two" --config-dir "$ROOT/flow/two/config"

ready() { curl -sf -o /dev/null "$1"; }
for _ in $(seq 1 120); do
  if ready http://127.0.0.1:8080/readyz && ready http://127.0.0.1:8081/readyz && ready http://127.0.0.1:8090/healthz; then
    cat >&2 <<'MSG'

flow: everything is up
  API (service one)   http://127.0.0.1:8080/one      POST a request here
  Swagger UI          http://127.0.0.1:8080/docs
  service two admin   http://127.0.0.1:8081/readyz
  stub                http://127.0.0.1:8090/received what the "third party" received
  try it:             make demo        (in another terminal)
  stop:               Ctrl-C

MSG
    break
  fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "flow: a process exited during start-up; see its lines above" >&2; exit 1; }
  done
  sleep 0.5
done
# Stop everything as soon as one of the three dies.
wait -n "${pids[@]}" || true
echo "flow: a process exited; stopping the others" >&2
