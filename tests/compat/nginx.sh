#!/usr/bin/env bash
# nginx.sh BUILD_DIR - nginx (master + 2 workers that drop to nobody, as it
# runs in production) serving a 10 MiB random file to curl (sha256
# compared), two requests on one keep-alive connection, and a 2 s wrk run
# with 4 connections (requests > 0, no errors). Both ends under the shim.
. "$(dirname "$0")/lib.sh"
compat_init nginx "$@"
srv=""   # the server's pid, set by start_server
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || fail "nginx is not installed (tools/deps)"

port=$(free_port)
user=nobody; group=nogroup
getent group nogroup >/dev/null || group=nobody
mkdir -p "$WORK/www" "$WORK/logs" "$WORK/tmp"
chmod 755 "$WORK/www"
head -c $((10 * 1048576)) /dev/urandom >"$WORK/www/big.bin"
echo "hello from nginx" >"$WORK/www/small.txt"
chmod 644 "$WORK/www/"*
cat >"$WORK/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
user $user $group;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log info;
events { worker_connections 256; }
http {
  access_log $WORK/logs/access.log;
  client_body_temp_path $WORK/tmp/body;
  proxy_temp_path $WORK/tmp/proxy;
  fastcgi_temp_path $WORK/tmp/fastcgi;
  uwsgi_temp_path $WORK/tmp/uwsgi;
  scgi_temp_path $WORK/tmp/scgi;
  sendfile on;
  keepalive_timeout 30;
  keepalive_requests 100000;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$port;
    root $WORK/www;
  }
}
EOF
"$nginx" -t -p "$WORK" -c "$WORK/nginx.conf" >"$WORK/nginx-t.out" 2>&1 ||
  fail "nginx -t: $(cat "$WORK/nginx-t.out")"

start_server srv "$WORK/nginx.log" "$nginx" -p "$WORK" -c "$WORK/nginx.conf"
wait_port "$port" "$srv" || fail "nginx did not start"
url=http://127.0.0.1:$port

# 10 MiB download.
xio_client 30 curl -sS -f -o "$WORK/big.out" "$url/big.bin" || fail "curl big.bin exited $?"
[ "$(sha "$WORK/www/big.bin")" = "$(sha "$WORK/big.out")" ] ||
  fail "big.bin differs ($(stat -c %s "$WORK/big.out") bytes)"

# Keep-alive: two URLs on one command line reuse one connection.
xio_client 20 curl -sS -f -o "$WORK/k1" -o "$WORK/k2" -w '%{num_connects}\n' \
  "$url/small.txt" "$url/big.bin" >"$WORK/keepalive.out" || fail "curl keep-alive exited $?"
[ "$(sed -n 2p "$WORK/keepalive.out")" = 0 ] && [ "$(sed -n 1p "$WORK/keepalive.out")" = 1 ] ||
  fail "keep-alive: num_connects per transfer: $(tr '\n' ' ' <"$WORK/keepalive.out") (want 1 0)"
cmp -s "$WORK/k1" "$WORK/www/small.txt" || fail "keep-alive: small.txt differs"
[ "$(sha "$WORK/www/big.bin")" = "$(sha "$WORK/k2")" ] || fail "keep-alive: big.bin differs"

# wrk: 1 thread, 4 connections, 2 s.
if command -v wrk >/dev/null; then
  xio_client 20 wrk -t1 -c4 -d2s "$url/small.txt" >"$WORK/wrk.out" 2>&1 ||
    fail "wrk exited $?: $(tail -3 "$WORK/wrk.out")"
  reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
  [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || fail "wrk made no requests: $(cat "$WORK/wrk.out")"
  if grep -qE 'Socket errors|Non-2xx' "$WORK/wrk.out"; then
    fail "wrk: $(grep -E 'Socket errors|Non-2xx' "$WORK/wrk.out")"
  fi
  echo "  wrk: $reqs requests in 2 s, $(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out") req/s"
else
  fail "wrk is not installed (tools/deps)"
fi

# Graceful stop: SIGQUIT lets the workers finish and exit normally.
stop_server "$srv" QUIT 10
no_crash_in "$WORK/logs/error.log" "exited on signal|exited with code [1-9]" "an nginx worker died"
# Both 10 MiB downloads (sendfile) came over shared memory.
require_stat client rx_bytes -ge $((20 * 1048576))
compat_finish
