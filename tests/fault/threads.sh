#!/usr/bin/env bash
# threads.sh BUILD_DIR - run threads.c under the shim with a private monitor
# (in build/tsan: the shim and the program built with ThreadSanitizer).
# Passes if the program does, TSan reports nothing, and the connections
# were accelerated. The shim is preloaded BEFORE the TSan runtime: TSan's
# own epoll_wait/read/... interceptors call the next definition with
# interceptors ignored, so behind them the shim's locks would be invisible
# and every access they protect would look like a race.
set -u
build=$(cd "$1" && pwd)
. "$(dirname "$0")/../../tools/lib.sh"
shim=$build/preload/libxio_preload.so
stats=$(mktemp /tmp/xio-threads-XXXXXX)
trap 'xio_monitor_stop; rm -f "$stats"' EXIT
xio_monitor_start "$build" || { echo "FAIL: the monitor did not start"; exit 1; }
preload=$shim
for rt in $(ldd "$shim" 2>/dev/null | awk '/lib(asan|ubsan|tsan)\.so/ { print $3 }'); do
  preload=$preload:$rt
done
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:exitcode=66}
LD_PRELOAD=$preload XIO_STATS=$stats timeout 300 "$build/tests/threads_check" ||
  { echo "FAIL: threads_check failed"; tail -20 "$MONITOR_DIR/monitor.log"; exit 1; }
accel=$(awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^accel_conns=/) { split($i, kv, "="); n += kv[2] } } END { print n + 0 }' "$stats")
[ "$accel" -ge 9 ] || { echo "FAIL: only $accel connections accelerated"; cat "$stats"; exit 1; }
echo "1 passed, 0 failed (accel_conns=$accel)"
