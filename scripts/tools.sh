#!/usr/bin/env bash
# Installs the build tools the project needs when they are missing (idempotent, fast when present):
# protoc (Debian protobuf-compiler), promtool (Debian prometheus), chromium and chromedriver (Debian, for the book's
# browser check), mdbook and mdbook-mermaid (cargo install --locked, cached in ~/.cargo/bin), and
# cargo-machete (unused dependencies, for `make lint`; cargo install --locked from crates.io, cached
# under ~/.cache/cruncan/cargo-machete).
set -euo pipefail
need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
# The Temporal SDK's proto build imports the well-known types (google/protobuf/*.proto).
[[ -f /usr/include/google/protobuf/duration.proto ]] || need_apt+=(libprotobuf-dev)
command -v promtool >/dev/null || need_apt+=(prometheus)  # promtool checks grafanastack/prometheus.yml
# The book's browser check renders every page in Debian's headless Chromium through chromedriver.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
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
# cargo-machete: pinned, installed once into its own folder (`make lint` calls it by that path).
MACHETE_VERSION=0.9.2
MACHETE_ROOT="${HOME}/.cache/cruncan/cargo-machete"
if ! "$MACHETE_ROOT/bin/cargo-machete" --version 2>/dev/null | grep -q "$MACHETE_VERSION"; then
  echo "tools: cargo install cargo-machete@$MACHETE_VERSION --locked (once)" >&2
  cargo install cargo-machete --version "$MACHETE_VERSION" --locked --quiet --root "$MACHETE_ROOT"
fi
