#!/bin/bash
set -e
# Makes the PostgreSQL data sets of make bench-format: pgbench -i -s ${SCALE:-20}
# with the filler column set to random base64 text, before and after 15 s of pgbench.
W=$(realpath -m "${1:-bench/work/formatstudy}")
B=/usr/lib/postgresql/15/bin
rm -rf $W/pg $W/pgsock; mkdir -p $W $W/pg $W/pgsock; chown postgres $W/pg $W/pgsock; chmod 700 $W/pg
runuser -u postgres -- $B/initdb -D $W/pg -A trust -U postgres --no-sync >/dev/null
PGO="-k $W/pgsock -c listen_addresses=''"
runuser -u postgres -- $B/pg_ctl -D $W/pg -w -l $W/pgsock/log -o "$PGO" start >/dev/null
runuser -u postgres -- $B/pgbench -i -q -s ${SCALE:-20} -h $W/pgsock -U postgres postgres
runuser -u postgres -- psql -h $W/pgsock -U postgres -q -c "create extension pgcrypto" -c "update pgbench_accounts set filler = substr(translate(encode(gen_random_bytes(63),'base64'),E'\n',''),1,84)" -c "vacuum full" -c checkpoint postgres
runuser -u postgres -- $B/pg_ctl -D $W/pg -w -m fast stop >/dev/null
rm -rf $W/pg-before; cp -a $W/pg $W/pg-before
runuser -u postgres -- $B/pg_ctl -D $W/pg -w -l $W/pgsock/log -o "$PGO" start >/dev/null
runuser -u postgres -- $B/pgbench -c 2 -j 2 -T 15 -h $W/pgsock -U postgres postgres | grep tps
runuser -u postgres -- $B/pg_ctl -D $W/pg -w -m fast stop >/dev/null
rm -rf $W/pg-after; cp -a $W/pg $W/pg-after
du -sh $W/pg-before $W/pg-after
