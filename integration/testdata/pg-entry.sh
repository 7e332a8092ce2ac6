#!/bin/sh
# Entry point of the test PostgreSQL image. The volume is mounted at
# /var/lib/postgresql/data; the cluster lives in its subdirectory pgdata,
# which PostgreSQL wants owned by its user with mode 0700. The first start
# on an empty volume runs initdb. PostgreSQL runs as PID 1, so docker stop
# (SIGTERM) is its smart shutdown. It listens on the unix socket in
# /run/postgresql only.
set -eu
PGDATA=/var/lib/postgresql/data/pgdata
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	su postgres -s /bin/sh -c "initdb -U postgres --auth=trust -E UTF8 --locale=C -D $PGDATA" >/tmp/initdb.log 2>&1 ||
		{ cat /tmp/initdb.log >&2; exit 1; }
fi
exec su postgres -s /bin/sh -c "exec postgres -D $PGDATA -c listen_addresses= -c unix_socket_directories=/run/postgresql $*"
