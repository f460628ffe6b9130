# shellcheck shell=bash
# bench/suite/crowd.sh - scenario "crowd" (issue 16's targets for servers
# with many connections, beside busyidle's single busy one), over kernel
# TCP and under xio (every process under the shim), side by side:
#   crowd-redis50  redis-server on CPU 0, 5,000 idle connections held
#                  (--quick: 1,000), then redis-benchmark -c 50 -t set,get
#                  on CPU 1: SET/s and GET/s, p50, p99. Issue's target:
#                  xio >= 10x TCP.
#   crowd-nginx    nginx (1 worker, as nginx.sh's, on CPU 0; keep-alive
#                  timeout and worker_connections large enough to keep
#                  them), 5,000 idle keep-alive HTTP connections held (each
#                  sent one GET and read its response), then wrk -t1 -c64
#                  on CPU 1: requests/s, p50, p99. Target >= 4x TCP.
#   crowd-many     redis-server on CPU 0 and bench/crowd.c on CPU 1, one
#                  process: 4,000 connections all open at once, each doing
#                  4 SETs of 64 KiB, then (a row of its own, a fresh
#                  server) 10,000 each doing 1 (--quick: 1,000 x 4 and
#                  2,500 x 1): total time (connect, SETs, close), xio's
#                  speed-up over TCP, redis's RSS after. Target >= 1.5x.
# The idle connections are held by bench/busyidle.c's holders (lib.sh's
# hold_start), CROWD_PER at most each, on CPU 1: each sent one request
# and got its answer, then stays open and silent; at the end each holder
# checks that none of its connections was closed by the server meanwhile.
#
# Every row: the server's CPU per request over the load, its RSS (VmRSS
# with the idle connections still held; crowd-many: after the client is
# gone, and its peak, VmHWM), and under xio the shim's counters: both ends
# must show accel_conns of at least the connections the row is about, and
# none of the clients' connections may have fallen back or left for TCP
# (xio_verify, then crowd_accel), or the row FAILs as not accelerated.
#
# What fits here: the hard RLIMIT_NOFILE is what every process may raise
# its soft limit to (each gets what it needs + 1,024, as in busyidle.sh);
# and the monitor charges a connection to the process that connects, up to
# its per-process limit, and to that process's uid, up to its per-uid limit
# (read from its log: monitor_limit; with this machine's hard limit of
# 20,000 they are 4,936 and 9,872). So the idle connections are spread
# over holders of at most CROWD_PER = 2,500 (keep-alive clients come from
# many processes anyway), while crowd-many's one client must hold all of
# its N: a row whose client processes need more than a limit FAILs at once,
# naming it, since the connections past it would stay on kernel TCP.

# nginx_conf and wrk_us.
# shellcheck source=nginx.sh
. "$(dirname "${BASH_SOURCE[0]}")/nginx.sh"

CROWD_PER=2500
CROWD_SAID=""

sc_crowd() {
  local idle=5000 many=("4000 4" "10000 1") reqs=20000 dur=2 t cfg n k nginx
  if [ "$QUICK" = 1 ]; then
    idle=1000 many=("1000 4" "2500 1") reqs=5000 dur=1
  fi
  if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    step_begin crowd all 0
    fail_step "redis-server or redis-benchmark is not installed (tools/deps)"
    step_end
    return
  fi
  CROWD_SOFT=$(ulimit -Sn) CROWD_HARD=$(ulimit -Hn)
  # A hard limit we may raise (CAP_SYS_RESOURCE) is no bound here.
  xio_can_set_nofile 65536 && CROWD_HARD=unlimited
  CROWD_MPROC=$(monitor_limit process) CROWD_MUID=$(monitor_limit uid)
  if [ -z "$CROWD_SAID" ]; then
    say "crowd: RLIMIT_NOFILE here: soft $CROWD_SOFT, hard $(ulimit -Hn)$([ "$CROWD_HARD" = unlimited ] && echo ' (may be raised here)'); the monitor accelerates at most ${CROWD_MPROC:-?} connections per connecting process and ${CROWD_MUID:-?} per uid; idle connections held by processes of at most $CROWD_PER"
    CROWD_SAID=1
    rec crowd-limits all 0 nofile_hard "$(ulimit -Hn)"
    rec crowd-limits all 0 monitor_proc_conns "$CROWD_MPROC"
    rec crowd-limits all 0 monitor_uid_conns "$CROWD_MUID"
  fi
  for t in tcp xio; do
    step_begin crowd-redis50 "$t" "$idle" || { step_end; continue; }
    crowd_redis50 "$idle" "$reqs"
    step_end
  done
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  for t in tcp xio; do
    step_begin crowd-nginx "$t" "$idle" || { step_end; continue; }
    if [ ! -x "$nginx" ] || ! command -v wrk >/dev/null; then
      fail_step "nginx or wrk is not installed (tools/deps)"
    else
      crowd_nginx "$nginx" "$idle" "$dur"
    fi
    step_end
  done
  for cfg in "${many[@]}"; do
    read -r n k <<<"$cfg"
    for t in tcp xio; do
      step_begin crowd-many "$t" "$n" || { step_end; continue; }
      crowd_many "$n" "$k"
      step_end
    done
  done
}

