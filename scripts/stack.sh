#!/usr/bin/env bash
# The local stack: real PostgreSQL, Apache Kafka (KRaft), Redis and NATS (JetStream) on loopback.
#
#   scripts/stack.sh up       start what is not running, wait until every service answers
#   scripts/stack.sh down     stop everything this script started
#   scripts/stack.sh status   one line per service
#   scripts/stack.sh env      the environment variables programs and tests read (eval-able)
#   scripts/stack.sh restart-kafka   stop and start the broker (fault tests: nothing may be lost)
#   scripts/stack.sh stop-kafka | start-kafka   the same in two steps (an outage of a chosen length)
#
# With a Docker engine it runs scripts/compose.yaml; without one (CI, this project's machines) it runs
# the Debian packages and a Kafka assembled from Maven Central. CRUNCAN_STACK=native|docker forces one.
# Everything a service writes (data, logs, pid files) lives under .stack/ so a failure can be read.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CRUNCAN_STACK_DIR:-$ROOT/.stack}"
LOGS="$STATE/logs"
RUN="$STATE/run"

PG_PORT="${CRUNCAN_PG_PORT:-15432}"
KAFKA_PORT="${CRUNCAN_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${CRUNCAN_KAFKA_CONTROLLER_PORT:-19093}"
REDIS_PORT="${CRUNCAN_REDIS_PORT:-16379}"
NATS_PORT="${CRUNCAN_NATS_PORT:-14222}"
SMTP_PORT="${CRUNCAN_SMTP_PORT:-11025}"
SMTP_WEB_PORT="${CRUNCAN_SMTP_WEB_PORT:-18025}"
PG_PASSWORD=postgres

say() { printf '\033[1mstack:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31mstack: %s\033[0m\n' "$*" >&2; exit 1; }

print_env() {
  # ANCHOR: print_env
  cat <<EOF
export DATABASE_URL=postgres://postgres:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres
export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export NATS_URL=nats://127.0.0.1:$NATS_PORT
export SMTP_URL=smtp://127.0.0.1:$SMTP_PORT
export SMTP_API_URL=http://127.0.0.1:$SMTP_WEB_PORT
EOF
  # ANCHOR_END: print_env
}

# --- helpers -------------------------------------------------------------------------------------

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for NAME LOGFILE SECONDS CHECK...: run CHECK until it succeeds or time runs out.
wait_for() {
  local name=$1 log=$2 secs=$3; shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      tail -n 20 "$log" >&2 2>/dev/null || true
      die "$name did not answer within ${secs}s; its log is $log"
    fi
    sleep 0.3
  done
}

# A port we are about to bind must be free, unless our own process already holds it.
claim_port() {
  local name=$1 port=$2 pidfile=$3
  if port_open "$port" && ! pid_alive "$pidfile"; then
    die "port $port for $name is taken by another process (see: ss -ltnp 'sport = :$port'); stop it or set CRUNCAN_${name^^}_PORT"
  fi
}

as_root() { [[ $(id -u) -eq 0 ]]; }

