#!/usr/bin/env bash
# nginx_proxy.sh BUILD_DIR - nginx as a reverse proxy with upstream
# keep-alive (issue 7, item 5: the edge-triggered epoll stall), all under
# the shim:
#
#   curl / wrk --> nginx proxy (2 workers) ==keep-alive==> backend
#
# Two backends, one after the other: a second nginx (epoll, EPOLLET on both
# ends of the upstream connection) and python's ThreadingHTTPServer speaking
# HTTP/1.1 with keep-alive (blocking reads in threads). Against each:
#   - ROUNDS rounds of one curl process fetching 40 URLs on one keep-alive
#     connection (small replies: 141 bytes, as in the stall the issue saw,
#     and a 64 KiB file), every body compared, one connection per round.
#     A stalled request fails the round (curl's --max-time, far beyond its
#     need), with the kernel's queues of the ports involved (at the stall
#     they are empty: the bytes wait in a channel);
#   - a 5 s wrk run with 8 connections: requests made, no socket errors.
#     wrk is load here, not a stall check: it counts no timeout for a
#     request that is never answered.
# The proxy logs everything at debug level (to /dev/null; the curl rounds'
# requests to logs/debug.log too): its slower event loop looks at the
# kernel's part of its epoll set on most waits, the interleaving in which
# the stall happened (a reply found again after that look was dropped as a
# duplicate of the EPOLLOUT already in hand). With it, today's shim stalls
# within a few rounds; without it, within about a hundred.
#
# XIO_COMPAT_LONG=1 runs 100 rounds and 5 wrk runs per backend (several
# minutes: run the script directly, run_all.sh and ctest stop a case after
# 180 and 300 s); XIO_PROXY_ROUNDS / XIO_PROXY_WRK set them exactly.
#
# Acceleration is checked per hop: the clients' counters (curl, wrk: the
# client side of the front connections), the backend's own counters (the
# upstream connections' far end: accepted and read over shared memory) and
# the proxy's (both of its sides).
. "$(dirname "$0")/lib.sh"
if [ "${XIO_COMPAT_LONG:-0}" = 1 ]; then
  rounds=${XIO_PROXY_ROUNDS:-100}; wrk_runs=${XIO_PROXY_WRK:-5}
  COMPAT_TIMEOUT=${COMPAT_TIMEOUT:-1200}
else
  rounds=${XIO_PROXY_ROUNDS:-20}; wrk_runs=${XIO_PROXY_WRK:-1}
  COMPAT_TIMEOUT=${COMPAT_TIMEOUT:-240}
fi
compat_init nginx_proxy "$@"
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || fail "nginx is not installed (tools/deps)"
command -v wrk >/dev/null || fail "wrk is not installed (tools/deps)"

urls=40
user=nobody; group=nogroup
getent group nogroup >/dev/null || group=nobody

mkdir -p "$WORK/www" "$WORK/tmp" "$WORK/logs"
chmod 755 "$WORK/www"
# 141 bytes: the size of the backend reply the issue's stall left unread.
printf 'x%.0s' $(seq 140) >"$WORK/www/small.txt"; echo >>"$WORK/www/small.txt"
head -c 65536 /dev/urandom >"$WORK/www/mid.bin"
chmod 644 "$WORK/www/"*
BACKEND_STATS=$WORK/backend.stats
: >"$BACKEND_STATS"; chmod 666 "$BACKEND_STATS"

# nginx_conf NAME LOG BODY: a config for one nginx instance under
# $WORK/NAME, logging at info level to logs/error.log and as LOG says too.
nginx_conf() {
  local name=$1 level=$2 body=$3 d=$WORK/$1
  mkdir -p "$d/logs" "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
user $user $group;
pid $d/nginx.pid;
error_log $d/logs/error.log info;
error_log $level;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  keepalive_timeout 60;
  keepalive_requests 100000;
  default_type application/octet-stream;
$body
}
EOF
  "$nginx" -t -p "$d" -c "$d/nginx.conf" >"$d/nginx-t.out" 2>&1 ||
    fail "nginx -t ($name): $(cat "$d/nginx-t.out")"
}

