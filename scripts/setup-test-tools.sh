#!/usr/bin/env bash
# Installs the local protocol servers the tests start on 127.0.0.1, into .work/tools, once.
# Writes .work/tools/env.sh, which exports where each one is. Nothing is started here: each
# test starts its own server on a free port and stops it by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$PWD/.work/tools
mkdir -p "$tools"
env_file=$tools/env.sh
: >"$env_file.new"

# (Servers are added here as drivers need them.)

mv "$env_file.new" "$env_file"