# Debian packages the native stack needs; installed when missing (root), printed otherwise.
ensure_packages() {
  local missing=()
  pg_bin >/dev/null 2>&1 || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v nats-server >/dev/null || missing+=(nats-server)
  command -v java >/dev/null || missing+=(default-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v python3 >/dev/null || missing+=(python3)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v curl >/dev/null || missing+=(curl)
  ((${#missing[@]} == 0)) && return 0
  if as_root; then
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"$LOGS/apt.log" 2>&1 || die "apt-get update failed; see $LOGS/apt.log"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$LOGS/apt.log" 2>&1 \
      || die "apt-get install failed; see $LOGS/apt.log"
  else
    die "missing packages; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  fi
}

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$d" && -x "$d/pg_ctl" ]] || return 1
  echo "$d"
}

# PostgreSQL refuses to run as root: as root we run it as the `postgres` user, in a folder that user
# can reach (a checkout under a private home folder may not be).
pg_data_dir() {
  if as_root; then
    if runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
      echo "$STATE/pg"
    else
      echo "/var/lib/postgresql/cruncan-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
    fi
  else
    echo "$STATE/pg"
  fi
}

as_pg() { if as_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

# --- PostgreSQL ----------------------------------------------------------------------------------

pg_up() {
  local bin data log
  bin=$(pg_bin) || die "PostgreSQL binaries not found under /usr/lib/postgresql"
  data=$(pg_data_dir)
  log="$LOGS/postgres.log"
  if pg_ready; then return 0; fi
  claim_port pg "$PG_PORT" "$data/postmaster.pid"
  if [[ ! -f "$data/PG_VERSION" ]]; then
    say "initialising PostgreSQL in $data"
    mkdir -p "$data"
    local pw
    pw=$(mktemp)
    echo "$PG_PASSWORD" >"$pw"
    if as_root; then chown postgres "$data" "$pw"; fi
    chmod 700 "$data"
    as_pg "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --pwfile="$pw" -E UTF8 >"$LOGS/initdb.log" 2>&1 || { rm -f "$pw"; die "initdb failed; see $LOGS/initdb.log"; }
    rm -f "$pw"
    # A throw-away development database: durability is traded for speed (tests create many DBs).
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$data'
max_connections = 400
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
  touch "$log"
  if as_root; then chown postgres "$log"; fi
  say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null || die "PostgreSQL failed to start; its log is $log"
  wait_for PostgreSQL "$log" 30 pg_ready
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 2; }

# CRUNCAN_PG_DURABLE=1: commits are really flushed (fsync, synchronous_commit, full_page_writes on),
# for measuring what a production database allows; =0 goes back to the fast throw-away settings;
# unset leaves the running server as it is. All three settings apply on reload, no restart.
pg_durability() {
  local verb
  case "${CRUNCAN_PG_DURABLE:-}" in
    1) verb="SET %s = on" ;;
    0) verb="RESET %s" ;;
    *) return 0 ;;
  esac
  # One -c per ALTER SYSTEM: it refuses to run inside a transaction block, which is what several
  # statements in one -c are (and psql would still exit 0 if a later -c succeeded).
  local args=(-v ON_ERROR_STOP=1) setting
  for setting in fsync synchronous_commit full_page_writes; do
    # shellcheck disable=SC2059
    args+=(-c "ALTER SYSTEM $(printf "$verb" "$setting")")
  done
  PGPASSWORD=$PG_PASSWORD psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    "${args[@]}" -c "SELECT pg_reload_conf();" >/dev/null || die "could not change PostgreSQL's durability settings"
  say "PostgreSQL durability: $(PGPASSWORD=$PG_PASSWORD psql -qtA -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'SHOW fsync') (CRUNCAN_PG_DURABLE=$CRUNCAN_PG_DURABLE)"
}

pg_down() {
  local bin data
  bin=$(pg_bin) || return 0
  data=$(pg_data_dir)
  [[ -f "$data/postmaster.pid" ]] || return 0
  say "stopping PostgreSQL"
  as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

# --- Redis ---------------------------------------------------------------------------------------

redis_up() {
  if redis_ready; then return 0; fi
  claim_port redis "$REDIS_PORT" "$RUN/redis.pid"
  mkdir -p "$STATE/redis"
  say "starting Redis on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --pidfile "$RUN/redis.pid" \
    --logfile "$LOGS/redis.log" --dir "$STATE/redis" --save '' --appendonly no \
    || die "Redis failed to start; its log is $LOGS/redis.log"
  wait_for Redis "$LOGS/redis.log" 20 redis_ready
}

redis_ready() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

# --- NATS ----------------------------------------------------------------------------------------

nats_up() {
  # Anything answering on the port counts (another checkout's stack, say): share it.
  if nats_ready; then return 0; fi
  claim_port nats "$NATS_PORT" "$RUN/nats.pid"
  mkdir -p "$STATE/nats"
  say "starting NATS (JetStream) on 127.0.0.1:$NATS_PORT"
  setsid nohup nats-server -a 127.0.0.1 -p "$NATS_PORT" \
    -js -sd "$STATE/nats" -l "$LOGS/nats.log" -P "$RUN/nats.pid" </dev/null >/dev/null 2>&1 &
  wait_for NATS "$LOGS/nats.log" 20 nats_ready
}

# The server's INFO line must say JetStream is on.
nats_ready() (
  exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT" || exit 1
  read -r -t 2 info <&3 || exit 1
  [[ "$info" == INFO* && "$info" == *'"jetstream":true'* ]]
)

# --- SMTP sink -----------------------------------------------------------------------------------
# maildev (npm, pinned by scripts/smtp-sink/package-lock.json) run with the machine's node: it keeps
# every message it receives and shows them in a web UI and a REST API (GET /email) on SMTP_WEB_PORT.

SMTP_SINK_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/cruncan/smtp-sink-$(cksum <"$ROOT/scripts/smtp-sink/package-lock.json" | cut -d' ' -f1)"

smtp_install() {
  [[ -f "$SMTP_SINK_DIR/.installed" ]] && return 0
  command -v node >/dev/null && command -v npm >/dev/null \
    || die "the SMTP sink needs node and npm (Debian: apt-get install -y nodejs npm)"
  say "installing the SMTP sink (maildev, npm ci; once, cached in $SMTP_SINK_DIR)"
  mkdir -p "$SMTP_SINK_DIR"
  cp "$ROOT/scripts/smtp-sink/package.json" "$ROOT/scripts/smtp-sink/package-lock.json" "$SMTP_SINK_DIR/"
  (cd "$SMTP_SINK_DIR" && npm ci --omit=dev --no-audit --no-fund) >"$LOGS/smtp-install.log" 2>&1 \
    || die "installing maildev failed; see $LOGS/smtp-install.log"
  touch "$SMTP_SINK_DIR/.installed"
}

smtp_up() {
  if smtp_ready; then return 0; fi
  claim_port smtp "$SMTP_PORT" "$RUN/smtp.pid"
  claim_port smtp_web "$SMTP_WEB_PORT" "$RUN/smtp.pid"
  smtp_install
  mkdir -p "$STATE/smtp"
  say "starting the SMTP sink (maildev) on 127.0.0.1:$SMTP_PORT, UI and API on http://127.0.0.1:$SMTP_WEB_PORT"
  setsid nohup node "$SMTP_SINK_DIR/node_modules/maildev/bin/maildev" --ip 127.0.0.1 --web-ip 127.0.0.1 \
    -s "$SMTP_PORT" -w "$SMTP_WEB_PORT" --mail-directory "$STATE/smtp" </dev/null >"$LOGS/smtp.log" 2>&1 &
  echo $! >"$RUN/smtp.pid"
  wait_for "SMTP sink" "$LOGS/smtp.log" 30 smtp_ready
}

# The SMTP port greets and the API answers.
smtp_ready() (
  exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT" || exit 1
  read -r -t 2 greeting <&3 || exit 1
  [[ "$greeting" == 220* ]] || exit 1
  curl -fsS -m 2 "http://127.0.0.1:$SMTP_WEB_PORT/healthz" >/dev/null
)

smtp_down() { stop_pid "SMTP sink" "$RUN/smtp.pid"; }

# --- Kafka ---------------------------------------------------------------------------------------

KAFKA_DIR="$STATE/kafka"

kafka_libs() {
  local libs="$KAFKA_DIR/libs" stamp="$KAFKA_DIR/libs/.pom-$(cksum <"$ROOT/scripts/kafka/pom.xml" | cut -d' ' -f1)"
  [[ -f "$stamp" ]] && return 0
  say "fetching Apache Kafka jars from Maven Central (once; cached in $libs)"
  rm -rf "$libs"
  mkdir -p "$libs"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime >"$LOGS/maven.log" 2>&1 \
    || die "fetching Kafka with Maven failed; see $LOGS/maven.log"
  touch "$stamp"
}

kafka_up() {
  if kafka_ready; then return 0; fi
  claim_port kafka "$KAFKA_PORT" "$RUN/kafka.pid"
  claim_port kafka_controller "$KAFKA_CONTROLLER_PORT" "$RUN/kafka.pid"
  kafka_libs
  local props="$KAFKA_DIR/server.properties" data="$KAFKA_DIR/data"
  sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
    -e "s#@DATA@#$data#g" "$ROOT/scripts/kafka/server.properties" >"$props"
  local cp="$KAFKA_DIR/libs/*"
  if [[ ! -f "$data/meta.properties" ]]; then
    say "formatting Kafka KRaft storage in $data"
    local id
    id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java -cp "$cp" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.yaml" kafka.tools.StorageTool \
      format -t "$id" -c "$props" >"$LOGS/kafka-format.log" 2>&1 \
      || die "formatting Kafka storage failed; see $LOGS/kafka-format.log"
  fi
  say "starting Apache Kafka (KRaft) on 127.0.0.1:$KAFKA_PORT"
  # Appended, not overwritten: a fault test restarts the broker, and what the broker said before
  # the restart is what explains a failure. Each start is marked so the runs can be told apart.
  local log="$LOGS/kafka.log"
  if [[ -f "$log" ]] && (($(stat -c %s "$log") > 50 * 1024 * 1024)); then mv -f "$log" "$log.1"; fi
  echo "===== stack.sh: Kafka starting at $(date -u +%FT%TZ) =====" >>"$log"
  setsid nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.yaml" \
    -cp "$cp" kafka.Kafka "$props" </dev/null >>"$log" 2>&1 &
  echo $! >"$RUN/kafka.pid"
  wait_for Kafka "$log" 90 kafka_ready
}

# A real Metadata request that must list our broker (see scripts/kafka/ping.py).
kafka_ready() { python3 "$ROOT/scripts/kafka/ping.py" 127.0.0.1 "$KAFKA_PORT"; }

stop_pid() {
  local name=$1 pidfile=$2 pid
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  say "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
}

# --- Docker --------------------------------------------------------------------------------------

use_docker() {
  case "${CRUNCAN_STACK:-auto}" in
    docker) return 0 ;;
    native) return 1 ;;
    *) command -v docker >/dev/null && docker info >/dev/null 2>&1 ;;
  esac
}

