#!/usr/bin/env bash
# scripts/check-deploy --cluster: the chart installed for real on the
# single-node Kubernetes of ../shared/localk8s and the hubs exercised through
# their Service. One line per step, then `cluster: PASS` or
# `cluster: FAIL <step>...`. See docs/DEPLOY.md.
#
#   k8s-build  ../shared/localk8s/build.sh when its cache is missing (~8 min once)
#   images     the msghub image (podman build of the Dockerfile, as --image)
#              and the Redis/RabbitMQ stand-ins, saved as tarballs
#   up         up.sh; load  load-image.sh of the three images
#   install    helm install --wait with ci/standin-values.yaml; time to Ready
#   helm-test  helm test
#   smoke      hubprobe.py smoke through the NodePort, then between two
#              clients on two different pods (pod IPs)
#   readme     README's "looking inside" commands: redis-cli KEYS, the
#              RabbitMQ management API and the hub through kubectl
#              port-forward with the Secrets' credentials, rabbitmqctl
#              list_queues, kubectl logs --prefix
#   pod-kill   receivers on one hub pod, senders on another, relays flowing;
#              kubectl delete pod --force --grace-period=0 of the receivers'
#              pod; they reconnect through the Service; accepted vs delivered
#   upgrade    helm upgrade changing hub.presenceTtl rolls every hub pod while
#              relays flow; a token minted before still gives the same id
#   redis-restart  the Redis pod deleted and rescheduled: a message stored for
#              an offline id and the id counter come back from the AOF on the PVC
#   uninstall  helm uninstall --wait, the namespace deleted
#   down       down.sh (only if this run started the cluster)
#
# Environment: MSGHUB_LOCALK8S (default ../shared/localk8s next to the
# repository), LOCALK8S_HOME (default /tmp/localk8s), MSGHUB_CLUSTER_KEEP=1
# leaves the release and the cluster up for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
here=$root/tools/deploy-check
chart=$root/helm/msghub
# shellcheck source=podman.sh
source "$here/podman.sh"
L=${MSGHUB_LOCALK8S:-$(cd "$root/.." && pwd)/shared/localk8s}
[[ -d $L || -n ${MSGHUB_LOCALK8S:-} ]] || L=/work/shared/localk8s   # a clone elsewhere on this machine
P=${LOCALK8S_HOME:-/tmp/localk8s}
work=$DEPLOY_CACHE/cluster
mkdir -p "$work"
ns=msghub
rel=msghub
failed=()
started_cluster=0
flow_pid=""

