#!/usr/bin/env bash
# Sets up and starts Ward with its embedded defaults: installs what Debian lacks, builds the
# release binary and runs `ward serve` as root (sandboxes need root). Extra arguments go to
# `ward serve`, e.g. `scripts/start.sh --listen 127.0.0.1:7381`.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_root scripts/install-deps.sh
cargo build --release -p ward
echo "ward: the CLI is target/release/ward; put it on PATH, e.g. sudo ln -sf $PWD/target/release/ward /usr/local/bin/ward" >&2
exec_as_root() { if [ "$(id -u)" = 0 ]; then exec "$@"; else exec sudo "$@"; fi; }
exec_as_root target/release/ward serve "$@"