# crowd_nofile NEED: the soft RLIMIT_NOFILE for a process of NEED
# connections: NEED + 1,024 (its listener, the shim's and the program's
# own descriptors, redis's 32 spare ones), within the hard limit, and no
# less than the soft one.
crowd_nofile() {
  local lim=$(($1 + 1024))
  [ "$CROWD_HARD" != unlimited ] && [ "$lim" -gt "$CROWD_HARD" ] && lim=$CROWD_HARD
  [ "$CROWD_SOFT" != unlimited ] && [ "$lim" -lt "$CROWD_SOFT" ] && lim=$CROWD_SOFT
  echo "$lim"
}

# crowd_fits SERVER_CONNS PROC_CONNS UID_CONNS WHAT: whether this step can
# run as it says: the server's SERVER_CONNS connections within the hard
# RLIMIT_NOFILE, and under xio the PROC_CONNS of its largest connecting
# process (WHAT names it) and the UID_CONNS of all of them (one uid, root)
# within the monitor's limits. Returns 1 after a FAIL line.
crowd_fits() {
  local srv=$1 proc=$2 uid=$3 what=$4 why=""
  if [ "$CROWD_HARD" != unlimited ] && [ $((srv + 200)) -gt "$CROWD_HARD" ]; then
    fail_step "$srv connections need about $((srv + 200)) descriptors in the server; the hard RLIMIT_NOFILE is $CROWD_HARD"
    return 1
  fi
  [ "$TRANSPORT" = xio ] || return 0
  if [ -n "$CROWD_MPROC" ] && [ "$proc" -gt "$CROWD_MPROC" ]; then
    why="at most $CROWD_MPROC connections per process (limit-process-connections), fewer than the $proc $what opens"
  fi
  if [ -n "$CROWD_MUID" ] && [ "$uid" -gt "$CROWD_MUID" ]; then
    why="${why:+$why, and }at most $CROWD_MUID per uid (limit-uid-connections), fewer than the $uid this row's clients open together"
  fi
  [ -n "$why" ] || return 0
  fail_step "NOT ACCELERATED: not run: the monitor accelerates $why (by default a quarter of its fd budget per process, half per uid; its RLIMIT_NOFILE is the hard limit $(ulimit -Hn))"
  return 1
}

# crowd_accel N: after xio_verify, both ends' accel_conns must be at least
# N, the connections the row is about, and none of the clients' may have
# fallen back or left for TCP (fallback_conns, left_conns): every
# connection the row's clients made went over shared memory to its end.
# Returns 1 after a FAIL line.
crowd_accel() {
  local n=$1 side acc fb left
  [ "$TRANSPORT" = xio ] || return 0
  for side in srv cli; do
    acc=$(stats_sum "$STEP/$side.stats" accel_conns)
    if [ "$acc" -lt "$n" ]; then
      fail_step "NOT ACCELERATED: $side accel_conns=$acc, fewer than the $n connections ($(stats_sum "$STEP/$side.stats" fallback_conns) fell back to TCP)"
      return 1
    fi
  done
  fb=$(stats_sum "$STEP/cli.stats" fallback_conns) left=$(stats_sum "$STEP/cli.stats" left_conns)
  if [ "$fb" -gt 0 ] || [ "$left" -gt 0 ]; then
    fail_step "NOT ACCELERATED: of the clients' connections $fb fell back to TCP and $left left shared memory for TCP (cli.stats)"
    return 1
  fi
  return 0
}

