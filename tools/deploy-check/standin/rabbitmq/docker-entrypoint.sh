#!/bin/sh
# The official rabbitmq image's behaviour, as far as the chart relies on it:
# RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS (and _VHOST) create that user
# (administrator, all permissions) when the node first boots on an empty
# data directory; as root the server runs as the rabbitmq user; as any other
# uid it runs as it is. Debian's rabbitmq-server is 3.10, which does not
# read those variables itself, so they go into a conf.d file here.
set -e
if [ "$1" = rabbitmq-server ]; then
    conf=/etc/rabbitmq/conf.d/10-defaults.conf
    : >"$conf"
    [ -n "${RABBITMQ_DEFAULT_USER:-}" ] && echo "default_user = $RABBITMQ_DEFAULT_USER" >>"$conf"
    [ -n "${RABBITMQ_DEFAULT_PASS:-}" ] && echo "default_pass = $RABBITMQ_DEFAULT_PASS" >>"$conf"
    [ -n "${RABBITMQ_DEFAULT_VHOST:-}" ] && echo "default_vhost = $RABBITMQ_DEFAULT_VHOST" >>"$conf"
    # The official image listens for the management UI on every address.
    echo "management.tcp.port = 15672" >>"$conf"
    chmod 0600 "$conf"
    if [ "$(id -u)" = 0 ]; then
        chown rabbitmq:rabbitmq "$conf"
        find /var/lib/rabbitmq \! -user rabbitmq -exec chown rabbitmq '{}' + 2>/dev/null || true
        exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$@"
    fi
fi
exec "$@"
