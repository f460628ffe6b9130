#!/usr/bin/env bash
# demo_smoke.sh BUILD_DIR - tools/demo (the README's first command) in its
# quick mode: exit status 0, a table with a kernel TCP and an xio row for
# each program (ping-pong, redis SET and GET, nginx) with a ratio, the
# chart when gnuplot is there, every xio row proven to have gone over
# shared memory, and its monitor stopped at the end. Speed itself is judged
# in bench/, never in a test.
set -u
build=$(cd "$1" && pwd)
top=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/xio-demo-smoke-XXXXXX)
fail() { echo "FAIL: $*"; tail -30 "$dir/log" 2>/dev/null; rm -rf "$dir"; exit 1; }
timeout 280 "$top/tools/demo" --quick --build "$build" --out "$dir/out" >"$dir/log" 2>&1 ||
  fail "tools/demo exited $?"
for label in "ping-pong, 1 KiB" "redis SET" "redis GET" "nginx + wrk"; do
  grep -q "^| $label.*| kernel TCP |" "$dir/log" || fail "no kernel TCP row for $label"
done
n=$(grep -cE '^\| +\| xio +\| +[0-9,]+ .* \| +[0-9.]+x \|$' "$dir/log")
[ "$n" -eq 4 ] || fail "$n xio rows with a figure and a ratio, want 4"
grep -q "round trips/s" "$dir/log" && grep -q "requests/s" "$dir/log" || fail "units missing"
[ -s "$dir/out/failures.csv" ] && fail "failed steps: $(cat "$dir/out/failures.csv")"
# Both ends of every xio row wrote counters with accelerated connections.
for s in pingpong redis-set-c50-P1 redis-get-c50-P1 nginx-c64; do
  for side in srv cli; do
    v=$(grep "^1,$s,xio,[0-9]*,accel_conns_$side," "$dir/out/raw.csv" | cut -d, -f6)
    [ "${v:-0}" -gt 0 ] 2>/dev/null || fail "$s: the $side side was not accelerated (${v:-none})"
  done
done
if command -v gnuplot >/dev/null; then
  grep -q "^chart: $dir/out/demo.png" "$dir/log" || fail "the demo did not say where its chart is"
  [ "$(head -c 4 "$dir/out/demo.png" | od -An -c | tr -d ' ')" = "211PNG" ] || fail "no PNG chart"
fi
mpid=$(grep -o 'xio-monitor\[[0-9]*\]' "$dir/out/monitor.log" | head -1 | tr -dc 0-9)
[ -n "$mpid" ] || fail "no monitor pid in its log"
kill -0 "$mpid" 2>/dev/null && fail "the demo left its monitor (pid $mpid) running"
grep -q "shutting down" "$dir/out/monitor.log" || fail "the monitor was not stopped cleanly"
rm -rf "$dir"
echo "1 passed, 0 failed"
