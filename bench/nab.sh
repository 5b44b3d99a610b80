#!/usr/bin/env bash
# Scores `ward detect` on the Numenta Anomaly Benchmark with NAB's own method: every CSV
# under the data directory through `ward detect`, then the scorer's three profiles.
#
#   bench/nab.sh [NAB_DIR]     # NAB_DIR holds data/, windows.json and score.py
#                              # (default: ../shared/nab beside the repository)
set -euo pipefail
cd "$(dirname "$0")/.."
nab=$(realpath "${1:-../shared/nab}")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ward/target}
cargo build --release -q -p ward
ward="$CARGO_TARGET_DIR/release/ward"
results=$(mktemp -d /tmp/ward-nab.XXXXXX)
trap 'rm -rf "$results"' EXIT
(cd "$nab/data" && find . -name '*.csv' | sort) | while read -r file; do
  mkdir -p "$results/$(dirname "$file")"
  "$ward" detect --input "$nab/data/$file" --output "$results/$file"
done
python3 "$nab/score.py" --data "$nab/data" --windows "$nab/windows.json" --results "$results"
