# syntax=docker/dockerfile:1
# msghub container image (docs/DEPLOY.md).
#   docker build -t msghub:0.1.0 .          or, for minikube:
#   minikube image build -t msghub:0.1.0 .
# Every RUN step is a script in docker/: `scripts/check-deploy --full` runs
# the very same steps in a clean Debian 12 root (debootstrap) and starts the
# binary it built, so the image build is proven without a Docker engine.
# Base images are pinned to a dated Debian release tag.

# ---- build stage: compiler, CMake and the -dev packages ----
FROM debian:bookworm-20250520 AS build
WORKDIR /src
COPY docker/build-deps.sh docker/
RUN docker/build-deps.sh
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY include/ include/
COPY src/ src/
COPY web/ web/
COPY clients/js/msghub.js clients/js/
COPY docker/build.sh docker/
RUN docker/build.sh /src /out

# ---- runtime stage: the shared libraries only, unprivileged user ----
FROM debian:bookworm-20250520-slim
LABEL org.opencontainers.image.title="msghub" \
      org.opencontainers.image.description="Real-time WebSocket message hub (C11, libwebsockets on libuv)" \
      org.opencontainers.image.version="0.1.0"
COPY docker/runtime-deps.sh /tmp/runtime-deps.sh
RUN /tmp/runtime-deps.sh && rm /tmp/runtime-deps.sh
COPY docker/healthcheck.sh /usr/local/bin/msghub-healthcheck
COPY --from=build /out/msghub /usr/local/bin/msghub
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
# Every flag comes from its MSGHUB_* variable (msghub --help); set them with
# `docker run -e` or the Helm chart's values.
ENV MSGHUB_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/msghub-healthcheck"]
# The hub drains on SIGTERM within MSGHUB_SHUTDOWN_TIMEOUT (default 10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/msghub"]
