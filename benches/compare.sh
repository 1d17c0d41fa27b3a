#!/usr/bin/env bash
# Transfer benchmark: argoexec-rs side by side with peer tools, in one run, against an S3
# server (s3s-fs, crates/s3-server) on 127.0.0.1. Prints wall time, peak RSS and the ratio
# ours/peer for each case (ratios, because this machine is shared and noisy). The server runs
# with `--part-checksums`: it checks and echoes each part's CRC32C as S3 does, so no client
# spends CPU on a fallback it would not need against S3.
#
#   benches/compare.sh                      # every case
#   BENCH_CASES="file tgz" benches/compare.sh
#   BENCH_GIB=1 benches/compare.sh          # smaller data (file and tgz cases)
#   BENCH_LINK="40 400 20" benches/compare.sh  # every client through the link emulator
#                                           # (benches/link.sh runs the cloud-like cases)
#   BENCH_SKIP="transfers 1$|aws" benches/compare.sh  # leave out the tools whose name matches
#                                           # (an extended regex; the slow peers on a link)
#   BENCH_SINK=discard benches/compare.sh   # file case: uploads go to examples/discard-s3 (keeps
#                                           # no bodies, checks CRC32Cs), downloads read one
#                                           # seeded object, so the server's own cost of storing
#                                           # (s3s-fs: ~7 CPU-seconds a GiB) is out of the figure
#
# Cases: file (2 GiB, archive none, up and down: aws s3 cp, rclone copyto, the floor client),
# tgz (2 GiB mixed directory, level 6: the Go executor's pipeline rebuilt from real tools:
# tar czf to a temp file then rclone copyto; down: rclone to a temp file then tar xzf),
# small (10,000 x 4 KiB files, archive none: rclone --transfers 1, 16 and its default 4,
# aws s3 cp --recursive), big (6 GiB stream:
# our peak RSS at defaults). With BENCH_LINK="<MiB/s per connection> <MiB/s total> <ms per
# turn>", every client reaches the server through examples/link (a cloud-like link on loopback)
# and the table adds the link's limit time (bytes moved / total cap) as the floor.
# Needs: aws (cli), rclone (installed with apt if missing).
. "$(dirname "$0")/common.sh"
cases=${BENCH_CASES:-file tgz small big}
gib=${BENCH_GIB:-2}

bench_build --example floor --example discard-s3
bench_peers
mkdir -p "$work/s3/bench"
bench_listen "$work/server.log" "$out/s3-server" "$work/s3" 0 --part-checksums
direct=$listening
sink=""
[ "${BENCH_SINK:-}" != discard ] || { bench_listen "$work/discard.log" "$out/examples/discard-s3" "$work/parts.tsv"; sink=$listening; }
total_mibps=""
# linked ADDRESS: sets `listening` to ADDRESS behind a link of its own (BENCH_LINK), or ADDRESS.
linked() {
  listening=$1
  [ -n "${BENCH_LINK:-}" ] || return 0
  read -r per_conn_mibps total_mibps latency_ms <<<"$BENCH_LINK"
  bench_listen "$work/link-$1.log" "$out/examples/link" "$1" --per-conn-mibps "$per_conn_mibps" \
    --total-mibps "$total_mibps" --latency-ms "$latency_ms"
  sed -n 's/^link: /== link: /p' "$work/link-$1.log"
}
linked "$direct"; server=$listening
[ -z "$sink" ] || { linked "$sink"; sink=$listening; }
bench_clients "$server"

