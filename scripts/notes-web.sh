#!/usr/bin/env bash
# Builds the notes page (reference/notes/web) into reference/notes/web/dist, which the notes
# gateway serves. TypeScript is pinned by web/package-lock.json and installed with `npm ci` into
# ~/.cache/cruncan/notes-web (once per lockfile); the build itself is tsc plus two copies.
# Idempotent: with nothing changed it only re-runs tsc (about a second).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
web="$root/reference/notes/web"
cache="${CRUNCAN_CACHE:-$HOME/.cache/cruncan}/notes-web"
mkdir -p "$cache"
# A fresh npm ci only when the lockfile changed (its hash names the install).
lock_hash=$(sha256sum "$web/package-lock.json" | cut -c1-16)
if [[ ! -x "$cache/$lock_hash/node_modules/.bin/tsc" ]]; then
  echo "notes-web: npm ci (typescript, pinned by package-lock.json)" >&2
  rm -rf "$cache/$lock_hash.tmp"
  mkdir -p "$cache/$lock_hash.tmp"
  cp "$web/package.json" "$web/package-lock.json" "$cache/$lock_hash.tmp/"
  (cd "$cache/$lock_hash.tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  rm -rf "$cache/$lock_hash"
  mv "$cache/$lock_hash.tmp" "$cache/$lock_hash"
fi
out="$web/dist"
mkdir -p "$out"
"$cache/$lock_hash/node_modules/.bin/tsc" -p "$web/tsconfig.json" --outDir "$out"
cp "$web/index.html" "$web/style.css" "$out/"
echo "notes-web: built $out" >&2
