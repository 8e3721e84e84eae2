#!/bin/sh
# Runtime stage: only the shared libraries msghub links (see `ldd msghub`)
# plus the libuv event-loop plugin that libwebsockets loads at run time
# (libwebsockets-evlib-uv), and the unprivileged user msghub runs as
# (uid/gid 10001, no home, no shell). No curl: the HEALTHCHECK is
# docker/healthcheck.sh, plain bash. No ca-certificates: msghub opens no TLS
# connection (redis:// and amqp:// only).
# The Dockerfile runs this file as it is, and so does
# `scripts/check-deploy --full` inside a clean Debian 12 root.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    libwebsockets17 libwebsockets-evlib-uv libuv1 libhiredis0.14 librabbitmq4 libssl3
apt-get clean
rm -rf /var/lib/apt/lists/*
groupadd --system --gid 10001 msghub
useradd --system --uid 10001 --gid msghub --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin msghub
