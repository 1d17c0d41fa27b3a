#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the protocol servers the tests start
# (into .work/tools, once), checks formatting, runs every test against real servers on
# 127.0.0.1, then clippy with warnings denied. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-test-tools.sh
# shellcheck disable=SC1091
. .work/tools/env.sh

cargo fmt --all -- --check
cargo test --locked
cargo clippy --locked --all-targets -- -D warnings
