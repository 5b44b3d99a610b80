#!/usr/bin/env bash
# `ward forecast` against predict_linear and Holt's method on the last 20 % of each NAB
# series (bench/forecast.py holds the method).
#
#   bench/forecast.sh [NAB_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
nab=$(realpath "${1:-../shared/nab}")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ward/target}
cargo build --release -q -p ward
python3 bench/forecast.py "$CARGO_TARGET_DIR/release/ward" "$nab/data"
