#!/usr/bin/env bash
# `make bench`: every benchmark in bench/ prints its figures and ratios.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for script in bench/*.py; do
  [ -e "$script" ] || continue
  echo "=== $script"
  .venv/bin/python "$script" || status=1
done
exit $status
