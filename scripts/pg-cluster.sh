#!/usr/bin/env bash
# A private PostgreSQL cluster for running relay replicas by hand: a data
# directory of its own, listening on 127.0.0.1 only, trust auth for loopback.
#
#   scripts/pg-cluster.sh start [DIR] [PORT]   # prints the store URL to use
#   scripts/pg-cluster.sh stop  [DIR]
#   scripts/pg-cluster.sh status [DIR]
#
# DIR defaults to ./.pg-cluster, PORT to 54329. Run as root, the server runs
# as the `postgres` user (PostgreSQL refuses to run as root).
set -euo pipefail

cmd=${1:-}
dir=${2:-$PWD/.pg-cluster}
port=${3:-54329}

find_bin() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/pg_ctl" ]; then echo "$d"; return; fi
  done
  if command -v pg_ctl >/dev/null 2>&1; then dirname "$(command -v pg_ctl)"; return; fi
  echo "PostgreSQL is not installed: apt-get install -y postgresql (or set PG_BIN to the directory holding pg_ctl)" >&2
  exit 2
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

bin=$(find_bin)
case "$cmd" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log"
    fi
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on" start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop
    ;;
  status)
    as_pg "$bin/pg_ctl" -D "$dir/data" status
    ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
