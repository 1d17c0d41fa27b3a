#!/usr/bin/env bash
# Transfer benchmark: argoexec-rs side by side with peer tools, in one run, against an S3
# server (s3s-fs, examples/s3-server) on 127.0.0.1. Prints wall time, peak RSS and the ratio
# ours/peer for each case (ratios, because this machine is shared and noisy).
#
#   benches/compare.sh                      # every case
#   BENCH_CASES="file tgz" benches/compare.sh
#   BENCH_GIB=1 benches/compare.sh          # smaller data (file and tgz cases)
#
# Cases: file (2 GiB, archive none, up and down: aws s3 cp, rclone copyto, the floor client),
# tgz (2 GiB mixed directory, level 6: the Go executor's pipeline rebuilt from real tools:
# tar czf to a temp file then rclone copyto; down: rclone to a temp file then tar xzf),
# small (10,000 x 4 KiB files, archive none: rclone --transfers 1 and 16), big (6 GiB stream:
# our peak RSS at defaults). Needs: aws (cli), rclone (installed with apt if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${BENCH_CASES:-file tgz small big}
gib=${BENCH_GIB:-2}

cargo build --release --bin argoexec --example s3-server --example floor
out=$PWD/target/x86_64-unknown-linux-gnu/release  # .cargo/config.toml: static, per target triple
bin=$out/argoexec
command -v rclone >/dev/null || { apt-get update -qq && apt-get install -y -qq rclone >/dev/null; }
command -v aws >/dev/null || { echo "aws cli is needed (pip install awscli)"; exit 1; }

