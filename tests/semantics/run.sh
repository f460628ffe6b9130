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
cleanup() { xio_monitor_stop; rm -f "$stats"; }
trap cleanup EXIT
xio_monitor_start "$build" || { echo "FAIL: the monitor did not start"; exit 1; }
monitor_log=$MONITOR_DIR/monitor.log

# A shim built with sanitizers needs their runtimes loaded first.
preload=$shim
for rt in $(ldd "$shim" 2>/dev/null | awk '/lib(asan|ubsan|tsan)\.so/ { print $3 }'); do
  preload=$rt:$preload
done
[ "$preload" != "$shim" ] && export ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}verify_asan_link_order=0

LD_PRELOAD=$preload XIO_STATS=$stats timeout 900 "$exe" "${args[@]}"
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
exit 0
