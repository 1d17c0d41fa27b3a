#!/usr/bin/env bash
# Outputs in main's own filesystem: streamed from the emissary to wait (the socket) against
# staged as a .tgz on the emptyDir (our fallback, Argo's way), against the S3 server (s3s-fs,
# crates/s3-server) on 127.0.0.1. For each: peak bytes in /var/run/argo/outputs (sampled
# every 0.2 s), peak RSS of the emissary and of wait, and the seconds from the child's exit to
# wait's end (task result printed: no API server, so wait prints it).
#
#   benches/stream-outputs.sh                      # 4 GiB (BENCH_MIB=4096), tree and file
#   BENCH_MIB=512 BENCH_CASES=file benches/stream-outputs.sh
#   BENCH_PROFILE=debug ...                        # the debug build (a smoke run, not figures)
#
# Cases: tree (a mixed directory, tgz level 6), file (one file, archive none).
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${BENCH_CASES:-tree file}
mib=${BENCH_MIB:-4096}
profile=${BENCH_PROFILE:-release}

if [ "$profile" = release ]; then
  cargo build --release -p argoexec-rs --bin argoexec -p argoexec-s3-server --bin s3-server --example link
else
  cargo build -p argoexec-rs --bin argoexec -p argoexec-s3-server --bin s3-server --example link
fi
out=$PWD/target/x86_64-unknown-linux-gnu/$profile  # .cargo/config.toml: per target triple
bin=$out/argoexec

work=$(mktemp -d "${BENCH_DIR:-/tmp}/argoexec-stream-bench.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/s3/bench"
"$out/s3-server" "$work/s3" 0 --part-checksums >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/server.log" 2>/dev/null && break; sleep 0.1; done
endpoint=$(sed -n 's/^listening on //p' "$work/server.log")
[ -n "$endpoint" ] || { echo "the S3 server did not start"; exit 1; }

pod=$work/pod
mainfs=$work/mainfs
mkdir -p "$pod/argo/secret/c" "$pod/var/run/argo" "$pod/dev" "$mainfs"
printf '%s' argoexec-test-access >"$pod/argo/secret/c/a"
printf '%s' argoexec-test-secret >"$pod/argo/secret/c/s"
export ARGOEXEC_ROOT=$pod ARGO_POD_NAME=bench ARGO_NODE_ID=bench-1 ARGO_DEADLINE=0001-01-01T00:00:00Z
unset KUBECONFIG KUBERNETES_SERVICE_HOST ARGO_TEMPLATE
loc() { printf '{"endpoint":"%s","bucket":"bench","insecure":true,"accessKeySecret":{"name":"c","key":"a"},"secretKeySecret":{"name":"c","key":"s"},"key":"%s"}' "$endpoint" "$1"; }

# Samples the bytes under /var/run/argo/outputs until $work/stop exists (at most 2 hours).
sample_staged() {
  local peak=0 now
  for _ in $(seq 1 36000); do
    [ -e "$work/stop" ] && break
    now=$(du -sb "$pod/var/run/argo/outputs" 2>/dev/null | cut -f1 || true)
    [ -n "$now" ] && [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.2
  done
  echo "$peak" >"$work/staged.peak"
}

# run MODE NAME PATH ARCHIVE: one pod; MODE stream starts wait first, stage starts it after main.
run() {
  local mode=$1 name=$2 path=$3 archive=$4 wait_pid t0 t1
  rm -rf "$pod/var/run/argo/ctr" "$pod/var/run/argo/outputs" "$work/stop" "$work/s3/bench" && mkdir -p "$work/s3/bench"
  printf '{"name":"b","container":{"image":"x"},"outputs":{"artifacts":[{"name":"%s","path":"%s","archive":%s}]},"archiveLocation":{"s3":%s}}' \
    "$name" "$path" "$archive" "$(loc "$mode")" >"$pod/var/run/argo/template"
  sample_staged &
  local sampler=$!
  if [ "$mode" = stream ]; then
    ARGO_CONTAINER_NAME=wait /usr/bin/time -f "%M" -o "$work/wait.rss" "$bin" wait >/dev/null 2>"$work/wait.log" &
    wait_pid=$!
    for _ in $(seq 1 300); do [ -S "$pod/var/run/argo/outputs.sock" ] && break; sleep 0.1; done
    [ -S "$pod/var/run/argo/outputs.sock" ] || { echo "wait offered no socket"; tail "$work/wait.log"; exit 1; }
  fi
  t0=$(date +%s.%N)
  ARGO_CONTAINER_NAME=main /usr/bin/time -f "%M" -o "$work/main.rss" "$bin" emissary -- true 2>"$work/main.log"
  if [ "$mode" = stream ]; then
    wait "$wait_pid"
  else
    ARGO_CONTAINER_NAME=wait /usr/bin/time -f "%M" -o "$work/wait.rss" "$bin" wait >/dev/null 2>"$work/wait.log"
  fi
  t1=$(date +%s.%N)
  touch "$work/stop"
  wait "$sampler"
  printf '  %-6s %-7s %10s MiB staged  emissary %6s KiB  wait %6s KiB  %8.1f s\n' "$name" "$mode" \
    "$(( $(cat "$work/staged.peak") >> 20 ))" "$(tail -1 "$work/main.rss")" "$(tail -1 "$work/wait.rss")" \
    "$(echo "$t1 - $t0" | bc)"
}

if [[ " $cases " == *" tree "* ]]; then
  echo "== tree: ${mib} MiB mixed directory, tgz level 6"
  d=$mainfs/tree
  mkdir -p "$d/blobs" "$d/logs" "$d/small"
  head -c $((mib << 19)) /dev/urandom >"$d/blobs/random.bin"
  { yes 'ts=2026-11-23T10:00:00Z level=info component=trainer msg="epoch finished" loss=0.1234 step=4242' || true; } | head -c $((mib << 18)) >"$d/logs/train.log"
  head -c $((mib << 18)) /dev/urandom | base64 -w 120 >"$d/logs/encoded.txt"
  for i in $(seq 1 500); do head -c 8192 /dev/urandom | base64 >"$d/small/f$i.txt"; done
  for mode in stream stage; do run "$mode" tree "$d" '{"tar":{"compressionLevel":6}}'; done
  rm -rf "$d"
fi

if [[ " $cases " == *" file "* ]]; then
  echo "== file: ${mib} MiB, archive none"
  head -c $((mib << 20)) /dev/urandom >"$mainfs/file.bin"
  for mode in stream stage; do run "$mode" file "$mainfs/file.bin" '{"none":{}}'; done
  rm -f "$mainfs/file.bin"
fi
