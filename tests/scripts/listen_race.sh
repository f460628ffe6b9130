#!/usr/bin/env bash
# listen_race.sh BUILD_DIR - a client that connects the moment its server's
# kernel starts listening (it retries connect() in a tight loop while the
# server starts) is accelerated like any other: the listener is known to
# the monitor before the kernel listens. 20 rounds, both ends under the
# shim; every round's client must count accel_conns=1 and fallback_conns=0.
set -u
build=$(cd "$1" && pwd)
. "$(dirname "$0")/../../tools/lib.sh"
shim=$build/preload/libxio_preload.so
dir=$(mktemp -d /tmp/xio-lrace-XXXXXX)
fail() { echo "FAIL: $*"; xio_monitor_stop; rm -rf "$dir"; exit 1; }
xio_monitor_start "$build" || fail "the monitor did not start"
py=$(command -v python3)
cat >"$dir/server.py" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
c, _ = s.accept()
c.settimeout(10)
data = b""
while len(data) < 5:
    d = c.recv(5 - len(data))
    if not d:
        sys.exit("server: end of file")
    data += d
c.sendall(data.upper())
c.close()
PY
cat >"$dir/client.py" <<'PY'
import socket, sys, time
end = time.time() + 10
while True:
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", int(sys.argv[1])))
        break
    except ConnectionRefusedError:
        s.close()
        if time.time() > end:
            sys.exit("client: never connected")
s.settimeout(10)
s.sendall(b"hello")
r = b""
while len(r) < 5:
    d = s.recv(5 - len(r))
    if not d:
        sys.exit("client: end of file")
    r += d
if r != b"HELLO":
    sys.exit("client: got %r" % r)
PY
for round in $(seq 20); do
  port=$((20000 + RANDOM % 10000))
  LD_PRELOAD=$shim XIO_STATS=$dir/client.$round timeout 20 "$py" "$dir/client.py" "$port" &
  cpid=$!
  sleep 0.05
  LD_PRELOAD=$shim XIO_STATS=$dir/server.$round timeout 20 "$py" "$dir/server.py" "$port" ||
    fail "round $round: the server failed"
  wait "$cpid" || fail "round $round: the client failed"
  line=$(grep -v 'accel_conns=0 fallback_conns=0 ' "$dir/client.$round" | head -1)
  case $line in
    *" accel_conns=1 fallback_conns=0 "*) ;;
    *) fail "round $round: the client was not accelerated: ${line:-no stats}" ;;
  esac
done
xio_monitor_stop
rm -rf "$dir"
echo "1 passed, 0 failed"