crowd_redis50() {
  local n=$1 reqs=$2 c=50 port spid rc s0 s1 rss limit=180 lim
  # redis-benchmark's 50 connections per test, and one it asks CONFIG on.
  crowd_fits $((n + c)) $((n < CROWD_PER ? n : CROWD_PER)) $((n + c + 1)) "each idle holder" || return
  lim=$(crowd_nofile $((n + c)))
  port=$(free_port) || { fail_step "no free port"; return; }
  bg_start spid "$STEP/srv.log" "$STEP/srv.err" prlimit --nofile="$(nofile_opt "$lim")" taskset -c 0 \
    "${SRV_ENV[@]}" redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --daemonize no --dir "$STEP" --logfile '' --maxclients $((n + c + 100))
  wait_port "$port" "$spid" 10 || { bg_stop "$spid" KILL 2; fail_step "redis-server did not start"; return; }
  hold_start "$n" "$(crowd_nofile "$CROWD_PER")" "$port" redis "$CROWD_PER" ||
    { bg_stop "$spid" KILL 2; return; }
  # SET runs first and writes the key (key:__rand_int__, no -r) that GET
  # then reads, so GET returns a value.
  s0=$(proc_cpu_us "$spid")
  timeout -k 2 "$limit" taskset -c 1 "${CLI_ENV[@]}" redis-benchmark -h 127.0.0.1 -p "$port" \
    -t set,get -n "$reqs" -c $c --csv >"$STEP/cli.out" 2>"$STEP/cli.err" </dev/null
  rc=$?
  s1=$(proc_cpu_us "$spid")
  rss=$(proc_status "$spid" VmRSS)
  if [ $rc -ne 0 ]; then
    hold_kill
    bg_stop "$spid" KILL 2
    fail_step "redis-benchmark exited with status $rc$([ $rc = 124 ] && echo " (timeout: no result within $limit s)")"
    return
  fi
  hold_stop || { bg_stop "$spid" KILL 2; return; }
  bg_stop "$spid" TERM 30 || { fail_step "redis-server did not exit normally on SIGTERM (status $BG_RC)"; return; }
  local op line rps p50 p99 say_ops=""
  for op in set get; do
    line=$(grep -i "^\"$op\"" "$STEP/cli.out" | tr -d '"')
    [ -n "$line" ] || { fail_step "no ${op^^} line in redis-benchmark's output"; return; }
  done
  xio_verify crowd-redis50 "$n" || return
  crowd_accel $((n + c)) || return
  for op in set get; do
    line=$(grep -i "^\"$op\"" "$STEP/cli.out" | tr -d '"')
    IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"$line"
    p50=$(div "$p50" 1 1000) p99=$(div "$p99" 1 1000)
    rec crowd-redis50 "$TRANSPORT" "$n" "${op}_per_s" "$rps"
    rec crowd-redis50 "$TRANSPORT" "$n" "${op}_p50_us" "$p50"
    rec crowd-redis50 "$TRANSPORT" "$n" "${op}_p99_us" "$p99"
    say_ops+="${op^^} $rps/s (p50 $p50 us, p99 $p99 us), "
  done
  rec crowd-redis50 "$TRANSPORT" "$n" cpu_srv_us "$(div $((s1 - s0)) $((2 * reqs)))"
  rec crowd-redis50 "$TRANSPORT" "$n" rss_kib "$rss"
  say "crowd-redis50 $n idle $TRANSPORT: ${say_ops}CPU srv $(div $((s1 - s0)) $((2 * reqs))) us per req, srv RSS $rss KiB$XIO_NOTE"
}

