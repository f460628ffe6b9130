#!/usr/bin/env bash
# bench/redis.sh BUILD_DIR [ROUNDS] - redis-benchmark against redis-server,
# both ends over kernel TCP and both under the xio shim, alternating in one
# run (ROUNDS each, default 5), 4 clients, 50,000 requests of SET and GET
# per round. Prints the median requests/s and p50 of each, and the ratio.
# Needs a monitor (XIO_MONITOR_SOCK): tools/bench starts one.
set -euo pipefail
build=$(cd "$1" && pwd)
rounds=${2:-5}
shim=$build/preload/libxio_preload.so
port=$((20000 + RANDOM % 20000))
out=$(mktemp -d /tmp/xio-bench-redis-XXXXXX)
trap 'rm -rf "$out"' EXIT

one() { # one MODE -> lines "SET rps p50" / "GET rps p50"
  local pre=() pid
  [ "$1" = xio ] && pre=(env "LD_PRELOAD=$shim")
  "${pre[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  "${pre[@]}" timeout 120 redis-benchmark -p "$port" -q -n 50000 -t set,get -c 4 2>/dev/null |
    tr '\r' '\n' | awk '/^(SET|GET): [0-9]/ { sub(":", "", $1); sub("p50=", "", $6); print $1, $2, $6 }'
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for r in $(seq "$rounds"); do
  one kernel >>"$out/kernel"
  one xio >>"$out/xio"
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf '%-4s %14s %14s %8s %12s %12s\n' op kernel_rps xio_rps ratio kernel_p50ms xio_p50ms
for op in SET GET; do
  kr=$(awk -v o=$op '$1 == o { print $2 }' "$out/kernel" | median)
  xr=$(awk -v o=$op '$1 == o { print $2 }' "$out/xio" | median)
  kp=$(awk -v o=$op '$1 == o { print $3 }' "$out/kernel" | median)
  xp=$(awk -v o=$op '$1 == o { print $3 }' "$out/xio" | median)
  printf '%-4s %14.0f %14.0f %7.2fx %12.3f %12.3f\n' "$op" "$kr" "$xr" "$(awk -v a="$xr" -v b="$kr" 'BEGIN { print a / b }')" "$kp" "$xp"
done
echo "($rounds rounds each, medians; redis-benchmark -c 4 -n 50000; both ends preloaded in the xio rows)"
