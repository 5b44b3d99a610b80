#!/usr/bin/env bash
# Ward's image benchmarks, each reported as a ratio against a reference measured in the same run:
#   1. `ward image pull` of a four-layer image (a busybox root, a tree of thousands of small
#      files, a few big files, a small config change; gzip, built here with umoci) from a
#      local registry, downloading, verifying and unpacking every layer, vs `skopeo copy` to
#      an OCI layout followed by `umoci unpack` (p50 and mean);
#   2. `ward run --image` of that image with /bin/true until it runs, vs bare `crun run` and
#      `runc run` of the bundles Ward generated for it, on an overlay of the very layer
#      directories Ward unpacked (fresh upper directory for every run);
#   3. `podman run --rm --network none` of the same image, where podman is installed (or
#      installed from Debian with --with-podman): overlay storage with runc, overlay storage
#      with crun (cgroup v2 hidden), vfs storage with runc.
# Needs root, overlayfs, crun, runc, skopeo, umoci, docker-registry, busybox-static, hyperfine and
# python3 (scripts/install-deps.sh installs them); podman is optional.
# Everything lives in a temporary directory (registry, data dirs, podman storage) that is
# unmounted and removed on exit; nothing listens anywhere but 127.0.0.1.
# Usage: bench/images.sh [--quick] [--with-podman]     (prints a Markdown report on stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
pull_runs=10
start_runs=100
podman_runs=30
podman_vfs_runs=10
with_podman=0
for argument in "$@"; do
  case "$argument" in
    --quick) pull_runs=3; start_runs=20; podman_runs=10; podman_vfs_runs=3 ;;
    --with-podman) with_podman=1 ;;
    *) echo "usage: $0 [--quick] [--with-podman]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench/images.sh must run as root" >&2; exit 1; }
for tool in crun runc skopeo umoci docker-registry hyperfine python3 unshare; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
busybox=/bin/busybox
case "$(ldd "$busybox" 2>&1 || true)" in
  *"not a dynamic executable"*) ;;
  *) echo "$busybox is not statically linked: apt-get install busybox-static" >&2; exit 1 ;;
esac

ward_version="commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[ -z "$(git status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ] || ward_version+=" with uncommitted changes"
echo "building ward (release)" >&2
cargo build --release -p ward >&2
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
ward="$target_dir/release/ward"
[ -x "$ward" ] || { echo "no ward binary at $ward" >&2; exit 1; }

load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d /tmp/ward-images-bench.XXXXXX)
fs_type=$(findmnt -n -o FSTYPE -T "$work")
fs_source=$(findmnt -n -o SOURCE -T "$work")
fs_info="$fs_type ($fs_source)"
if [ "$fs_type" = ext4 ] && ! ls -d /proc/fs/jbd2/"$(basename "$fs_source")"-* >/dev/null 2>&1; then
  fs_info="ext4 without a journal ($fs_source)"
