#!/usr/bin/env bash
# Installs what Ward needs on a Debian machine: OCI runtimes, networking tools, and the
# tools the benchmarks use. Run as root (or through sudo).
set -euo pipefail
packages=(crun runc iproute2 iptables pkg-config python3 python3-venv curl wrk hyperfine busybox-static docker-registry skopeo umoci tmux)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# schemathesis (PyPI), which fuzzes the API in the tests, in a virtual environment of its own.
venv="${WARD_TOOLS_VENV:-$HOME/.cache/ward/venv}"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi
