# shellcheck shell=bash
# bench/suite/echo.sh - scenario "echo": the native API's own benchmark,
# xio-bench-echo --csv --quick (bench/echo.c: xio zero-copy and
# socket-like, io_uring over TCP and UNIX sockets, plain TCP and UNIX
# sockets), folded into the suite's results. It links libxio rather than
# loading the shim, so there are no XIO_STATS lines: the proof that its
# xio rows were accelerated is the monitor's count of accelerated
# connections, which must grow by one per xio row (2 transports x 4 sizes).

sc_echo() {
  local before after rc scen t size metric value
  step_begin echo all 0
  before=$(monitor_count accelerated_total)
  timeout -k 5 200 "$BUILD/bench/xio-bench-echo" --csv --quick --time-limit 20 \
    >"$STEP/echo.csv" 2>"$STEP/echo.err" </dev/null
  rc=$?
  after=$(monitor_count accelerated_total)
  [ $rc -eq 0 ] || fail_step "xio-bench-echo exited with status $rc$([ $rc = 124 ] && echo ' (timeout)')"
  if [ -z "$before" ] || [ -z "$after" ] || [ $((after - before)) -lt 8 ]; then
    TRANSPORT=xio fail_step "NOT ACCELERATED: the monitor counted $((${after:-0} - ${before:-0})) accelerated connections during xio-bench-echo, want 8"
    step_end
    return
  fi
  while IFS=, read -r scen t size metric value; do
    [ "$scen" = echo ] || continue
    case $metric in
      rtt_p50_ns) rec echo "$t" "$size" p50_us "$(div "$value" 1000)" ;;
      rtt_p99_ns) rec echo "$t" "$size" p99_us "$(div "$value" 1000)" ;;
    esac
  done <"$STEP/echo.csv"
  say "echo: $(awk -F, '$4 == "rtt_p50_ns" && $3 == 64 { printf "%s %.2f us  ", $2, $5 / 1000 }' "$STEP/echo.csv")(p50 at 64 B)"
  step_end
}

# monitor_count KEY: a counter of the run's monitor (xio-monitor --status).
monitor_count() {
  timeout 5 "$BUILD/monitor/xio-monitor" --status --socket "$XIO_MONITOR_SOCK" 2>/dev/null |
    awk -v k="$1" '$1 == k { print $2 }'
}
