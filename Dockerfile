# flightcache-server as a container image (also carries flightcache-cli, flightcache-origin and
# flightcache-loadgen, so one image serves the sidecar, its health check, the demo origin and
# the load generator).
#
#   docker build -t flightcache:dev .                        # or, without a Docker engine:
#   buildah bud --format docker --pull=never -t flightcache:dev .
#
# Configuration is through FLIGHTCACHE_<FLAG> environment variables (FLIGHTCACHE_ORIGIN,
# FLIGHTCACHE_CAPACITY_BYTES, ...: every server flag, see docs/OPERATIONS.md) or flags appended
# to the command. deploy/container-smoke-test builds and runs this image;
# tests/e2e/deploy_static_test.py checks this file against the build and the server's flags.

# ---- build: the same script the README uses --------------------------------------------------
FROM debian:bookworm AS build
ARG DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# The dependency layer first, so editing sources does not reinstall packages. Only what building
# needs: the tests' Redis, Prometheus, Chromium and lint tools stay out of the image's build.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh build
COPY . .
# Only the four shipped programs (and what they link) are built: the tests and benchmarks the
# preset also configures would be compiled for nothing. tests/e2e/deploy_static_test.py checks
# that the targets named here are exactly the programs copied into the runtime stage.
RUN scripts/build.sh release flightcache-server flightcache-cli flightcache-origin \
      flightcache-loadgen \
 && mkdir -p /out \
 && for bin in server/flightcache-server client/flightcache-cli client/flightcache-origin \
               client/flightcache-loadgen; do \
      objcopy --strip-debug "build/release/$bin" "/out/$(basename "$bin")"; \
    done

# ---- runtime: only the shared libraries the binaries link (checked with ldd below) -----------
FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
# What `ldd` of the four binaries resolves to, by Debian package (libc6, libstdc++6, libgcc-s1
# and zlib1g are already in the base image; listed where a package might otherwise be dropped).
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 libre2-9 libc-ares2 libssl3 \
      zlib1g libspdlog1.10 libfmt9 libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 \
      libcivetweb1 libhiredis0.14 \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric non-root user, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --gid 10001 flightcache \
 && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin flightcache
COPY --from=build /out/flightcache-server /out/flightcache-cli /out/flightcache-origin \
                  /out/flightcache-loadgen /usr/local/bin/
# Inside a container the server must listen on every interface: the defaults (127.0.0.1) would
# be unreachable from outside the container's network namespace.
ENV FLIGHTCACHE_LISTEN=0.0.0.0:50051 \
    FLIGHTCACHE_METRICS_LISTEN=0.0.0.0:9464
# Fail the build, not the first start, if a runtime library is missing or the image's own
# configuration is rejected.
RUN for bin in /usr/local/bin/flightcache-*; do \
      if ldd "$bin" | grep 'not found'; then echo "$bin: missing libraries" >&2; exit 1; fi; \
    done \
 && flightcache-server --check-config

# gRPC (flightcache.v1.Cache, grpc.health.v1.Health, reflection) and Prometheus /metrics.
EXPOSE 50051 9464
USER 10001:10001
# The port is taken from FLIGHTCACHE_LISTEN so the check follows an overridden listen address
# (change the port through FLIGHTCACHE_LISTEN, not --listen, or this check cannot see it).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD flightcache-cli --target="127.0.0.1:${FLIGHTCACHE_LISTEN##*:}" --deadline=2s health
# Exec form: the server is PID 1 and receives SIGTERM itself, so it drains (health turns
# NOT_SERVING, calls in flight finish within FLIGHTCACHE_DRAIN_TIMEOUT) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/flightcache-server"]
