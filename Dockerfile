# syntax=docker/dockerfile:1
# The gateway image the Kubernetes manifests (deploy/k8s) run: a stripped release
# binary on a slim Debian, as a non-root user with nothing else in the image that
# a request could reach. Build: docker build -t palisade:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --locked: the image builds exactly the dependency versions the tests ran with.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p palisade-cli \
    && strip target/release/palisade \
    && install -D -m 0755 target/release/palisade /out/palisade

FROM debian:bookworm-slim
# CA roots for HTTPS upstreams (hosted APIs); nothing else is installed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 palisade \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin palisade \
    && install -d -o 10001 -g 10001 /var/lib/palisade
COPY --from=build /out/palisade /usr/local/bin/palisade
USER 10001:10001
WORKDIR /var/lib/palisade
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/palisade"]
CMD ["serve", "--config", "/etc/palisade/palisade.toml"]
