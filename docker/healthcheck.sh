#!/bin/bash
# msghub-healthcheck [HOST:PORT] [PATH]
# Exits 0 when GET PATH (default /healthz) answers HTTP 200. HOST:PORT
# defaults to the hub in this container: the port of MSGHUB_LISTEN (default
# 0.0.0.0:8080) on the loopback address. Needs nothing but bash, so the
# image carries no curl. Used by the Dockerfile's HEALTHCHECK and by the
# Helm chart's `helm test` pod.
set -u
target=${1:-}
path=${2:-/healthz}
if [[ -z $target ]]; then
    listen=${MSGHUB_LISTEN:-0.0.0.0:8080}
    port=${listen##*:}
    host=${listen%:*}
    case $host in
        "" | "*" | 0.0.0.0 | "[::]") host=127.0.0.1 ;;
        \[*\]) host=${host#\[}; host=${host%\]} ;;
    esac
else
    port=${target##*:}
    host=${target%:*}
    host=${host#\[}; host=${host%\]}
fi
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
IFS=' ' read -r -t 5 _proto code _rest <&3 || exit 1
[[ $code == 200 ]]
