#!/usr/bin/env bash
# The reference systems' benchmarks (each bounded, loopback only, on fresh databases and streams),
# run after the flow's in `make bench`: email (accept and send beside lettre alone), saga
# (orchestrated and choreographed sagas/s), services (each resilience layer under a flaky, slow,
# down and hung dependency), temporal (the same saga by hand and on Temporal), notes (500
# WebSockets at 100 events/s beside NATS core fan-out). Writes
# target/bench/reference.md and reference.jsonl; changes no tracked file.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"
scripts/stack.sh up >/dev/null
scripts/temporal.sh up >/dev/null
eval "$(scripts/stack.sh env)"
eval "$(scripts/temporal.sh env)"
echo "bench: building the reference benchmarks (release)" >&2
cargo build --release --quiet -p email --example email_bench -p saga --example saga_bench \
  -p services --example services_bench -p temporal-ref --example saga_compare \
  -p notes --example notes_bench
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
run() { # package example args... (the binaries built above: `cargo run -p` one at a time would
  # resolve features per package and rebuild dependencies)
  local pkg=$1 ex=$2; shift 2
  echo "bench: $pkg ($ex)" >&2
  "$TARGET/release/examples/$ex" "$@" 2>"$OUT/logs/$ex.log"
}
mkdir -p "$OUT/logs"
: >"$OUT/reference.jsonl"
run email email_bench | tail -n 1 >>"$OUT/reference.jsonl"
run saga saga_bench | tail -n 1 >>"$OUT/reference.jsonl"
run services services_bench | tail -n 1 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"bench": "services", "layers": d}))' >>"$OUT/reference.jsonl"
run temporal-ref saga_compare --sagas 30 >"$OUT/saga-compare.md"
run notes notes_bench >"$OUT/notes.md"
python3 - "$OUT" <<'PY'
import json, sys, datetime, pathlib
out = pathlib.Path(sys.argv[1])
rows = [json.loads(l) for l in (out / "reference.jsonl").read_text().splitlines() if l.strip()]
titles = {"email": "Email service (`cargo run --release --example email_bench`)",
          "saga": "Order saga (`cargo run --release --example saga_bench`)",
          "services": "Resilience layers (`cargo run --release --example services_bench`)"}
md = [f"### Reference systems\n\nRun {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by `make bench` "
      "(`scripts/bench-reference.sh`), on the same machine, after the flow's scenarios.\n"]
for r in rows:
    name = r.pop("bench")
    md.append(f"#### {titles.get(name, name)}\n")
    if name == "services":
        # {setup: {layer: {figure: value}}} -> one row per setup and layer
        layers = r["layers"]
        cols = sorted({k for v in layers.values() for f in v.values() for k in f})
        md.append("| dependency | layer | " + " | ".join(cols) + " |")
        md.append("|---|---|" + "---:|" * len(cols))
        for setup, by_layer in layers.items():
            for layer, f in by_layer.items():
                md.append(f"| {setup} | {layer} | " + " | ".join(str(f.get(c, "")) for c in cols) + " |")
    else:
        def flat(d, prefix=""):
            for k, v in d.items():
                if isinstance(v, dict):
                    yield from flat(v, f"{prefix}{k}.")
                else:
                    yield f"{prefix}{k}", v
        md.append("| figure | value |\n|---|---:|")
        for k, v in flat(r):
            md.append(f"| `{k}` | {v} |")
    md.append("")
md.append("#### The same saga by hand and on Temporal (`cargo run --release --example saga_compare -- --sagas 30`)\n")
md.append((out / "saga-compare.md").read_text().strip() + "\n")
md.append("#### Notes gateway fan-out (`cargo run --release --example notes_bench`)\n")
notes = (out / "notes.md").read_text().strip().splitlines()
md.append("\n".join(l.replace("# ", "##### ", 1) if l.startswith("#") else l for l in notes) + "\n")
(out / "reference.md").write_text("\n".join(md))
print("\n".join(md))
PY
