#!/usr/bin/env bash
# Inside pod limits: `wait` (tgz up) and `init` (tgz down), and the Go executor's pipeline
# rebuilt from real tools (tar czf + rclone up, rclone + tar xzf down), each run in a cgroup v1
# with the limits a podSpecPatch would set (cpu: CFS quota; memory: limit_in_bytes), against
# s3s-fs on 127.0.0.1 (outside the cgroup).
#
#   benches/pod-limits.sh                              # 4 GiB tree; 1 and 0.5 CPU x 128 and 64 MiB
#   POD_MIB=256 POD_CPUS="0.5" POD_MEMS="64" benches/pod-limits.sh
#   BENCH_SKIP="Go executor" benches/pod-limits.sh     # leave out the tools whose name matches
#
# One table: seconds, peak RSS of the tool (its largest process), the cgroup's peak usage
# (memory.max_usage_in_bytes: includes the page cache the tool dirtied, which the kernel
# reclaims at the limit), OOM kills (memory.oom_control), and CPU seconds (cpuacct.usage) per
# GiB of the tree moved. Needs root and cgroup v1 cpu, cpuacct and memory controllers.
. "$(dirname "$0")/common.sh"
mib=${POD_MIB:-4096}
cpus=${POD_CPUS:-1 0.5}
mems=${POD_MEMS:-128 64}

cgroups=/sys/fs/cgroup
for controller in cpu cpuacct memory; do
  [ -w "$cgroups/$controller" ] || { echo "cgroup v1 $controller is not writable here"; exit 1; }
done
bench_build
bench_peers
mkdir -p "$work/s3/bench"
bench_listen "$work/server.log" "$out/s3-server" "$work/s3" 0 --part-checksums
bench_clients "$listening"

made=()  # cgroups created, removed on exit
pod_cleanup() {
  local cg
  for cg in "${made[@]}"; do rmdir "$cgroups"/{cpu,cpuacct,memory}/"$cg" 2>/dev/null || true; done
  bench_cleanup
}
trap pod_cleanup EXIT

echo "== a ${mib} MiB mixed tree, gzip level 6 (Argo's default)"
tree=$pod/mainctrfs/work/tree
make_tree "$tree" "$mib"
tree_bytes=$(du -sb "$tree" | cut -f1)
ours_up seed tree 'null' seed  # the object every download reads: seed/seed.tgz

results=$work/results.tsv
: >"$results"
# limited CPU MEM_MIB CASE TOOL LINE: runs the shell LINE in a new cgroup with CPU cores and
# MEM_MIB MiB, records its time, peak RSS, the cgroup's peak, OOM kills, exit status and CPU.
limited() {
  local cpu=$1 mem=$2 case=$3 tool=$4 line=$5
  local cg="argoexec-bench-$$-${#made[@]}" status=0
  ran=0
  if [ -n "${BENCH_SKIP:-}" ] && [[ "$tool" =~ $BENCH_SKIP ]]; then
    printf '  %-8s %4s CPU %4s MiB  %-32s skipped (BENCH_SKIP)\n' "$case" "$cpu" "$mem" "$tool"; return 0
  fi
  ran=1
  mkdir "$cgroups"/{cpu,cpuacct,memory}/"$cg"
  made+=("$cg")
  echo 100000 >"$cgroups/cpu/$cg/cpu.cfs_period_us"
  echo "$(python3 -c "print(int($cpu * 100000))")" >"$cgroups/cpu/$cg/cpu.cfs_quota_us"
  echo $((mem << 20)) >"$cgroups/memory/$cg/memory.limit_in_bytes"
  /usr/bin/time -f "%e %M" -o "$work/time.out" bash -c '
    for c in cpu cpuacct memory; do echo $$ >"'"$cgroups"'/$c/'"$cg"'/cgroup.procs"; done
    exec bash -c "$0"' "$line" >/dev/null 2>"$work/cmd.err" || status=$?
  local t peak oom cpu_ns
  t=$(tail -1 "$work/time.out")
  peak=$(cat "$cgroups/memory/$cg/memory.max_usage_in_bytes")
  oom=$(sed -n 's/^oom_kill //p' "$cgroups/memory/$cg/memory.oom_control")
  cpu_ns=$(cat "$cgroups/cpuacct/$cg/cpuacct.usage")
  [ "$status" = 0 ] || { echo "  (exit $status) $(tail -3 "$work/cmd.err" "$work/ours.log" 2>/dev/null | tr '\n' ' ' | cut -c1-300)"; }
  printf '%s\t%s CPU, %s MiB\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$cpu" "$mem" "$tool" ${t:-0 0} "$peak" "$oom" "$status" "$cpu_ns" >>"$results"
  printf '  %-8s %4s CPU %4s MiB  %-32s %8ss exit %s oom_kill %s\n' "$case" "$cpu" "$mem" "$tool" "${t%% *}" "$status" "$oom"
  rmdir "$cgroups"/{cpu,cpuacct,memory}/"$cg"
  made=("${made[@]:0:${#made[@]}-1}")
}

