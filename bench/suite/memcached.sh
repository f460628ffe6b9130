# shellcheck shell=bash
# bench/suite/memcached.sh - scenarios "memcached-cC": memcached (2 worker
# threads, one per CPU) loaded by bench/mcload.c (memtier is not packaged):
# 1 and 50 connections, each with one request outstanding, 90 % gets and
# 10 % sets of 1,000 keys with 64-byte values, every reply checked byte for
# byte; over kernel TCP, a UNIX socket (memcached -s) and xio. Operations
# per second, p50 and p99, CPU per operation of memcached (/proc/PID/stat)
# and of the load generator (its own getrusage over the timed part).

sc_memcached() {
  local c t dur=2 mc
  [ "$QUICK" = 1 ] && dur=0.5
  mc=$(command -v memcached || echo /usr/bin/memcached)
  if [ ! -x "$mc" ]; then
    step_begin memcached all 0
    fail_step "memcached is not installed (tools/deps)"
    step_end
    return
  fi
  for c in 1 50; do
    for t in tcp uds xio; do
      step_begin "memcached-c$c" "$t" 64 || { step_end; continue; }
      memcached_step "$mc" "$c" "$dur"
      step_end
    done
  done
}

memcached_step() {
  local mc=$1 c=$2 dur=$3 scen=$STEP_SCEN port="" ep args spid rc s0 s1
  args=(-U 0 -t 2 -m 64 -c 1024)
  # As root memcached insists on a user to drop to.
  if [ "$(id -u)" = 0 ]; then
    if id memcache >/dev/null 2>&1; then args+=(-u memcache); else args+=(-u nobody); fi
  fi
  if [ "$TRANSPORT" = uds ]; then
    # It creates the socket after dropping root: STEP is world-writable.
    args+=(-s "$STEP/mc.sock" -a 0666)
    ep=uds:$STEP/mc.sock
  else
    port=$(free_port) || { fail_step "no free port"; return; }
    args+=(-l 127.0.0.1 -p "$port")
    ep=tcp:127.0.0.1:$port
  fi
  bg_start spid "$STEP/srv.out" "$STEP/srv.err" "${SRV_ENV[@]}" "$mc" "${args[@]}"
  if [ -n "$port" ]; then wait_port "$port" "$spid" 10; else wait_file "$STEP/mc.sock" "$spid" 10; fi ||
    { bg_stop "$spid" KILL 2; fail_step "memcached did not start"; return; }
  s0=$(proc_cpu_us "$spid")
  timeout -k 2 $((${dur%.*} + 30)) "${CLI_ENV[@]}" "$BUILD/bench/xio-bench-mcload" --connect "$ep" \
    --conns "$c" --duration "$dur" >"$STEP/cli.out" 2>"$STEP/cli.err" </dev/null
  rc=$?
  s1=$(proc_cpu_us "$spid")
  if [ $rc -ne 0 ]; then
    bg_stop "$spid" KILL 2
    fail_step "xio-bench-mcload exited with status $rc$([ $rc = 124 ] && echo ' (timeout: a hang?)')"
    return
  fi
  # SIGTERM: memcached stops its threads and exits normally, so the shim's
  # counters are written.
  if ! bg_stop "$spid" TERM 10; then
    fail_step "memcached did not exit normally on SIGTERM (status $BG_RC)"
    return
  fi
  local o=$STEP/cli.out ops p50 p99 cs cc
  ops=$(kv "$o" ops)
  p50=$(div "$(kv "$o" p50_ns)" 1000)
  p99=$(div "$(kv "$o" p99_ns)" 1000)
  cs=$(div $((s1 - s0)) "$ops")
  cc=$(div "$(kv "$o" cpu_us)" "$ops")
  xio_verify "$scen" 64 || return
  rec "$scen" "$TRANSPORT" 64 ops_per_s "$(kv "$o" ops_per_s)"
  rec "$scen" "$TRANSPORT" 64 p50_us "$p50"
  rec "$scen" "$TRANSPORT" 64 p99_us "$p99"
  rec "$scen" "$TRANSPORT" 64 cpu_srv_us "$cs"
  rec "$scen" "$TRANSPORT" 64 cpu_cli_us "$cc"
  say "$scen $TRANSPORT: $(kv "$o" ops_per_s) ops/s, p50 $p50 us, p99 $p99 us, CPU srv $cs / cli $cc us per op$XIO_NOTE"
}
