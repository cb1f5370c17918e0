# syntax=docker/dockerfile:1
# Multi-stage build: a release binary on a small non-root image.
#
#   docker build -t ingress-authz .
#
# Linted by scripts/validate-deploy (hadolint).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Only what the build reads (the [[bench]] target and the workspace's other
# members must exist for cargo to load the manifest); target/ and .venv/
# never enter the image layers.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto/ proto/
COPY benches/ benches/
COPY bench/tools/Cargo.toml bench/tools/
COPY bench/tools/src/ bench/tools/src/
COPY bench/noop-authz/Cargo.toml bench/noop-authz/
COPY bench/noop-authz/src/ bench/noop-authz/src/
COPY src/ src/
# Cache the crate registry and target/ between builds (BuildKit); the binary
# is copied out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ingress-authz \
    && cp target/release/ingress-authz /usr/local/bin/ingress-authz

# glibc + libgcc (the Rust std runtime), no shell, uid/gid 65532 "nonroot".
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="ingress-authz" \
      org.opencontainers.image.description="Envoy ext_authz v3 gRPC service applying ingress-style auth rules"
COPY --from=build /usr/local/bin/ingress-authz /usr/local/bin/ingress-authz
# Numeric, so Kubernetes can verify runAsNonRoot without resolving a name.
USER 65532:65532
# 9001 gRPC (ext_authz Check, grpc.health.v1), 9002 HTTP (/oauth2/*,
# /healthz, /readyz, /metrics). The admin API stays on 127.0.0.1:9003.
EXPOSE 9001 9002
ENTRYPOINT ["/usr/local/bin/ingress-authz"]
CMD ["serve", "--config", "/etc/ingress-authz/config.yaml", "--grpc-addr", "0.0.0.0:9001", "--http-addr", "0.0.0.0:9002"]
