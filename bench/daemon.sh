# Sourced by Ward's bench and stress scripts: builds the release binary and starts a daemon
# on a fresh data dir under a temporary work dir, removed on exit with every workload.
# Sets: ward (the binary), work, data, daemon_pid, address, token; defines w (ward on that
# daemon) and start_daemon DATA_DIR [SERVE FLAGS…] (prints the daemon's pid).
cargo build --release -p ward >&2
ward="$(realpath "${CARGO_TARGET_DIR:-target}")/release/ward"
work=$(mktemp -d /tmp/ward-bench.XXXXXX)
# Passed through from the bundles' user namespace by runc, which reaches their roots by full path.
chmod 711 "$work"
data="$work/data"
w() { "$ward" --data-dir "$data" "$@"; }

start_daemon() { # DATA_DIR [SERVE FLAGS…] → pid, once the daemon has written its address
  local dir=$1
  shift
  # Its stdout is not the caller's: a command substitution would wait for the daemon's end.
  "$ward" serve --data-dir "$dir" --listen 127.0.0.1:0 "$@" >/dev/null 2>>"$work/daemon.log" &
  local pid=$!
  for _ in $(seq 100); do [ -s "$dir/ward.addr" ] && break; sleep 0.1; done
  echo "$pid"
}

cleanup() {
  bench_cleanup 2>/dev/null || true
  w ps -a -o json 2>/dev/null | python3 -c 'import json,sys; print("\n".join(w["name"] for w in json.load(sys.stdin)))' \
    | xargs -r -n 50 "$ward" --data-dir "$data" rm -f >/dev/null 2>&1 || true
  [ -n "${daemon_pid:-}" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

daemon_pid=$(start_daemon "$data")
address=$(cat "$data/ward.addr")
token=$(cat "$data/admin.token")
