# syntax=docker/dockerfile:1
# The argoexec-rs executor image: a static binary and nothing it does not need.
#
#   docker build -t argoexec-rs:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/argoexec-rs:TAG --push .
#
# The final stage is exactly the directory scripts/rootfs.sh assembles; tests/image.rs builds
# the same directory and runs init, emissary and wait in it (chroot, uid 8737), so what the
# suite tests is what this image holds. See docs/operations.md.

ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# Set by buildx for each platform.
ARG TARGETARCH=amd64
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=argoexec-target-${TARGETARCH} \
    set -eu; \
    case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu ;; \
      *) echo "unsupported architecture: $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    cargo build --locked --release --bin argoexec --target "$triple" \
      --config "target.$triple.rustflags=[\"-C\", \"target-feature=+crt-static\"]"; \
    scripts/rootfs.sh /rootfs "target/$triple/release/argoexec"

FROM scratch
ARG VERSION=dev
COPY --from=build /rootfs/ /
ENV PATH=/bin
USER 8737:8737
ENTRYPOINT ["argoexec"]
LABEL org.opencontainers.image.title="argoexec-rs" \
      org.opencontainers.image.description="A drop-in, streaming replacement for the Argo Workflows executor (argoexec)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
