#!/usr/bin/env bash
# Installs the build tools the project needs when they are missing (idempotent, fast when present):
# protoc (Debian protobuf-compiler), promtool (Debian prometheus), mdbook and mdbook-mermaid (cargo install --locked, cached in
# ~/.cargo/bin).
set -euo pipefail
need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v promtool >/dev/null || need_apt+=(prometheus)  # promtool checks grafanastack/prometheus.yml
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
  else
    echo "missing ${need_apt[*]}; run: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
fi
for tool in mdbook mdbook-mermaid; do
  if ! command -v "$tool" >/dev/null; then
    echo "tools: cargo install $tool --locked (once)" >&2
    cargo install "$tool" --locked --quiet
  fi
done