line() { echo "cluster: $*"; }
since() { echo $((SECONDS - $1)); }
stepfail() { # step, detail [, log]: note the failure and go on
    line "$1: FAIL $2"
    [[ -n ${3:-} && -s ${3:-} ]] && tail -20 "$3" | sed 's/^/       /'
    failed+=("$1")
}
finish() {
    finished=1
    if [[ ${#failed[@]} -eq 0 ]]; then line PASS; exit 0; fi
    line "FAIL ${failed[*]}"; exit 1
}
abort() { stepfail "$@"; teardown; finish; }

teardown() {
    [[ -n $flow_pid ]] && kill "$flow_pid" 2>/dev/null || true
    if [[ ${MSGHUB_CLUSTER_KEEP:-0} == 1 ]]; then
        line "down: kept (MSGHUB_CLUSTER_KEEP=1): source $P/env.sh; $L/down.sh when done"
        return
    fi
    if [[ $started_cluster == 1 ]]; then
        local t0=$SECONDS
        if "$L/down.sh" >"$work/down.log" 2>&1; then line "down: ok down.sh ($(since $t0) s)"
        else stepfail down "down.sh" "$work/down.log"; fi
        started_cluster=0
    fi
}
finished=0
on_exit() {
    local rc=$?
    teardown
    # set -e stopped the script between steps: say so, never end silently.
    [[ $finished == 1 ]] || line "FAIL ${failed[*]:+${failed[*]} }script stopped (exit $rc) after line $last_line"
}
last_line=0
trap 'last_line=$LINENO' DEBUG
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for c in podman:podman curl:curl python3:python3 nsenter:util-linux; do
    command -v "${c%%:*}" >/dev/null || { line "FAIL tools (missing ${c#*:})"; exit 1; }
done
[[ -x $L/up.sh ]] || { line "FAIL tools (no localk8s at $L)"; exit 1; }
[[ $(id -u) -eq 0 ]] || { line "FAIL tools (needs root)"; exit 1; }

# ---- k8s-build
t0=$SECONDS
if [[ -x $P/bin/kubelet && -x $P/bin/helm && -x $P/bin/coredns && -x $P/bin/local-path-provisioner && -s $P/images/out/coredns.tar ]]; then
    line "k8s-build: ok cached in $P"
else
    nice -n 10 "$L/build.sh" >"$work/k8s-build.log" 2>&1 || abort k8s-build "build.sh" "$work/k8s-build.log"
    line "k8s-build: ok build.sh ($(since $t0) s)"
fi

# ---- images
t0=$SECONDS
version=$(sed -n 's/^project(msghub VERSION \([^ )]*\).*/\1/p' CMakeLists.txt)
hub_image=docker.io/library/msghub:$version
redis_image=localhost/redis-debian:7
rabbit_image=localhost/rabbitmq-debian:3.13-management
froms=()
while read -r name; do [[ $name == */* ]] || name=docker.io/library/$name; froms+=("$name"); done \
    < <(awk 'toupper($1) == "FROM" { print $2 }' Dockerfile "$here"/standin/*/Dockerfile | sort -u)
ensure_base_image "${froms[@]}" || abort images "base image" "$DEPLOY_CACHE/base/debootstrap.log"
pbuild() { # tag dockerfile context log
    nice -n 10 podman --root "$DEPLOY_CACHE/podman/root" --runroot "$DEPLOY_CACHE/podman/run" \
        --runtime runc --cgroup-manager cgroupfs --events-backend file \
        build --pull=never --format docker --network host "${PODMAN_ULIMITS[@]}" -t "$1" -f "$2" "$3" >"$4" 2>&1
}
pbuild "$hub_image" Dockerfile . "$work/build-msghub.log" || abort images "podman build msghub" "$work/build-msghub.log"
pbuild "$redis_image" "$here/standin/redis/Dockerfile" "$here/standin/redis" "$work/build-redis.log" ||
    abort images "podman build redis stand-in" "$work/build-redis.log"
pbuild "$rabbit_image" "$here/standin/rabbitmq/Dockerfile" "$here/standin/rabbitmq" "$work/build-rabbitmq.log" ||
    abort images "podman build rabbitmq stand-in" "$work/build-rabbitmq.log"
tars=()
for img in "$hub_image" "$redis_image" "$rabbit_image"; do
    t=$work/$(echo "$img" | tr '/:' '__').tar
    rm -f "$t"
    pm save --format docker-archive -o "$t" "$img" >/dev/null 2>"$work/save.log" || abort images "podman save $img" "$work/save.log"
    tars+=("$t")
done
line "images: ok $hub_image, $redis_image, $rabbit_image built and saved ($(since $t0) s)"

# ---- up
t0=$SECONDS
if [[ -f $P/run/pids/holder.pid ]] && kill -0 "$(cat "$P/run/pids/holder.pid")" 2>/dev/null; then
    abort up "a localk8s cluster is already up (run $L/down.sh first, or it belongs to someone else)"
fi
started_cluster=1
"$L/up.sh" >"$work/up.log" 2>&1 || abort up "up.sh" "$work/up.log"
# shellcheck disable=SC1091
source "$P/env.sh"
line "up: ok up.sh ($(since $t0) s), $(kubectl version 2>/dev/null | sed -n 's/^Server Version: //p')"

t0=$SECONDS
"$L/load-image.sh" "${tars[@]}" >"$work/load.log" 2>&1 || abort load "load-image.sh" "$work/load.log"
line "load: ok three images imported ($(since $t0) s)"

# ---- install
t0=$SECONDS
kubectl create namespace "$ns" >/dev/null
if helm install "$rel" "$chart" -n "$ns" -f "$chart/ci/standin-values.yaml" --wait --timeout 10m >"$work/install.log" 2>&1; then
    ready_s=$(since $t0)
    restarts=$(kubectl get pods -n "$ns" -o jsonpath='{range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount} {end}')
    line "install: ok helm install --wait: every pod Ready after $ready_s s (restarts: $restarts)"
    echo "$ready_s" >"$work/ready-seconds"
else
    kubectl get pods -n "$ns" -o wide >"$work/pods.txt" 2>&1 || true
    kubectl describe pods -n "$ns" >>"$work/pods.txt" 2>&1 || true
    abort install "helm install --wait (pods: $work/pods.txt)" "$work/install.log"
fi
kubectl get pods -n "$ns" -o wide >"$work/pods.txt"

# ---- helm-test
t0=$SECONDS
if helm test "$rel" -n "$ns" --timeout 2m >"$work/helm-test.log" 2>&1; then
    line "helm-test: ok helm test ($(since $t0) s): $(grep -E 'Phase:' "$work/helm-test.log" | head -1 | xargs)"
    echo "$(since $t0)" >"$work/helm-test-seconds"
else
    stepfail helm-test "helm test" "$work/helm-test.log"
fi

# ---- smoke
api_key=$(kubectl get secret -n "$ns" "$rel" -o jsonpath='{.data.api-key}' | base64 -d)
node_port=$(kubectl get svc -n "$ns" "$rel" -o jsonpath='{.spec.ports[0].nodePort}')
cluster_ip=$(kubectl get svc -n "$ns" "$rel" -o jsonpath='{.spec.clusterIP}')
svc=10.250.0.2:$node_port
hub_pods() { kubectl get pods -n "$ns" -l app.kubernetes.io/component=hub --field-selector=status.phase=Running \
    -o jsonpath='{range .items[*]}{.metadata.name} {.status.podIP}{"\n"}{end}'; }
mapfile -t pods < <(hub_pods)
smoke() { # label, addresses...
    local label=$1 out; shift
    if out=$(python3 "$here/hubprobe.py" smoke --api-key "$api_key" "$@" 2>&1); then
        echo "$out" >"$work/smoke-$(echo "$label" | tr -c 'a-z0-9\n' '-').log"
        line "smoke: ok $label: $(echo "$out" | grep -o 'contract v[12] hello[^;]*' | head -1); $(echo "$out" | grep -c '^  ok') checks passed (POST /sessions and the API key, a minted token resumes its id, list, relay both ways, POST /relay to an online and an offline id, /clients, /metrics)"
    else
        echo "$out" | sed 's/^/       /'
        stepfail smoke "$label"
    fi
}
t0=$SECONDS
code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$svc/readyz" || true)
code2=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$cluster_ip/" || true)
if [[ $code == 200 && $code2 == 200 ]]; then line "smoke: ok NodePort $svc /readyz 200, ClusterIP $cluster_ip:80 chat page 200"
else stepfail smoke "NodePort /readyz $code, ClusterIP / $code2"; fi
smoke "through the NodePort $svc" "$svc" "$svc"
if [[ ${#pods[@]} -ge 2 ]]; then
    pa=${pods[0]#* } pb=${pods[1]#* }
    smoke "between pods ${pods[0]%% *} and ${pods[1]%% *}" "$pa:8080" "$pb:8080"
else
    stepfail smoke "fewer than two hub pods running: ${pods[*]}"
fi

# ---- readme: README's and docs/DEPLOY.md's "looking inside" commands, as a
# user types them (with -n, since this release lives in its own namespace)
t0=$SECONDS
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
forward() { # local-port, svc/NAME:PORT; runs until killed
    kubectl port-forward -n "$ns" "${2%:*}" "$1:${2##*:}" >>"$work/port-forward.log" 2>&1
}
seen=()
nkeys=$(kubectl exec -n "$ns" "$rel-redis-0" -- redis-cli KEYS "msghub:*" 2>/dev/null | grep -c . || true)
[[ $nkeys -gt 0 ]] && seen+=("redis-cli KEYS msghub:* ($nkeys keys)") || stepfail readme "redis-cli KEYS msghub:* found nothing"
ruser=$(kubectl get secret -n "$ns" "$rel-rabbitmq" -o jsonpath='{.data.rabbitmq-username}' | base64 -d)
rpass=$(kubectl get secret -n "$ns" "$rel-rabbitmq" -o jsonpath='{.data.rabbitmq-password}' | base64 -d)
lp=$(free_port)
forward "$lp" svc/"$rel"-rabbitmq:15672 &
pf=$!
code=000
for _ in $(seq 50); do
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' -u "$ruser:$rpass" "http://127.0.0.1:$lp/api/overview" || true)
    [[ $code == 200 ]] && break; sleep 0.2
done
kill $pf 2>/dev/null || true; wait $pf 2>/dev/null || true
[[ $code == 200 ]] && seen+=("port-forward svc/$rel-rabbitmq 15672: management API 200 with the Secret's user") ||
    stepfail readme "management UI through port-forward: HTTP $code" "$work/port-forward.log"
mapfile -t pods < <(hub_pods)
queues=$(kubectl exec -n "$ns" "$rel-rabbitmq-0" -- rabbitmqctl list_queues name messages consumers 2>/dev/null || true)
nq=0
for p in "${pods[@]}"; do grep -q -- "${p%% *}" <<<"$queues" && nq=$((nq + 1)); done
[[ $nq -eq ${#pods[@]} ]] && seen+=("rabbitmqctl list_queues: a queue per hub pod ($nq)") ||
    stepfail readme "rabbitmqctl list_queues: queues for $nq of ${#pods[@]} hub pods: $queues"
nlog=$(kubectl logs -n "$ns" -l app.kubernetes.io/instance="$rel",app.kubernetes.io/component=hub --prefix --max-log-requests 20 --tail 20 2>/dev/null |
    sed -n 's#^\[pod/\([^/]*\)/.*#\1#p' | sort -u | grep -c . || true)
[[ $nlog -eq ${#pods[@]} ]] && seen+=("kubectl logs -l ... --prefix: $nlog pods") || stepfail readme "kubectl logs --prefix showed $nlog of ${#pods[@]} pods"
lp=$(free_port)
forward "$lp" svc/"$rel":80 &
pf=$!
c1=000 c2=000
for _ in $(seq 50); do
    c1=$(curl -s -o /dev/null -m 2 -w '%{http_code}' -H "Authorization: Bearer $api_key" "http://127.0.0.1:$lp/clients" || true)
    [[ $c1 == 200 ]] && break; sleep 0.2
done
c2=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$lp/metrics" || true)
kill $pf 2>/dev/null || true; wait $pf 2>/dev/null || true
[[ $c1 == 200 && $c2 == 200 ]] && seen+=("port-forward svc/$rel 80: /clients with the API key and /metrics 200") ||
    stepfail readme "port-forward svc/$rel: /clients $c1 /metrics $c2" "$work/port-forward.log"
[[ ${#seen[@]} -eq 5 ]] && line "readme: ok $(printf '%s; ' "${seen[@]}" | sed 's/; $//') ($(since $t0) s)"

# ---- relays flowing while something happens to the cluster
run_flow() { # name, receivers-at, senders-at, reconnect-at, seconds, settle, action...
    local name=$1 ra=$2 sa=$3 rc=$4 secs=$5 settle=$6; shift 6
    local ev=$work/$name.event rd=$work/$name.ready out=$work/$name.json
    rm -f "$ev" "$rd" "$out"
    python3 "$here/hubprobe.py" flow --api-key "$api_key" --receivers-at "$ra" --senders-at "$sa" \
        --reconnect-at "$rc" --receivers 8 --senders 2 --rate 40 --seconds "$secs" --settle "$settle" \
        --event-file "$ev" --ready-file "$rd" >"$out" 2>"$work/$name.err" &
    flow_pid=$!
    for _ in $(seq 100); do [[ -s $rd ]] && break; kill -0 $flow_pid 2>/dev/null || break; sleep 0.1; done
    [[ -s $rd ]] || { wait $flow_pid || true; flow_pid=""; return 2; }
    sleep 5
    touch "$ev"
    "$@" >"$work/$name.action.log" 2>&1 || { echo "action failed" >>"$work/$name.err"; }
    local rc_=0
    wait $flow_pid || rc_=$?
    flow_pid=""
    return $rc_
}
acct() { # json file: the accounting as one phrase
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("accepted %(accepted)d, delivered %(delivered)d, lost %(lost)d, duplicates %(duplicates)d, "
      "refused %(refused)d, unanswered %(unanswered)d, %(receivers)d receivers reconnected %(reconnects)d times, "
      "longest receiver outage %(max_outage_s)s s" % d)' "$1" 2>/dev/null || echo "no accounting ($(head -c 300 "${1%.json}.err"))"
}

# ---- pod-kill
t0=$SECONDS
mapfile -t pods < <(hub_pods)
victim=${pods[0]%% *} victim_ip=${pods[0]#* } other_ip=${pods[1]#* }
kill_victim() { kubectl delete pod -n "$ns" "$victim" --force --grace-period=0 --wait=false; }
rc=0
run_flow pod-kill "$victim_ip:8080" "$other_ip:8080" "$svc" 25 25 kill_victim || rc=$?
kubectl rollout status -n "$ns" deployment/"$rel" --timeout=3m >>"$work/pod-kill.action.log" 2>&1 || true
if [[ $rc == 0 ]]; then
    line "pod-kill: ok $victim deleted (--force --grace-period=0) with relays flowing: $(acct "$work/pod-kill.json") ($(since $t0) s)"
elif [[ $rc == 3 ]]; then
    stepfail pod-kill "$victim deleted (--force --grace-period=0) with relays flowing: $(acct "$work/pod-kill.json")"
else
    stepfail pod-kill "the flow did not run (rc $rc)" "$work/pod-kill.err"
fi
cp "$work/pod-kill.json" "$work/last-pod-kill.json" 2>/dev/null || true

# ---- upgrade
t0=$SECONDS
st=$(python3 - "$svc" "$api_key" <<'EOF'
import json, sys, urllib.request
req = urllib.request.Request("http://%s/sessions" % sys.argv[1], data=b"{}", method="POST",
                             headers={"Content-Type": "application/json", "Authorization": "Bearer " + sys.argv[2]})
print(urllib.request.urlopen(req, timeout=5).read().decode())
EOF
) || st=""
old_pods=$(hub_pods | cut -d' ' -f1 | sort | paste -sd' ')
old_secret=$(kubectl get secret -n "$ns" "$rel" -o jsonpath='{.data}')
old_rabbit=$(kubectl get secret -n "$ns" "$rel-rabbitmq" -o jsonpath='{.data}')
do_upgrade() {
    helm upgrade "$rel" "$chart" -n "$ns" -f "$chart/ci/standin-values.yaml" --set hub.presenceTtl=20 --wait --timeout 5m
}
rc=0
run_flow upgrade "$svc" "$svc" "$svc" 60 25 do_upgrade || rc=$?
new_pods=$(hub_pods | cut -d' ' -f1 | sort | paste -sd' ')
rolled=1
for p in $old_pods; do [[ " $new_pods " == *" $p "* ]] && rolled=0; done
ttl=$(kubectl get deploy -n "$ns" "$rel" -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="MSGHUB_PRESENCE_TTL")].value}')
same_secrets=0
[[ $old_secret == "$(kubectl get secret -n "$ns" "$rel" -o jsonpath='{.data}')" &&
   $old_rabbit == "$(kubectl get secret -n "$ns" "$rel-rabbitmq" -o jsonpath='{.data}')" ]] && same_secrets=1
token_ok=$(python3 - "$svc" "$st" <<'EOF' 2>&1
import json, os, sys
sys.path.insert(0, os.path.join("tools", "deploy-check"))
import hubprobe
s = json.loads(sys.argv[2])
c = hubprobe.connect(sys.argv[1], token=s["token"])
print("yes" if c.hello["id"] == s["id"] and c.hello.get("resumed") else "no: %r" % c.hello)
EOF
)
detail="hub.presenceTtl 15 -> $ttl rolled every hub pod ($( [[ $rolled == 1 ]] && echo "none of $old_pods left" || echo "NOT rolled: $new_pods")); Secrets $( [[ $same_secrets == 1 ]] && echo unchanged || echo CHANGED); a token minted before resumes its id: $token_ok; relays during the roll: $(acct "$work/upgrade.json")"
grep -q 'STATUS: deployed' "$work/upgrade.action.log" || { stepfail upgrade "helm upgrade did not deploy" "$work/upgrade.action.log"; }
if [[ $rc == 0 && $rolled == 1 && $same_secrets == 1 && $token_ok == yes && $ttl == 20 ]]; then
    line "upgrade: ok $detail ($(since $t0) s)"
else
    stepfail upgrade "$detail"
fi
cp "$work/upgrade.json" "$work/last-upgrade.json" 2>/dev/null || true

# ---- redis-restart
t0=$SECONDS
rpod=$rel-redis-0
rx() { kubectl exec -n "$ns" "$rpod" -c redis -- "$@"; }
aof="$(rx redis-cli config get appendonly | tail -1)/$(rx redis-cli config get appendfsync | tail -1)"
# An offline id with a stored message, and the id counter, before.
before=$(python3 - "$svc" "$api_key" <<'EOF'
import json, sys
sys.path.insert(0, "tools/deploy-check")
import hubprobe
a, k = sys.argv[1], sys.argv[2]
st, b = hubprobe.http(a, "POST", "/sessions", {}, api_key=k)
s = json.loads(b)
st, b = hubprobe.http(a, "POST", "/relay", {"receivers": [s["id"]], "body": {"kept": "across redis"}}, api_key=k)
assert st == 200 and json.loads(b)["accepted"] == 1, (st, b)
print(json.dumps(s))
EOF
) || before=""
pvc_before=$(kubectl get pod -n "$ns" "$rpod" -o jsonpath='{.spec.volumes[?(@.name=="data")].persistentVolumeClaim.claimName}')
uid_before=$(kubectl get pod -n "$ns" "$rpod" -o jsonpath='{.metadata.uid}')
restart_redis() {
    kubectl delete pod -n "$ns" "$rpod" --wait=true --timeout=60s
    kubectl wait -n "$ns" --for=condition=Ready pod/"$rpod" --timeout=120s
}
rc=0
run_flow redis-restart "$svc" "$svc" "$svc" 30 25 restart_redis || rc=$?
uid_after=$(kubectl get pod -n "$ns" "$rpod" -o jsonpath='{.metadata.uid}' 2>/dev/null || true)
kubectl rollout status -n "$ns" deployment/"$rel" --timeout=2m >/dev/null 2>&1 || true
after=$(python3 - "$svc" "$api_key" "$before" <<'EOF' 2>&1
import json, sys
sys.path.insert(0, "tools/deploy-check")
import hubprobe
a, k, s = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
c = hubprobe.connect(a, token=s["token"])
m = hubprobe.recv_type(c, "message", timeout=5)
assert m["body"] == {"kept": "across redis"}, m
st, b = hubprobe.http(a, "POST", "/sessions", {}, api_key=k)
n = json.loads(b)["id"]
assert n > s["id"], "id counter went back: %d after %d" % (n, s["id"])
print("yes")
EOF
)
aof_files=$(rx sh -c 'ls /data/appendonlydir 2>/dev/null | paste -sd" "' 2>/dev/null || true)
detail="Redis ($aof) pod deleted and rescheduled on PVC $pvc_before ($( [[ -n $uid_after && $uid_after != "$uid_before" ]] && echo "new pod" || echo "SAME pod?")), AOF files: ${aof_files:-none}; a message stored for an offline id and the id counter came back: $after; relays meanwhile: $(acct "$work/redis-restart.json")"
if [[ $aof == yes/always && -n $before && $after == yes && $rc == 0 && -n $uid_after && $uid_after != "$uid_before" ]]; then
    line "redis-restart: ok $detail ($(since $t0) s)"
else
    stepfail redis-restart "$detail"
fi
cp "$work/redis-restart.json" "$work/last-redis-restart.json" 2>/dev/null || true

# ---- events: what Kubernetes complained about during the run (information)
kubectl get events -n "$ns" --field-selector type=Warning >"$work/warnings.txt" 2>&1 || true
summary=$(kubectl get events -n "$ns" --field-selector type=Warning --no-headers \
    -o custom-columns=OBJ:.involvedObject.name,REASON:.reason,COUNT:.count 2>/dev/null |
    awk '{ r[$2 " " ($1 ~ /rabbitmq/ ? "rabbitmq" : $1 ~ /redis/ ? "redis" : "hub")] += $3 } END { for (k in r) printf "%s x%d, ", k, r[k] }' | sed 's/, $//' || true)
line "events: ok Warning events of the run: ${summary:-none} ($work/warnings.txt)"

# ---- uninstall
t0=$SECONDS
kubectl get pods -n "$ns" -o wide >"$work/pods-end.txt" 2>&1 || true
if [[ ${MSGHUB_CLUSTER_KEEP:-0} == 1 ]]; then
    line "uninstall: skipped (MSGHUB_CLUSTER_KEEP=1)"
elif helm uninstall "$rel" -n "$ns" --wait --timeout 2m >"$work/uninstall.log" 2>&1; then
    # --wait covers the chart's objects; their pods still drain (hub 25 s,
    # RabbitMQ up to 60 s).
    kubectl wait -n "$ns" --for=delete pod -l app.kubernetes.io/instance="$rel" --timeout=90s >>"$work/uninstall.log" 2>&1 || true
    left=$(kubectl get deploy,sts,svc,secret,pod -n "$ns" -l app.kubernetes.io/instance="$rel" -o name 2>/dev/null | paste -sd' ' || true)
    pvcs=$(kubectl get pvc -n "$ns" -o name 2>/dev/null | paste -sd' ' || true)
    if [[ -z $left ]]; then line "uninstall: ok helm uninstall --wait removed everything but the PVCs ($pvcs), as docs/DEPLOY.md says ($(since $t0) s)"
    else stepfail uninstall "left behind: $left"; fi
    kubectl delete namespace "$ns" --wait=true --timeout=90s >/dev/null 2>&1 || true
else
    stepfail uninstall "helm uninstall" "$work/uninstall.log"
fi

teardown
finish
