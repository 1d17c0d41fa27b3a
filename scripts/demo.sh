#!/usr/bin/env bash
# The main job, end to end, on a fresh machine with no cloud account: a two-step workflow's
# pods run against an S3 server on 127.0.0.1. Step 1's main writes a dataset and wait uploads
# it; step 2's init downloads it, main summarises it, wait uploads the results. Each container
# is the real `argoexec` binary as a process; the pod paths live under a temporary root.
#
#   scripts/demo.sh                 # quick-building `demo` profile (S3 driver only), 512 MiB
#   DEMO_MIB=2048 scripts/demo.sh   # a bigger dataset
#   ARGOEXEC_PROFILE=release scripts/demo.sh # the image's build (LTO: a cold build is much longer)
#   ARGOEXEC_PROFILE=debug scripts/demo.sh   # the full debug binary (every driver)
#   ARGOEXEC_BIN=path/to/argoexec ARGOEXEC_PROFILE=debug scripts/demo.sh   # any built binary
#   ARGOEXEC_BIN=... S3_SERVER_BIN=path/to/s3-server scripts/demo.sh  # both given: no build at all
# (`debug` and cargo's own name for it, `dev`, are the same profile.)
#
# Each container's peak RSS is printed after its lines (with /usr/bin/time, when installed).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${ARGOEXEC_PROFILE:-demo}
[ "$profile" = debug ] && profile=dev
mib=${DEMO_MIB:-512}
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in /*) ;; *) target_dir=$PWD/$target_dir ;; esac
# Outputs live under the target triple .cargo/config.toml names (every binary is static).
dir=$target_dir/x86_64-unknown-linux-gnu/$([ "$profile" = dev ] && echo debug || echo "$profile")
bin=${ARGOEXEC_BIN:-$dir/argoexec}
server=${S3_SERVER_BIN:-$dir/s3-server}
# The test suite gives both binaries it built: a build here would compile the library again
# with other features (and replace the binary the other tests run) in the middle of the run.
if [ -z "${ARGOEXEC_BIN:-}" ] || [ -z "${S3_SERVER_BIN:-}" ]; then
  # Said before cargo starts: the first build is the long part of a first run.
  echo "== building argoexec and the demo's S3 server (cargo profile $profile): the first build compiles"
  echo "   every dependency (minutes; cargo lists each crate below), later ones take seconds"
  # The demo talks to S3 only: its quick profile builds the binary without the other drivers
  # (GCS with gRPC, Azure, gitoxide, OpenTelemetry) and the S3 server from its own small package
  # (crates/s3-server), so no dependency of the tests is compiled. `release` and `debug` build
  # the full binary as the benchmarks and the tests do: building an example along turns on the
  # tests' dependency features, so Cargo reuses most of their build.
  extra=(--example controller)
  [ "$profile" = demo ] && extra=(--no-default-features)
  cargo build --profile "$profile" "${extra[@]}" -p argoexec-rs --bin argoexec -p argoexec-s3-server --bin s3-server
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/argoexec-demo.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/s3/argo-artifacts"
"$server" "$work/s3" 0 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/server.log" 2>/dev/null && break
  sleep 0.1
done
endpoint=$(sed -n 's/^listening on //p' "$work/server.log")
[ -n "$endpoint" ] || { echo "the S3 server did not start"; cat "$work/server.log"; exit 1; }
echo "== S3 server (s3s-fs) on $endpoint, data in $work/s3"

# One pod root per step, with the secrets the controller would mount.
new_pod() {
  local root=$1
  mkdir -p "$root/argo/secret/s3-creds" "$root/var/run/argo" "$root/argo/inputs/artifacts" "$root/dev"
  printf 'argoexec-test-access' >"$root/argo/secret/s3-creds/accessKey"
  printf 'argoexec-test-secret' >"$root/argo/secret/s3-creds/secretKey"
}
location() { # location KEY
  printf '{"endpoint":"%s","bucket":"argo-artifacts","insecure":true,"accessKeySecret":{"name":"s3-creds","key":"accessKey"},"secretKeySecret":{"name":"s3-creds","key":"secretKey"},"key":"%s"}' "$endpoint" "$1"
}
logopts=(--loglevel info --log-format text --gloglevel 0)
peak_rss() { # peak_rss COMMAND...: runs it, then prints its peak RSS
  if [ -x /usr/bin/time ]; then /usr/bin/time -f "(peak RSS %M KiB)" "$@"; else "$@"; fi
}
run_pod() { # run_pod NAME ROOT TEMPLATE MAIN-SCRIPT
  local name=$1 root=$2 template=$3 script=$4
  # No Kubernetes API here: wait prints the WorkflowTaskResult it would report.
  local env=(-u KUBECONFIG -u KUBERNETES_SERVICE_HOST ARGOEXEC_ROOT="$root" ARGO_POD_NAME="$name" ARGO_WORKFLOW_NAME=demo ARGO_WORKFLOW_UID=demo-uid ARGO_NODE_ID="$name"
             ARGO_DEADLINE=0001-01-01T00:00:00Z ARGO_CONTAINER_NAME=main)
  echo "-- $name: init"
  peak_rss env "${env[@]}" ARGO_TEMPLATE="$template" "$bin" init "${logopts[@]}" 2>&1 | sed 's/^/   /'
  echo "-- $name: main (through $root/var/run/argo/argoexec emissary)"
  peak_rss env "${env[@]}" "$root/var/run/argo/argoexec" emissary "${logopts[@]}" -- sh -c "$script" 2>&1 | sed 's/^/   /'
  echo "-- $name: wait"
  peak_rss env "${env[@]}" ARGO_CONTAINER_NAME=wait "$bin" wait "${logopts[@]}" 2>&1 | sed 's/^/   /'
}

echo "== step 1: generate a ${mib} MiB dataset, upload it as a tgz"
out1=$work/main1
new_pod "$work/pod1"
t1=$(printf '{"name":"generate","container":{"image":"any"},"outputs":{"artifacts":[{"name":"dataset","path":"%s/dataset"}]},"archiveLocation":{"s3":%s}}' \
  "$out1" "$(location demo/demo-generate)")
run_pod demo-generate "$work/pod1" "$t1" "
  mkdir -p $out1/dataset/logs $out1/dataset/blobs
  head -c $((mib * 1024 * 1024 / 2)) /dev/urandom > $out1/dataset/blobs/random.bin
  yes 'timestamp=2026-11-23 level=info msg=\"the executor moved some bytes\"' | head -c $((mib * 1024 * 1024 / 2)) > $out1/dataset/logs/app.log
  for i in \$(seq 1 200); do echo \"record \$i\" > $out1/dataset/logs/small-\$i.txt; done"

echo "== step 2: init loads the dataset, main summarises it, wait uploads the results"
new_pod "$work/pod2"
in2=$work/pod2/argo/inputs/artifacts/dataset
out2=$work/main2
t2=$(printf '{"name":"summarise","container":{"image":"any"},"inputs":{"artifacts":[{"name":"dataset","path":"/data","s3":{"key":"demo/demo-generate/dataset.tgz"}}]},"outputs":{"parameters":[{"name":"files","valueFrom":{"path":"%s/files.txt"}}],"artifacts":[{"name":"summary","path":"%s/summary.txt","archive":{"none":{}}},{"name":"copy","path":"%s/copy"}]},"archiveLocation":{"s3":%s}}' \
  "$out2" "$out2" "$out2" "$(location demo/demo-summarise)")
run_pod demo-summarise "$work/pod2" "$t2" "
  mkdir -p $out2
  find $in2 -type f | wc -l > $out2/files.txt
  (cd $in2 && find . -type f | sort | xargs sha256sum) > $out2/summary.txt
  cp -r $in2 $out2/copy"

echo "== objects in the bucket"
(cd "$work/s3/argo-artifacts" && find . -type f ! -name '.*' -printf '%12s  %P\n' | sort -k2)
echo "== step 2's main saw $(cat "$out2/files.txt") files; its summary round-tripped through S3 intact:"
cmp "$out2/summary.txt" "$work/s3/argo-artifacts/demo/demo-summarise/summary.txt" && echo "   summary.txt identical"
echo "== done"
