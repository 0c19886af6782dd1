#!/usr/bin/env bash
# Builds the native modules of binding.gyp (build/Release/weft_native.node: checksums;
# weft_flock.node: the data dir's lock; weft_io.node: pool writes in spans; weft_loop.node: loop
# device sizes) against the headers of the Node that runs it, so nothing is downloaded. Skips the build when every module is newer than every source.
set -euo pipefail
cd "$(dirname "$0")/../../.."
up_to_date() {
  local module source
  for module in build/Release/weft_native.node build/Release/weft_flock.node build/Release/weft_io.node build/Release/weft_loop.node; do
    [ -f "$module" ] || return 1
    for source in binding.gyp fabric/store/native/*.c adapters/csi/attach/native/*.c; do
      [ "$module" -nt "$source" ] || return 1
    done
  done
}
if up_to_date; then
  exit 0
fi
prefix=$(node -p "require('path').resolve(process.execPath, '..', '..')")
if [ ! -f "$prefix/include/node/node_api.h" ]; then
  echo "build: Node headers not found in $prefix/include/node (install the Node.js development headers)" >&2
  exit 1
fi
exec node_modules/.bin/node-gyp rebuild --nodedir="$prefix" --loglevel=warn
