# shellcheck shell=bash
# bench/suite/busyidle.sh - scenarios "busyidle-redis", "busyidle-pingpong"
# and "busyidle-pollpong" (issue 16): one busy connection beside N idle
# accelerated connections on the same server, N = 0, 1000, 4000 and 10000
# (--quick: 0 and 1000), over kernel TCP and under xio (every process
# under the shim). 4000 is the issue's own last point. The monitor's
# per-process connection limit is a quarter of its connection budget: of
# what vm.max_map_count leaves (16108 here), or, for a monitor without
# CAP_SYS_ADMIN that keeps an fd per connection, of its fd budget (4936
# with a hard RLIMIT_NOFILE of 20000); an xio row whose N + 1
# connections are over the monitor's limit FAILs at once, naming it, since
# the connections over it would stay on kernel TCP. The idle connections are held by a separate process
# (bench/busyidle.c, "hold"; lib.sh's hold_start): each sent one greeting
# and got its answer, then stays open and silent; the holder checks at the
# end that the server closed none of them.
#   redis:    redis-server on CPU 0; the holder's greeting is PING; then
#             redis-benchmark -c 1 -n 20000 -t get on CPU 1: GET/s.
#   pingpong: bench/busyidle.c's epoll echo server on CPU 0 (one epoll set
#             over all its connections); the busy connection is
#             bench/pingpong.c's client, 64 B, on CPU 1: round trips/s.
#   pollpong: the same with the server waiting in poll() over all its
#             connections (--poll): poll is O(fds) in the kernel as well,
#             so what shows is what the shim adds per fd.
# Each row: the rate, p50, p99, the server's CPU per request (from /proc,
# over the busy client's run), the server's RSS (VmRSS) when the busy
# client is done, and under xio the shim's counters, where accel_conns must
# be at least N + 1 on each end. The RLIMIT_NOFILE of the server and the
# holder is raised to what N needs: within the hard limit, or past it with
# CAP_SYS_RESOURCE (run.sh then starts the monitor with a limit of 65536).

BUSYIDLE_SAID=""

sc_busyidle() {
  local ns=(0 1000 4000 10000) n w t hard soft lim mlim
  [ "$QUICK" = 1 ] && ns=(0 1000)
  hard=$(ulimit -Hn) soft=$(ulimit -Sn)
  # A hard limit we may raise (CAP_SYS_RESOURCE) is no bound here.
  xio_can_set_nofile 65536 && hard=unlimited
  mlim=$(monitor_limit process)
  for n in "${ns[@]}"; do
    # Room for N connections, the listener, the busy client's, the
    # shim's own descriptors and redis's 32 spare ones.
    lim=$((n + 1024))
    [ "$hard" != unlimited ] && [ "$lim" -gt "$hard" ] && lim=$hard
    [ "$soft" != unlimited ] && [ "$lim" -lt "$soft" ] && lim=$soft
    if [ -z "$BUSYIDLE_SAID" ]; then
      say "busyidle: RLIMIT_NOFILE here: soft $soft, hard $(ulimit -Hn)$([ "$hard" = unlimited ] && echo ' (may be raised here)'); the server and the holder get a limit of N + 1024; the monitor accelerates at most ${mlim:-?} connections per process"
      BUSYIDLE_SAID=1
      # For results.md (report.py): what limits this run had.
      rec busyidle-limits all 0 nofile_soft "${soft/unlimited/-1}"
      rec busyidle-limits all 0 nofile_hard "$(ulimit -Hn)"
      rec busyidle-limits all 0 monitor_proc_conns "$mlim"
    fi
    for w in redis pingpong pollpong; do
      for t in tcp xio; do
        step_begin "busyidle-$w" "$t" "$n" || { step_end; continue; }
        if [ "$hard" != unlimited ] && [ $((n + 200)) -gt "$hard" ]; then
          fail_step "$n idle connections need about $((n + 200)) descriptors; the hard RLIMIT_NOFILE is $hard"
        elif [ $t = xio ] && [ -n "$mlim" ] && [ $((n + 1)) -gt "$mlim" ]; then
          fail_step "NOT ACCELERATED: not run: the monitor accelerates at most $mlim connections per process (limit-process-connections, at most a quarter of its fd budget; its RLIMIT_NOFILE is the hard limit $hard), fewer than the $((n + 1)) this row needs"
        elif [ $w = redis ]; then
          busyidle_redis "$n" "$lim"
        else
          busyidle_pingpong "$n" "$lim" "$w"
        fi
        step_end
      done
    done
  done
}