crowd_nginx() {
  local nginx=$1 n=$2 dur=$3 c=64 port spid rc s0 s1 pids rss=0 p v lim
  crowd_fits $((n + c)) $((n < CROWD_PER ? n : CROWD_PER)) $((n + c)) "each idle holder" || return
  lim=$(crowd_nofile $((n + c)))
  port=$(free_port) || { fail_step "no free port"; return; }
  # The worker takes every connection: the idle ones, wrk's and room to
  # spare; keep-alive far past the step, so that none is closed as idle.
  nginx_conf "$port" $((n + c + 512)) 3600s "$lim"
  "$nginx" -t -p "$STEP" -c "$STEP/nginx.conf" >"$STEP/nginx-t.log" 2>&1 ||
    { fail_step "nginx -t: $(tail -2 "$STEP/nginx-t.log")"; return; }
  bg_start spid "$STEP/srv.out" "$STEP/srv.err" taskset -c 0 "${SRV_ENV[@]}" "$nginx" -p "$STEP" \
    -c "$STEP/nginx.conf"
  wait_port "$port" "$spid" 10 || { bg_stop "$spid" KILL 2; fail_step "nginx did not start"; return; }
  crowd_nginx_warm "$port" || { bg_stop "$spid" KILL 2; return; }
  hold_start "$n" "$(crowd_nofile "$CROWD_PER")" "$port" http "$CROWD_PER" ||
    { bg_stop "$spid" KILL 2; return; }
  pids="$spid $(proc_children "$spid")"
  # shellcheck disable=SC2086
  s0=$(proc_cpu_us $pids)
  timeout -k 2 $((dur + 30)) taskset -c 1 "${CLI_ENV[@]}" wrk -t1 -c$c -d"${dur}s" --latency \
    "http://127.0.0.1:$port/" >"$STEP/cli.out" 2>"$STEP/cli.err" </dev/null
  rc=$?
  # shellcheck disable=SC2086
  s1=$(proc_cpu_us $pids)
  for p in $(proc_children "$spid"); do
    v=$(proc_status "$p" VmRSS)
    rss=$((rss + ${v:-0}))
  done
  if [ $rc -ne 0 ]; then
    hold_kill
    bg_stop "$spid" KILL 2
    fail_step "wrk exited with status $rc$([ $rc = 124 ] && echo ' (timeout: a hang?)')"
    return
  fi
  hold_stop || { bg_stop "$spid" KILL 2; return; }
  bg_stop "$spid" QUIT 30 || { fail_step "nginx did not exit normally on SIGQUIT (status $BG_RC)"; return; }
  if grep -Eq 'exited on signal|exited with code [1-9]|worker_connections are not enough' \
    "$STEP/logs/error.log" 2>/dev/null; then
    fail_step "nginx: $(grep -E 'exited on signal|exited with code|worker_connections are not enough' "$STEP/logs/error.log" | head -1)"
    return
  fi
  if grep -qE 'Socket errors|Non-2xx' "$STEP/cli.out"; then
    fail_step "wrk: $(grep -E 'Socket errors|Non-2xx' "$STEP/cli.out" | tr -s ' ')"
    return
  fi
  local rps reqs p50 p99 cs
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$STEP/cli.out")
  reqs=$(awk '/ requests in / { print $1 }' "$STEP/cli.out")
  p50=$(wrk_us "$(awk '$1 == "50%" { print $2 }' "$STEP/cli.out")")
  p99=$(wrk_us "$(awk '$1 == "99%" { print $2 }' "$STEP/cli.out")")
  if [ -z "$rps" ] || [ "${reqs:-0}" -le 0 ]; then
    fail_step "wrk made no requests"
    return
  fi
  cs=$(div $((s1 - s0)) "$reqs")
  xio_verify crowd-nginx "$n" || return
  crowd_accel $((n + c)) || return
  rec crowd-nginx "$TRANSPORT" "$n" req_per_s "$rps"
  rec crowd-nginx "$TRANSPORT" "$n" p50_us "$p50"
  rec crowd-nginx "$TRANSPORT" "$n" p99_us "$p99"
  rec crowd-nginx "$TRANSPORT" "$n" cpu_srv_us "$cs"
  rec crowd-nginx "$TRANSPORT" "$n" rss_kib "$rss"
  say "crowd-nginx $n idle $TRANSPORT: $rps req/s, p50 $p50 us, p99 $p99 us, CPU srv $cs us per req, worker RSS $rss KiB$XIO_NOTE"
}