# intact DIR: after a download that ran and exited 0, DIR must be the tree (checked outside the
# cgroup: diff holds whole files in memory).
intact() {
  [ "$ran" = 1 ] || return 0
  [ "$(tail -1 "$results" | cut -f8)" != 0 ] || diff -r "$1" "$tree" >/dev/null \
    || { echo "FAILED: $1 is not the tree"; exit 1; }
}

for cpu in $cpus; do
  for mem in $mems; do
    # Only the seed is read back: each upload's object goes at once, to keep the disk free.
    limited "$cpu" "$mem" "tgz up" "argoexec-rs wait" "ours_up t tree null ours"
    rm -rf "$work/s3/bench/ours"
    limited "$cpu" "$mem" "tgz up" "tar czf + rclone (Go executor)" \
      "tar czf $work/tree.tgz -C $pod/mainctrfs/work tree && rclone copyto $work/tree.tgz t:bench/go/tree.tgz; s=\$?; rm -f $work/tree.tgz; exit \$s"
    rm -rf "$work/s3/bench/go"
    limited "$cpu" "$mem" "tgz down" "argoexec-rs init" "ours_down t seed/seed.tgz null"
    intact "$pod/argo/inputs/artifacts/t"
    rm -rf "$pod/argo/inputs"
    limited "$cpu" "$mem" "tgz down" "rclone + tar xzf (Go executor)" \
      "rclone copyto t:bench/seed/seed.tgz $work/dl.tgz && mkdir -p $work/out && tar xzf $work/dl.tgz -C $work/out"
    intact "$work/out/tree"
    rm -rf "$pod/argo/inputs" "$work/dl.tgz" "$work/out"
  done
done

echo
echo "== summary: ${mib} MiB tree ($(python3 -c "print(f'{$tree_bytes / 2**30:.2f}')") GiB), s3s-fs on 127.0.0.1; cgroup peak includes page cache"
python3 - "$results" "$tree_bytes" <<'PY'
import sys
tree_gib = int(sys.argv[2]) / 2**30
print("| case | limits | tool | seconds | peak RSS MiB | cgroup peak MiB | OOM-killed | exit | CPU s / GiB |")
print("|---|---|---|---:|---:|---:|---|---:|---:|")
for l in open(sys.argv[1]):
    case, limits, tool, secs, kib, peak, oom, status, cpu_ns = l.rstrip("\n").split("\t")
    killed = "**yes**" if int(oom or 0) > 0 else "no"
    cpu = int(cpu_ns) / 1e9 / tree_gib
    print(f"| {case} | {limits} | {tool} | {float(secs):.1f} | {int(kib) / 1024:.0f} | {int(peak) / 2**20:.0f} | {killed} | {status} | {cpu:.1f} |")
PY
