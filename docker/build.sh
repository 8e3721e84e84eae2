#!/bin/sh
# Build stage, step 2: configure and compile a Release binary without the
# tests, strip it and leave it at OUT/msghub.
# Usage: docker/build.sh SRC OUT      (the Dockerfile: docker/build.sh /src /out)
# -Werror stays with the test builds (scripts/test); a new compiler warning
# must not stop an image build.
set -eu
src=${1:?usage: build.sh SRC OUT}
out=${2:?usage: build.sh SRC OUT}
bld=$(mktemp -d /tmp/msghub-build.XXXXXX)
cmake -S "$src" -B "$bld" -DCMAKE_BUILD_TYPE=Release -DMSGHUB_TESTS=OFF -DMSGHUB_WERROR=OFF
cmake --build "$bld" -j"$(nproc)"
mkdir -p "$out"
strip -o "$out/msghub" "$bld/msghub"
rm -rf "$bld"
"$out/msghub" --version
