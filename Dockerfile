# factory-ca container image. Not built on our CI machines; see docs/operations.md, "Docker".
#
#   docker build -t factory-ca .
#   docker run -d -p 8080:8080 -v factory-ca-data:/var/lib/factory-ca factory-ca

# ---- build ---------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /build

# aws-lc-sys (under aws-lc-rs) compiles AWS-LC with its cc-based builder, which needs only the
# C compiler and perl already in this image: no cmake, clang or Go for a non-FIPS build.
# sqlx's SQLite driver is bundled, so there is no libsqlite3 to install either.

# Dependencies in their own layer, rebuilt only when Cargo.toml or Cargo.lock change: build a
# placeholder crate against the real manifest, then throw the placeholder away.
# macros/ is the workspace's proc-macro crate (the handlers' #[route] attribute): its manifest
# here, an empty placeholder library like the crate's.
COPY Cargo.toml Cargo.lock ./
COPY macros/Cargo.toml ./macros/
RUN mkdir -p src macros/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs macros/src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src macros/src

# The crate itself. migrations/ is embedded at compile time by sqlx::migrate!, and assets/ (the
# dashboard page) by include_str!.
COPY src ./src
COPY macros/src ./macros/src
COPY migrations ./migrations
COPY assets ./assets
# COPY keeps the build context's modification times, which can be older than the placeholder's
# build; touch the crate roots so cargo rebuilds the crates rather than reuse the placeholders.
RUN touch src/main.rs src/lib.rs macros/src/lib.rs \
 && cargo build --release --locked \
 && install -m 0755 target/release/factory-ca /usr/local/bin/factory-ca

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates for outbound HTTPS (the AWS IoT integration, once it exists); curl for
# HEALTHCHECK.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

# An unprivileged owner for the data directory (CA keys live in its keys/ subdirectory).
RUN groupadd --system --gid 10001 factory-ca \
 && useradd --system --uid 10001 --gid factory-ca --home-dir /var/lib/factory-ca \
      --no-create-home --shell /usr/sbin/nologin factory-ca \
 && install -d -o factory-ca -g factory-ca -m 0700 /var/lib/factory-ca

COPY --from=builder /usr/local/bin/factory-ca /usr/local/bin/factory-ca
# The binary reads config/default.toml relative to its working directory.
COPY config/ /opt/factory-ca/config/
WORKDIR /opt/factory-ca

ENV FACTORY_CA_DATA_DIR=/var/lib/factory-ca \
    FACTORY_CA_SERVER__LISTEN=0.0.0.0:8080 \
    FACTORY_CA_LOG__FORMAT=json

# Declared after the directory is created and chowned, so a new volume starts with that owner.
VOLUME ["/var/lib/factory-ca"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1

USER factory-ca
ENTRYPOINT ["factory-ca"]
CMD ["serve"]