results=$work/results.tsv floors=$work/floors.tsv
: >"$results"; : >"$floors"
# floor CASE BYTES: the link's limit time for CASE, BYTES over the total cap (link runs only).
floor() { [ -z "$total_mibps" ] || printf '%s\t%s\t%s\n' "$1" "$2" "$total_mibps" >>"$floors"; }
# measure CASE TOOL COMMAND [ARGS...]: wall seconds and peak RSS (KiB) of the command and its
# children. One argument is a shell line; several are a command and its arguments.
# Sources stay in the page cache, as an artifact main has just written does.
skipped=0
measure() {
  local case=$1 tool=$2; shift 2
  local line t
  if [ -n "${BENCH_SKIP:-}" ] && [[ "$tool" =~ $BENCH_SKIP ]]; then
    printf '  %-28s %-34s skipped (BENCH_SKIP)\n' "$case" "$tool"; skipped=1; return 0
  fi
  skipped=0
  if [ $# -eq 1 ]; then line=$1; else line=$(printf '%q ' "$@"); fi
  /usr/bin/time -f "%e %M %U %S" -o "$work/time.out" bash -c "$line" >/dev/null 2>"$work/cmd.err" \
    || { echo "FAILED: $case $tool"; cat "$work/cmd.err" "$work/ours.log" 2>/dev/null | tail -20; exit 1; }
  # wall seconds, peak RSS KiB, CPU seconds (user + system) of the client and its children
  t=$(tail -1 "$work/time.out" | awk '{printf "%s %s %.2f", $1, $2, $3 + $4}')
  printf '%s\t%s\t%s\t%s\t%s\n' "$case" "$tool" ${t} >>"$results"
  printf '  %-28s %-34s %8ss %8s KiB %8s CPU-s\n' "$case" "$tool" ${t}
}
clear_bucket() { rm -rf "$work/s3/bench" && mkdir -p "$work/s3/bench"; }

# checked_down DOWNLOADED SOURCE: the download must equal the source; then the download and the
# bucket go, so each tool round-trips alone and the disk holds at most three copies at a time.
# (Nothing to check after a tool BENCH_SKIP left out.)
checked_down() { [ "$skipped" = 1 ] || diff -r "$1" "$2" >/dev/null || { echo "FAILED: $1 is not $2"; exit 1; }; rm -rf "$1"; clear_bucket; }

if [[ " $cases " == *" file "* && -n "$sink" ]]; then
  echo "== file: ${gib} GiB, archive none; uploads to examples/discard-s3, downloads of one seeded object"
  src=$pod/mainctrfs/work/file.bin
  head -c $((gib << 30)) /dev/urandom >"$src"
  bench_clients "$sink"
  export RCLONE_CONFIG_T_NO_CHECK_BUCKET=true  # the sink has no CreateBucket
  measure "file up" "argoexec-rs" ours_up f file.bin '{"none":{}}' ours
  measure "file up" "aws s3 cp" aws_s3 cp "$src" s3://bench/aws/file.bin
  measure "file up" "rclone copyto" rclone copyto "$src" t:bench/rclone/file.bin
  measure "file up" "floor (lean SDK client)" "$out/examples/floor" up "$src" floor/file.bin
  bench_clients "$direct"
  ours_up f file.bin '{"none":{}}' seed
  bench_clients "$server"
  # the download must equal the source; the seed stays
  intact() { [ "$skipped" = 1 ] || cmp -s "$1" "$src" || { echo "FAILED: $1 is not $src"; exit 1; }; rm -f "$1"; }
  measure "file down" "argoexec-rs" ours_down f seed/file.bin '{"none":{}}'
  intact "$pod/argo/inputs/artifacts/f"
  # Argo's inputs usually declare no archive: the executor tells a plain file by its first bytes.
  measure "file down" "argoexec-rs, no archive declared" ours_down f seed/file.bin 'null'
  intact "$pod/argo/inputs/artifacts/f"
  measure "file down" "aws s3 cp" aws_s3 cp s3://bench/seed/file.bin "$work/down.bin"
  intact "$work/down.bin"
  measure "file down" "rclone copyto" rclone copyto t:bench/seed/file.bin "$work/down.bin"
  intact "$work/down.bin"
  measure "file down" "floor (lean SDK client)" "$out/examples/floor" down seed/file.bin "$work/down.bin"
  intact "$work/down.bin"
  floor "file up" $((gib << 30)); floor "file down" $((gib << 30))
  rm -f "$src"; rm -rf "$pod/argo/inputs"; clear_bucket
elif [[ " $cases " == *" file "* ]]; then
  echo "== file: ${gib} GiB, archive none"
  src=$pod/mainctrfs/work/file.bin
  head -c $((gib << 30)) /dev/urandom >"$src"
  measure "file up" "argoexec-rs" ours_up f file.bin '{"none":{}}' ours
  measure "file down" "argoexec-rs" ours_down f ours/file.bin '{"none":{}}'
  checked_down "$pod/argo/inputs/artifacts/f" "$src"
  measure "file up" "aws s3 cp" aws_s3 cp "$src" s3://bench/aws/file.bin
  measure "file down" "aws s3 cp" aws_s3 cp s3://bench/aws/file.bin "$work/down.bin"
  checked_down "$work/down.bin" "$src"
  measure "file up" "rclone copyto" rclone copyto "$src" t:bench/rclone/file.bin
  measure "file down" "rclone copyto" rclone copyto t:bench/rclone/file.bin "$work/down.bin"
  checked_down "$work/down.bin" "$src"
  measure "file up" "floor (lean SDK client)" "$out/examples/floor" up "$src" floor/file.bin
  measure "file down" "floor (lean SDK client)" "$out/examples/floor" down floor/file.bin "$work/down.bin"
  checked_down "$work/down.bin" "$src"
  floor "file up" $((gib << 30)); floor "file down" $((gib << 30))
  rm -f "$src"; rm -rf "$pod/argo/inputs"
fi

if [[ " $cases " == *" tgz "* ]]; then
  echo "== tgz: ${gib} GiB mixed directory, gzip level 6"
  d=$pod/mainctrfs/work/tree
  make_tree "$d" $((gib << 10))
  measure "tgz up" "argoexec-rs" ours_up t tree 'null' ours
  tgz_bytes=$(stat -c %s "$work/s3/bench/ours/t.tgz")
  measure "tgz down" "argoexec-rs" ours_down t ours/t.tgz 'null'
  checked_down "$pod/argo/inputs/artifacts/t" "$d"
  measure "tgz up" "tar czf + rclone (Go executor)" "tar czf $work/tree.tgz -C $pod/mainctrfs/work tree && rclone copyto $work/tree.tgz t:bench/go/tree.tgz && rm $work/tree.tgz"
  measure "tgz down" "rclone + tar xzf (Go executor)" "rclone copyto t:bench/go/tree.tgz $work/dl.tgz && mkdir -p $work/out && tar xzf $work/dl.tgz -C $work/out && rm $work/dl.tgz"
  checked_down "$work/out/tree" "$d"
  floor "tgz up" "$tgz_bytes"; floor "tgz down" "$tgz_bytes"
  rm -rf "$d" "$work/out" "$pod/argo/inputs"
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
  measure "small up" "rclone copy (defaults)" rclone copy "$d" t:bench/rd
  measure "small up" "aws s3 cp --recursive" aws_s3 cp --recursive "$d" s3://bench/aws/many
  measure "small down" "argoexec-rs" ours_down m ours/many '{"none":{}}'
  measure "small down" "rclone copy --transfers 1" rclone copy t:bench/r1 "$work/r1" --transfers 1
  measure "small down" "rclone copy --transfers 16" rclone copy t:bench/r16 "$work/r16" --transfers 16
  measure "small down" "rclone copy (defaults)" rclone copy t:bench/rd "$work/rd"
  measure "small down" "aws s3 cp --recursive" aws_s3 cp --recursive s3://bench/aws/many "$work/awsmany"
  diff -r "$pod/argo/inputs/artifacts/m" "$d" >/dev/null
  floor "small up" $((10000 * 4096)); floor "small down" $((10000 * 4096))
  rm -rf "$d" "$work/r1" "$work/r16" "$work/rd" "$work/awsmany" "$pod/argo/inputs"; clear_bucket
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
echo "== summary: ratio = our time / the peer's time (lower is better); RSS in MiB; CPU = the"
echo "   client's user + system seconds (the server's are not counted: on loopback it shares the cores)"
[ -z "$total_mibps" ] || echo "   link: $per_conn_mibps MiB/s per connection, $total_mibps MiB/s total, $latency_ms ms per turn; floor = bytes moved / total cap"
python3 - "$results" "$floors" <<'PY'
import sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
floors = {}
for l in open(sys.argv[2]):
    case, size, cap = l.rstrip("\n").split("\t")
    floors[case] = (int(size), int(size) / (float(cap) * 2**20))
by_case = collections.OrderedDict()
for case, tool, secs, kib, cpu in rows:
    by_case.setdefault(case, []).append((tool, float(secs), int(kib), float(cpu)))
extra = " floor s | tool / floor |" if floors else ""
print(f"| case | tool | seconds | peak RSS MiB | CPU s | ours / tool | CPU ours / tool |{extra}")
print(f"|---|---|---:|---:|---:|---:|---:|{'---:|---:|' if floors else ''}")
for case, tools in by_case.items():
    ours = next(((s, c) for t, s, _, c in tools if t == "argoexec-rs"), None)
    for tool, secs, kib, cpu in tools:
        mine = tool == "argoexec-rs" or ours is None
        ratio = "" if mine else f"{ours[0] / secs:.2f}"
        cpu_ratio = "" if mine or cpu == 0 else f"{ours[1] / cpu:.2f}"
        line = f"| {case} | {tool} | {secs:.1f} | {kib / 1024:.0f} | {cpu:.1f} | {ratio} | {cpu_ratio} |"
        if case in floors:
            line += f" {floors[case][1]:.1f} | {secs / floors[case][1]:.2f} |"
        elif floors:
            line += " | |"
        print(line)
PY
