#!/bin/sh
# Build stage, step 1: the compiler, CMake and the -dev packages msghub is
# built against. The Dockerfile runs this file as it is, and so does
# `scripts/check-deploy --full` inside a clean Debian 12 root (debootstrap):
# what is proven there is what the image build runs.
# (libcjson-dev is not needed: msghub has its own JSON scanner.)
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    build-essential cmake pkg-config \
    libwebsockets-dev libuv1-dev libhiredis-dev librabbitmq-dev libssl-dev
apt-get clean
rm -rf /var/lib/apt/lists/*
