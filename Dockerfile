# syntax=docker/dockerfile:1
#
# Container image of ims-exporter: a release build on the Rust toolchain CI uses, run on
# a minimal Debian 12 base (glibc, libgcc, CA certificates, no shell) as a non-root user.
#
#   docker build -t ims-exporter:0.1.0 .
#   docker run --rm -p 10027:10027 -e HUAWEICLOUD_SDK_AK -e HUAWEICLOUD_SDK_SK \
#     -v "$PWD/config.yaml:/etc/ims-exporter/config.yaml:ro" ims-exporter:0.1.0
#
# To keep the last good state across restarts (docs/operations.md#state-across-restarts),
# mount a volume at /var/lib/ims-exporter (the image's VOLUME, owned by the runtime user) and add
# the flag (CMD is replaced, so repeat it):
#
#   docker run ... -v ims-state:/var/lib/ims-exporter ims-exporter:0.1.0 \
#     --config.file=/etc/ims-exporter/config.yaml --web.listen-address=:10027 \
#     --storage.path=/var/lib/ims-exporter
#
# See docs/deployment.md#container-image. The build context is restricted by .dockerignore.

ARG RUST_VERSION=1.95

# --- build -------------------------------------------------------------------------
# Debian 12 (bookworm) like the runtime image, so the binary needs no newer glibc.
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Not built, but Cargo.toml declares the benchmark, so cargo needs its source to start.
COPY benches ./benches
# Shown as the `revision` label of ims_exporter_build_info, e.g.
# --build-arg IMS_EXPORTER_REVISION="$(git rev-parse --short HEAD)".
ARG IMS_EXPORTER_REVISION=unknown
# The caches keep the crate registry and compiled dependencies between builds; the
# binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    IMS_EXPORTER_REVISION="${IMS_EXPORTER_REVISION}" \
    cargo build --release --locked --bin ims-exporter \
    && install -D -m 0755 target/release/ims-exporter /out/ims-exporter \
    && install -d -m 0700 /out/state

# --- runtime -----------------------------------------------------------------------
# distroless "cc": glibc and libgcc for the Rust binary, CA certificates for HTTPS to
# the IMS API (read from /etc/ssl/certs), tzdata, and the non-root user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="ims-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Huawei Cloud IMS image sharing" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ims-exporter /usr/local/bin/ims-exporter
# A starting point that documents every key: mount your own config over it (a file, or
# a directory such as a Kubernetes ConfigMap at /etc/ims-exporter).
COPY config.example.yaml /etc/ims-exporter/config.yaml
# Where --storage.path keeps the state, owned by the runtime user so that a named
# volume mounted there starts writable.
COPY --from=build --chown=65532:65532 /out/state /var/lib/ims-exporter
VOLUME ["/var/lib/ims-exporter"]
USER 65532:65532
EXPOSE 10027
ENTRYPOINT ["/usr/local/bin/ims-exporter"]
CMD ["--config.file=/etc/ims-exporter/config.yaml", "--web.listen-address=:10027"]
