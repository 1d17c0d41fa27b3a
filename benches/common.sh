# Shared by the benchmarks (sourced, not run): the release build, an S3 endpoint on 127.0.0.1,
# credentials for every client, a pod root for our binary, and the data sets.
#
#   . benches/common.sh; bench_build --example link ...; bench_serve s3s|discard
#
# Sets work (a temp dir removed on exit), out and bin (the release outputs), endpoint, pod.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# BENCH_OUT: prebuilt binaries (argoexec, s3-server, examples/*) instead of this tree's release build.
out=${BENCH_OUT:-$PWD/target/x86_64-unknown-linux-gnu/release}  # .cargo/config.toml: per triple
bin=$out/argoexec
work=$(mktemp -d "${BENCH_DIR:-/tmp}/argoexec-bench.XXXXXX")
bench_pids=()
bench_cleanup() {
  local pid
  for pid in "${bench_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap bench_cleanup EXIT

# bench_build [cargo build args]: our binary, the loopback S3 server (crates/s3-server) and the
# named examples, release (unless BENCH_OUT). The `link` example always comes along: an example
# turns on the dev-dependencies' features, so every benchmark builds the same binary.
bench_build() {
  [ -n "${BENCH_OUT:-}" ] || cargo build --release -p argoexec-rs --bin argoexec -p argoexec-s3-server --bin s3-server --example link "$@"
}

# bench_listen LOG COMMAND [ARGS...]: starts a server in the background (stopped on exit) and
# sets `listening` to the address it says it listens on.
bench_listen() {
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  bench_pids+=($!)
  for _ in $(seq 1 100); do grep -q "listening on" "$log" 2>/dev/null && break; sleep 0.1; done
  listening=$(sed -n 's/^listening on //p' "$log")
  [ -n "$listening" ] || { echo "$1 did not start: $(cat "$log")" >&2; exit 1; }
}

export AWS_ACCESS_KEY_ID=argoexec-test-access AWS_SECRET_ACCESS_KEY=argoexec-test-secret AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=$work/aws-config
printf '[default]\ns3 =\n  addressing_style = path\n' >"$AWS_CONFIG_FILE"

# bench_clients ENDPOINT: points every client (ours, aws, rclone as `t:`, the floor) at ENDPOINT.
bench_clients() {
  endpoint=$1
  export endpoint FLOOR_ENDPOINT=http://$endpoint FLOOR_BUCKET=bench
  export RCLONE_CONFIG_T_TYPE=s3 RCLONE_CONFIG_T_PROVIDER=Other RCLONE_CONFIG_T_ENDPOINT=http://$endpoint \
    RCLONE_CONFIG_T_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_T_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
    RCLONE_CONFIG_T_FORCE_PATH_STYLE=true
}
bench_peers() {
  # `type -P`: the program on PATH, not the rclone() wrapper below (which `command -v` finds).
  type -P rclone >/dev/null || { apt-get update -qq && apt-get install -y -qq rclone >/dev/null; }
  type -P aws >/dev/null || { echo "aws cli is needed (pip install awscli)"; exit 1; }
}
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
export -f ours_up ours_down rclone aws_s3 loc
export bin pod work

# make_tree DIR MIB: a mixed directory of about MIB MiB (half random, a quarter repetitive log,
# a quarter base64 text, 500 small files), as a training job leaves one.
make_tree() {
  local d=$1 mib=$2
  mkdir -p "$d/blobs" "$d/logs" "$d/small"
  head -c $((mib << 19)) /dev/urandom >"$d/blobs/random.bin"
  # `yes` ends by SIGPIPE when head has enough: not a failure (pipefail would say it is).
  { yes 'ts=2026-11-23T10:00:00Z level=info component=trainer msg="epoch finished" loss=0.1234 step=4242' || true; } | head -c $((mib << 18)) >"$d/logs/train.log"
  head -c $((mib << 18)) /dev/urandom | base64 -w 120 >"$d/logs/encoded.txt"
  for i in $(seq 1 500); do head -c 8192 /dev/urandom | base64 >"$d/small/f$i.txt"; done
}
