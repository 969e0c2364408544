#!/usr/bin/env bash
# Temporal's dev server (a single Go process with SQLite) for reference/temporal, on loopback.
#
#   scripts/temporal.sh up       build the CLI once if needed, start the server, wait until it serves
#   scripts/temporal.sh down     stop the server this script started
#   scripts/temporal.sh status   one line
#   scripts/temporal.sh env      the environment variable programs and tests read (eval-able)
#   scripts/temporal.sh build    only build (or find) the cached CLI binary
#
# The Temporal CLI is built from the Go module proxy once, like the collector (check-collector.sh):
# `go install github.com/temporalio/cli/cmd/temporal@v1.5.1` — about 4–8 minutes on 2 cores, cached in
# ~/.cache/cruncan/temporal-1.5.1. (Later CLI releases carry a `replace` directive in their go.mod,
# which `go install pkg@version` refuses.) With a Docker engine, scripts/compose.yaml runs the official
# image instead (profile `temporal`). CRUNCAN_STACK=native|docker forces one, as in stack.sh.
# State (SQLite file), log and pid live under .stack/ so a failure can be read.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CRUNCAN_STACK_DIR:-$ROOT/.stack}"
LOGS="$STATE/logs"
RUN="$STATE/run"
PORT="${CRUNCAN_TEMPORAL_PORT:-17233}"
VERSION=1.5.1
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/cruncan/temporal-$VERSION"
BIN="$CACHE/bin/temporal"
PIDFILE="$RUN/temporal.pid"
LOG="$LOGS/temporal.log"

say() { printf '\033[1mtemporal:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31mtemporal: %s\033[0m\n' "$*" >&2; exit 1; }

print_env() {
  echo "export TEMPORAL_ADDRESS=127.0.0.1:$PORT"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
pid_alive() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

# Serving means the frontend answers its gRPC health check, not only that the port is open.
ready() {
  if [[ -x "$BIN" ]]; then
    "$BIN" operator cluster health --address "127.0.0.1:$PORT" 2>/dev/null | grep -q SERVING
  else
    port_open
  fi
}

use_docker() {
  case "${CRUNCAN_STACK:-auto}" in
    docker) return 0 ;;
    native) return 1 ;;
    *) command -v docker >/dev/null && docker info >/dev/null 2>&1 ;;
  esac
}

compose() {
  CRUNCAN_TEMPORAL_PORT=$PORT docker compose -p cruncan -f "$ROOT/scripts/compose.yaml" \
    --profile temporal "$@"
}

build() {
  [[ -x "$BIN" ]] && return 0
  command -v go >/dev/null || die "no Go toolchain to build the Temporal CLI (apt-get install golang-go, or use a Docker engine)"
  mkdir -p "$CACHE"
  say "building the Temporal CLI v$VERSION once (4–8 minutes; cached in $CACHE; log $CACHE/build.log)"
  # The checksum database is not reachable from every build machine; the modules still come from
  # the Go proxy. Set GOSUMDB yourself to keep verification on.
  GOSUMDB="${GOSUMDB:-off}" GOBIN="$CACHE/bin" \
    go install "github.com/temporalio/cli/cmd/temporal@v$VERSION" >"$CACHE/build.log" 2>&1 \
    || { tail -n 20 "$CACHE/build.log" >&2; die "building the Temporal CLI failed; see $CACHE/build.log"; }
}

up() {
  mkdir -p "$LOGS" "$RUN" "$STATE/temporal"
  if ready; then print_env; return 0; fi
  if use_docker; then
    say "Docker engine found: docker compose up temporal"
    compose up -d --wait temporal
    print_env
    return 0
  fi
  build
  if port_open && ! pid_alive; then
    die "port $PORT is taken by another process (see: ss -ltnp 'sport = :$PORT'); stop it or set CRUNCAN_TEMPORAL_PORT"
  fi
  if ! pid_alive; then
    say "starting the Temporal dev server on 127.0.0.1:$PORT (state $STATE/temporal/temporal.db)"
    # ANCHOR: start_dev
    setsid nohup "$BIN" server start-dev --headless --ip 127.0.0.1 --port "$PORT" \
      --db-filename "$STATE/temporal/temporal.db" --log-level warn \
      --dynamic-config-value system.enableActivityEagerExecution=true \
      </dev/null >"$LOG" 2>&1 &
    # ANCHOR_END: start_dev
    echo $! >"$PIDFILE"
  fi
  local deadline=$((SECONDS + 60))
  until ready; do
    if ! pid_alive || ((SECONDS >= deadline)); then
      tail -n 20 "$LOG" >&2 || true
      die "the dev server did not answer within 60s; its log is $LOG"
    fi
    sleep 0.3
  done
  say "Temporal answers on 127.0.0.1:$PORT"
  print_env
}

down() {
  if use_docker; then
    compose stop temporal >/dev/null 2>&1 || true
    return 0
  fi
  pid_alive || { rm -f "$PIDFILE"; return 0; }
  local pid
  pid=$(cat "$PIDFILE")
  say "stopping Temporal (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$PIDFILE"
}

status() {
  if ready; then
    printf '%-10s up    %s\n' temporal "127.0.0.1:$PORT"
  else
    printf '%-10s down  %s\n' temporal "127.0.0.1:$PORT"
    return 1
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) print_env ;;
  build) build ;;
  *) echo "usage: $0 up|down|status|env|build" >&2; exit 2 ;;
esac
