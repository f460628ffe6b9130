# shellcheck shell=bash
# bench/suite/redis.sh - scenarios "redis-OP-cC-PP": redis-server and
# redis-benchmark, SET and GET, 1 or 50 connections (-c), no pipelining or
# 16 commands per round trip (-P), over kernel TCP, a UNIX socket
# (--unixsocket, redis-benchmark -s) and xio. A fresh server for every row,
# so that its CPU time and xio counters belong to that row alone; the GET
# rows first SET the key redis-benchmark reads, so that they return a
# value. Requests per second, p50 and p99 (redis-benchmark --csv), CPU per
# request of each end (server: /proc/PID/stat; client: its reaped CPU).

sc_redis() {
  local cfg c p n op t div=1
  [ "$QUICK" = 1 ] && div=5
  if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    step_begin redis all 0
    fail_step "redis-server or redis-benchmark is not installed (tools/deps)"
    step_end
    return
  fi
  # Requests per row: about 1 s or less each over the kernel here.
  for cfg in "1 1 20000" "50 1 30000" "1 16 50000" "50 16 100000"; do
    read -r c p n <<<"$cfg"
    for op in set get; do
      for t in tcp uds xio; do
        step_begin "redis-$op-c$c-P$p" "$t" 3 || { step_end; continue; }
        redis_step "$op" "$c" "$p" $((n / div))
        step_end
      done
    done
  done
}

redis_step() {
  local op=$1 c=$2 p=$3 n=$4 scen=$STEP_SCEN port="" to=() args spid rc s0 s1 line limit=20
  # About 1 s is expected: the limit only tells a hang from a slow row.
  [ "$QUICK" = 1 ] && limit=15
  args=(--bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir "$STEP" --logfile ''
    --maxclients 1000)
  if [ "$TRANSPORT" = uds ]; then
    args+=(--port 0 --unixsocket "$STEP/redis.sock" --unixsocketperm 700)
    to=(-s "$STEP/redis.sock")
  else
    port=$(free_port) || { fail_step "no free port"; return; }
    args+=(--port "$port")
    to=(-h 127.0.0.1 -p "$port")
  fi
  bg_start spid "$STEP/srv.log" "$STEP/srv.err" "${SRV_ENV[@]}" redis-server "${args[@]}"
  if [ -n "$port" ]; then wait_port "$port" "$spid" 10; else wait_file "$STEP/redis.sock" "$spid" 10; fi ||
    { bg_stop "$spid" KILL 2; fail_step "redis-server did not start"; return; }
  if [ "$op" = get ]; then
    timeout -k 2 10 "${CLI_ENV[@]}" redis-cli "${to[@]}" SET key:__rand_int__ xxx >"$STEP/preset.out" 2>&1 ||
      { bg_stop "$spid" KILL 2; fail_step "redis-cli SET failed: $(cat "$STEP/preset.out")"; return; }
  fi
  s0=$(proc_cpu_us "$spid")
  run_with_cpu "$STEP/cli.cpu" timeout -k 2 "$limit" "${CLI_ENV[@]}" redis-benchmark "${to[@]}" \
    -t "$op" -n "$n" -c "$c" -P "$p" --csv >"$STEP/cli.out" 2>"$STEP/cli.err" </dev/null
  rc=$?
  s1=$(proc_cpu_us "$spid")
  if [ $rc -ne 0 ]; then
    bg_stop "$spid" KILL 2
    fail_step "redis-benchmark exited with status $rc$([ $rc = 124 ] && echo " (timeout: no result within $limit s; a hang, or far slower than the other rows)")"
    return
  fi
  # SIGTERM: redis shuts down and exits normally, so the shim's counters
  # are written.
  if ! bg_stop "$spid" TERM 10; then
    fail_step "redis-server did not exit normally on SIGTERM (status $BG_RC)"
    return
  fi
  line=$(grep -i "^\"$op\"" "$STEP/cli.out" | tr -d '"')
  [ -n "$line" ] || { fail_step "no $op line in redis-benchmark's output"; return; }
  local rps p50 p99 cs cc
  IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"$line"
  p50=$(div "$p50" 1 1000)
  p99=$(div "$p99" 1 1000)
  cs=$(div $((s1 - s0)) "$n")
  cc=$(div "$(cat "$STEP/cli.cpu")" "$n")
  xio_verify "$scen" 3 || return
  rec "$scen" "$TRANSPORT" 3 req_per_s "$rps"
  rec "$scen" "$TRANSPORT" 3 p50_us "$p50"
  rec "$scen" "$TRANSPORT" 3 p99_us "$p99"
  rec "$scen" "$TRANSPORT" 3 cpu_srv_us "$cs"
  rec "$scen" "$TRANSPORT" 3 cpu_cli_us "$cc"
  say "$scen $TRANSPORT: $rps req/s, p50 $p50 us, p99 $p99 us, CPU srv $cs / cli $cc us per req$XIO_NOTE"
}
