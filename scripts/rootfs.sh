#!/usr/bin/env bash
# The executor image's root filesystem, assembled in a directory: what the Dockerfile's final
# stage holds (it copies exactly this directory into `FROM scratch`), and what tests/image.rs
# chroots into as a non-root user to run init, emissary and wait.
#
#   scripts/rootfs.sh ROOTFS [BINARY]
#
# BINARY defaults to the static release build. It must be statically linked: the image has no
# C library, and `init` copies this very file into user containers of any distribution.
#
# Contents (and nothing else):
#   /bin/argoexec                        the binary, on PATH as `argoexec`; also where the
#                                        init-less layout's image volume finds it (/argo-bin/bin/argoexec)
#   /etc/ssl/certs/ca-certificates.crt   CA bundle for TLS to object stores and the API server
#   /etc/passwd, /etc/group              root, argoexec (8737, Argo's executor uid), nobody
#   /etc/nsswitch.conf                   files then DNS, as glibc's built-in NSS reads it
#   /tmp                                 1777, for runs without Argo's tmp-dir-argo volume
set -euo pipefail

usage() { echo "usage: $0 ROOTFS [BINARY]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
root=$1
binary=${2:-$(dirname "$0")/../target/x86_64-unknown-linux-gnu/release/argoexec}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

[ -f "$binary" ] || { echo "no binary at $binary (cargo build --release --bin argoexec)" >&2; exit 1; }
[ -f "$ca_bundle" ] || { echo "no CA bundle at $ca_bundle (apt-get install ca-certificates)" >&2; exit 1; }
# A dynamic binary would start here and die in the first user image without its libc.
if ! LC_ALL=C ldd "$binary" 2>&1 | grep -qE 'not a dynamic executable|statically linked'; then
  echo "$binary is dynamically linked; build with the workspace's .cargo/config.toml (crt-static)" >&2
  exit 1
fi

mkdir -p "$root"
root=$(cd "$root" && pwd)
install -d -m 0755 "$root/bin" "$root/etc" "$root/etc/ssl" "$root/etc/ssl/certs"
install -d -m 1777 "$root/tmp"
install -m 0755 "$binary" "$root/bin/argoexec"
install -m 0644 "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' \
  'root:x:0:0:root:/root:/sbin/nologin' \
  'argoexec:x:8737:8737:argoexec:/tmp:/sbin/nologin' \
  'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'argoexec:x:8737:' 'nobody:x:65534:' >"$root/etc/group"
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
