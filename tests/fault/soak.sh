#!/usr/bin/env bash
# soak.sh BUILD_DIR - 1,000 concurrent connections between two programs
# under the shim (soak.c: an epoll echo server, and a client that checks
# every byte it gets back), mixed message sizes, for $XIO_SOAK_SECONDS
# (default 10; `tools/test --soak` runs 60). Passes if no byte is wrong and
# no call fails, every connection was accelerated, and neither program nor
# the monitor grew its private memory (RssAnon) by more than 4 MiB between
# a sample after warm-up and one at the end.
set -u
build=$(cd "$1" && pwd)
. "$(dirname "$0")/../../tools/lib.sh"
secs=${XIO_SOAK_SECONDS:-10}
conns=${XIO_SOAK_CONNS:-1000}
shim=$build/preload/libxio_preload.so
soak=$build/tests/soak
dir=$(mktemp -d /tmp/xio-soak-XXXXXX)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  xio_monitor_stop
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -5 "$dir"/*.log 2>/dev/null; exit 1; }

# 1,000 segments of 2 MiB would take 2 GiB; 256 KiB each is enough here.
printf 'segment-size 256K\n' >"$dir/soak.conf"
xio_monitor_start "$build" --config "$dir/soak.conf" || fail "the monitor did not start"
ulimit -n "$(ulimit -Hn)" # the programs raise theirs too (soak.c)

anon() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
coproc SERVER { LD_PRELOAD=$shim XIO_STATS=$dir/server.stats exec "$soak" server "$port" 2>"$dir/server.log"; }
server=$SERVER_PID
read -r -t 10 line <&"${SERVER[0]}" && [ "$line" = ready ] || fail "the server did not start"

LD_PRELOAD=$shim XIO_STATS=$dir/client.stats "$soak" client "$port" "$conns" "$secs" \
  >"$dir/client.out" 2>"$dir/client.log" &
client=$!
warm=$(( secs / 4 > 2 ? secs / 4 : 2 ))
sleep "$warm"
c0=$(anon $client) s0=$(anon $server) m0=$(anon $MONITOR_PID)
sleep $(( secs - warm - 1 > 0 ? secs - warm - 1 : 0 ))
c1=$(anon $client) s1=$(anon $server) m1=$(anon $MONITOR_PID)
wait $client || fail "the client failed: $(cat "$dir/client.log")"
cat "$dir/client.out"
echo "RssAnon KiB after ${warm}s -> near the end: client $c0 -> $c1, server $s0 -> $s1, monitor $m0 -> $m1"
for pair in "client $c0 $c1" "server $s0 $s1" "monitor $m0 $m1"; do
  set -- $pair
  [ "$2" -gt 0 ] || fail "$1: no memory sample"
  [ $(( $3 - $2 )) -le 4096 ] || fail "$1 grew its private memory from $2 to $3 KiB"
done
accel=$(sed -n 's/.* accel_conns=\([0-9]*\).*/\1/p' "$dir/client.stats" | head -1)
[ "${accel:-0}" -eq "$conns" ] || fail "only ${accel:-0} of $conns connections were accelerated"
echo "1 passed, 0 failed"
