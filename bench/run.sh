#!/usr/bin/env bash
# Ward's benchmarks, each reported as a ratio against a reference measured in the same run:
#   1. `ward run` of a true-like workload until it runs, vs bare `crun run` and `runc run`
#      of the same OCI bundle (100 runs each; p50 and p95);
#   2. 500 idle workloads supervised: daemon RSS, monitor RSS, idle daemon CPU;
#   3. GET /api/v1/workloads/{name} under 64 connections (wrk), vs GET /healthz.
# Needs root, crun, runc, hyperfine, wrk and python3 (scripts/install-deps.sh installs them).
# Usage: bench/run.sh [--quick]     (prints a Markdown report on stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=100
idle_workloads=500
if [ "${1:-}" = "--quick" ]; then runs=20; idle_workloads=50; fi

. bench/daemon.sh

percentiles() { # hyperfine JSON → "p50 p95" in milliseconds
  python3 -c '
import json, sys
times = sorted(json.load(open(sys.argv[1]))["results"][0]["times"])
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
print(f"{pick(0.50):.2f} {pick(0.95):.2f}")' "$1"
}

# 1. Start latency. The bare runtimes run the bundle Ward generated for the same workload:
# crun the one Ward gives crun (its seccomp filter precompiled to BPF), runc and crun again
# the one Ward gives runc (the OCI seccomp profile, compiled by libseccomp at each start),
# taken from a second daemon configured for runc.
bundle_of() { # DATA_DIR DEST: the bundle of a fresh `true` workload
  "$ward" --data-dir "$1" run --name bundle-source --network none --restart never -- true >/dev/null
  # config.json and the instance's own root (named relative to the bundle, owned by the
  # workload's user namespace, which the bare runtimes keep: the same user-namespace
  # settings); the rest of the run directory changes while the monitor cleans up after `true`.
  mkdir -p "$2"
  cp "$1/run/instances/default/bundle-source/0/config.json" "$2/"
  cp -a "$1/run/instances/default/bundle-source/0/root" "$2/"
  "$ward" --data-dir "$1" rm -f bundle-source >/dev/null
  python3 - "$2/config.json" <<'PY'
import json, sys
path = sys.argv[1]
config = json.load(open(path))
config["linux"]["cgroupsPath"] = "/ward-bench/bare"
# Ward's instance joins the network namespace its monitor made ahead of it; a bare runtime
# makes one as it starts.
for namespace in config["linux"]["namespaces"]:
    namespace.pop("path", None)
json.dump(config, open(path, "w"))
PY
}
bundle_of "$data" "$work/bundle"
echo "oci_runtime: $(command -v runc || echo /usr/sbin/runc)" >"$work/runc.yaml"
runc_daemon_pid=$(start_daemon "$work/runc-data" --config "$work/runc.yaml")
bundle_of "$work/runc-data" "$work/bundle-profile"
kill "$runc_daemon_pid"; wait "$runc_daemon_pid" 2>/dev/null || true
# Every measured start comes after the same idle pause. Moving a process into a cgroup (which
# every runtime does for every container) first waits for an RCU grace period of the kernel,
# 5-20 ms here, unless another move happened within about one grace period before; starts
# run back to back, as hyperfine does without a pause, each skip that wait thanks to the one
# before. A start after a pause is what `ward run` meets, so both sides get the pause; the
# back-to-back rows show the runtimes inside that window for reference.
pause=0.1
hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/ward.json" \
  --prepare "sh -c '$ward --data-dir $data rm -f bench >/dev/null 2>&1 || true; sleep $pause'" \
  "$ward --data-dir $data run --name bench --network none --restart never -- true" >&2
w rm -f bench >/dev/null
unshare -m sh -c "mount --make-rprivate / && umount /sys/fs/cgroup/unified 2>/dev/null; \
  hyperfine -N --warmup 5 --runs $runs --prepare 'sleep $pause' --export-json $work/crun.json \
  'crun --root $work/crun-state run --bundle $work/bundle bare-crun' && \
  hyperfine -N --warmup 5 --runs $runs --prepare 'sleep $pause' --export-json $work/crun-profile.json \
  'crun --root $work/crun-state run --bundle $work/bundle-profile bare-crun' && \
  hyperfine -N --warmup 5 --runs $runs --export-json $work/crun-rapid.json \
  'crun --root $work/crun-state run --bundle $work/bundle bare-crun'" >&2
hyperfine -N --warmup 5 --runs "$runs" --prepare "sleep $pause" --export-json "$work/runc.json" \
  "runc --root $work/runc-state run --bundle $work/bundle-profile bare-runc" >&2
hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/runc-rapid.json" \
  "runc --root $work/runc-state run --bundle $work/bundle-profile bare-runc" >&2
read -r ward_p50 ward_p95 < <(percentiles "$work/ward.json")
read -r crun_p50 crun_p95 < <(percentiles "$work/crun.json")
read -r crun_profile_p50 crun_profile_p95 < <(percentiles "$work/crun-profile.json")
read -r crun_rapid_p50 crun_rapid_p95 < <(percentiles "$work/crun-rapid.json")
read -r runc_rapid_p50 runc_rapid_p95 < <(percentiles "$work/runc-rapid.json")
read -r runc_p50 runc_p95 < <(percentiles "$work/runc.json")

