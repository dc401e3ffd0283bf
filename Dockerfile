# syntax=docker/dockerfile:1
#
# config-manager container image: a Rust build stage and a distroless final
# stage (glibc + libgcc, no shell, no package manager, non-root user 65532).
#
#   docker build -t config-manager .
#   docker run -p 8081:8081 -v config-data:/var/lib/config-manager/data config-manager
#
# The health check runs the binary itself (`config-manager healthcheck`), so
# the image needs no curl. See docs/deploy.md.

# The toolchain the project is developed and tested with.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Manifests and sources only (see .dockerignore): no target/, .env or data/.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The `dist` profile (Cargo.toml): size-tuned, fat LTO; slow to build, small
# to run. Cache mounts keep the registry and build artefacts between builds;
# the binary is copied out of the cache mount so the next stage can see it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p config-manager \
    && install -D -m 0755 target/dist/config-manager /out/config-manager \
    && install -d -m 0700 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/config-manager /usr/local/bin/config-manager
# The state directory, owned by the non-root user: database, LKG cache and
# the .env file that first run writes (keys, generated token; mode 0600).
COPY --from=build --chown=65532:65532 /out/data /var/lib/config-manager/data
WORKDIR /var/lib/config-manager
ENV CONFIG_MANAGER_HOST=0.0.0.0 \
    CONFIG_MANAGER_PORT=8081 \
    CONFIG_ENV_FILE=/var/lib/config-manager/data/.env \
    CONFIG_DB_PATH=/var/lib/config-manager/data/config.db \
    CONFIG_LKG_CACHE_PATH=/var/lib/config-manager/data/config.lkg.json \
    LOG_FORMAT=json \
    RUST_LOG=info
VOLUME ["/var/lib/config-manager/data"]
EXPOSE 8081
USER 65532:65532
# SIGTERM: stop accepting, finish in-flight requests, checkpoint, exit 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/config-manager", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/config-manager"]
CMD ["serve"]
