#!/usr/bin/env bash
# The final job of a CI matrix: merge every job's reports into one table, an HTML index, one
# JUnit file and (on GitHub Actions) the job summary; exit 1 if any verdict fails.
#
#   examples/ci-matrix/summarize.sh [REPORTS_DIR]
set -uo pipefail

reports=${1:-reports}
edgepack report "$reports" --html "$reports/index.html" --junit "$reports/all.xml" \
  --markdown "$reports/summary.md"
status=$?
if [ -n "${GITHUB_STEP_SUMMARY:-}" ] && [ -f "$reports/summary.md" ]; then
  cat "$reports/summary.md" >> "$GITHUB_STEP_SUMMARY"
fi
exit "$status"