compose() {
  CRUNCAN_PG_PORT=$PG_PORT CRUNCAN_KAFKA_PORT=$KAFKA_PORT CRUNCAN_REDIS_PORT=$REDIS_PORT \
    CRUNCAN_NATS_PORT=$NATS_PORT docker compose -p cruncan -f "$ROOT/scripts/compose.yaml" "$@"
}

# --- commands ------------------------------------------------------------------------------------

up() {
  mkdir -p "$LOGS" "$RUN"
  if use_docker; then
    say "Docker engine found: docker compose up"
    compose up -d --wait
  else
    ensure_packages
    pg_up
    pg_durability
    redis_up
    nats_up
    kafka_up
  fi
  smtp_up
  say "all services answer"
  print_env
}

down() {
  if use_docker; then
    compose down
    smtp_down
    return
  fi
  stop_pid Kafka "$RUN/kafka.pid"
  smtp_down
  stop_pid NATS "$RUN/nats.pid"
  stop_pid Redis "$RUN/redis.pid"
  pg_down
}

status() {
  local rc=0
  line() { if "$2" >/dev/null 2>&1; then printf '%-10s up    %s\n' "$1" "$3"; else printf '%-10s down  %s\n' "$1" "$3"; rc=1; fi; }
  line postgres pg_ready "127.0.0.1:$PG_PORT"
  line kafka kafka_ready "127.0.0.1:$KAFKA_PORT"
  line redis redis_ready "127.0.0.1:$REDIS_PORT"
  line nats nats_ready "127.0.0.1:$NATS_PORT"
  line smtp smtp_ready "127.0.0.1:$SMTP_PORT (UI/API http://127.0.0.1:$SMTP_WEB_PORT)"
  return $rc
}

restart_kafka() {
  stop_kafka
  start_kafka
}

stop_kafka() {
  if use_docker; then compose stop kafka; return; fi
  pid_alive "$RUN/kafka.pid" || die "the broker on port $KAFKA_PORT was not started by this checkout; stop it where it was started"
  stop_pid Kafka "$RUN/kafka.pid"
}

start_kafka() {
  mkdir -p "$LOGS" "$RUN"
  if use_docker; then compose up -d --wait kafka; return; fi
  kafka_up
}

case "${1:-}" in
  up) up ;;
  restart-kafka) restart_kafka ;;
  stop-kafka) stop_kafka ;;
  start-kafka) start_kafka ;;
  down) down ;;
  status) status ;;
  env) print_env ;;
  *) echo "usage: $0 up|down|status|env|restart-kafka|stop-kafka|start-kafka" >&2; exit 2 ;;
esac
