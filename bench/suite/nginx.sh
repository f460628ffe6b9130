# shellcheck shell=bash
# bench/suite/nginx.sh - scenarios "nginx-cC": nginx (master process and
# one worker, in the foreground, private prefix and configuration, a
# random loopback port) answering `return 200 "hello"`, loaded by wrk with
# 1 and 64 connections for 2 s each; over kernel TCP and xio. wrk cannot
# connect to a UNIX socket, so there is no uds row (n/a in the table).
# Requests per second, p50 and p99 (wrk --latency), CPU per request of
# nginx (master + worker, /proc/PID/stat) and of wrk.

sc_nginx() {
  local c t dur=2 nginx
  [ "$QUICK" = 1 ] && dur=1
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  if [ ! -x "$nginx" ] || ! command -v wrk >/dev/null; then
    step_begin nginx all 0
    fail_step "nginx or wrk is not installed (tools/deps)"
    step_end
    return
  fi
  for c in 1 64; do
    for t in tcp xio; do
      step_begin "nginx-c$c" "$t" 5 || { step_end; continue; }
      nginx_step "$nginx" "$c" "$dur"
      step_end
    done
  done
}

# nginx_conf PORT [WORKER_CONNECTIONS [KEEPALIVE_TIMEOUT [WORKER_RLIMIT_NOFILE]]]:
# $STEP/nginx.conf (also crowd.sh's, which holds thousands of idle
# keep-alive connections: nginx's defaults, 1024 connections and 75 s,
# would refuse or close them).
nginx_conf() {
  local port=$1 conns=${2:-1024} ka=${3:-75s} rlim=${4:-} user=""
  # As root the master would make its worker "nobody" anyway; say so, with
  # a group that exists here.
  if [ "$(id -u)" = 0 ]; then
    user="user nobody $(getent group nogroup >/dev/null && echo nogroup || echo nobody);"
  fi
  mkdir -p "$STEP/logs" "$STEP/tmp"
  cat >"$STEP/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
$user
${rlim:+worker_rlimit_nofile $rlim;}
pid $STEP/nginx.pid;
error_log $STEP/logs/error.log notice;
events { worker_connections $conns; }
http {
  access_log off;
  client_body_temp_path $STEP/tmp/body;
  proxy_temp_path $STEP/tmp/proxy;
  fastcgi_temp_path $STEP/tmp/fastcgi;
  uwsgi_temp_path $STEP/tmp/uwsgi;
  scgi_temp_path $STEP/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout $ka;
  server {
    listen 127.0.0.1:$port;
    location / { return 200 "hello"; }
  }
}
CONF
}

# wrk_us VALUE: "62.00us", "1.23ms" or "1.00s" in microseconds.
wrk_us() {
  awk -v v="$1" 'BEGIN { m = 1; if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1e3; else if (v ~ /s$/) m = 1e6
    sub(/[a-z]+$/, "", v); printf "%.3f\n", v * m }'
}

nginx_step() {
  local nginx=$1 c=$2 dur=$3 scen=$STEP_SCEN port spid rc s0 s1 pids
  port=$(free_port) || { fail_step "no free port"; return; }
  nginx_conf "$port"
  "$nginx" -t -p "$STEP" -c "$STEP/nginx.conf" >"$STEP/nginx-t.log" 2>&1 ||
    { fail_step "nginx -t: $(tail -2 "$STEP/nginx-t.log")"; return; }
  bg_start spid "$STEP/srv.out" "$STEP/srv.err" "${SRV_ENV[@]}" "$nginx" -p "$STEP" -c "$STEP/nginx.conf"
  wait_port "$port" "$spid" 10 || { bg_stop "$spid" KILL 2; fail_step "nginx did not start"; return; }
  pids="$spid $(proc_children "$spid")"
  # shellcheck disable=SC2086
  s0=$(proc_cpu_us $pids)
  run_with_cpu "$STEP/cli.cpu" timeout -k 2 $((dur + 30)) "${CLI_ENV[@]}" wrk -t1 -c"$c" -d"${dur}s" \
    --latency "http://127.0.0.1:$port/" >"$STEP/cli.out" 2>"$STEP/cli.err" </dev/null
  rc=$?
  # shellcheck disable=SC2086
  s1=$(proc_cpu_us $pids)
  if [ $rc -ne 0 ]; then
    bg_stop "$spid" KILL 2
    fail_step "wrk exited with status $rc$([ $rc = 124 ] && echo ' (timeout: a hang?)')"
    return
  fi
  # SIGQUIT: graceful; the worker finishes and exits, then the master.
  if ! bg_stop "$spid" QUIT 10; then
    fail_step "nginx did not exit normally on SIGQUIT (status $BG_RC)"
    return
  fi
  if grep -Eq 'exited on signal|exited with code [1-9]' "$STEP/logs/error.log" 2>/dev/null; then
    fail_step "an nginx worker died: $(grep -E 'exited on signal|exited with code' "$STEP/logs/error.log" | head -1)"
    return
  fi
  if grep -qE 'Socket errors|Non-2xx' "$STEP/cli.out"; then
    fail_step "wrk: $(grep -E 'Socket errors|Non-2xx' "$STEP/cli.out" | tr -s ' ')"
    return
  fi
  local rps reqs p50 p99 cs cc
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$STEP/cli.out")
  reqs=$(awk '/ requests in / { print $1 }' "$STEP/cli.out")
  p50=$(wrk_us "$(awk '$1 == "50%" { print $2 }' "$STEP/cli.out")")
  p99=$(wrk_us "$(awk '$1 == "99%" { print $2 }' "$STEP/cli.out")")
  if [ -z "$rps" ] || [ "${reqs:-0}" -le 0 ]; then
    fail_step "wrk made no requests"
    return
  fi
  cs=$(div $((s1 - s0)) "$reqs")
  cc=$(div "$(cat "$STEP/cli.cpu")" "$reqs")
  xio_verify "$scen" 5 || return
  rec "$scen" "$TRANSPORT" 5 req_per_s "$rps"
  rec "$scen" "$TRANSPORT" 5 p50_us "$p50"
  rec "$scen" "$TRANSPORT" 5 p99_us "$p99"
  rec "$scen" "$TRANSPORT" 5 cpu_srv_us "$cs"
  rec "$scen" "$TRANSPORT" 5 cpu_cli_us "$cc"
  say "$scen $TRANSPORT: $rps req/s, p50 $p50 us, p99 $p99 us, CPU srv $cs / cli $cc us per req$XIO_NOTE"
}
