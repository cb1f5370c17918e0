# Multi-stage build: a static-ish release binary on a small non-root image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ingress-authz

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ingress-authz /usr/local/bin/ingress-authz
USER nonroot
EXPOSE 9001 9002
ENTRYPOINT ["/usr/local/bin/ingress-authz"]
CMD ["serve", "--config", "/etc/ingress-authz/config.yaml", "--grpc-addr", "0.0.0.0:9001", "--http-addr", "0.0.0.0:9002"]