# kernel_queues PORT...: the kernel's Recv-Q/Send-Q of every connection on
# those ports (at a stall, the queues are empty: the bytes wait in a channel).
kernel_queues() {
  local p
  for p in "$@"; do
    ss -tnH state established "( sport = :$p or dport = :$p )" 2>/dev/null | sed 's/^/    /'
  done
}

proxy_port=$(free_port)
proxy_body="
  upstream backend {
    server 127.0.0.1:BACKEND_PORT;
    keepalive 16;
  }
  server {
    listen 127.0.0.1:$proxy_port;
    proxy_http_version 1.1;
    proxy_set_header Connection \"\";
    proxy_read_timeout 30s;
    location / {
      proxy_pass http://backend;
    }
    # The curl rounds: the same, with the request's work logged at debug
    # level (the slower event loop of the stall).
    location /d/ {
      error_log $WORK/proxy/logs/debug.log debug;
      proxy_pass http://backend/;
    }
  }"

# run_against NAME PORT: the curl rounds and wrk runs through the proxy.
run_against() {
  local name=$1 bport=$2 url=http://127.0.0.1:$proxy_port r i rc args=() want got
  for ((i = 0; i < urls; i++)); do
    if ((i % 8 == 7)); then
      args+=(-o "$WORK/out/$i" "$url/d/mid.bin")
    else
      args+=(-o "$WORK/out/$i" "$url/d/small.txt")
    fi
  done
  for ((r = 1; r <= rounds; r++)); do
    rm -rf "$WORK/out"; mkdir -p "$WORK/out"
    : >"$WORK/proxy/logs/debug.log" # only the last round's is kept
    # --max-time bounds each transfer; curl goes on with the next URL
    # (on a new connection) after one timed out.
    xio_client 60 curl -sS -f --max-time 8 -w '%{num_connects}\n' "${args[@]}" \
      >"$WORK/curl.out" 2>"$WORK/curl.err"
    rc=$?
    if [ $rc != 0 ] || [ -s "$WORK/curl.err" ]; then
      log "round $r: curl exited $rc; kernel queues:"
      kernel_queues "$proxy_port" "$bport" >&2
      grep -q 'timed out' "$WORK/curl.err" &&
        fail "$name: round $r of $rounds: a request stalled (the stall of issue 7, item 5): $(head -c 300 "$WORK/curl.err") ($(ls "$WORK/out" | wc -l) of $urls bodies complete)"
      fail "$name: round $r of $rounds: curl ($urls keep-alive requests) exited $rc: $(head -c 300 "$WORK/curl.err") ($(ls "$WORK/out" | wc -l) bodies complete)"
    fi
    got=$(awk '{s += $1} END {print s}' "$WORK/curl.out")
    [ "$got" = 1 ] || fail "$name: round $r: $got connections for $urls requests (want 1: keep-alive)"
    for ((i = 0; i < urls; i++)); do
      if ((i % 8 == 7)); then want=$WORK/www/mid.bin; else want=$WORK/www/small.txt; fi
      cmp -s "$want" "$WORK/out/$i" || fail "$name: round $r: body $i differs ($(stat -c %s "$WORK/out/$i" 2>/dev/null) bytes)"
    done
  done
  echo "  $name: $rounds rounds of $urls keep-alive requests: all bodies intact"
  local reqs=0 n
  for ((r = 1; r <= wrk_runs; r++)); do
    xio_client 20 wrk -t1 -c8 -d5s "$url/small.txt" >"$WORK/wrk.out" 2>&1 ||
      fail "$name: wrk exited $?: $(tail -3 "$WORK/wrk.out")"
    n=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
    [ -n "$n" ] && [ "$n" -gt 0 ] || fail "$name: wrk made no requests: $(cat "$WORK/wrk.out")"
    if grep -qE 'Socket errors|Non-2xx' "$WORK/wrk.out"; then
      log "wrk run $r: kernel queues:"
      kernel_queues "$proxy_port" "$bport" >&2
      fail "$name: wrk run $r: $(grep -E 'Socket errors|Non-2xx' "$WORK/wrk.out")"
    fi
    reqs=$((reqs + n))
  done
  echo "  $name: wrk: $wrk_runs run(s) of 5 s, 8 connections: $reqs requests, no socket errors"
}