fi
data="$work/data"
runc_data="$work/runc-data"
podman_cgroup=/ward-bench/images-podman
cleanup() {
  local status=$?
  set +e
  if [ "$status" != 0 ] && [ -s "$work/daemon.log" ]; then
    echo "failed; the end of the daemons' log:" >&2
    tail -n 20 "$work/daemon.log" >&2
  fi
  for dir in "$data" "$runc_data"; do
    [ -d "$dir" ] && "$ward" --data-dir "$dir" rm -f bench bench-process bundle-source >/dev/null 2>&1
  done
  for pid in "${daemon_pid:-}" "${runc_daemon_pid:-}" "${registry_pid:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  # Podman's overlay driver mounts its graph root on itself, and a failed run may leave
  # container mounts behind: unmount everything under the work directory, deepest first.
  findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r -n 1 umount -l 2>/dev/null
  # The cgroups of the bare runtimes and of podman (crun and runc delete their own leaves).
  for hierarchy in /sys/fs/cgroup/*/ward-bench /sys/fs/cgroup/ward-bench; do
    for leaf in images-crun images-runc images-podman; do
      [ -d "$hierarchy/$leaf" ] && find "$hierarchy/$leaf" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    rmdir "$hierarchy" 2>/dev/null
  done
  # A daemon leaves /dev/shm/ward-<its namespace> (secret files) and per-project cgroups
  # ward/ward-<its namespace>.<project> behind when it stops; the namespace is the prefix of
  # its container ids. Remove those of our two daemons (empty directories only).
  for monitor_config in "$work"/bare-*/monitor.json; do
    [ -f "$monitor_config" ] || continue
    namespace=$(sed -n 's/.*"container_id":"\(ward-[0-9a-f]*\)\..*/\1/p' "$monitor_config")
    [ -n "$namespace" ] || continue
    rmdir "/dev/shm/$namespace" 2>/dev/null
    for project_cgroup in /sys/fs/cgroup/*/ward/"$namespace".* /sys/fs/cgroup/ward/"$namespace".*; do
      [ -d "$project_cgroup" ] && find "$project_cgroup" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
  done
  rm -rf "$work"
}
trap cleanup EXIT

now_us() { echo "${EPOCHREALTIME/./}"; }
wait_until() { # SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s until it succeeds
  local limit=$1 description=$2 deadline
  shift 2
  deadline=$(( $(now_us) + limit * 1000000 ))
  until "$@"; do
    if [ "$(now_us)" -gt "$deadline" ]; then
      echo "gave up after ${limit} s waiting for $description" >&2
      return 1
    fi
    sleep 0.1
  done
}
alive() { kill -0 "$1" 2>/dev/null; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start_daemon() { # DATA_DIR [ARGS...]: starts `ward serve`, sets $started_pid, waits for DATA_DIR/ward.addr
  local dir=$1
  shift
  "$ward" serve --data-dir "$dir" --listen 127.0.0.1:0 "$@" 2>>"$work/daemon.log" &
  started_pid=$!
  wait_until 20 "ward serve on $dir" sh -c "[ -s '$dir/ward.addr' ] || ! kill -0 $started_pid"
  alive "$started_pid" || { cat "$work/daemon.log" >&2; return 1; }
}
w() { "$ward" --data-dir "$data" "$@"; }
stats() { # SCALE JSON → "p50 p95 mean min max" of hyperfine's times, multiplied by SCALE
  python3 -c '
import json, sys
times = sorted(json.load(open(sys.argv[2]))["results"][0]["times"])
scale = float(sys.argv[1])
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * scale
print(f"{pick(0.50):.2f} {pick(0.95):.2f} {sum(times) / len(times) * scale:.2f} {times[0] * scale:.2f} {times[-1] * scale:.2f}")' "$1" "$2"
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
# Host contention while a section runs: the share of wall time in which some runnable task
# waited for a CPU (PSI "some"), from /proc/pressure/cpu; "n/a" without PSI.
pressure_mark() { echo "$(now_us) $(awk -F'total=' '/^some/ {print $2}' /proc/pressure/cpu 2>/dev/null || true)"; }
pressure_since() { # MARK → percent
  local start_us start_total end_us end_total
  read -r start_us start_total <<<"$1"
  read -r end_us end_total <<<"$(pressure_mark)"
  if [ -z "$start_total" ] || [ -z "$end_total" ]; then echo "n/a"; return; fi
  python3 -c "print(f'{($end_total - $start_total) / ($end_us - $start_us) * 100:.0f} %')"
}

# ---------------------------------------------------------------------------------------------
# The image: an OCI layout built with umoci, one `umoci repack` per layer (gzip, umoci's
# default). Not `umoci insert`: Debian's umoci 0.4.7 writes insert layers without the tar
# end-of-archive blocks (umoci#436) and names the root "/" when inserting at /.
# ---------------------------------------------------------------------------------------------
tree_source=
for candidate in /usr/lib/python3 /usr/share/perl /usr/share/doc; do
  [ -d "$candidate" ] && { tree_source=$candidate; break; }
done
echo "building the image (small-file tree: $tree_source)" >&2
layout="$work/layout"
build="$work/build"
rootfs="$build/rootfs"
umoci init --layout "$layout"
umoci new --image "$layout:bench"
umoci unpack --image "$layout:bench" "$build" >/dev/null
# Layer 1: busybox and its applets, a minimal /etc.
mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev,root}
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
umoci repack --refresh-bundle --image "$layout:bench" --history.comment "busybox root" "$build"
# Layer 2: thousands of small files.
mkdir -p "$rootfs$(dirname "$tree_source")"
cp -a "$tree_source" "$rootfs$tree_source"
umoci repack --refresh-bundle --image "$layout:bench" --history.comment "small files" "$build"
# Layer 3: a few big files, two compressible binaries and incompressible data.
mkdir -p "$rootfs/opt/big"
cp "$(command -v docker-registry)" "$(command -v skopeo)" "$rootfs/opt/big/"
head -c 16M /dev/urandom >"$rootfs/opt/big/assets.bin"
umoci repack --refresh-bundle --image "$layout:bench" --history.comment "big files" "$build"
# Layer 4: a small config change: one file changed, one added, one directory deleted (whiteout).
echo 'bench:x:1000:1000:bench:/home/bench:/bin/sh' >>"$rootfs/etc/passwd"
echo 'threads = 4' >"$rootfs/etc/bench.conf"
removed=$(find "$rootfs$tree_source" -mindepth 2 -maxdepth 2 -type d | sort | sed -n 1p)
[ -n "$removed" ] && rm -rf "$removed"
umoci repack --image "$layout:bench" --history.comment "config change" "$build"
umoci config --image "$layout:bench" --config.cmd /bin/sh --config.workingdir / \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umoci gc --layout "$layout"
image_files=$(find "$rootfs" | wc -l)
image_layers=$(python3 - "$layout" <<'PY'
import gzip, json, sys, tarfile
layout = sys.argv[1]
blob = lambda digest: f"{layout}/blobs/sha256/{digest.split(':')[1]}"
index = json.load(open(f"{layout}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
names = ["busybox root", "small files", "big files", "config change"]
human = lambda n: f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n} B"
for number, (layer, name) in enumerate(zip(manifest["layers"], names), 1):
    entries = 0
    uncompressed = 0
    with tarfile.open(blob(layer["digest"]), "r:gz") as archive:
        for member in archive:
            entries += 1
            uncompressed += member.size
    print(f"{number}|{name}|{human(layer['size'])}|{human(uncompressed)}|{entries}")
PY
)

# The registry, on a free port of 127.0.0.1, storage in the work directory.
start_registry() {
  local port config="$work/registry/config.yml"
  port=$(free_port)
  mkdir -p "$work/registry/storage"
  cat >"$config" <<CONFIG
version: 0.1
log:
  level: error
  formatter: text
storage:
  filesystem:
    rootdirectory: $work/registry/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CONFIG
  docker-registry serve "$config" >"$work/registry/log" 2>&1 &
  registry_pid=$!
  registry_up() {
    alive "$registry_pid" || return 0
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v2/', timeout=1)" 2>/dev/null
  }
  if ! wait_until 20 "docker-registry on 127.0.0.1:$port" registry_up || ! alive "$registry_pid"; then
    kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null; registry_pid=
    return 1
  fi
  registry="127.0.0.1:$port"
}
for attempt in 1 2 3 4 5; do
  start_registry && break
  echo "docker-registry did not start (attempt $attempt):" >&2; cat "$work/registry/log" >&2
  [ "$attempt" = 5 ] && exit 1
done
ref="$registry/bench/image:bench"
echo "pushing to $ref" >&2
skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$layout:bench" "docker://$ref" >&2

start_daemon "$data"
daemon_pid=$started_pid

# ---------------------------------------------------------------------------------------------
# 1. Pull and unpack.
# ---------------------------------------------------------------------------------------------
# Each run starts from an empty store (Ward: `image rm` + `image prune`; the reference: `rm -rf`
# of its layout and bundle), and a `sync` writes back what the previous run and the reset left
# dirty, so that each tool pays for its own writes. Both tools create the same ~3,600 files per
# run right after the reset deleted as many: on ext4 without a journal, creating files soon after
# deleting many is several times slower (the inode allocator skips recently deleted inodes), so
# that the numbers depend on where the allocator lands; the report says which filesystem it was.
echo "1. pull + unpack ($pull_runs runs each)" >&2
mark=$(pressure_mark)
hyperfine -N --warmup 1 --runs "$pull_runs" --export-json "$work/pull-ward.json" \
  --prepare "sh -c '$ward --data-dir $data image rm $ref >/dev/null 2>&1; $ward --data-dir $data image prune >/dev/null; sync'" \
  "$ward --data-dir $data image pull $ref" >&2
hyperfine -N --warmup 1 --runs "$pull_runs" --export-json "$work/pull-reference.json" \
  --prepare "sh -c 'rm -rf $work/reference-layout $work/reference-bundle; sync'" \
  "sh -c 'skopeo --insecure-policy copy --quiet --src-tls-verify=false docker://$ref oci:$work/reference-layout:bench && umoci unpack --image $work/reference-layout:bench $work/reference-bundle'" >&2
pull_pressure=$(pressure_since "$mark")
read -r pull_ward_p50 _ pull_ward_mean pull_ward_min pull_ward_max < <(stats 1 "$work/pull-ward.json")
read -r pull_ref_p50 _ pull_ref_mean pull_ref_min pull_ref_max < <(stats 1 "$work/pull-reference.json")
# What a pull leaves: the layers, unpacked once each.
w image pull "$ref" >/dev/null
unpacked_layers=$(find "$data/images/layers/sha256" -mindepth 1 -maxdepth 1 -type d | wc -l)

# ---------------------------------------------------------------------------------------------
# 2. Container start. The bare runtimes run the bundle Ward generated for the same workload
# (crun's with the seccomp filter as BPF, runc's with the OCI profile, from a second daemon
# configured for runc), on an overlay of the same unpacked layer directories with a fresh
# upper directory mounted before every run, as Ward's monitor mounts one for each instance.
# ---------------------------------------------------------------------------------------------
bundle_of() { # DATA_DIR DEST CGROUP: the bundle of a running container of the image, rewritten to run /bin/true
  "$ward" --data-dir "$1" run --name bundle-source --network none --restart never --image "$ref" -- sleep 1000 >/dev/null
  # The bundle is in the instance's run directory (DATA/run links to the run root).
  local instance
  instance="$(realpath "$1/run")/instances/default/bundle-source/0"
  mkdir -p "$2"
  cp "$instance/config.json" "$instance/monitor.json" "$2/"
  cp -r "$instance/etc" "$2/etc"
  "$ward" --data-dir "$1" rm -f bundle-source >/dev/null
  python3 - "$instance" "$2" "$3" <<'PY'
import json, os, sys
instance, bundle, cgroup = sys.argv[1:]
config = json.load(open(f"{bundle}/config.json"))
monitor = json.load(open(f"{bundle}/monitor.json"))
overlay = monitor["overlay"]
config["linux"]["cgroupsPath"] = cgroup
config["process"]["args"] = ["/bin/true"]
config["root"]["path"] = f"{bundle}/rootfs"
# Ward's instance joins the network namespace its monitor made ahead of it; a bare runtime
# makes one as it starts.
for namespace in config["linux"]["namespaces"]:
    namespace.pop("path", None)
for mount in config["mounts"]:
    if mount["source"].startswith(instance + "/"):
        mount["source"] = bundle + mount["source"][len(instance):]
json.dump(config, open(f"{bundle}/config.json", "w"))
lower = ":".join(os.path.join(overlay["layers_root"], d) for d in overlay["lower_dirs"])
open(f"{bundle}/lowerdir", "w").write(lower)
PY
}
# Every measured start comes after the same idle pause: moving a process into a cgroup, which
# every runtime does at every start, first waits for an RCU grace period of the kernel unless
# another move happened within about one grace period before, so starts run back to back
# would each skip that wait thanks to the one before (bench/run.sh measures both).
pause=0.1
# Run as --prepare inside the runtime's mount namespace: a fresh overlay root for BUNDLE.
cat >"$work/fresh-root.sh" <<SCRIPT
#!/bin/sh
set -e
bundle=\$1
umount "\$bundle/rootfs" 2>/dev/null || true
rm -rf "\$bundle/upper" "\$bundle/work"
mkdir -p "\$bundle/upper" "\$bundle/work" "\$bundle/rootfs"
mount -t overlay overlay -o "lowerdir=\$(cat "\$bundle/lowerdir"),upperdir=\$bundle/upper,workdir=\$bundle/work" "\$bundle/rootfs"
sleep $pause
SCRIPT
chmod +x "$work/fresh-root.sh"

echo "2. container start ($start_runs runs each)" >&2
w image pull "$ref" >/dev/null
bundle_of "$data" "$work/bare-crun" /ward-bench/images-crun
echo "oci_runtime: $(command -v runc)" >"$work/runc.yaml"
start_daemon "$runc_data" --config "$work/runc.yaml"
runc_daemon_pid=$started_pid
"$ward" --data-dir "$runc_data" image pull "$ref" >/dev/null
bundle_of "$runc_data" "$work/bare-runc" /ward-bench/images-runc
kill "$runc_daemon_pid"; wait "$runc_daemon_pid" 2>/dev/null || true
runc_daemon_pid=

# Between runs: remove the workload NAME and wait (at most 5 s) until its monitor has exited. A new
# NAME started while the old monitor is still exiting reuses its instance directory and
# crun id, and the old instance's exit handling can kill the new one ("cannot open status
# file"); seen once in about a thousand back-to-back runs, more often on a busy host.
cat >"$work/reset-bench.sh" <<SCRIPT
#!/bin/sh
$ward --data-dir $data rm -f "\$1" >/dev/null 2>&1 || true
tries=0
while pgrep -f "ward-monitor monitor $data/instances/default/\$1/" >/dev/null && [ \$tries -lt 500 ]; do
  tries=\$((tries + 1)); sleep 0.01
done
sleep $pause
SCRIPT
chmod +x "$work/reset-bench.sh"
# One run outside hyperfine first, so that a failure shows Ward's own error message.
w run --name bench --network none --restart never --image "$ref" -- /bin/true >/dev/null
"$work/reset-bench.sh" bench
mark=$(pressure_mark)
hyperfine -N --warmup 5 --runs "$start_runs" --export-json "$work/start-ward.json" \
  --prepare "$work/reset-bench.sh bench" \
  "$ward --data-dir $data run --name bench --network none --restart never --image $ref -- /bin/true" >&2
w rm -f bench >/dev/null
# The same start without an image (a process workload on the read-only host root), to show
# what the image adds.
hyperfine -N --warmup 5 --runs "$start_runs" --export-json "$work/start-ward-process.json" \
  --prepare "$work/reset-bench.sh bench-process" \
  "$ward --data-dir $data run --name bench-process --network none --restart never -- true" >&2
w rm -f bench-process >/dev/null
unshare -m sh -c "mount --make-rprivate / && { umount /sys/fs/cgroup/unified 2>/dev/null || true; } && \
  hyperfine -N --warmup 5 --runs $start_runs --export-json $work/start-crun.json \
  --prepare '$work/fresh-root.sh $work/bare-crun' \
  'crun --root $work/crun-state run --bundle $work/bare-crun bench-images-crun'" >&2
unshare -m sh -c "mount --make-rprivate / && \
  hyperfine -N --warmup 5 --runs $start_runs --export-json $work/start-runc.json \
  --prepare '$work/fresh-root.sh $work/bare-runc' \
  'runc --root $work/runc-state run --bundle $work/bare-runc bench-images-runc'" >&2
start_pressure=$(pressure_since "$mark")
read -r start_ward_p50 start_ward_p95 start_ward_mean _ _ < <(stats 1000 "$work/start-ward.json")
read -r start_process_p50 start_process_p95 start_process_mean _ _ < <(stats 1000 "$work/start-ward-process.json")
read -r start_crun_p50 start_crun_p95 start_crun_mean _ _ < <(stats 1000 "$work/start-crun.json")
read -r start_runc_p50 start_runc_p95 start_runc_mean _ _ < <(stats 1000 "$work/start-runc.json")

# ---------------------------------------------------------------------------------------------
# 3. podman run of the same image, pulled from the same registry, its storage in the work
# directory. Root here lacks CAP_SYS_RESOURCE, so podman needs explicit rlimits that fit.
# ---------------------------------------------------------------------------------------------
podman_rows=
podman_note=
if ! command -v podman >/dev/null && [ "$with_podman" = 1 ]; then
  echo "3. installing podman (apt-get install podman)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman; } >&2 \
    || podman_note="\`apt-get install podman\` failed; see the log on stderr."
fi
if ! command -v podman >/dev/null; then
  [ -n "$podman_note" ] || podman_note="podman is not installed; \`bench/images.sh --with-podman\` installs Debian's package."
else
  podman_version=$(podman --version | awk '{print $NF}')
  podman_cmd() { # STORAGE_DRIVER RUNTIME
    echo "podman --root $work/podman-$1/root --runroot $work/podman-$1/run --tmpdir $work/podman-$1/tmp" \
      "--storage-driver $1 --runtime $2 --cgroup-manager cgroupfs --events-backend file"
  }
  podman_run="run --rm --network none --cgroup-parent $podman_cgroup --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 $ref /bin/true"
  podman_measure() { # NAME STORAGE RUNTIME RUNS [unshare]: hyperfine of `podman run`, JSON in $work/podman-NAME.json
    local name=$1 storage=$2 runtime=$3 runs=$4 podman
    podman=$(podman_cmd "$storage" "$runtime")
    mkdir -p "$work/podman-$storage/tmp"
    $podman pull -q --tls-verify=false "$ref" >/dev/null 2>>"$work/podman.log" || return 1
    # A first run whose errors are kept, then the measured ones.
    local measure="$podman $podman_run >/dev/null 2>>$work/podman.log && \
      hyperfine -N --warmup 2 --runs $runs --prepare 'sleep $pause' --export-json $work/podman-$name.json '$podman $podman_run'"
    if [ "${5:-}" = unshare ]; then
      unshare -m sh -c "mount --make-rprivate / && { umount /sys/fs/cgroup/unified 2>/dev/null || true; } && $measure" >&2
    else
      sh -c "$measure" >&2
    fi
  }
  podman_row() { # NAME DESCRIPTION
    local p50 p95 mean
    read -r p50 p95 mean _ _ < <(stats 1000 "$work/podman-$1.json")
    podman_rows+="| $2 | $p50 | $p95 | $mean | $(ratio "$p50" "$start_ward_p50") |"$'\n'
  }
  echo "3. podman $podman_version run" >&2
  mark=$(pressure_mark)
  podman_failed=()
  if podman_measure overlay-runc overlay runc "$podman_runs"; then
    podman_row overlay-runc "\`podman run --rm\` (podman $podman_version, overlay storage, runc)"
  else podman_failed+=("overlay storage with runc"); fi
  if podman_measure overlay-crun overlay crun "$podman_runs" unshare; then
    podman_row overlay-crun "\`podman run --rm\` (overlay storage, crun, cgroup v2 hidden)"
  else podman_failed+=("overlay storage with crun"); fi
  if podman_measure vfs-runc vfs runc "$podman_vfs_runs"; then
    podman_row vfs-runc "\`podman run --rm\` (vfs storage, runc; $podman_vfs_runs runs)"
  else podman_failed+=("vfs storage with runc"); fi
  podman_pressure=$(pressure_since "$mark")
  podman_note="podman ran with \`--ulimit nofile=20000:20000 --ulimit nproc=32768:32768\` (root here may
not raise its hard limits), \`--cgroup-manager cgroupfs\`, its storage in the work directory
and the image pulled from the same registry."
  if [ ${#podman_failed[@]} -gt 0 ]; then
    podman_note+=" It failed with ${podman_failed[*]}: $(tail -n 3 "$work/podman.log" 2>/dev/null | tr '\n' ' ')"
  fi
fi

# ---------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------
layer_rows=$(while IFS='|' read -r number name compressed uncompressed entries; do
  echo "| $number | $name | $compressed | $uncompressed | $entries |"
done <<<"$image_layers")
cat <<REPORT
## Run of $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(uname -r))

Ward built from $ward_version; $(crun --version | head -n 1), $(runc --version | head -n 1), skopeo $(skopeo --version | awk '{print $NF}').

### The image (built with umoci $(umoci --version | awk '{print $NF}'), gzip)

| layer | content | compressed | file data | tar entries |
| --- | --- | --- | --- | --- |
$layer_rows

Small-file tree copied from \`$tree_source\`; $image_files paths in the flattened root; layer 4
changes \`/etc/passwd\`, adds \`/etc/bench.conf\` and deletes \`${removed#"$rootfs"}\` (a whiteout).

### Pull and unpack from a registry on 127.0.0.1 ($pull_runs runs each)

| what | p50 (s) | mean (s) | min – max (s) | p50 ratio to ward |
| --- | --- | --- | --- | --- |
| \`ward image pull\` (download, verify, unpack all $unpacked_layers layers) | $pull_ward_p50 | $pull_ward_mean | $pull_ward_min – $pull_ward_max | 1.00 |
| \`skopeo copy\` to an OCI layout + \`umoci unpack\` | $pull_ref_p50 | $pull_ref_mean | $pull_ref_min – $pull_ref_max | $(ratio "$pull_ref_p50" "$pull_ward_p50") |

skopeo+umoci / ward p50: $(ratio "$pull_ref_p50" "$pull_ward_p50")× (goal: > 1, ward faster). Each run starts from an empty
store and a \`sync\`; the registry's blobs are in the page cache for both; the work directory is
on $fs_info. CPU pressure during this section: $pull_pressure.

### Container start: \`/bin/true\` in the image until it runs ($start_runs runs each)

| what | p50 (ms) | p95 (ms) | mean (ms) | p50 ratio to ward |
| --- | --- | --- | --- | --- |
| \`ward run --network none --image … -- /bin/true\` | $start_ward_p50 | $start_ward_p95 | $start_ward_mean | 1.00 |
| \`ward run --network none -- true\` (process workload, no image) | $start_process_p50 | $start_process_p95 | $start_process_mean | $(ratio "$start_process_p50" "$start_ward_p50") |
| bare \`crun run\` (Ward's crun bundle, overlay of Ward's layers, cgroup v2 hidden) | $start_crun_p50 | $start_crun_p95 | $start_crun_mean | $(ratio "$start_crun_p50" "$start_ward_p50") |
| bare \`runc run\` (Ward's runc bundle, overlay of Ward's layers) | $start_runc_p50 | $start_runc_p95 | $start_runc_mean | $(ratio "$start_runc_p50" "$start_ward_p50") |
${podman_rows}
ward / crun p50: $(ratio "$start_ward_p50" "$start_crun_p50")× (goal ≤ 1.5×); ward / runc p50: $(ratio "$start_ward_p50" "$start_runc_p50")×.
Each start follows a ${pause} s pause, for every row. The bare runtimes' overlay is mounted
before each run, outside the timing; Ward mounts its own inside it. CPU pressure during the ward, crun and runc runs: $start_pressure${podman_pressure:+; during the podman runs: $podman_pressure}.
$podman_note

CPU pressure is the share of wall time in which some runnable task waited for a CPU
(\`/proc/pressure/cpu\`, "some"), the benchmark's own processes included; load average at
the start of the run: $load_at_start.
REPORT
