#!/usr/bin/env bash
# mixed.sh BUILD_DIR - one preloaded python3 echo server
# (socketserver.ThreadingTCPServer) serves, at the same time, a preloaded
# client (paired over shared memory) and a plain client without the shim
# (left on kernel TCP by the same listener). Both get correct echoes; the
# preloaded client shows accel_conns >= 1; the server shows accel_conns >= 1
# AND fallback_conns >= 1.
. "$(dirname "$0")/lib.sh"
compat_init mixed "$@"
srv=""   # the server's pid, set by start_server

port=$(free_port)
cat >"$WORK/server.py" <<'EOF'
import signal, socketserver, sys

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            d = self.request.recv(65536)
            if not d:
                break
            self.request.sendall(d)

socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
srv = socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Echo)
print("listening", flush=True)
try:
    srv.serve_forever(poll_interval=0.1)
except KeyboardInterrupt:
    pass
srv.server_close()
EOF
cat >"$WORK/client.py" <<'EOF'
import hashlib, os, socket, sys, threading, time

port, size, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port), timeout=20)
# Many exchanges spread over ~1.5 s, so the two clients overlap in time.
for r in range(rounds):
    data = os.urandom(size)
    got = bytearray()
    def reader():
        while len(got) < size:
            d = s.recv(size - len(got))
            if not d:
                break
            got.extend(d)
    t = threading.Thread(target=reader)
    t.start()
    s.sendall(data)
    t.join(20)
    if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
        raise SystemExit("round %d: echo differs (%d of %d bytes)" % (r, len(got), size))
    time.sleep(1.5 / rounds)
s.shutdown(socket.SHUT_WR)
if s.recv(1) != b"":
    raise SystemExit("no EOF after shutdown")
s.close()
print("client ok: %d x %d bytes" % (rounds, size))
EOF
start_server srv "$WORK/server.log" python3 -u "$WORK/server.py" "$port"
wait_port "$port" "$srv" || fail "echo server did not start"

xio_client 30 python3 "$WORK/client.py" "$port" 262144 30 >"$WORK/xio-client.log" 2>&1 & cx=$!
plain 30 python3 "$WORK/client.py" "$port" 262144 30 >"$WORK/plain-client.log" 2>&1 & cp=$!
track "$cx" "$cp"
wait "$cx"; rx=$?
wait "$cp"; rp=$?
[ $rx = 0 ] || fail "preloaded client exited $rx: $(tail -1 "$WORK/xio-client.log")"
[ $rp = 0 ] || fail "plain client exited $rp: $(tail -1 "$WORK/plain-client.log")"

stop_server "$srv" INT 10
if [ "$NO_PRELOAD" != 1 ]; then
  [ "$(stats_sum "$SERVER_STATS" fallback_conns)" -ge 1 ] ||
    fail "server fallback_conns = 0: the plain client's connection was not counted as fallback"
  [ "$(stats_sum "$CLIENT_STATS" accel_conns)" -ge 1 ] || fail "preloaded client accel_conns = 0"
fi
# The preloaded client's 30 x 256 KiB went over shared memory both ways,
# and the plain client's bytes were not counted as such.
require_stat client rx_bytes -ge $((30 * 262144))
require_stat server rx_bytes -eq client:tx_bytes
require_stat server tx_bytes -eq client:rx_bytes
compat_finish
