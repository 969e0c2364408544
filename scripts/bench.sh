#!/usr/bin/env bash
# `make bench`: release builds of one, two, the stub and the load generator, the local stack, then
# every scenario (bounded: a few seconds per step, 50,000 messages at most). Writes
# target/bench/report.md and report.csv and prints the table. BENCH_ARGS passes flags to
# `bench run` (e.g. BENCH_ARGS="--duration-secs 4 --drain-messages 10000").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/stack.sh up >/dev/null
eval "$(scripts/stack.sh env)"
echo "bench: building release binaries" >&2
cargo build --release --quiet -p one -p two -p stub -p flow-bench
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
# shellcheck disable=SC2086
"$TARGET/release/bench" run --bin-dir "$TARGET/release" --out "$ROOT/target/bench" ${BENCH_ARGS:-}
# The book's performance chapter includes the latest report.
cp "$ROOT/target/bench/report.md" "$ROOT/book/src/ops/bench-report.md"
