#!/usr/bin/env bash
# The dependency graphs of the two crates, counted: the library `argoexec` (crates/argoexec)
# and the executor `argoexec-rs`, each with its default features and with none (the library
# then has only the S3 driver). Then times a clean build of the library alone with only the S3
# driver, in a throwaway target directory deleted afterwards (LIBBUILD_DIR, default
# target/lib-graph). Takes minutes: it compiles the AWS SDK and its TLS stack from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."

# Distinct crates (name and version) in the normal (non-dev, non-build) graph.
count() { cargo tree --locked "$@" -e normal --prefix none | sed 's/ (\*)$//' | sort -u | wc -l; }

for package in argoexec argoexec-rs; do
  echo "$package: $(count -p "$package") crates with default features, $(count -p "$package" --no-default-features) with none"
done
for forbidden in clap kube k8s-openapi jaq-core jsonpath-rust inotify; do
  if cargo tree --locked -p argoexec -e normal -i "$forbidden" >/dev/null 2>&1; then
    echo "the library's graph has $forbidden" >&2
    exit 1
  fi
done
echo "argoexec: no clap, kube, k8s-openapi, jaq, jsonpath or inotify in its graph"

dir=${LIBBUILD_DIR:-$PWD/target/lib-graph}
rm -rf "$dir"
trap 'rm -rf "$dir"' EXIT
start=$(date +%s)
cargo build --locked --quiet -p argoexec --no-default-features --target-dir "$dir"
echo "clean build of argoexec --no-default-features (S3 only, dev profile): $(($(date +%s) - start)) s"
