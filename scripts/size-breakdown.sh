#!/usr/bin/env bash
# Where the release binary's size goes: relinks `argoexec` unstripped (the release profile's fat
# LTO, same flags but `-C strip=none`; ~8 minutes here, only the final crate is rebuilt), then
# sums the size of every code symbol by the crate it belongs to (a generic's size goes to the
# first crate named inside it: `drop_in_place<h2::...>` is h2's), grouped by the stack that
# brings the crate in. Symbols without a Rust path are C (aws-lc, the static C library).
#
#   scripts/size-breakdown.sh            # prints the table; leaves target/.../argoexec unstripped
#
# The next plain `cargo build --release` relinks the stripped binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo rustc --locked --release --bin argoexec -- -C strip=none
bin=target/x86_64-unknown-linux-gnu/release/argoexec  # .cargo/config.toml: per target triple
size -A "$bin" | sort -k2 -n -r | head -8
syms=$(mktemp)
trap 'rm -f "$syms"' EXIT
nm --size-sort -S -C "$bin" | awk '$3 ~ /[tTwW]/' >"$syms"
python3 - "$syms" <<'PY'
import re, collections, sys
groups=[('S3 (aws SDK + smithy)',r'^aws_(?!lc)'),('GCS (google-cloud-*)',r'^google_'),('gRPC/HTTP2 (tonic, prost, h2, tower)',r'^(tonic|prost|h2|tower)'),('Azure (azure_*, typespec)',r'^(azure|typespec)'),
('Git (gix*, russh, ssh-key, RustCrypto for SSH)',r'^(gix|russh|ssh_key|ssh_encoding|ssh_cipher|internal_russh|rsa|p256|p384|p521|ecdsa|ed25519|curve25519|num_bigint|crypto_bigint|elliptic|primeorder|bcrypt|pbkdf2|aes|ctr|cbc|poly1305|chacha20|delegate|imara|prodash|bstr|kstring|winnow|filetime|faster_hex)'),
('Kubernetes (kube, k8s-openapi)',r'^(kube|k8s_openapi)'),('OpenTelemetry',r'^(opentelemetry|tracing_opentelemetry)'),
('HTTP (hyper, hyper-util, reqwest, http)',r'^(hyper|reqwest|http|httparse)'),('TLS (rustls, webpki)',r'^(rustls|webpki|tokio_rustls)'),
('our executor (argoexec_exec)',r'^argoexec_exec'),('our library (argoexec)',r'^argoexec$'),('YAML/JSON/serde',r'^(serde|granit|saphyr)'),('jq/JSONPath/regex',r'^(jaq|jsonpath|regex|aho|pest)'),
('tokio/futures',r'^(tokio|futures|mio)'),('archives (tar, zip, zlib-rs, flate2)',r'^(tar|zip|zlib|flate2|miniz|crc)'),('clap',r'^clap'),('tracing',r'^tracing'),('Rust std/core/alloc',r'^core$')]
skip=set('core alloc std ptr fmt ops future impl _ mem result option vec boxed sync pin function iter adapters slice raw_vec hash map collections btree cell rt task runtime marker sort hashbrown io sys traits nce convert string any str num char array cmp clone default error borrow panicking thread time net path ffi os'.split())
tot=collections.Counter(); allsz=0
for line in open(sys.argv[1]):
    p=line.rstrip('\n').split(' ',3)
    if len(p)<4: continue
    s=int(p[1],16); n=p[3]; allsz+=s
    if '::' not in n: tot['C (aws-lc, libc)']+=s; continue
    inner=[c for c in re.findall(r'([a-z_][a-z0-9_]*)::', n) if c not in skip]
    c=inner[0] if inner else 'core'
    for name,rx in groups:
        if re.match(rx,c): tot[name]+=s; break
    else: tot['other: '+c]+=s
print(f'text symbols total {allsz/2**20:.2f} MiB')
for k,v in sorted(((k,v) for k,v in tot.items() if not k.startswith('other: ')),key=lambda x:-x[1]): print(f'{v/2**20:6.2f} MiB  {k}')
oth=sum(v for k,v in tot.items() if k.startswith('other: '))
top=[f"{k[7:]} {v/1024:.0f}K" for k,v in tot.most_common() if k.startswith('other: ')][:30]
print(f'{oth/2**20:6.2f} MiB  other crates, top: '+', '.join(top))
PY
