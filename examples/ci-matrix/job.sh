#!/usr/bin/env bash
# One job of a CI matrix: build MODEL for one TARGET with its drift check, and write the
# reports the final job merges (edgepack report).
#
#   examples/ci-matrix/job.sh MODEL TARGET CALIB EVAL [REPORTS_DIR]
#
# Reports: REPORTS_DIR/<model>-<target>.{json,xml,html}. Exit code: build's (0 pass, 1 drift
# over budget or an op off a required NPU, 2-7 errors; see the README's exit codes).
set -uo pipefail

if [ "$#" -lt 4 ]; then
  echo "usage: $0 MODEL TARGET CALIB EVAL [REPORTS_DIR]" >&2
  exit 2
fi
model=$1
target=$2
calib=$3
eval=$4
reports=${5:-reports}
mkdir -p "$reports"
stem=$(basename "$model")
name="${stem%.*}-$target"

edgepack build "$model" --target "$target" --calib "$calib" --eval "$eval" \
  --out bundles --force --no-progress \
  --json "$reports/$name.json" --junit "$reports/$name.xml" --html "$reports/$name.html"
