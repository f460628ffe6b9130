#!/usr/bin/env bash
# postgres.sh BUILD_DIR - a PostgreSQL cluster made with initdb in a temp dir
# (run as the postgres user: the postmaster refuses root), listening on
# 127.0.0.1 only, under the shim; psql over TCP creates a table, inserts
# 1,000 rows and checks their sum; pgbench initialises scale 1 and runs
# 3 s with 2 clients. Every backend is a fork of the postmaster.
. "$(dirname "$0")/lib.sh"
compat_init postgres "$@"
srv=""   # the server's pid, set by start_server

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] && [ -x "$bindir/postgres" ] || fail "PostgreSQL is not installed (tools/deps)"
pguser=postgres
id -u "$pguser" >/dev/null 2>&1 || fail "no '$pguser' system user (installed by the postgresql package)"

# as_pg CMD...: CMD as the postgres user when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$pguser" -- "$@"; else "$@"; fi
}

port=$(free_port)
pgdir=$WORK/pg
mkdir -p "$pgdir"
[ "$(id -u)" = 0 ] && chown "$pguser": "$pgdir"
as_pg "$bindir/initdb" -D "$pgdir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
  >"$WORK/initdb.log" 2>&1 || fail "initdb exited $?"

# The postmaster in the foreground (as the postgres user, under the shim);
# setpriv execs, so our pid is the postmaster's.
pg_cmd=("$bindir/postgres" -D "$pgdir/data" -c listen_addresses=127.0.0.1 -c "port=$port"
        -c "unix_socket_directories=$pgdir" -c fsync=off -c synchronous_commit=off
        -c full_page_writes=off -c shared_buffers=32MB -c max_connections=20)
if [ "$(id -u)" = 0 ]; then
  start_server srv "$WORK/postgres.log" setpriv --reuid="$pguser" --regid="$pguser" \
    --init-groups --reset-env -- env "${XIO_SERVER_ENV[@]}" "${pg_cmd[@]}"
else
  start_server srv "$WORK/postgres.log" "${pg_cmd[@]}"
fi
on_cleanup "as_pg '$bindir/pg_ctl' stop -D '$pgdir/data' -m immediate -t 5"
wait_port "$port" "$srv" 15 || fail "postgres did not start"
# Listening is not accepting: wait until it takes connections (pg_isready
# uses the UNIX socket, so no TCP connection is counted).
for _ in $(seq 100); do
  plain 5 "$bindir/pg_isready" -q -h "$pgdir" -p "$port" && break
  sleep 0.1
done

psql() {
  xio_client 30 "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres \
    -d postgres "$@"
}
psql -c "CREATE TABLE t (id int PRIMARY KEY, v bigint, pad text)" || fail "psql CREATE TABLE exited $?"
psql -c "INSERT INTO t SELECT i, i * 3, repeat('p', 100) FROM generate_series(1, 1000) i" ||
  fail "psql INSERT exited $?"
# 1,000 single-row INSERTs in one session: many small round trips.
for ((i = 1001; i <= 2000; i++)); do
  echo "INSERT INTO t VALUES ($i, $((i * 3)), repeat('q', 50));"
done >"$WORK/inserts.sql"
psql -f "$WORK/inserts.sql" || fail "psql -f inserts.sql exited $?"
got=$(psql -At -c "SELECT count(*), sum(v) FROM t") || fail "psql SELECT exited $?"
[ "$got" = "2000|6003000" ] || fail "SELECT count, sum: '$got', want 2000|6003000"
# A result large enough to span many messages.
psql -At -c "SELECT id, v, pad FROM t ORDER BY id" >"$WORK/rows.out" || fail "psql SELECT * exited $?"
[ "$(wc -l <"$WORK/rows.out")" = 2000 ] || fail "SELECT *: $(wc -l <"$WORK/rows.out") rows"

# pgbench: COPY-based init of 100,000 rows, then 3 s of TPC-B-like load.
xio_client 60 "$bindir/pgbench" -h 127.0.0.1 -p "$port" -U postgres -i -s 1 -q postgres \
  >"$WORK/pgbench-init.log" 2>&1 || fail "pgbench -i exited $?"
xio_client 30 "$bindir/pgbench" -h 127.0.0.1 -p "$port" -U postgres -T 3 -c 2 -j 1 postgres \
  >"$WORK/pgbench.log" 2>&1 || fail "pgbench exited $?"
n=$(awk -F': ' '/number of transactions actually processed/ {split($2, a, "/"); print a[1]}' "$WORK/pgbench.log")
[ -n "$n" ] && [ "$n" -gt 0 ] || fail "pgbench processed no transaction"
failed=$(awk -F': ' '/number of failed transactions/ {print $2+0}' "$WORK/pgbench.log")
[ "${failed:-0}" = 0 ] || fail "pgbench: $failed failed transactions"
echo "  pgbench: $n transactions, $(awk '/^tps/ {print $3; exit}' "$WORK/pgbench.log") tps"
[ "$(psql -At -c 'SELECT count(*) FROM pgbench_accounts')" = 100000 ] || fail "pgbench_accounts count"

# Fast shutdown: the postmaster tells its children to exit, then exits.
as_pg "$bindir/pg_ctl" stop -D "$pgdir/data" -m fast -w -t 20 >"$WORK/pg_ctl.log" 2>&1 ||
  fail "pg_ctl stop exited $?"
stop_server "$srv" TERM 10
no_crash_in "$WORK/postgres.log" "terminated by signal" "a postgres process died"
compat_finish
