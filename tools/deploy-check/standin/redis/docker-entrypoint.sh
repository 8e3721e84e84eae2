#!/bin/sh
# The official redis image's entrypoint, as far as the chart relies on it:
# arguments starting with "-" go to redis-server; as root, /data is handed
# to the redis user and the server runs as that user (here with setpriv,
# the official image uses gosu); as any other uid it runs as it is.
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' + 2>/dev/null || true
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
exec "$@"
