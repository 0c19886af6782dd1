#!/usr/bin/env bash
# Compiles the TypeScript into dist/ unless dist/ is newer than every source, so that `npm start`
# after `npm ci` (whose install script compiles) starts at once. --force compiles anyway (npm run build).
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=dist/.compiled
if [ "${1:-}" != --force ] && [ -f "$stamp" ] &&
  [ -z "$(find fabric adapters exporters dashboards test tsconfig.json -newer "$stamp" \( -name '*.ts' -o -name tsconfig.json \) -print -quit 2>/dev/null)" ]; then
  exit 0
fi
if [ ! -x node_modules/.bin/tsc ]; then
  # An install without dev dependencies (the image's `npm install -g`): dist/ was built before.
  [ -f dist/fabric/weftd.js ] && exit 0
  echo "compile: TypeScript is not installed and dist/ is missing: run npm ci (with dev dependencies)" >&2
  exit 1
fi
# The stamp's time is taken before compiling: a source saved during the build counts as newer.
mkdir -p dist
touch "$stamp.next"
node_modules/.bin/tsc -p tsconfig.json
mv "$stamp.next" "$stamp"
