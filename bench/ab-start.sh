#!/usr/bin/env bash
# Start latency of two builds of Ward on this machine, in alternating rounds: `ward run` of a
# true-like workload until it runs, each build against a daemon of its own, each start after
# the same 0.1 s pause as bench/run.sh. For telling a change from the machine's own drift.
# Usage: bench/ab-start.sh OLD_DIR NEW_DIR [RUNS_PER_ROUND]   (each DIR holds ward and wardd)
# Needs root and hyperfine.
set -euo pipefail
old_dir=$(realpath "$1"); new_dir=$(realpath "$2"); runs=${3:-60}
work=$(mktemp -d /tmp/ward-ab.XXXXXX)
chmod 711 "$work"
pids=()
cleanup() {
  for side in old new; do
    dir=$old_dir; [ "$side" = new ] && dir=$new_dir
    "$dir/ward" --data-dir "$work/$side" rm -f bench >/dev/null 2>&1 || true
  done
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null && wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for side in old new; do
  dir=$old_dir; [ "$side" = new ] && dir=$new_dir
  "$dir/ward" serve --data-dir "$work/$side" --listen 127.0.0.1:0 >/dev/null 2>>"$work/daemon.log" &
  pids+=($!)
done
for _ in $(seq 100); do [ -s "$work/old/ward.addr" ] && [ -s "$work/new/ward.addr" ] && break; sleep 0.1; done
for round in 1 2 3; do
  for side in old new; do
    dir=$old_dir; [ "$side" = new ] && dir=$new_dir
    hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/$side-$round.json" \
      --prepare "sh -c '$dir/ward --data-dir $work/$side rm -f bench >/dev/null 2>&1 || true; sleep 0.1'" \
      "$dir/ward --data-dir $work/$side run --name bench --network none --restart never -- true" >&2
  done
done
python3 - "$work" <<'PY'
import glob, json, sys
work = sys.argv[1]
p50 = {}
print("| build | starts | p50 (ms) | p95 (ms) |\n| --- | --- | --- | --- |")
for side in ["old", "new"]:
    times = sorted(t for f in glob.glob(f"{work}/{side}-*.json") for t in json.load(open(f))["results"][0]["times"])
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
    p50[side] = pick(0.5)
    print(f"| {side} | {len(times)} | {pick(0.5):.2f} | {pick(0.95):.2f} |")
print(f"\nnew / old p50: {p50['new'] / p50['old']:.2f}x")
PY