work=$(mktemp -d "${BENCH_DIR:-/tmp}/argoexec-bench.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/s3/bench"
"$out/examples/s3-server" "$work/s3" 0 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/server.log" 2>/dev/null && break; sleep 0.1; done
endpoint=$(sed -n 's/^listening on //p' "$work/server.log")
[ -n "$endpoint" ] || { echo "the S3 server did not start"; exit 1; }

export AWS_ACCESS_KEY_ID=argoexec-test-access AWS_SECRET_ACCESS_KEY=argoexec-test-secret AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=$work/aws-config
printf '[default]\ns3 =\n  addressing_style = path\n' >"$AWS_CONFIG_FILE"
export FLOOR_ENDPOINT=http://$endpoint FLOOR_BUCKET=bench
export RCLONE_CONFIG_T_TYPE=s3 RCLONE_CONFIG_T_PROVIDER=Other RCLONE_CONFIG_T_ENDPOINT=http://$endpoint \
  RCLONE_CONFIG_T_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_T_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
  RCLONE_CONFIG_T_FORCE_PATH_STYLE=true
rclone() { env -u AWS_CA_BUNDLE rclone "$@"; }
aws_s3() { aws --endpoint-url "http://$endpoint" s3 "$@" --only-show-errors; }

# A pod root for our binary: secrets and contract paths under $work/pod.
pod=$work/pod
mkdir -p "$pod/argo/secret/c" "$pod/var/run/argo/ctr/main" "$pod/dev" "$pod/mainctrfs/work"
printf '%s' "$AWS_ACCESS_KEY_ID" >"$pod/argo/secret/c/a"
printf '%s' "$AWS_SECRET_ACCESS_KEY" >"$pod/argo/secret/c/s"
echo 0 >"$pod/var/run/argo/ctr/main/exitcode"
loc() { printf '{"endpoint":"%s","bucket":"bench","insecure":true,"accessKeySecret":{"name":"c","key":"a"},"secretKeySecret":{"name":"c","key":"s"},"key":"%s"}' "$endpoint" "$1"; }
export ARGOEXEC_ROOT=$pod ARGO_POD_NAME=bench ARGO_DEADLINE=0001-01-01T00:00:00Z
unset KUBECONFIG KUBERNETES_SERVICE_HOST
# ours_up NAME SRC_UNDER_WORK ARCHIVE KEYPREFIX: wait uploads /work/SRC as artifact NAME.
ours_up() {
  printf '{"name":"b","container":{"volumeMounts":[{"name":"w","mountPath":"/work"}]},"outputs":{"artifacts":[{"name":"%s","path":"/work/%s","archive":%s}]},"archiveLocation":{"s3":%s}}' \
    "$1" "$2" "$3" "$(loc "$4")" >"$pod/var/run/argo/template"
  "$bin" wait >/dev/null 2>"$work/ours.log"
}
# ours_down NAME KEY ARCHIVE: init downloads KEY into /argo/inputs/artifacts/NAME.
ours_down() {
  rm -rf "$pod/argo/inputs"
  ARGO_TEMPLATE=$(printf '{"name":"b","inputs":{"artifacts":[{"name":"%s","path":"/in","archive":%s,"s3":%s}]}}' "$1" "$3" "$(loc "$2")") \
    "$bin" init >/dev/null 2>"$work/ours.log"
}

results=$work/results.tsv
: >"$results"
# measure CASE TOOL COMMAND [ARGS...]: wall seconds and peak RSS (KiB) of the command and its
# children. One argument is a shell line; several are a command and its arguments.
# Sources stay in the page cache, as an artifact main has just written does.
measure() {
  local case=$1 tool=$2; shift 2
  local line t
  if [ $# -eq 1 ]; then line=$1; else line=$(printf '%q ' "$@"); fi
  /usr/bin/time -f "%e %M" -o "$work/time.out" bash -c "$line" >/dev/null 2>"$work/cmd.err" \
    || { echo "FAILED: $case $tool"; cat "$work/cmd.err" "$work/ours.log" 2>/dev/null | tail -20; exit 1; }
  t=$(tail -1 "$work/time.out")
  printf '%s\t%s\t%s\t%s\n' "$case" "$tool" ${t} >>"$results"
  printf '  %-28s %-34s %8ss %8s KiB\n' "$case" "$tool" ${t}
}
export -f ours_up ours_down rclone aws_s3
export bin pod work endpoint
export -f loc
clear_bucket() { rm -rf "$work/s3/bench" && mkdir -p "$work/s3/bench"; }

if [[ " $cases " == *" file "* ]]; then
  echo "== file: ${gib} GiB, archive none"
  head -c $((gib << 30)) /dev/urandom >"$pod/mainctrfs/work/file.bin"
  measure "file up" "argoexec-rs" ours_up f file.bin '{"none":{}}' ours
  measure "file up" "aws s3 cp" aws_s3 cp "$pod/mainctrfs/work/file.bin" s3://bench/aws/file.bin
  measure "file up" "rclone copyto" rclone copyto "$pod/mainctrfs/work/file.bin" t:bench/rclone/file.bin
  measure "file up" "floor (lean SDK client)" "$out/examples/floor" up "$pod/mainctrfs/work/file.bin" floor/file.bin
  measure "file down" "argoexec-rs" ours_down f ours/file.bin '{"none":{}}'
  measure "file down" "aws s3 cp" aws_s3 cp s3://bench/aws/file.bin "$work/aws.bin"
  measure "file down" "rclone copyto" rclone copyto t:bench/rclone/file.bin "$work/rclone.bin"
  measure "file down" "floor (lean SDK client)" "$out/examples/floor" down floor/file.bin "$work/floor.bin"
  cmp "$pod/argo/inputs/artifacts/f" "$pod/mainctrfs/work/file.bin"
  rm -f "$work"/*.bin "$pod/mainctrfs/work/file.bin"; rm -rf "$pod/argo/inputs"; clear_bucket
fi

if [[ " $cases " == *" tgz "* ]]; then
  echo "== tgz: ${gib} GiB mixed directory, gzip level 6"
  d=$pod/mainctrfs/work/tree
  mkdir -p "$d/blobs" "$d/logs" "$d/small"
  head -c $((gib << 29)) /dev/urandom >"$d/blobs/random.bin"
  # `yes` ends by SIGPIPE when head has enough: not a failure (pipefail would say it is).
  { yes 'ts=2026-11-23T10:00:00Z level=info component=trainer msg="epoch finished" loss=0.1234 step=4242' || true; } | head -c $((gib << 28)) >"$d/logs/train.log"
  head -c $((gib << 28)) /dev/urandom | base64 -w 120 >"$d/logs/encoded.txt"
  for i in $(seq 1 500); do head -c 8192 /dev/urandom | base64 >"$d/small/f$i.txt"; done
  measure "tgz up" "argoexec-rs" ours_up t tree 'null' ours
  measure "tgz up" "tar czf + rclone (Go executor)" "tar czf $work/tree.tgz -C $pod/mainctrfs/work tree && rclone copyto $work/tree.tgz t:bench/go/tree.tgz && rm $work/tree.tgz"
  measure "tgz down" "argoexec-rs" ours_down t ours/t.tgz 'null'
  measure "tgz down" "rclone + tar xzf (Go executor)" "rclone copyto t:bench/go/tree.tgz $work/dl.tgz && mkdir -p $work/out && tar xzf $work/dl.tgz -C $work/out && rm $work/dl.tgz"
  diff -r "$pod/argo/inputs/artifacts/t" "$d" >/dev/null
  rm -rf "$d" "$work/out" "$pod/argo/inputs"; clear_bucket
fi

if [[ " $cases " == *" small "* ]]; then
  echo "== small: 10,000 files of 4 KiB, archive none"
  d=$pod/mainctrfs/work/many
  mkdir -p "$d"
  python3 -c "
import os
for i in range(10000):
    sub = os.path.join('$d', 'd%02d' % (i % 50))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, 'f%05d.bin' % i), 'wb') as f: f.write(os.urandom(4096))"
  measure "small up" "argoexec-rs" ours_up m many '{"none":{}}' ours
  measure "small up" "rclone copy --transfers 1" rclone copy "$d" t:bench/r1 --transfers 1
  measure "small up" "rclone copy --transfers 16" rclone copy "$d" t:bench/r16 --transfers 16
  measure "small down" "argoexec-rs" ours_down m ours/many '{"none":{}}'
  measure "small down" "rclone copy --transfers 1" rclone copy t:bench/r1 "$work/r1" --transfers 1
  measure "small down" "rclone copy --transfers 16" rclone copy t:bench/r16 "$work/r16" --transfers 16
  diff -r "$pod/argo/inputs/artifacts/m" "$d" >/dev/null
  rm -rf "$d" "$work/r1" "$work/r16" "$pod/argo/inputs"; clear_bucket
fi

if [[ " $cases " == *" big "* ]]; then
  echo "== big: a 6 GiB tgz stream at defaults (peak RSS)"
  mkdir -p "$pod/mainctrfs/work/big"
  head -c 6G /dev/urandom >"$pod/mainctrfs/work/big/random.bin"
  measure "6 GiB stream up" "argoexec-rs" ours_up b big 'null' ours
  measure "6 GiB stream down" "argoexec-rs" ours_down b ours/b.tgz 'null'
  rm -rf "$pod/mainctrfs/work/big" "$pod/argo/inputs"; clear_bucket
fi

echo
echo "== summary: ratio = our time / the peer's time (lower is better); RSS in MiB"
python3 - "$results" <<'PY'
import sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by_case = collections.OrderedDict()
for case, tool, secs, kib in rows:
    by_case.setdefault(case, []).append((tool, float(secs), int(kib)))
print(f"| case | tool | seconds | peak RSS MiB | ours / tool |")
print(f"|---|---|---:|---:|---:|")
for case, tools in by_case.items():
    ours = next((s for t, s, _ in tools if t == "argoexec-rs"), None)
    for tool, secs, kib in tools:
        ratio = "" if tool == "argoexec-rs" or ours is None else f"{ours / secs:.2f}"
        print(f"| {case} | {tool} | {secs:.1f} | {kib / 1024:.0f} | {ratio} |")
PY
