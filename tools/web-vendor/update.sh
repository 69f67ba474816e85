#!/usr/bin/env bash
# Copies the third-party files the web demo serves from the npm packages
# pinned in package-lock.json into web/vendor/. The copies are committed:
# the daemon embeds web/ when it is compiled, so building natbridge never
# needs npm or the network. Run this after changing a version here, then
# commit web/vendor/ and say why in the message.
#
#   tools/web-vendor/update.sh
#
# Only the files the page really loads are copied (see web/js/segmenter.js):
# the loader, the SIMD build of the WebAssembly runtime (every browser that
# has WebRTC and canvas.captureStream has WebAssembly SIMD too), the graph
# and the landscape model (256x144 input, matching 16:9 cameras; the square
# general model costs ~1.8x the pixels for no gain here).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

npm ci --no-audit --no-fund

pkg=node_modules/@mediapipe/selfie_segmentation
out="$root/web/vendor/selfie_segmentation"
files=(
  selfie_segmentation.js
  selfie_segmentation_solution_simd_wasm_bin.js
  selfie_segmentation_solution_simd_wasm_bin.wasm
  selfie_segmentation.binarypb
  selfie_segmentation_landscape.tflite
)

# Everything but LICENSE is replaced, so a file dropped from the list goes.
mkdir -p "$out"
find "$out" -type f ! -name LICENSE -delete
for f in "${files[@]}"; do
  install -m 644 "$pkg/$f" "$out/$f"
done
# The package names its licence (Apache-2.0) in package.json but ships no
# licence text; the licence asks that the text goes with every copy.
# (Debian's copy of the text; the committed one stays where that is missing.)
if [[ -f /usr/share/common-licenses/Apache-2.0 ]]; then
  cp /usr/share/common-licenses/Apache-2.0 "$out/LICENSE"
fi
version="$(node -p "require('./$pkg/package.json').version")"
integrity="$(node -p "require('./package-lock.json').packages['$pkg'].integrity")"
cat >"$out/NOTICE" <<NOTICE
MediaPipe Selfie Segmentation (npm package @mediapipe/selfie_segmentation
$version, $integrity)
Copyright The MediaPipe Authors (Google LLC).
Licensed under the Apache License, Version 2.0: see LICENSE beside this file.

Files copied unchanged from the package by tools/web-vendor/update.sh:
$(cd "$out" && for f in "${files[@]}"; do printf '  %s  %s\n' "$(sha256sum "$f" | cut -c1-16)" "$f"; done)
NOTICE
ls -l "$out"
