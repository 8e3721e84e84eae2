# Sourced by tools/deploy-check/image.sh and cluster.sh: podman on these
# machines, and the Debian base images made with debootstrap.
#
# Podman keeps its images in a store of its own under $DEPLOY_CACHE (not the
# machine's /var/lib/containers), so tags such as debian:bookworm-20250520
# set here never clash with anyone else's. runc with cgroupfs (crun does not
# work here), and the ulimits containers need (../shared/localk8s/README.md).

DEPLOY_CACHE=${MSGHUB_DEPLOY_CACHE:-/tmp/msghub-deploy-cache}
PODMAN_ULIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
mkdir -p "$DEPLOY_CACHE"

pm() {
    podman --root "$DEPLOY_CACHE/podman/root" --runroot "$DEPLOY_CACHE/podman/run" \
        --runtime runc --cgroup-manager cgroupfs --events-backend file "$@"
}

deb_mirror() { # $1: debian or debian-security; the machine's own mirror for it
    local want=$1 uri
    uri=$( { grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{for (i = 2; i <= NF; i++) print $i}'
             grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | sed -E 's/\[[^]]*\]//' | awk '{print $2}'
           } | sed 's#/*$##' | grep -E "/$want\$" | head -1)
    echo "${uri:-$([[ $want == debian ]] && echo http://deb.debian.org/debian || echo http://deb.debian.org/debian-security)}"
}

# The base root: `debootstrap --variant=minbase bookworm`, with the apt
# sources of the debian:bookworm images (bookworm, -updates, -security) on
# this machine's mirror, policy-rc.d, and the machine's apt proxy if any.
# Cached as $DEPLOY_CACHE/base/bookworm-minbase-KEY.tar.gz, KEY being a hash
# of the mirrors and of this function, for 30 days.
base_key() {
    { deb_mirror debian; deb_mirror debian-security; declare -f make_base_root; } | sha256sum | cut -c1-12
}

make_base_root() { # $1: tarball to write
    local out=$1 tmp mirror security
    tmp=$(dirname "$out")/root.tmp
    mirror=$(deb_mirror debian)
    security=$(deb_mirror debian-security)
    rm -rf "$tmp" && mkdir -p "$tmp"
    nice -n 10 debootstrap --variant=minbase bookworm "$tmp" "$mirror" >"$(dirname "$out")/debootstrap.log" 2>&1 ||
        { tail -20 "$(dirname "$out")/debootstrap.log" >&2; return 1; }
    rm -f "$tmp/etc/apt/sources.list"
    cat >"$tmp/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d" && chmod +x "$tmp/usr/sbin/policy-rc.d"
    grep -rhs 'Acquire::.*[Pp]roxy' /etc/apt/apt.conf /etc/apt/apt.conf.d/ >"$tmp/etc/apt/apt.conf.d/01proxy" || rm -f "$tmp/etc/apt/apt.conf.d/01proxy"
    rm -rf "$tmp/var/lib/apt/lists/"* "$tmp/var/cache/apt/archives/"*.deb
    tar --numeric-owner -C "$tmp" -cf - . | gzip -1 >"$out.new" && mv "$out.new" "$out"
    rm -rf "$tmp"
}

# Makes sure localhost/msghub-deploy-base:KEY exists in podman's store, and
# tags it with every name given (e.g. the Dockerfile's FROM lines). Prints
# what it did.
ensure_base_image() { # names...
    local key tarball img
    key=$(base_key)
    tarball=$DEPLOY_CACHE/base/bookworm-minbase-$key.tar.gz
    img=localhost/msghub-deploy-base:$key
    mkdir -p "$DEPLOY_CACHE/base"
    if [[ ! -s $tarball ]] || [[ -n $(find "$tarball" -mtime +30) ]]; then
        command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; return 1; }
        local t0=$SECONDS
        make_base_root "$tarball" || return 1
        pm rmi -f "$img" >/dev/null 2>&1 || true
        BASE_NOTE="debootstrap minbase bookworm from $(deb_mirror debian) ($((SECONDS - t0)) s)"
    else
        BASE_NOTE="cached debootstrap root $(basename "$tarball")"
    fi
    if ! pm image exists "$img"; then
        zcat "$tarball" | pm import --change 'CMD ["bash"]' - "$img" >/dev/null 2>"$DEPLOY_CACHE/base/import.log" || return 1
        BASE_NOTE+=", imported as $img"
    fi
    local n
    for n in "$@"; do pm tag "$img" "$n" || return 1; done
}
