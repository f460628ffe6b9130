#!/usr/bin/env bash
# run.sh BUILD_DIR MODE [test_semantics options...] - run the semantic tests
# (test_semantics: plain POSIX socket calls on 127.0.0.1, one test per TCP
# rule) in one of two modes:
#   kernel  as is, over the kernel's TCP;
#   xio     with a private monitor and LD_PRELOAD=libxio_preload.so, then
#           check the shim's exit statistics (XIO_STATS): the run must have
#           accelerated connections and moved bytes over them, or it proved
#           nothing about xio.
# Both modes must pass: that shows xio and the kernel agree on every rule.
# SEM_EXE overrides the test binary (default BUILD_DIR/tests/test_semantics).
set -u
build=$(cd "${1:?usage: run.sh BUILD_DIR kernel|xio [options]}" && pwd) || exit 2
mode=${2:?usage: run.sh BUILD_DIR kernel|xio [options]}
shift 2
. "$(dirname "${BASH_SOURCE[0]}")/../../tools/lib.sh"
exe=${SEM_EXE:-$build/tests/test_semantics}
[ -x "$exe" ] || { echo "FAIL: no test binary at $exe"; exit 1; }

# Criterion forks a worker per test; -j1 runs them one at a time so that the
# peers each test forks have the machine to themselves.
args=(-j1 --timeout 60 "$@")

case $mode in
kernel)
  unset LD_PRELOAD XIO_STATS
  exec timeout 900 "$exe" "${args[@]}"
  ;;
xio) ;;
*)
  echo "usage: run.sh BUILD_DIR kernel|xio [options]" >&2
  exit 2
  ;;
esac

shim=$build/preload/libxio_preload.so
[ -f "$shim" ] || { echo "FAIL: no shim at $shim"; exit 1; }
stats=$(mktemp /tmp/xio-sem-stats-XXXXXX)
# The connections the tests say must have moved back to kernel TCP
# (st_expect_left), one line each: pid=P reason=R tx_off=X rx_off=Y, where
# P, X or Y may be * and R an alternation (stdio|exec).
expect=$(mktemp /tmp/xio-sem-left-XXXXXX)
cleanup() { xio_monitor_stop; rm -f "$stats" "$expect"; }
trap cleanup EXIT
xio_monitor_start "$build" || { echo "FAIL: the monitor did not start"; exit 1; }
monitor_log=$MONITOR_DIR/monitor.log

# A shim built with sanitizers needs their runtimes loaded first.
preload=$shim
for rt in $(ldd "$shim" 2>/dev/null | awk '/lib(asan|ubsan|tsan)\.so/ { print $3 }'); do
  preload=$rt:$preload
done
[ "$preload" != "$shim" ] && export ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}verify_asan_link_order=0

LD_PRELOAD=$preload XIO_STATS=$stats ST_LEFT_EXPECT=$expect timeout 900 "$exe" "${args[@]}"
rc=$?
fail() {
  echo "FAIL: $*"
  echo "--- shim statistics ($stats):"
  cat "$stats"
  echo "--- monitor log (last 40 lines):"
  tail -40 "$monitor_log"
  exit 1
}
[ $rc -eq 0 ] || fail "test_semantics exited with $rc under xio"

# One line per process that loaded the shim, written at its exit:
#   xio-stats pid=N accel_conns=N fallback_conns=N tx_bytes=N rx_bytes=N ...
read -r lines accel fallback rx < <(awk '
  $1 == "xio-stats" {
    n++
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] += kv[2] }
  }
  END { printf "%d %d %d %d\n", n, v["accel_conns"], v["fallback_conns"], v["rx_bytes"] }' "$stats")
echo "xio statistics: $lines processes, accel_conns=$accel fallback_conns=$fallback rx_bytes=$rx"
[ "$lines" -gt 0 ] || fail "no xio-stats lines: the shim was not loaded or XIO_STATS is not honoured"
[ "$accel" -gt 0 ] || fail "no connection was accelerated: the run only tested the kernel"
[ "$rx" -gt 0 ] || fail "no bytes were received over xio"

# Connections moved back to TCP (issue 7): a process writes one line per
# connection when it moves,
#   xio-left pid=P fd=F reason=R tx_off=X rx_off=Y
# and counts them in left_conns=N on its xio-stats line at exit (a process
# that ends in _exit or execs writes lines but no count, and an exec starts
# the count again). So per pid the count never exceeds the lines. Each
# expectation must match one line (a line matches one expectation at most).
left_lines=$(grep -c '^xio-left ' "$stats" || true)
left_sum=$(awk '$1 == "xio-stats" { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "left_conns") s += kv[2] } } END { print s + 0 }' "$stats")
echo "xio statistics: connections moved back to TCP: left_conns=$left_sum, $left_lines xio-left lines, $(wc -l <"$expect") expected"
over=$(awk '
  { pid = ""; c = 0; for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "pid") pid = kv[2]; if (kv[1] == "left_conns") c = kv[2] } }
  $1 == "xio-left" { lines[pid]++ }
  $1 == "xio-stats" { count[pid] += c }
  END { for (p in count) if (count[p] > lines[p] + 0) printf "pid %s: left_conns=%d, %d xio-left lines; ", p, count[p], lines[p] }' "$stats")
[ -z "$over" ] || fail "processes counted more moves back to TCP than they reported: $over"
missing=$(awk '
  function val(line, key,   i, n, f, kv) {
    n = split(line, f, " ")
    for (i = 1; i <= n; i++) { split(f[i], kv, "="); if (kv[1] == key) return kv[2] }
    return ""
  }
  FNR == NR { if ($1 == "xio-left") have[++nh] = $0; next }
  {
    p = val($0, "pid"); r = val($0, "reason"); t = val($0, "tx_off"); x = val($0, "rx_off")
    found = 0
    for (i = 1; i <= nh && !found; i++) {
      if (used[i]) continue
      h = have[i]
      if (p != "*" && val(h, "pid") != p) continue
      if (val(h, "reason") !~ ("^(" r ")$")) continue
      if (t != "*" && val(h, "tx_off") != t) continue
      if (x != "*" && val(h, "rx_off") != x) continue
      used[i] = 1; found = 1
    }
    if (!found) print "  want: " $0
  }' "$stats" "$expect")
if [ -n "$missing" ]; then
  echo "--- xio-left lines:"
  grep '^xio-left ' "$stats" | sed 's/^/  /'
  fail "connections the tests moved back to TCP are not reported as such by the shim:
$missing"
fi
exit 0
