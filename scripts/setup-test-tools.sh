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

# git: builds the fixture repositories of the git driver tests and serves them over smart HTTP
# (`git http-backend`). The executor itself never runs git.
if ! command -v git >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq git >/dev/null
fi
echo "export ARGOEXEC_TEST_GIT=$(command -v git)" >>"$env_file.new"

mv "$env_file.new" "$env_file"
