# fairtick in a container: a multi-stage build, a small non-root runtime image.
# (This machine runs no Docker engine, so this file is written carefully but not built here.)

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p fairtick

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data fairtick \
    && mkdir -p /data && chown fairtick /data
COPY --from=build /src/target/release/fairtick /usr/local/bin/fairtick
USER fairtick
ENV FAIRTICK_ADDR=0.0.0.0:3000 FAIRTICK_DATA_DIR=/data
EXPOSE 3000
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=3s CMD ["fairtick", "--version"]
ENTRYPOINT ["fairtick"]
CMD ["serve"]
