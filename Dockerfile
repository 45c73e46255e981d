# mcplatform in a container (docker-compose.yml runs it beside Postgres and NATS; the tests
# never need it).
#
# The dependencies build in a layer of their own, which a change to our sources does not
# invalidate: the `skeleton` stage keeps only what cargo needs to resolve and build them (every
# Cargo.toml, Cargo.lock, build scripts, and an empty stub for each crate root), found by name,
# so a workspace member added later is picked up without editing this file.

FROM rust:1-bookworm AS skeleton
WORKDIR /src
COPY . .
RUN set -eu; \
    find . -path ./target -prune -o -type f \
        \( -name Cargo.toml -o -name Cargo.lock -o -name build.rs \
           -o -name 'rust-toolchain*' -o -path '*/.cargo/config.toml' \) -print \
    | while read -r file; do \
        mkdir -p "/skeleton/$(dirname "$file")"; \
        cp "$file" "/skeleton/$file"; \
    done; \
    find . -path ./target -prune -o -type f \( -name lib.rs -o -name main.rs \) -print \
    | while read -r file; do \
        mkdir -p "/skeleton/$(dirname "$file")"; \
        case "$file" in \
            */lib.rs) : > "/skeleton/$file" ;; \
            *) echo 'fn main() {}' > "/skeleton/$file" ;; \
        esac; \
    done

FROM rust:1-bookworm AS build
WORKDIR /src
# Rebuilt only when a manifest, the lock file or a build script changes: the skeleton's content
# is all this layer's cache key depends on.
COPY --from=skeleton /skeleton/ ./
RUN cargo build --release --locked --bin mcplatform
COPY . .
# The copied sources may be older than the stubs just built; cargo compares times, so make
# every source newer than them, or it would keep the stubs.
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin mcplatform

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 mcplatform \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/mcplatform --create-home \
        --shell /usr/sbin/nologin mcplatform
COPY --from=build /src/target/release/mcplatform /usr/local/bin/mcplatform
# Numeric, so orchestrators that require a non-root user can check it without reading
# /etc/passwd. The working directory is the user's own: without MCPLATFORM_SECRET, mcplatform
# writes a development secret under it.
USER 10001:10001
WORKDIR /var/lib/mcplatform
ENV MCPLATFORM_BIND=0.0.0.0:8080
EXPOSE 8080
# The binary asks its own /readyz (on loopback, the port from MCPLATFORM_BIND), so the image
# needs no curl or wget. Start-up migrates the database first, hence the start period.
HEALTHCHECK --interval=10s --timeout=6s --start-period=60s --retries=3 \
    CMD ["mcplatform", "healthcheck"]
ENTRYPOINT ["mcplatform"]
CMD ["up"]
