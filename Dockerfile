# Build and run mcplatform in a container (used by docker-compose.yml; tests never need it).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin mcplatform

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mcplatform /usr/local/bin/mcplatform
ENV MCPLATFORM_BIND=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["mcplatform"]
CMD ["up"]
