#!/usr/bin/env bash
# `ward forecast` against predict_linear and Holt's method on the last 20 % of each NAB
# series and of each series Ward recorded of its own workloads (bench/data/ward-metrics,
# made by bench/record.sh); bench/forecast.py holds the method.
#
#   bench/forecast.sh [NAB_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
nab=$(realpath "${1:-../shared/nab}")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ward/target}
cargo build --release -q -p ward
echo "NAB:"
python3 bench/forecast.py "$CARGO_TARGET_DIR/release/ward" "$nab/data"
echo "Ward's own metrics:"
python3 bench/forecast.py "$CARGO_TARGET_DIR/release/ward" bench/data/ward-metrics