#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the protocol servers the tests start
# (into .work/tools, once), checks formatting, runs every test against real servers on
# 127.0.0.1 (cargo-nextest: one process per test, each bounded in time by
# .config/nextest.toml), the doctests, then clippy with warnings denied, with and without the
# optional drivers, and the API documentation with warnings denied. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-test-tools.sh
# shellcheck disable=SC1091
. .work/tools/env.sh

cargo fmt --all -- --check
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
# Every target, the S3 server's binary included (the demo test runs it; a test build alone
# links no binary of a package without integration tests), then the tests on that same build.
cargo build --locked --workspace --all-targets
cargo nextest run --locked --workspace --profile "${NEXTEST_PROFILE:-default}"
cargo test --locked --workspace --doc
cargo clippy --locked --workspace --all-targets -- -D warnings
# Both crates' documentation builds without a warning (reuses clippy's checked dependencies).
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps
# The library alone with only the S3 driver, and the executor without the optional drivers.
cargo clippy --locked -p argoexec --no-default-features --lib -- -D warnings
cargo clippy --locked -p argoexec-rs --no-default-features --lib -- -D warnings