busyidle_redis() {
  local n=$1 lim=$2 reqs=20000 port spid rc s0 s1 rss line limit=120
  port=$(free_port) || { fail_step "no free port"; return; }
  bg_start spid "$STEP/srv.log" "$STEP/srv.err" prlimit --nofile="$(nofile_opt "$lim")" taskset -c 0 \
    "${SRV_ENV[@]}" redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --daemonize no --dir "$STEP" --logfile '' --maxclients $((n + 100))
  wait_port "$port" "$spid" 10 || { bg_stop "$spid" KILL 2; fail_step "redis-server did not start"; return; }
  timeout -k 2 10 "${CLI_ENV[@]}" redis-cli -h 127.0.0.1 -p "$port" SET key:__rand_int__ xxx \
    >"$STEP/preset.out" 2>&1 ||
    { bg_stop "$spid" KILL 2; fail_step "redis-cli SET failed: $(cat "$STEP/preset.out")"; return; }
  hold_start "$n" "$lim" "$port" redis || { bg_stop "$spid" KILL 2; return; }
  s0=$(proc_cpu_us "$spid")
  timeout -k 2 "$limit" taskset -c 1 "${CLI_ENV[@]}" redis-benchmark -h 127.0.0.1 -p "$port" \
    -t get -n "$reqs" -c 1 --csv >"$STEP/cli.out" 2>"$STEP/cli.err" </dev/null
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
  line=$(grep -i '^"get"' "$STEP/cli.out" | tr -d '"')
  [ -n "$line" ] || { fail_step "no GET line in redis-benchmark's output"; return; }
  local rps p50 p99
  IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"$line"
  busyidle_record redis "$n" "$rps" "$(div "$p50" 1 1000)" "$(div "$p99" 1 1000)" \
    "$(div $((s1 - s0)) "$reqs")" "$rss" GET/s
}

# busyidle_pingpong N LIM pingpong|pollpong: the echo server waits with
# epoll_wait, or (pollpong) with poll() over all its connections.
busyidle_pingpong() {
  local n=$1 lim=$2 w=$3 dur=1 warm=500 spid rc s0 s1 rss port c=$STEP/cli.out limit=60 mode=()
  [ "$QUICK" = 1 ] && { dur=0.5; warm=200; }
  [ "$w" = pollpong ] && mode=(--poll)
  bg_start spid "$STEP/srv.out" "$STEP/srv.err" prlimit --nofile="$(nofile_opt "$lim")" taskset -c 0 \
    "${SRV_ENV[@]}" "$BUILD/bench/xio-bench-busyidle" server --listen tcp:127.0.0.1:0 \
    "${mode[@]}" --ready "$STEP/ready"
  wait_file "$STEP/ready" "$spid" 10 || { bg_stop "$spid" KILL 2; fail_step "the server did not start listening within 10 s"; return; }
  port=$(cat "$STEP/ready")
  hold_start "$n" "$lim" "$port" echo || { bg_stop "$spid" KILL 2; return; }
  s0=$(proc_cpu_us "$spid")
  timeout -k 2 "$limit" taskset -c 1 "${CLI_ENV[@]}" "$BUILD/bench/xio-bench-pingpong" client \
    --connect "tcp:127.0.0.1:$port" --size 64 --duration "$dur" --warmup "$warm" \
    >"$c" 2>"$STEP/cli.err" </dev/null
  rc=$?
  s1=$(proc_cpu_us "$spid")
  rss=$(proc_status "$spid" VmRSS)
  if [ $rc -ne 0 ]; then
    hold_kill
    bg_stop "$spid" KILL 2
    fail_step "the ping-pong client exited with status $rc$([ $rc = 124 ] && echo " (timeout after $limit s)")"
    return
  fi
  hold_stop || { bg_stop "$spid" KILL 2; return; }
  bg_stop "$spid" TERM 30 || { fail_step "the server did not exit normally on SIGTERM (status $BG_RC)"; return; }
  busyidle_record "$w" "$n" "$(kv "$c" rt_per_s)" "$(div "$(kv "$c" p50_ns)" 1000)" \
    "$(div "$(kv "$c" p99_ns)" 1000)" "$(div $((s1 - s0)) $(($(kv "$c" rts) + warm)))" "$rss" rt/s
}

# busyidle_record WORKLOAD N RATE P50 P99 CPU_SRV RSS_KIB UNIT: check the
# xio counters (xio_verify, then accel_conns >= N + 1 on both ends) and
# record the row.
busyidle_record() {
  local w=$1 n=$2 rate=$3 p50=$4 p99=$5 cs=$6 rss=$7 unit=$8 scen=busyidle-$1 side acc
  xio_verify "$scen" "$n" || return
  if [ "$TRANSPORT" = xio ]; then
    for side in srv cli; do
      acc=$(stats_sum "$STEP/$side.stats" accel_conns)
      if [ "$acc" -lt $((n + 1)) ]; then
        fail_step "NOT ACCELERATED: $side accel_conns=$acc, fewer than the $((n + 1)) connections"
        return
      fi
    done
  fi
  rec "$scen" "$TRANSPORT" "$n" rate "$rate"
  rec "$scen" "$TRANSPORT" "$n" p50_us "$p50"
  rec "$scen" "$TRANSPORT" "$n" p99_us "$p99"
  rec "$scen" "$TRANSPORT" "$n" cpu_srv_us "$cs"
  rec "$scen" "$TRANSPORT" "$n" rss_kib "$rss"
  say "$scen $n idle $TRANSPORT: $rate $unit, p50 $p50 us, p99 $p99 us, CPU srv $cs us per req, srv RSS $rss KiB$XIO_NOTE"
}
