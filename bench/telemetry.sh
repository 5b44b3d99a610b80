#!/usr/bin/env bash
# The cost of collection, storage and anomaly detection for many workloads sampled every
# second, beside Debian's Prometheus scraping the same daemon's /metrics every second.
#
# One daemon runs N process workloads (sleep, no network). Its CPU time is measured over a
# window with metrics.interval 60s (the baseline: serving, reconciling, almost no sampling)
# and again, after a restart that re-attaches to the same workloads, with metrics.interval
# 1s; the difference is what sampling every instance each second costs. Then Prometheus
# scrapes /metrics (every instance's series) each second for the same window.
#
#   bench/telemetry.sh [WORKLOADS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-500}
window=${2:-60}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ward/target}
cargo build --release -q -p ward
ward="$CARGO_TARGET_DIR/release/ward"
work=$(mktemp -d /tmp/ward-telemetry-bench.XXXXXX)
daemon_pid=""
prometheus_pid=""
cleanup() {
  [ -n "$prometheus_pid" ] && kill "$prometheus_pid" 2>/dev/null || true
  if [ -n "$daemon_pid" ]; then
    "$ward" --data-dir "$work/data" ps -q -a 2>/dev/null | xargs -r -n 100 "$ward" --data-dir "$work/data" rm -f >/dev/null 2>&1 || true
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# CPU seconds (user + system) a process has used.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}
rss_mib() {
  awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"
}

start_daemon() {
  printf 'metrics: {interval: %s}\n' "$1" > "$work/config.yaml"
  "$ward" --data-dir "$work/data" serve --config "$work/config.yaml" >> "$work/serve.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 300); do
    "$ward" --data-dir "$work/data" ps -q >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "the daemon did not start; see $work/serve.log" >&2
  exit 1
}

# The daemon's CPU seconds over the window, per second of it (in cores).
measure_daemon() {
  local before after
  before=$(cpu_seconds "$daemon_pid")
  sleep "$window"
  after=$(cpu_seconds "$daemon_pid")
  awk -v a="$after" -v b="$before" -v w="$window" 'BEGIN { printf "%.4f", (a - b) / w }'
}

start_daemon 60s
{
  for i in $(seq "$count"); do
    printf -- '---\nname: w%d\ncommand: [sleep, "100000"]\nnetwork: none\n' "$i"
  done
} > "$work/workloads.yaml"
"$ward" --data-dir "$work/data" apply -f "$work/workloads.yaml" >/dev/null
for _ in $(seq 600); do
  running=$("$ward" --data-dir "$work/data" ps -q | wc -l)
  [ "$running" -ge "$count" ] && break
  sleep 1
done
echo "$running workloads running" >&2
sleep 5
baseline=$(measure_daemon)
baseline_rss=$(rss_mib "$daemon_pid")

kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
start_daemon 1s
sleep 20   # past the start: every instance re-attached and sampled a while
sampled=$(measure_daemon)
sampled_rss=$(rss_mib "$daemon_pid")
series=$(du -sb "$work/data/metrics" | cut -f1)

# Prometheus scraping the same daemon's /metrics every second.
address=$(cat "$work/data/ward.addr")
cat > "$work/prometheus.yml" <<EOF
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: ward
    authorization: {credentials_file: $work/data/admin.token}
    static_configs: [{targets: ['$address']}]
EOF
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus" \
  --web.listen-address="127.0.0.1:$port" >"$work/prometheus.log" 2>&1 &
prometheus_pid=$!
sleep 20
prometheus_before=$(cpu_seconds "$prometheus_pid")
daemon_before=$(cpu_seconds "$daemon_pid")
sleep "$window"
prometheus_cores=$(awk -v a="$(cpu_seconds "$prometheus_pid")" -v b="$prometheus_before" -v w="$window" 'BEGIN { printf "%.4f", (a - b) / w }')
serving_cores=$(awk -v a="$(cpu_seconds "$daemon_pid")" -v b="$daemon_before" -v w="$window" 'BEGIN { printf "%.4f", (a - b) / w }')
prometheus_rss=$(rss_mib "$prometheus_pid")
samples=$(curl -s "http://127.0.0.1:$port/api/v1/query?query=scrape_samples_scraped" | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')

awk -v n="$count" -v b="$baseline" -v s="$sampled" -v br="$baseline_rss" -v sr="$sampled_rss" \
    -v p="$prometheus_cores" -v pr="$prometheus_rss" -v d="$series" -v sv="$serving_cores" -v ps="$samples" 'BEGIN {
  printf "%d workloads, each instance sampled every second (CPU, memory, processes, disk read and write, anomaly score: 6 series each, stored and scored; network: none has no network series)\n", n
  printf "ward daemon, metrics every 60s: %.2f%% of a core, %d MiB resident\n", b * 100, br
  printf "ward daemon, metrics every 1s:  %.2f%% of a core, %d MiB resident\n", s * 100, sr
  printf "  collection + storage + detection: %.2f%% of a core\n", (s - b) * 100
  printf "  metric store on disk after the run: %.1f MiB\n", d / 1048576
  printf "prometheus 2.42 scraping /metrics every 1s (%d samples a scrape): %.2f%% of a core, %d MiB resident\n", ps, p * 100, pr
  printf "  ward daemon while being scraped: %.2f%% of a core\n", sv * 100
}'
