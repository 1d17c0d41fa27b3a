#!/usr/bin/env bash
# The cloud-like link cases: benches/compare.sh with every client (ours, aws s3 cp, rclone at
# its defaults and as the Go executor uses it) behind examples/link on 127.0.0.1.
#
#   benches/link.sh                          # 4 GiB file and tgz, 10,000 small files
#   BENCH_GIB=1 benches/link.sh              # smaller file and tgz cases
#   LINK="40 400 20" benches/link.sh         # MiB/s per connection, MiB/s total, ms per turn
#
# One table: seconds, peak RSS, ours / each peer, the link's floor (bytes / total cap) and
# each tool / floor. The S3 server (s3s-fs) stays behind the link, on the same 2 cores. The
# file case uploads to examples/discard-s3 behind a link of its own (BENCH_SINK=discard: it
# checks every CRC32C but stores nothing, where s3s-fs spends ~7 CPU-seconds storing each GiB
# on the cores the clients share) and downloads one seeded object; BENCH_SINK= stores in s3s-fs.
set -euo pipefail
export BENCH_LINK=${LINK:-40 400 20}
export BENCH_GIB=${BENCH_GIB:-4}
export BENCH_CASES=${BENCH_CASES:-file tgz small}
export BENCH_SINK=${BENCH_SINK-discard}
exec "$(dirname "$0")/compare.sh"
