#!/usr/bin/env bash
# Soak: many artifacts through the real `wait` and `init` against the loopback S3 server, a
# share of every request faulted at random (5xx/SlowDown answers, resets, corrupted uploads,
# truncated or corrupted downloads), every artifact compared with what was produced. Not part
# of CI: scripts/test.sh runs the same test with 40 artifacts.
#
# Bounded in count and in time:
#   ARGOEXEC_SOAK_ARTIFACTS      artifacts per run (default 1000)
#   ARGOEXEC_SOAK_FAULT_PERCENT  share of requests faulted (default 5)
#   SOAK_SEEDS                   one run per seed (default "1 2 3")
#   SOAK_TIMEOUT                 seconds after which a run is killed and the soak fails (default 1800)
# Prints one `soak figures:` line per run.
set -euo pipefail
cd "$(dirname "$0")/.."

artifacts=${ARGOEXEC_SOAK_ARTIFACTS:-1000}
percent=${ARGOEXEC_SOAK_FAULT_PERCENT:-5}
seeds=${SOAK_SEEDS:-1 2 3}
limit=${SOAK_TIMEOUT:-1800}

cargo build --locked --tests --quiet
for seed in $seeds; do
  log=$(mktemp)
  status=0
  ARGOEXEC_SOAK_ARTIFACTS=$artifacts ARGOEXEC_SOAK_FAULT_PERCENT=$percent ARGOEXEC_SOAK_SEED=$seed \
    timeout "$limit" cargo test --locked --quiet --test soak -- --nocapture >"$log" 2>&1 || status=$?
  grep -E '^soak figures:' "$log" || true
  if [ "$status" -ne 0 ]; then
    grep -E 'panicked|differs|failed to load|timed out' "$log" | head -20 || true
    echo "soak failed (seed $seed, exit $status); full log: $log" >&2
    exit 1
  fi
  rm -f "$log"
done