# stop_proxy PID NAME: a graceful stop; no worker may have crashed.
stop_nginx() {
  stop_server "$1" QUIT 10
  no_crash_in "$WORK/$2/logs/error.log" "exited on signal|exited with code [1-9]" "an nginx worker ($2) died"
}

# 1. Backend: a second nginx.
bport=$(free_port)
nginx_conf backend stderr "
  server {
    listen 127.0.0.1:$bport;
    root $WORK/www;
  }"
nginx_conf proxy "/dev/null debug" "${proxy_body/BACKEND_PORT/$bport}"
start_server backend "$WORK/backend.log" XIO_STATS="$BACKEND_STATS" \
  "$nginx" -p "$WORK/backend" -c "$WORK/backend/nginx.conf"
wait_port "$bport" "$backend" || fail "backend nginx did not start"
start_server proxy "$WORK/proxy.log" "$nginx" -p "$WORK/proxy" -c "$WORK/proxy/nginx.conf"
wait_port "$proxy_port" "$proxy" || fail "proxy nginx did not start"
run_against "nginx backend" "$bport"
stop_nginx "$proxy" proxy
stop_nginx "$backend" backend

# 2. Backend: python's ThreadingHTTPServer, HTTP/1.1 keep-alive.
bport=$(free_port)
cat >"$WORK/backend.py" <<'EOF'
import http.server, os, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
os.chdir(sys.argv[2])
# socketserver's backlog of 5 drops SYNs when the proxy opens its upstream
# connections at once (a 1 s retransmit each): not what this case tests.
http.server.ThreadingHTTPServer.request_queue_size = 128
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
srv.daemon_threads = True
try:
    srv.serve_forever()
except KeyboardInterrupt:
    pass
EOF
nginx_conf proxy "/dev/null debug" "${proxy_body/BACKEND_PORT/$bport}"
start_server pyback "$WORK/pyback.log" XIO_STATS="$BACKEND_STATS" \
  python3 "$WORK/backend.py" "$bport" "$WORK/www"
wait_port "$bport" "$pyback" || fail "python backend did not start"
start_server proxy "$WORK/proxy.log" "$nginx" -p "$WORK/proxy" -c "$WORK/proxy/nginx.conf"
wait_port "$proxy_port" "$proxy" || fail "proxy nginx did not start"
run_against "python backend" "$bport"
stop_nginx "$proxy" proxy
stop_server "$pyback" INT 10

if [ "$NO_PRELOAD" != 1 ]; then
  # The upstream connections, seen from the backends: accepted and read
  # over shared memory (only the proxy connects to them).
  echo "backend stats: $(stats_summary "$BACKEND_STATS")"
  [ "$(stats_sum "$BACKEND_STATS" accel_conns)" -gt 0 ] ||
    fail "no upstream connection was accelerated (backend accel_conns = 0)"
  [ "$(stats_sum "$BACKEND_STATS" rx_bytes)" -gt 0 ] ||
    fail "the backends read nothing over shared memory"
  [ "$(stats_sum "$BACKEND_STATS" tx_bytes)" -gt 0 ] ||
    fail "the backends wrote nothing over shared memory"
  # The proxy read the bodies from its backends and wrote them to its
  # clients over shared memory: at least every 64 KiB body twice.
  require_stat server rx_bytes -ge $((2 * rounds * (urls / 8) * 65536))
  require_stat server tx_bytes -ge $((2 * rounds * (urls / 8) * 65536))
fi
compat_finish
