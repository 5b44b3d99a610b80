#!/usr/bin/env bash
# Records Ward's own metrics of workloads with the shapes operators forecast (a steady leak,
# a garbage-collected sawtooth, a daily-like cycle shortened to minutes, a bursty service)
# for MINUTES minutes at 1 s, and writes each series as NAB-style CSV (timestamp,value) under
# OUT_DIR/data, for bench/forecast.sh OUT_DIR.
#
#   bench/record.sh OUT_DIR [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "$1")
minutes=${2:-30}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ward/target}
cargo build --release -q -p ward
ward="$CARGO_TARGET_DIR/release/ward"
work=$(mktemp -d /tmp/ward-record.XXXXXX)
chmod 711 "$work"
cleanup() {
  [ -n "${ward_pid:-}" ] && kill "$ward_pid" 2>/dev/null && wait "$ward_pid" 2>/dev/null
  rm -rf "$work"
  return 0
}
trap cleanup EXIT
printf 'metrics:\n  interval: 1s\n' >"$work/ward.yaml"
"$ward" serve --config "$work/ward.yaml" --data-dir "$work/data" --listen 127.0.0.1:0 \
  >/dev/null 2>"$work/ward.log" &
ward_pid=$!
for _ in $(seq 200); do [ -s "$work/data/ward.addr" ] && break; sleep 0.1; done
w() { "$ward" --data-dir "$work/data" "$@"; }
for spec in bench/workloads/*.py; do
  name=$(basename "$spec" .py)
  w run --name "$name" --memory 1GiB -- python3 -c "$(cat "$spec")" >/dev/null
done
sleep $((minutes * 60))
mkdir -p "$out/data"
for spec in bench/workloads/*.py; do
  name=$(basename "$spec" .py)
  for metric in memory cpu; do
    w metrics "$metric" --workload "$name" --since "${minutes}m" --step 1s --aggregation last \
      -o json | python3 -c '
import json, sys, datetime
series = json.load(sys.stdin)["series"][0]["points"]
print("timestamp,value")
for t, v in series:
    stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    print(f"{stamp:%Y-%m-%d %H:%M:%S},{v}")' >"$out/data/$name-$metric.csv"
  done
done
ls -l "$out/data"
