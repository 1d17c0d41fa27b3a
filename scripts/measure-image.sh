#!/usr/bin/env bash
# The figures of docs/operations.md: the binary's size and linking, the image's size (the
# directory scripts/rootfs.sh assembles), and the wall time and peak RSS of starting up:
# `argoexec version` and `argoexec init` for a template without artifacts.
#
#   scripts/measure-image.sh [BINARY]     # default: the static release build
#   RUNS=200 scripts/measure-image.sh target/x86_64-unknown-linux-gnu/debug/argoexec
#
# Builds nothing: build the binary first (cargo build --release --bin argoexec).
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-target/x86_64-unknown-linux-gnu/release/argoexec}
runs=${RUNS:-100}
[ -x "$binary" ] || { echo "no binary at $binary (cargo build --release --bin argoexec)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is needed (apt-get install time)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/measure-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

bytes=$(stat -c %s "$binary")
echo "== binary: $binary"
echo "size: $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB)"
echo "file: $(file -b "$binary")"
echo "ldd:  $(LC_ALL=C ldd "$binary" 2>&1 | head -1 | sed 's/^[[:space:]]*//')"

echo "== image root filesystem (scripts/rootfs.sh)"
scripts/rootfs.sh "$work/rootfs" "$binary"
echo "size: $(du -sb "$work/rootfs" | cut -f1) bytes in $(find "$work/rootfs" -type f | wc -l) files"

# An init with nothing to load: it copies the binary, writes the template, and exits.
pod=$work/pod
mkdir -p "$pod/var/run/argo" "$pod/argo/inputs/artifacts" "$pod/dev"
init_env=(env -i PATH="$(dirname "$(realpath "$binary")"):/usr/bin:/bin" ARGOEXEC_ROOT="$pod"
  ARGO_POD_NAME=measure ARGO_CONTAINER_NAME=init ARGO_DEADLINE=0001-01-01T00:00:00Z
  ARGO_TEMPLATE='{"name":"t","container":{"image":"any"}}')

# measure NAME COMMAND...: mean and min wall time over $runs runs, and the peak RSS of one.
measure() {
  local name=$1; shift
  "$@" >/dev/null 2>&1 || { echo "$name failed:"; "$@"; exit 1; }
  local total=0 min="" start end took i
  for ((i = 0; i < runs; i++)); do
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s%N)
    took=$((end - start))
    total=$((total + took))
    if [ -z "$min" ] || [ "$took" -lt "$min" ]; then min=$took; fi
  done
  local rss
  rss=$(/usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1)
  awk -v n="$name" -v t="$total" -v r="$runs" -v m="$min" -v k="$rss" \
    'BEGIN { printf "%-28s mean %6.2f ms  min %6.2f ms  (%d runs)  peak RSS %.1f MiB\n", n, t / r / 1e6, m / 1e6, r, k / 1024 }'
}

echo "== startup (wall time includes fork and exec from bash)"
measure "argoexec version" "$binary" version
measure "argoexec --help" "$binary" --help
measure "argoexec init (no artifacts)" "${init_env[@]}" "$binary" init --loglevel info --log-format text --gloglevel 0
