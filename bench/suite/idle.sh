# shellcheck shell=bash
# bench/suite/idle.sh - scenario "idle": what 100 open but quiet
# connections cost (bench/idle.c): after one byte each way on every
# connection, both ends wait in epoll_wait (100 ms ticks, as an event loop
# with a timer does) for 5 s; the CPU each end used meanwhile, as % of one
# core. Over kernel TCP and under xio; for xio also the monitor's CPU over
# the whole step (set-up included, so an upper bound).

sc_idle() {
  local dur=5 conns=100 t m0 m1 w0 w1
  [ "$QUICK" = 1 ] && dur=2
  for t in tcp xio; do
    step_begin idle "$t" "$conns" || { step_end; continue; }
    m0=$(proc_cpu_us "$MONITOR_PID")
    w0=$(date +%s%N)
    if pair idle "" "" $((${dur%.*} + 30)) --conns "$conns" -- --conns "$conns" --duration "$dur"; then
      m1=$(proc_cpu_us "$MONITOR_PID")
      w1=$(date +%s%N)
      echo "monitor pid=$MONITOR_PID cpu_us_before=$m0 cpu_us_after=$m1 wall_ns=$((w1 - w0))" >"$STEP/monitor.cpu"
      idle_record "$conns" "$(div $((m1 - m0)) $(((w1 - w0) / 1000)) 100)"
    fi
    step_end
  done
}

idle_record() {
  local conns=$1 mon=$2 c=$STEP/cli.out s=$STEP/srv.out ps pc
  ps=$(div "$(kv "$s" cpu_us)" "$(kv "$s" idle_us)" 100)
  pc=$(div "$(kv "$c" cpu_us)" "$(kv "$c" idle_us)" 100)
  xio_verify idle "$conns" || return
  rec idle "$TRANSPORT" "$conns" cpu_srv_pct "$ps"
  rec idle "$TRANSPORT" "$conns" cpu_cli_pct "$pc"
  if [ "$TRANSPORT" = xio ]; then
    rec idle xio "$conns" cpu_mon_pct "$mon"
  else
    mon=""
  fi
  say "idle $conns conns $TRANSPORT: CPU srv $ps % / cli $pc % of a core${mon:+ (monitor $mon %)}$XIO_NOTE"
}
