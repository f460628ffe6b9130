#!/usr/bin/env bash
# redis.sh BUILD_DIR - redis-server and its own clients, both under the shim:
# SET/GET of a 1 MiB binary value (sha256 compared), a 10,000-command
# pipeline (redis-cli --pipe; DBSIZE and a counter checked), repeated
# commands (redis-cli -r), and a short redis-benchmark with 4 connections.
. "$(dirname "$0")/lib.sh"
compat_init redis "$@"
srv=""   # the server's pid, set by start_server
command -v redis-server >/dev/null || fail "redis-server is not installed (tools/deps)"

port=$(free_port)
cli() { xio_client 20 redis-cli -h 127.0.0.1 -p "$port" "$@"; }

start_server srv "$WORK/redis.log" redis-server --port "$port" --bind 127.0.0.1 \
  --save '' --appendonly no --daemonize no --dir "$WORK" --logfile ''
wait_port "$port" "$srv" || fail "redis-server did not start"

# 1 MiB of random bytes, SET from stdin (-x), GET back raw.
head -c 1048576 /dev/urandom >"$WORK/big.in"
r=$(cli -x SET big <"$WORK/big.in") || fail "SET big: redis-cli exited $?"
[ "$r" = OK ] || fail "SET big answered '$r'"
# --raw prints the bulk string then one newline: strip that newline.
cli --raw GET big >"$WORK/big.raw" || fail "GET big: redis-cli exited $?"
head -c -1 "$WORK/big.raw" >"$WORK/big.out"
[ "$(sha "$WORK/big.in")" = "$(sha "$WORK/big.out")" ] ||
  fail "GET big: 1 MiB value differs ($(stat -c %s "$WORK/big.out") bytes back)"
[ "$(cli STRLEN big)" = 1048576 ] || fail "STRLEN big"

# A 10,000-command pipeline: 5,000 SETs of distinct keys, 5,000 INCRs.
python3 - "$WORK/pipe.resp" <<'EOF'
import sys
def cmd(*a):
    out = b"*%d\r\n" % len(a)
    for x in a:
        x = x.encode()
        out += b"$%d\r\n%s\r\n" % (len(x), x)
    return out
with open(sys.argv[1], "wb") as f:
    for i in range(5000):
        f.write(cmd("SET", "key:%d" % i, "value-%d-%s" % (i, "x" * (i % 200))))
        f.write(cmd("INCR", "counter"))
EOF
cli --pipe <"$WORK/pipe.resp" >"$WORK/pipe.out" 2>&1 || fail "redis-cli --pipe exited $?: $(tail -2 "$WORK/pipe.out")"
grep -q 'errors: 0, replies: 10000' "$WORK/pipe.out" || fail "pipe: $(tail -1 "$WORK/pipe.out")"
[ "$(cli DBSIZE)" = 5002 ] || fail "DBSIZE after the pipeline: $(cli DBSIZE), want 5002"
[ "$(cli GET counter)" = 5000 ] || fail "counter after the pipeline: $(cli GET counter)"
[ "$(cli GET key:4321)" = "value-4321-$(printf 'x%.0s' $(seq 121))" ] || fail "GET key:4321"

# redis-cli -r: the same command repeated on one connection.
cli -r 1000 INCR counter2 >/dev/null || fail "redis-cli -r exited $?"
[ "$(cli GET counter2)" = 1000 ] || fail "counter2: $(cli GET counter2)"

# redis-benchmark: its own event loop, 4 parallel connections.
xio_client 40 redis-benchmark -h 127.0.0.1 -p "$port" -q -n 2000 -t set,get -c 4 \
  >"$WORK/bench.out" 2>&1 || fail "redis-benchmark exited $?: $(tail -3 "$WORK/bench.out")"
tr '\r' '\n' <"$WORK/bench.out" | grep -E '^(SET|GET): .*requests per second' >"$WORK/bench.res" || true
[ "$(wc -l <"$WORK/bench.res")" = 2 ] || fail "redis-benchmark: $(tr '\r' '\n' <"$WORK/bench.out" | tail -3)"
sed 's/^/  /' "$WORK/bench.res"

stop_server "$srv" TERM
# The 1 MiB value crossed in both directions over shared memory.
require_stat server rx_bytes -ge 1048576
require_stat client rx_bytes -ge 1048576
compat_finish
