#!/usr/bin/env bash
# scripts/check-deploy --image: the Dockerfile built for real by podman and
# the container it makes checked while it runs. One line per check, then
# `image: PASS` or `image: FAIL <step>`. See docs/DEPLOY.md.
#
#   base       a Debian 12 root from debootstrap (cached), imported into
#              podman and tagged with the names of the Dockerfile's FROM lines
#   build      podman build --pull=never of the Dockerfile as it is
#   user       the container runs as uid 10001, not root
#   healthcheck  the image's HEALTHCHECK command succeeds (podman healthcheck run)
#   standalone /healthz and /readyz answer 200
#   drain      SIGTERM: a connected client gets 1001, the container exits 0
#   distributed  two containers on one Redis and RabbitMQ (the machine's, or
#              private ones; a unique prefix): /readyz 200 on both, then
#              sessions, tokens and relays between them (hubprobe.py smoke)
#   size       the image's size
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
here=$root/tools/deploy-check
# shellcheck source=podman.sh
source "$here/podman.sh"
work=$DEPLOY_CACHE/image
mkdir -p "$work"
run_id=$$-$RANDOM
containers=()
backplane_dir=""

cleanup() {
    local c
    for c in "${containers[@]}"; do pm rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
    [[ -n $backplane_dir ]] && scripts/test-backplane stop "$backplane_dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT

line() { echo "image: $*"; }
fail() { line "$1: FAIL ${2:-}"; [[ -n ${3:-} && -s ${3:-} ]] && tail -25 "$3" | sed 's/^/       /'; line "FAIL $1"; exit 1; }

for c in podman:podman debootstrap:debootstrap curl:curl python3:python3; do
    command -v "${c%%:*}" >/dev/null || { line "FAIL tools (missing ${c#*:}: apt-get install ${c#*:})"; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { line "FAIL tools (needs root: debootstrap, podman's own store)"; exit 1; }

version=$(sed -n 's/^project(msghub VERSION \([^ )]*\).*/\1/p' CMakeLists.txt)
image=docker.io/library/msghub:$version     # what `docker build -t msghub:VERSION` names it
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
code_of() { curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$1$2" || true; }

# ---- base
t0=$SECONDS
froms=()
while read -r name; do
    [[ $name == */* ]] || name=docker.io/library/$name
    froms+=("$name")
done < <(awk 'toupper($1) == "FROM" { print $2 }' Dockerfile | grep -v '^\$' | sort -u)
ensure_base_image "${froms[@]}" || fail base "debootstrap or import" "$DEPLOY_CACHE/base/debootstrap.log"
line "base: ok $BASE_NOTE, tagged ${froms[*]} ($((SECONDS - t0)) s)"

# ---- build
t0=$SECONDS
# --format docker keeps HEALTHCHECK and STOPSIGNAL (the OCI format has
# neither); --network host: the RUN steps reach the Debian mirror.
if nice -n 10 podman --root "$DEPLOY_CACHE/podman/root" --runroot "$DEPLOY_CACHE/podman/run" \
        --runtime runc --cgroup-manager cgroupfs --events-backend file \
        build --pull=never --format docker --network host "${PODMAN_ULIMITS[@]}" \
        -t "$image" -f Dockerfile . >"$work/build.log" 2>&1; then
    line "build: ok podman build --pull=never -t $image ($((SECONDS - t0)) s)"
else
    fail build "podman build (log: $work/build.log)" "$work/build.log"
fi
echo "$((SECONDS - t0))" >"$work/build-seconds"

# ---- standalone container
port=$(free_port)
c=msghub-imagecheck-$run_id
containers+=("$c")
pm run -d --name "$c" --network host "${PODMAN_ULIMITS[@]}" -e MSGHUB_LISTEN="127.0.0.1:$port" "$image" >/dev/null 2>>"$work/podman.log" ||
    fail run "podman run"
python3 "$here/hubprobe.py" wait-ready "127.0.0.1:$port" 20 2>"$work/wait.err" ||
    { pm logs "$c" >"$work/standalone.log" 2>&1; fail standalone "/readyz never 200" "$work/standalone.log"; }

uid=$(pm exec "$c" id -u) gid=$(pm exec "$c" id -g) cfg_user=$(pm image inspect -f '{{.Config.User}}' "$image")
[[ $uid == 10001 && $gid == 10001 ]] || fail user "runs as uid $uid gid $gid (want 10001)"
pid1_uid=$(pm exec "$c" sh -c 'awk "/^Uid:/ {print \$2}" /proc/1/status')
[[ $pid1_uid == 10001 ]] || fail user "the hub process has uid $pid1_uid"
line "user: ok uid $uid gid $gid (image USER $cfg_user), the hub process too"

hc=$(pm image inspect -f '{{json .Config.Healthcheck}}' "$image" 2>/dev/null || true)
[[ $hc == *msghub-healthcheck* ]] || fail healthcheck "the image has no HEALTHCHECK ($hc)"
if out=$(pm healthcheck run "$c" 2>&1); then
    line "healthcheck: ok podman healthcheck run: ${out:-healthy} (the image's HEALTHCHECK: msghub-healthcheck)"
else
    fail healthcheck "podman healthcheck run: $out"
fi

h=$(code_of "127.0.0.1:$port" /healthz) r=$(code_of "127.0.0.1:$port" /readyz) p=$(code_of "127.0.0.1:$port" /)
[[ $h == 200 && $r == 200 && $p == 200 ]] || fail standalone "/healthz $h /readyz $r / $p"
line "standalone: ok /healthz $h, /readyz $r, chat page $p"

state=$work/drain-$run_id
python3 "$here/hubprobe.py" drain-client "127.0.0.1:$port" "$state" --seconds 40 &
dc=$!
for _ in $(seq 50); do grep -q connected "$state" 2>/dev/null && break; sleep 0.1; done
grep -q connected "$state" 2>/dev/null || fail drain "the drain client did not connect"
t0=$SECONDS
pm stop -t 30 "$c" >/dev/null 2>>"$work/podman.log" || fail drain "podman stop"
wait $dc || true
exit_code=$(pm inspect -f '{{.State.ExitCode}}' "$c")
closed=$(sed -n 's/^closed //p' "$state")
pm logs "$c" >"$work/standalone.log" 2>&1 || true
[[ $exit_code == 0 ]] || fail drain "exit code $exit_code after SIGTERM" "$work/standalone.log"
[[ $closed == 1001 ]] || fail drain "the client saw close '$closed', not 1001" "$work/standalone.log"
line "drain: ok SIGTERM (STOPSIGNAL): the client got 1001, exit 0 after $((SECONDS - t0)) s"
rm -f "$state"

# ---- distributed
backplane_env=$(MSGHUB_TEST_SERVERS_DIR="" scripts/test-backplane 2>"$work/backplane.err") ||
    fail distributed "no Redis/RabbitMQ (scripts/test-backplane)" "$work/backplane.err"
eval "$backplane_env"
backplane_dir=${MSGHUB_TEST_SERVERS_DIR:-}
prefix=imagecheck-$run_id
api_key=key$RANDOM$RANDOM
secret=secret$RANDOM$RANDOM$RANDOM
addrs=()
for n in a b; do
    p=$(free_port)
    cn=msghub-imagecheck-$run_id-$n
    containers+=("$cn")
    pm run -d --name "$cn" --network host "${PODMAN_ULIMITS[@]}" \
        -e MSGHUB_LISTEN="127.0.0.1:$p" -e MSGHUB_INSTANCE_ID="$cn" -e MSGHUB_PREFIX="$prefix" \
        -e MSGHUB_REDIS_URL="$MSGHUB_TEST_REDIS_URL" -e MSGHUB_AMQP_URL="$MSGHUB_TEST_AMQP_URL" \
        -e MSGHUB_API_KEY="$api_key" -e MSGHUB_TOKEN_SECRET="$secret" "$image" >/dev/null 2>>"$work/podman.log" ||
        fail distributed "podman run $cn"
    addrs+=("127.0.0.1:$p")
done
for i in 0 1; do
    python3 "$here/hubprobe.py" wait-ready "${addrs[$i]}" 30 2>>"$work/wait.err" ||
        { pm logs "${containers[$((i + 1))]}" >"$work/dist.log" 2>&1; fail distributed "/readyz of ${addrs[$i]} never 200" "$work/dist.log"; }
done
line "distributed: ok two containers, /readyz 200 with Redis ${MSGHUB_TEST_REDIS_URL} and RabbitMQ ${MSGHUB_TEST_AMQP_URL%%://*}://…@${MSGHUB_TEST_AMQP_URL##*@}, prefix $prefix"
if out=$(python3 "$here/hubprobe.py" smoke --api-key "$api_key" "${addrs[0]}" "${addrs[1]}" 2>&1); then
    echo "$out" | sed 's/^  ok   /image: distributed: ok /'
else
    echo "$out" | sed 's/^/       /'
    fail distributed "smoke between the two containers"
fi
for cn in "${containers[@]:1}"; do
    pm stop -t 30 "$cn" >/dev/null 2>>"$work/podman.log"
    e=$(pm inspect -f '{{.State.ExitCode}}' "$cn")
    [[ $e == 0 ]] || { pm logs "$cn" >"$work/dist.log" 2>&1; fail distributed "$cn exited $e on SIGTERM" "$work/dist.log"; }
done
line "distributed: ok both exit 0 on SIGTERM"
if [[ -n ${MSGHUB_TEST_REDIS_URL:-} ]] && command -v redis-cli >/dev/null; then
    # Leave nothing behind in a shared Redis.
    rhost=${MSGHUB_TEST_REDIS_URL#redis://}; rhost=${rhost%%/*}
    redis-cli -h "${rhost%:*}" -p "${rhost##*:}" --scan --pattern "$prefix:*" 2>/dev/null |
        xargs -r redis-cli -h "${rhost%:*}" -p "${rhost##*:}" del >/dev/null 2>&1 || true
fi

# ---- size
size=$(pm image inspect -f '{{.Size}}' "$image")
line "size: ok $image is $((size / 1000000)) MB"
echo "$((size / 1000000))" >"$work/size-mb"
line PASS
