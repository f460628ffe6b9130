#!/usr/bin/env bash
# bench_smoke.sh BUILD_DIR - the echo benchmark runs every transport with a
# monitor and prints well-formed CSV: every transport, size and metric once,
# integer nanoseconds, p99 >= p50. (Speed itself is judged in bench/, never
# in a test.)
set -u
build=$1
dir=$(mktemp -d /tmp/xio-bsmoke-XXXXXX)
fail() { echo "FAIL: $*"; [ -n "${pid:-}" ] && kill "$pid"; rm -rf "$dir"; exit 1; }
export XIO_MONITOR_SOCK=$dir/m.sock
"$build/monitor/xio-monitor" --foreground --socket "$XIO_MONITOR_SOCK" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do [ -S "$XIO_MONITOR_SOCK" ] && break; sleep 0.05; done
timeout 120 "$build/bench/xio-bench-echo" --csv --iters 300 --sizes 64,65536 >"$dir/out.csv" ||
  fail "bench exited $?"
kill "$pid"; wait "$pid" 2>/dev/null; pid=""
head -1 "$dir/out.csv" | grep -qx 'scenario,transport,size,metric,value' || fail "header"
for t in xio-zc xio io_uring-tcp io_uring-uds tcp uds; do
  for s in 64 65536; do
    for m in rtt_p50_ns rtt_p99_ns; do
      n=$(grep -c "^echo,$t,$s,$m,[0-9][0-9]*\$" "$dir/out.csv")
      [ "$n" = 1 ] || fail "want one line echo,$t,$s,$m: got $n"
    done
    p50=$(grep "^echo,$t,$s,rtt_p50_ns," "$dir/out.csv" | cut -d, -f5)
    p99=$(grep "^echo,$t,$s,rtt_p99_ns," "$dir/out.csv" | cut -d, -f5)
    [ "$p99" -ge "$p50" ] || fail "$t $s: p99 $p99 < p50 $p50"
  done
done
rm -rf "$dir"
echo "1 passed, 0 failed"
