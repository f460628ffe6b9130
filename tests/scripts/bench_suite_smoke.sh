#!/usr/bin/env bash
# bench_suite_smoke.sh BUILD_DIR - the side-by-side suite (tools/bench) runs
# a few scenarios in its quick mode and writes what docs/performance.md
# says it writes: exit status 0, results.md, a CSV with a tcp row and an
# accelerated xio row (with its ratio to tcp and its doorbells per message)
# for each scenario, and a chart when gnuplot is there. Speed itself is
# judged in bench/, never in a test.
set -u
build=$(cd "$1" && pwd)
top=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/xio-suite-smoke-XXXXXX)
fail() { echo "FAIL: $*"; tail -20 "$dir/log" 2>/dev/null; rm -rf "$dir"; exit 1; }
timeout 240 "$top/bench/suite/run.sh" --build "$build" --quick --only pingpong,redis,shortconn \
  --out "$dir/out" >"$dir/log" 2>&1 || fail "the suite exited $?"
csv=$dir/out/results.csv
[ -s "$dir/out/results.md" ] || fail "no results.md"
head -1 "$csv" | grep -qx 'scenario,transport,size,metric,value' || fail "CSV header"
for sc in pingpong redis-get-c1-P1 shortconn; do
  grep -q "^$sc,tcp," "$csv" || fail "no tcp row for $sc"
  grep -q "^$sc,xio,.*,ratio_vs_tcp," "$csv" || fail "no xio ratio for $sc"
  grep -q "^$sc,xio,.*,doorbells_per_msg," "$csv" || fail "no doorbells/msg for $sc"
  n=$(grep "^$sc,xio,.*,accel_conns_cli," "$csv" | head -1 | cut -d, -f5)
  [ "${n%.*}" -gt 0 ] 2>/dev/null || fail "$sc: the xio row was not accelerated ($n)"
done
if command -v gnuplot >/dev/null; then
  ls "$dir/out/"*.png >/dev/null 2>&1 || fail "gnuplot is installed but no chart was drawn"
fi
rm -rf "$dir"
echo "1 passed, 0 failed"
