# The gpupool image: the `gpupool` binary, the interception library built for glibc 2.17 (so
# that it loads in old containers), the C libraries gpupool links, and nothing else.
#   docker build -t ghcr.io/gpupool/gpupool:0.1.0 .
# Without a container engine, scripts/build-image writes the same file tree as an OCI layout.
FROM rust:1-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gpupool \
    && scripts/build-glibc217 \
    && scripts/image-rootfs /rootfs

FROM scratch
COPY --from=build /rootfs /
ENV PATH=/usr/local/bin GPUPOOL_LIB_DIR=/usr/local/gpupool/lib
ENTRYPOINT ["gpupool"]
CMD ["--help"]
