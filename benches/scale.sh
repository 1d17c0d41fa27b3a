#!/usr/bin/env bash
# Scale: our `wait` uploads a synthetic 64 GiB tgz stream (a tree of sparse files and small
# real ones, gzip level 0) and a 1 TiB `archive: none` file (one sparse file) at defaults to
# examples/discard-s3 on 127.0.0.1, which keeps no bodies but checks every part's CRC32C and the
# completed object's (the client is asked for a FULL_OBJECT CRC32C), and records each part.
#
#   benches/scale.sh                                   # 64 GiB tgz, 1 TiB none
#   SCALE_TGZ_GIB=8 SCALE_NONE_GIB=32 benches/scale.sh
#   SCALE_TGZ_LINK="50 4096 0" SCALE_NONE_LINK="" ...  # link per case ("" = direct), as
#                                                      # benches/link.sh: MiB/s per conn, total, ms
#
# The tgz case goes through examples/link at 50 MiB/s per connection by default (so that only
# parts in flight give speed, as on a cloud link); the none case goes direct by default (1 TiB
# at 4 x 50 MiB/s would take 87 minutes). One table: duration, throughput, our peak RSS over
# the whole run, the number of parts and the sizes used, and parts in flight over time (the
# time-weighted mean of parts being received, per tenth of the run).
. "$(dirname "$0")/common.sh"
tgz_gib=${SCALE_TGZ_GIB:-64}
none_gib=${SCALE_NONE_GIB:-1024}
tgz_link=${SCALE_TGZ_LINK-50 4096 0}
none_link=${SCALE_NONE_LINK-}
export ARGOEXEC_S3_FULL_OBJECT_CHECKSUM=true

bench_build --example discard-s3
bench_listen "$work/discard.log" "$out/examples/discard-s3" "$work/parts.tsv"
discard=$listening

results=$work/results.tsv
: >"$results"
# scale_case NAME LINK SRC ARCHIVE: uploads /work/SRC as NAME through LINK ("" = direct).
scale_case() {
  local name=$1 link=$2 src=$3 archive=$4 t first last
  bench_clients "$discard"
  if [ -n "$link" ]; then
    read -r per_conn total latency <<<"$link"
    bench_listen "$work/link-$name.log" "$out/examples/link" "$discard" \
      --per-conn-mibps "$per_conn" --total-mibps "$total" --latency-ms "$latency"
    bench_clients "$listening"
  fi
  first=$(wc -l <"$work/parts.tsv")
  /usr/bin/time -f "%e %M" -o "$work/time.out" bash -c "ours_up $name $src '$archive' scale" \
    || { echo "FAILED: $name"; tail -20 "$work/ours.log" "$work/discard.log"; exit 1; }
  if [ -n "$link" ]; then kill "${bench_pids[-1]}"; wait "${bench_pids[-1]}" 2>/dev/null || true; unset 'bench_pids[-1]'; fi
  last=$(wc -l <"$work/parts.tsv")
  t=$(tail -1 "$work/time.out")
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "${link:-direct}" ${t} "$first:$last" >>"$results"
  echo "  $name: $t (seconds, peak RSS KiB)"
  grep -E "BadDigest|aborted|Invalid|TooSmall" "$work/discard.log" && { echo "the endpoint refused the upload"; exit 1; }
  return 0
}

src=$pod/mainctrfs/work
if [ "$tgz_gib" -gt 0 ]; then
  echo "== tgz: a ${tgz_gib} GiB tree (sparse files of 4 GiB at most, 200 small random files), level 0"
  mkdir -p "$src/tree/small"
  for i in $(seq 1 $(((tgz_gib + 3) / 4))); do
    truncate -s $(((tgz_gib - (i - 1) * 4 < 4 ? tgz_gib - (i - 1) * 4 : 4) << 30)) "$src/tree/sparse-$i.bin"
  done
  for i in $(seq 1 200); do head -c 65536 /dev/urandom >"$src/tree/small/f$i.bin"; done
  scale_case tgz "$tgz_link" tree '{"tar":{"compressionLevel":0}}'
  rm -rf "$src/tree"
fi
if [ "$none_gib" -gt 0 ]; then
  echo "== none: one ${none_gib} GiB sparse file, archive none"
  truncate -s $((none_gib << 30)) "$src/big.bin"
  scale_case none "$none_link" big.bin '{"none":{}}'
  rm -f "$src/big.bin"
fi

echo
echo "== summary: examples/discard-s3 on 127.0.0.1 (every part's CRC32C and the whole object's checked)"
python3 - "$results" "$work/parts.tsv" <<'PY'
import sys, collections
parts = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
print("| case | link (MiB/s per conn, total, ms) | GiB | seconds | MiB/s | peak RSS MiB | parts | part sizes MiB (count) | parts in flight, mean per tenth of the run |")
print("|---|---|---:|---:|---:|---:|---:|---|---|")
for l in open(sys.argv[1]):
    name, link, secs, kib, span = l.rstrip("\n").split("\t")
    a, b = map(int, span.split(":"))
    mine = [(int(n), int(size), float(s), float(e)) for _, n, size, s, e in parts[a:b]]
    total = sum(p[1] for p in mine)
    sizes = collections.Counter(p[1] for p in sorted(mine)[:-1])  # the last part is what remains
    size_text = ", ".join(f"{s / 2**20:g} ({c})" for s, c in sorted(sizes.items())) or "one PUT"
    t0, t1 = min(p[2] for p in mine), max(p[3] for p in mine)
    step = max(t1 - t0, 1e-3) / 10
    windows = [(t0 + i * step, t0 + (i + 1) * step) for i in range(10)]
    flight = " ".join(
        f"{sum(max(0.0, min(e, b) - max(s, a)) for _, _, s, e in mine) / step:.1f}" for a, b in windows)
    print(f"| {name} | {link} | {total / 2**30:.1f} | {float(secs):.0f} | {total / 2**20 / float(secs):.0f} | {int(kib) / 1024:.0f} | {len(mine)} | {size_text} | {flight} |")
PY
