#!/usr/bin/env bash
# python_http.sh BUILD_DIR - python3 -m http.server (ThreadingHTTPServer:
# one thread per connection, socket.sendfile for files) serving a 5 MiB
# random file to curl, sha256 compared; plus a directory listing and a 404.
# Both ends under the shim. Python is stopped with SIGINT (KeyboardInterrupt)
# so that it exits normally and the shim's exit hook runs.
. "$(dirname "$0")/lib.sh"
compat_init python_http "$@"
srv=""   # the server's pid, set by start_server

port=$(free_port)
mkdir -p "$WORK/www"
head -c $((5 * 1048576)) /dev/urandom >"$WORK/www/big.bin"
echo "small file" >"$WORK/www/small.txt"
start_server srv "$WORK/http.log" python3 -u -m http.server "$port" --bind 127.0.0.1 \
  --directory "$WORK/www"
wait_port "$port" "$srv" || fail "http.server did not start"
url=http://127.0.0.1:$port

xio_client 30 curl -sS -f -o "$WORK/big.out" "$url/big.bin" || fail "curl big.bin exited $?"
[ "$(sha "$WORK/www/big.bin")" = "$(sha "$WORK/big.out")" ] ||
  fail "big.bin differs ($(stat -c %s "$WORK/big.out") bytes back)"
xio_client 10 curl -sS -f "$url/" >"$WORK/index.out" || fail "curl / exited $?"
grep -q 'small.txt' "$WORK/index.out" || fail "directory listing lacks small.txt"
code=$(xio_client 10 curl -sS -o /dev/null -w '%{http_code}' "$url/missing") || true
[ "$code" = 404 ] || fail "GET /missing: HTTP $code, want 404"

stop_server "$srv" INT 10
require_stat client rx_bytes -ge $((5 * 1048576))
compat_finish