# crowd_nginx_warm PORT: one keep-alive GET over one connection, as the
# row's clients make them, before them, its counters apart (warm.stats).
# nginx's master listens as root and its worker accepts as nobody, so the
# first client-first connections to the listener are made on root's
# hugepages and moved to TCP when the worker accepts them (FALLBACK uid,
# docs/compatibility.md); the monitor then makes that listener's on
# ordinary pages. The warm-up takes that start-up fallback, so that the
# row can require every one of its own connections accelerated (the
# worker's fallback_conns shows it: "1 connection(s) fell back"). Returns
# 1 after a FAIL line.
crowd_nginx_warm() {
  local port=$1 pid
  bg_start pid "$STEP/warm.out" "$STEP/warm.err" taskset -c 1 "${CLI_ENV[@]}" XIO_STATS="$STEP/warm.stats" \
    "$BUILD/bench/xio-bench-busyidle" hold --connect "tcp:127.0.0.1:$port" --conns 1 --proto http \
    --ready "$STEP/warm.ready"
  if ! wait_file "$STEP/warm.ready" "$pid" 10 || ! bg_stop "$pid" TERM 10; then
    bg_stop "$pid" KILL 2
    fail_step "the warm-up GET did not complete within 10 s"
    return 1
  fi
  return 0
}

crowd_many() {
  local n=$1 k=$2 port spid rc s0 s1 rss hwm lim backlog c=$STEP/cli.out limit=240
  crowd_fits "$n" "$n" "$n" "the one client" || return
  lim=$(crowd_nofile "$n")
  # The client connects faster than one round trip each: a full accept
  # queue would drop SYNs and cost TCP 1 s retransmits.
  backlog=$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo 4096)
  [ "$backlog" -gt "$n" ] && backlog=$n
  port=$(free_port) || { fail_step "no free port"; return; }
  bg_start spid "$STEP/srv.log" "$STEP/srv.err" prlimit --nofile="$(nofile_opt "$lim")" taskset -c 0 \
    "${SRV_ENV[@]}" redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --daemonize no --dir "$STEP" --logfile '' --maxclients $((n + 100)) --tcp-backlog "$backlog"
  wait_port "$port" "$spid" 10 || { bg_stop "$spid" KILL 2; fail_step "redis-server did not start"; return; }
  s0=$(proc_cpu_us "$spid")
  timeout -k 2 "$limit" prlimit --nofile="$(nofile_opt "$lim")" taskset -c 1 "${CLI_ENV[@]}" \
    "$BUILD/bench/xio-bench-crowd" client --connect "tcp:127.0.0.1:$port" --conns "$n" --sets "$k" \
    --size 65536 >"$c" 2>"$STEP/cli.err" </dev/null
  rc=$?
  s1=$(proc_cpu_us "$spid")
  rss=$(proc_status "$spid" VmRSS) hwm=$(proc_status "$spid" VmHWM)
  if [ $rc -ne 0 ]; then
    bg_stop "$spid" KILL 2
    fail_step "the client exited with status $rc$([ $rc = 124 ] && echo " (timeout: not done within $limit s)")"
    return
  fi
  bg_stop "$spid" TERM 30 || { fail_step "redis-server did not exit normally on SIGTERM (status $BG_RC)"; return; }
  [ -n "$(kv "$c" total_us)" ] || { fail_step "the client wrote no result line"; return; }
  xio_verify crowd-many "$n" || return
  crowd_accel "$n" || return
  local m total cs
  total=$(div "$(kv "$c" total_us)" 1000000)
  cs=$(div $((s1 - s0)) $((n * k)))
  rec crowd-many "$TRANSPORT" "$n" sets_per_conn "$k"
  rec crowd-many "$TRANSPORT" "$n" total_s "$total"
  for m in connect work close; do
    rec crowd-many "$TRANSPORT" "$n" "${m}_s" "$(div "$(kv "$c" "${m}_us")" 1000000)"
  done
  rec crowd-many "$TRANSPORT" "$n" cpu_srv_us "$cs"
  rec crowd-many "$TRANSPORT" "$n" rss_kib "$rss"
  rec crowd-many "$TRANSPORT" "$n" hwm_kib "$hwm"
  rec crowd-many "$TRANSPORT" "$n" cli_hwm_kib "$(kv "$c" hwm_kib)"
  say "crowd-many $n x $k SET 64 KiB $TRANSPORT: $total s (connect $(div "$(kv "$c" connect_us)" 1000000), SETs $(div "$(kv "$c" work_us)" 1000000), close $(div "$(kv "$c" close_us)" 1000000)), CPU srv $cs us per SET, srv RSS $rss KiB (peak $hwm), client peak $(kv "$c" hwm_kib) KiB$XIO_NOTE"
}
