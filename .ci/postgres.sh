#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1:$PGPORT for the tuning tests (Optuna studies shared
# by worker processes) and print the SQLAlchemy URL. Installs the Debian server package when missing.
# initdb refuses root, so the cluster runs as the `postgres` user, in a temporary data directory.
set -euo pipefail
PGPORT="${PGPORT:-54329}"
while (exec 3<>"/dev/tcp/127.0.0.1/$PGPORT") 2>/dev/null; do PGPORT=$((PGPORT + 1)); done  # port taken: the next
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
PGDATA="$(mktemp -d /tmp/crlbench-pg.XXXXXX)"
chown postgres "$PGDATA"
su postgres -s /bin/sh -c "$PGBIN/initdb -D $PGDATA -A trust -U postgres" >/dev/null
su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA -l $PGDATA/server.log -w start \
  -o '-p $PGPORT -k $PGDATA -c listen_addresses=127.0.0.1 -c max_connections=100'" >&2
echo "$PGDATA" > /tmp/crlbench-pg.dir
echo "postgresql+psycopg2://postgres@127.0.0.1:$PGPORT/postgres"
