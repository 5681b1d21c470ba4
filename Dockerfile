# syntax=docker/dockerfile:1.7
#
# One image for every role of the `playground` binary; the role is the
# subcommand (docker run playground tcp | udp | logger | load ...).
#
#   docker build -t playground:0.1.0 .
#
# Runtime: distroless cc-debian12 (glibc, libgcc, OpenSSL 3, CA certificates,
# no shell, no package manager), user 1000:1000. Shared libraries that the
# binary links and the runtime base lacks are copied from the builder, which
# is the same Debian release (bookworm).

ARG RUST_VERSION=1.95
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM rust:${RUST_VERSION}-bookworm AS builder
# cmake and a C/C++ toolchain build librdkafka; libssl-dev and zlib for its
# TLS and compression; pkg-config finds them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin playground \
 && mkdir -p /out/usr/local/bin \
 && cp target/release/playground /out/usr/local/bin/playground \
 && strip --strip-debug /out/usr/local/bin/playground
# Collect the shared libraries the binary needs, except glibc's own (the
# runtime base has the same glibc), flattened into the multiarch lib dir.
RUN set -eu; \
    libdir="/out/usr/lib/$(gcc -print-multiarch)"; mkdir -p "$libdir"; \
    ldd /out/usr/local/bin/playground \
      | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' \
      | grep -Ev '/(libc|libm|libdl|libpthread|librt|libresolv|libutil|ld-linux[^/]*)\.so' \
      | while read -r lib; do cp -L "$lib" "$libdir/"; done; \
    ls -l "$libdir"

FROM ${RUNTIME_IMAGE}
COPY --from=builder /out/ /
USER 1000:1000
# tcp 40000, udp 50000, admin (/healthz, /readyz, /metrics) 8080
EXPOSE 40000/tcp 50000/udp 8080/tcp
ENTRYPOINT ["/usr/local/bin/playground"]
CMD ["--help"]
