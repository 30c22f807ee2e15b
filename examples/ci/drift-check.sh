#!/usr/bin/env bash
# Build the digits example for every backend (--target all: tflite, onnx, coreml) and gate on
# drift, for any CI system.
#
#   examples/ci/drift-check.sh [REPORTS_DIR]
#
# Run from the repository root with edgepack installed. The thresholds come from
# examples/ci/edgepack.toml (copied into the work folder, where edgepack finds it), so the
# commands stay short. Every bundle is checked even when one fails; the script exits with
# the first non-zero code (1: drift over budget, 2-6: configuration, input or bundle errors,
# see the README's exit codes). Reports: REPORTS_DIR/<target>.{html,json,xml}.
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
reports=$(mkdir -p "${1:-reports}" && cd "${1:-reports}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$repo/examples/ci/edgepack.toml" "$work/edgepack.toml"
cd "$work" || exit 70

model="$repo/examples/digits/digits.keras"
edgepack build "$model" --target all \
  --calib "$repo/calibration/digits/calib" --eval "$repo/calibration/digits/eval" --out bundles
status=$?
if [ "$status" -gt 1 ]; then exit "$status"; fi  # no bundle to check

for bundle in bundles/*/; do
  target=$(basename "$bundle")
  # the model lies outside this work folder (the project root): bundles record its name and
  # sha256 only, so the check is told where it is
  edgepack check "$bundle" --data "$repo/calibration/digits/eval" --model "$model" \
    --layers --no-progress --html "$reports/$target.html" --json "$reports/$target.json" \
    --junit "$reports/$target.xml"
  code=$?
  echo "drift check $target: exit $code"
  if [ "$status" -eq 0 ]; then status=$code; fi
done
exit "$status"
