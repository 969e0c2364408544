#!/usr/bin/env bash
# `make bench`: release builds of one, two, the stub and the load generator, the local stack, then
# every scenario (bounded: a few seconds per step, 50,000 messages at most). Writes
# target/bench/report.md, report.csv and summary.json and prints the report; changes no tracked
# file (`make bench-publish` copies the report into the book). BENCH_ARGS passes flags to
# `bench run` (e.g. BENCH_ARGS="--quick", or "--drain-concurrency 64"); BENCH_OUT another folder
# under the checkout for the report (`make bench-durable` uses target/bench-durable).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/stack.sh up >/dev/null
eval "$(scripts/stack.sh env)"
echo "bench: building release binaries" >&2
cargo build --release --quiet -p one -p two -p stub -p flow-bench
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
# shellcheck disable=SC2086
"$TARGET/release/bench" run --bin-dir "$TARGET/release" --out "$ROOT/${BENCH_OUT:-target/bench}" ${BENCH_ARGS:-}
