#!/usr/bin/env bash
# Peak RSS and time of `wait` uploading, then `init` downloading, one large file (archive: none)
# through GCS (fake-gcs-server) and Azure Blob (Azurite), each the real binary under
# /usr/bin/time -v. Servers run on 127.0.0.1 with on-disk storage and are stopped by PID.
#
#   scripts/measure-cloud-rss.sh                 # debug binary, 2048 MiB
#   PROFILE=release MIB=2048 scripts/measure-cloud-rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-tools.sh
# shellcheck disable=SC1091
. .work/tools/env.sh
profile=${PROFILE:-debug}
mib=${MIB:-2048}
if [[ $profile == release ]]; then cargo build --release --locked; else cargo build --locked; fi
bin=$PWD/target/x86_64-unknown-linux-gnu/$profile/argoexec

work=$(mktemp -d "${TMPDIR:-/tmp}/cloud-rss.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq 1 300); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}

gcs_port=$(free_port)
mkdir -p "$work/gcs"
"$ARGOEXEC_FAKE_GCS" -scheme http -host 127.0.0.1 -port "$gcs_port" \
    -external-url "http://127.0.0.1:$gcs_port" -backend filesystem -filesystem-root "$work/gcs" \
    -log-level warn >"$work/gcs.log" 2>&1 &
pids+=($!)
az_port=$(free_port)
mkdir -p "$work/azurite"
"$ARGOEXEC_AZURITE" --blobHost 127.0.0.1 --blobPort "$az_port" --location "$work/azurite" \
    --disableTelemetry --skipApiVersionCheck --loose --silent >"$work/azurite.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$gcs_port/storage/v1/b"
wait_http "http://127.0.0.1:$az_port/devstoreaccount1?comp=list"

curl -sf -X POST "http://127.0.0.1:$gcs_port/storage/v1/b?project=test" \
    -H 'content-type: application/json' -d '{"name":"rss-bucket"}' >/dev/null
account_key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
expiry=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
hexkey=$(printf '%s' "$account_key" | base64 -d | od -An -tx1 | tr -d ' \n')
sig=$(printf 'devstoreaccount1\nracwdl\nb\nsco\n\n%s\n\n\n2022-11-02\n\n' "$expiry" |
    openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64 | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')
curl -sf -X PUT -H 'x-ms-version: 2022-11-02' -H 'content-length: 0' \
    "http://127.0.0.1:$az_port/devstoreaccount1/rss-container?restype=container&sv=2022-11-02&ss=b&srt=sco&sp=racwdl&se=$expiry&sig=$sig" >/dev/null

root=$work/pod
mkdir -p "$root/mainctrfs/work" "$root/var/run/argo/ctr/main" "$root/argo/inputs/artifacts" "$root/dev" "$root/tmp" \
    "$root/argo/secret/azure-creds"
printf '%s' "$account_key" >"$root/argo/secret/azure-creds/accountKey"
echo 0 >"$root/var/run/argo/ctr/main/exitcode"
head -c "${mib}M" /dev/urandom >"$root/mainctrfs/work/big.bin"
want=$(sha256sum <"$root/mainctrfs/work/big.bin")

run() { # name command...
    local name=$1
    shift
    /usr/bin/time -v env ARGOEXEC_ROOT="$root" ARGO_POD_NAME=wf-1-main-123 ARGO_POD_UID=uid-1 \
        ARGO_WORKFLOW_NAME=wf-1 ARGO_NODE_ID=wf-1-123 ARGO_DEADLINE=0001-01-01T00:00:00Z STORAGE_EMULATOR_HOST="http://127.0.0.1:$gcs_port" \
        "$bin" "$@" --loglevel info --log-format text --gloglevel 0 >"$work/$name.out" 2>"$work/$name.err" ||
        { cat "$work/$name.err" >&2; exit 1; }
    printf '%-14s peak RSS %6d MiB  wall %s\n' "$name" \
        $(($(grep 'Maximum resident' "$work/$name.err" | awk '{print $NF}') / 1024)) \
        "$(grep 'Elapsed (wall' "$work/$name.err" | awk '{print $NF}')"
}

for backend in gcs azure; do
    if [[ $backend == gcs ]]; then
        archive='{"gcs":{"bucket":"rss-bucket","key":"wf-1/wf-1-main-123"}}'
        input='{"gcs":{"key":"wf-1/wf-1-main-123/big.bin"}}'
    else
        archive='{"azure":{"endpoint":"http://127.0.0.1:'$az_port'/devstoreaccount1","container":"rss-container","accountKeySecret":{"name":"azure-creds","key":"accountKey"},"blob":"wf-1/wf-1-main-123"}}'
        input='{"azure":{"blob":"wf-1/wf-1-main-123/big.bin"}}'
    fi
    cat >"$root/var/run/argo/template" <<EOF
{"name":"produce","container":{"volumeMounts":[{"name":"work","mountPath":"/work"}]},
 "outputs":{"artifacts":[{"name":"big","path":"/work/big.bin","archive":{"none":{}}}]},
 "archiveLocation":$archive}
EOF
    run "$backend-upload" wait
    rm -rf "$root/argo/inputs/artifacts/big"
    template='{"name":"consume","inputs":{"artifacts":[{"name":"big","path":"/in/big.bin",'${input:1:-1}'}]},"archiveLocation":'$archive'}'
    export ARGO_TEMPLATE=$template
    run "$backend-download" init
    unset ARGO_TEMPLATE
    got=$(sha256sum <"$root/argo/inputs/artifacts/big")
    [[ $got == "$want" ]] || { echo "$backend: downloaded bytes differ" >&2; exit 1; }
done
echo "profile=$profile size=${mib} MiB; bytes verified by sha256"
