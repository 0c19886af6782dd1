#!/usr/bin/env bash
# Builds the native checksum module (build/Release/weft_native.node) against the headers of the
# Node that runs it, so nothing is downloaded. Skips the build when the module is up to date.
set -euo pipefail
cd "$(dirname "$0")/../../.."
module=build/Release/weft_native.node
if [ -f "$module" ] && [ "$module" -nt fabric/store/native/crc32c.c ] && [ "$module" -nt binding.gyp ]; then
  exit 0
fi
prefix=$(node -p "require('path').resolve(process.execPath, '..', '..')")
if [ ! -f "$prefix/include/node/node_api.h" ]; then
  echo "build: Node headers not found in $prefix/include/node (install the Node.js development headers)" >&2
  exit 1
fi
exec node_modules/.bin/node-gyp rebuild --nodedir="$prefix" --loglevel=warn