# 2. Idle workloads.
python3 - "$work/idle.yaml" "$idle_workloads" <<'PY'
import sys
path, count = sys.argv[1], int(sys.argv[2])
with open(path, "w") as out:
    for index in range(count):
        out.write(f"---\nname: idle-{index}\nnetwork: none\ncommand: [sleep, infinity]\n")
PY
apply_started=$(date +%s.%N)
w apply -f "$work/idle.yaml" >/dev/null
for _ in $(seq 600); do
  running=$(w ps -o json | python3 -c 'import json,sys; print(sum(1 for d in json.load(sys.stdin) if d["status"]["state"] == "running"))')
  [ "$running" -ge "$idle_workloads" ] && break
  sleep 0.5
done
apply_seconds=$(python3 -c "import time; print(f'{time.time() - $apply_started:.1f}')")
sleep 5   # let start-up work settle before measuring idle use
ticks() { awk '{print $14 + $15}' "/proc/$daemon_pid/stat"; }
clock_ticks=$(getconf CLK_TCK)
cpu_before=$(ticks); sleep 30; cpu_after=$(ticks)
idle_cpu_percent=$(python3 -c "print(f'{($cpu_after - $cpu_before) / $clock_ticks / 30 * 100:.2f}')")
daemon_rss_mb=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$daemon_pid/status")
monitor_rss=$(for pid in $(pgrep -f "ward-monitor monitor $data/"); do awk '/VmRSS/ {print $2}' "/proc/$pid/status"; done \
  | python3 -c 'import sys; v=[int(x) for x in sys.stdin.read().split()]; print(f"{len(v)} {sum(v)/len(v)/1024:.2f} {max(v)/1024:.2f}")')
read -r monitor_count monitor_rss_mean monitor_rss_max <<<"$monitor_rss"

# 3. API throughput, with the idle workloads still there.
wrk_report() { # → "requests/s p99-ms"
  wrk -t2 -c64 -d10s --latency -H "Authorization: Bearer $token" "$1" | python3 -c '
import re, sys
text = sys.stdin.read()
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", text).groups()
p99 = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
print(f"{rate:.0f} {p99:.2f}")'
}
read -r get_rate get_p99 < <(wrk_report "http://$address/api/v1/workloads/idle-0")
read -r healthz_rate healthz_p99 < <(wrk_report "http://$address/healthz")

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
cat <<REPORT
## Run of $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(uname -r))

### Start latency: \`ward run\` of a true-like workload until it runs ($runs runs)

Each start after a ${pause} s pause (see "Reading the numbers"), except the back-to-back rows.

| what | p50 (ms) | p95 (ms) | p50 ratio to ward |
| --- | --- | --- | --- |
| \`ward run --network none -- true\` | $ward_p50 | $ward_p95 | 1.00 |
| bare \`crun run\` (Ward's crun bundle: BPF filter, cgroup v2 hidden) | $crun_p50 | $crun_p95 | $(ratio "$crun_p50" "$ward_p50") |
| bare \`crun run\` (Ward's runc bundle: OCI seccomp profile, cgroup v2 hidden) | $crun_profile_p50 | $crun_profile_p95 | $(ratio "$crun_profile_p50" "$ward_p50") |
| bare \`runc run\` (Ward's runc bundle) | $runc_p50 | $runc_p95 | $(ratio "$runc_p50" "$ward_p50") |
| bare \`crun run\`, back to back (Ward's crun bundle) | $crun_rapid_p50 | $crun_rapid_p95 | $(ratio "$crun_rapid_p50" "$ward_p50") |
| bare \`runc run\`, back to back (Ward's runc bundle) | $runc_rapid_p50 | $runc_rapid_p95 | $(ratio "$runc_rapid_p50" "$ward_p50") |

ward / crun p50: $(ratio "$ward_p50" "$crun_p50")× against crun on the same bundle, $(ratio "$ward_p50" "$crun_profile_p50")× against crun compiling the OCI profile (goal ≤ 2×); $(ratio "$ward_p50" "$crun_rapid_p50")× against crun back to back; ward p50 goal ≤ 15 ms.

### $idle_workloads idle workloads (\`sleep infinity\`, network none)

| what | value | goal |
| --- | --- | --- |
| time to apply and reach running | ${apply_seconds} s | — |
| daemon RSS | ${daemon_rss_mb} MB | ≤ 150 MB |
| monitor RSS, mean / max over $monitor_count monitors | ${monitor_rss_mean} / ${monitor_rss_max} MB | ≤ 2 MB each |
| idle daemon CPU over 30 s | ${idle_cpu_percent} % of a core | ≤ 1 % |

### API: 64 connections, 2 threads, 10 s (wrk), $idle_workloads workloads present

| endpoint | requests/s | p99 (ms) | throughput ratio to /healthz |
| --- | --- | --- | --- |
| \`GET /api/v1/workloads/idle-0\` | $get_rate | $get_p99 | $(ratio "$get_rate" "$healthz_rate") |
| \`GET /healthz\` (reference) | $healthz_rate | $healthz_p99 | 1.00 |

Goal for GET workload: ≥ 20,000 requests/s with p99 ≤ 10 ms.
REPORT
