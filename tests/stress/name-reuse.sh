#!/usr/bin/env bash
# A removed workload's name is free at once: CYCLES times (default 2000) `ward rm -f x`
# followed straight away by `ward run --name x`, against one daemon; every start must
# succeed and reach `running`. Not part of the default test run (it takes minutes).
# Needs root (scripts/install-deps.sh installs the rest).
# Usage: tests/stress/name-reuse.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/../.."
cycles=${1:-2000}

. bench/daemon.sh

failures=0
w run --name x --network none -- sleep infinity >/dev/null
for cycle in $(seq "$cycles"); do
  w rm -f x >/dev/null
  if ! out=$(w run --name x --network none -- sleep infinity 2>&1); then
    failures=$((failures + 1))
    echo "cycle $cycle: ward run failed: $out" >&2
    w rm -f x >/dev/null 2>&1 || true
    w run --name x --network none -- sleep infinity >/dev/null
  fi
done
phase=$(w ps -a -o json | python3 -c 'import json,sys; print([w["status"]["state"] for w in json.load(sys.stdin) if w["name"] == "x"])')
echo "$cycles cycles of rm -f and run: $failures failed starts; x ends $phase"
[ "$failures" -eq 0 ]
