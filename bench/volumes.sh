#!/usr/bin/env bash
# Whether a volume of millions of files slows the API: p99 of GET /api/v1/workloads (wrk,
# 16 connections, 10 s) while `ward apply --dry-run` runs in a loop under a volume quota
# (each apply checks the quota, which counts the project's volume bytes) and a measurement
# of the volumes runs, first with the volumes nearly empty (the reference), then with FILES
# files in one workload's volume.
# Needs root, wrk and python3 (scripts/install-deps.sh installs them).
# Usage: bench/volumes.sh [FILES]     (default 2000000; prints a Markdown report on stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-2000000}

. bench/daemon.sh
bench_cleanup() { [ -n "${churn_pid:-}" ] && kill "$churn_pid"; }

w quota set --volume-bytes 1T >/dev/null
w run --name big --network none -v bulk:/bulk -- sleep infinity >/dev/null
for i in $(seq 20); do
  w run --name "idle-$i" --network none -- sleep infinity >/dev/null
done
cat >"$work/churn.yaml" <<'SPEC'
name: churn
command: ["sleep", "infinity"]
network: none
volumes: ["scratch:/scratch"]
SPEC

p99_while_applying() { # → "p99-ms requests/s applies"
  (while true; do w apply --dry-run -f "$work/churn.yaml" >/dev/null; echo; done) >"$work/applies" &
  churn_pid=$!
  # Asking for the quota starts a measurement of the volumes, which runs during the load.
  w quota show >/dev/null
  wrk -t2 -c16 -d10s --latency -H "Authorization: Bearer $token" \
    "http://$address/api/v1/workloads" >"$work/wrk.txt"
  kill "$churn_pid"; wait "$churn_pid" 2>/dev/null || true
  churn_pid=
  python3 -c '
import re, sys
text = open(sys.argv[1]).read()
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", text).groups()
p99 = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
applies = len(open(sys.argv[2]).read().splitlines())
print(f"{p99:.2f} {rate:.0f} {applies}")' "$work/wrk.txt" "$work/applies"
}

read -r empty_p99 empty_rate empty_applies < <(p99_while_applying)

# The files, made on the host side of the volume: one workload's writable volume.
volume="$data/volumes/default/bulk"
python3 - "$volume" "$files" <<'PY'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
for start in range(0, count, 1000):
    directory = os.path.join(root, f"d{start // 1000:05d}")
    os.makedirs(directory, exist_ok=True)
    for n in range(start, min(start + 1000, count)):
        os.close(os.open(os.path.join(directory, str(n)), os.O_CREAT | os.O_WRONLY, 0o644))
PY
sync
walk_start=$(date +%s.%N)
find "$volume" -type f | wc -l >"$work/count"
walk_seconds=$(python3 -c "import time; print(f'{time.time() - $walk_start:.2f}')")

read -r full_p99 full_rate full_applies < <(p99_while_applying)

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
cat <<REPORT
## Run of $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(uname -r))

### \`GET /api/v1/workloads\` while \`ward apply --dry-run\` loops under a volume quota (wrk, 16 connections, 10 s)

| volumes hold | p99 (ms) | requests/s | applies in 10 s | p99 ratio to empty |
| --- | --- | --- | --- | --- |
| nearly nothing (reference) | $empty_p99 | $empty_rate | $empty_applies | 1.00 |
| $(cat "$work/count") files in one workload's volume | $full_p99 | $full_rate | $full_applies | $(ratio "$full_p99" "$empty_p99") |

One walk of that volume (\`find\`, warm cache) takes ${walk_seconds} s; Ward measures volumes on a
thread of its own and every apply reads the last figure. Goal: p99 ratio ≤ 2.
REPORT
