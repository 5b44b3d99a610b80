#!/usr/bin/env bash
# `ward detect` throughput on one core: samples scored per second over a long series made
# from the NAB files (their values one after another, five-minute timestamps), against
# `wc -l` and `cut` reading the same file.
#
#   bench/detect.sh [NAB_DIR] [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
nab=$(realpath "${1:-../shared/nab}")
rows=${2:-5000000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ward/target}
cargo build --release -q -p ward
ward="$CARGO_TARGET_DIR/release/ward"
work=$(mktemp -d /tmp/ward-detect-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 - "$nab/data" "$rows" "$work/series.csv" <<'PY'
import csv, datetime, pathlib, sys
data, rows, target = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
values = [row["value"] for path in sorted(data.rglob("*.csv")) for row in csv.DictReader(open(path))]
start = datetime.datetime(2026, 1, 1)
step = datetime.timedelta(minutes=5)
with open(target, "w") as out:
    out.write("timestamp,value\n")
    for i in range(rows):
        out.write(f"{(start + i * step):%Y-%m-%d %H:%M:%S},{values[i % len(values)]}\n")
PY
cat "$work/series.csv" >/dev/null
hyperfine --warmup 1 --runs 5 --export-json "$work/times.json" \
  "taskset -c 0 $ward detect --input $work/series.csv --output /dev/null" \
  "taskset -c 0 cut -d, -f2 $work/series.csv" \
  "taskset -c 0 wc -l $work/series.csv" >&2
python3 - "$work/times.json" "$rows" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]; rows = int(sys.argv[2])
ward, cut, wc = (r["median"] for r in results)
print(f"ward detect: {rows / ward / 1e6:.2f} M samples/s on one core ({ward:.2f} s for {rows:,} rows)")
print(f"cut -d, -f2: {rows / cut / 1e6:.2f} M rows/s; wc -l: {rows / wc / 1e6:.2f} M rows/s")
PY
