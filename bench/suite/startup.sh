# shellcheck shell=bash
# bench/suite/startup.sh - scenario "startup": what loading the shim costs
# a process that never opens a socket: /bin/true started through env,
# without ("none") and with LD_PRELOAD (XIO_MONITOR_SOCK set as for every
# xio row), timed by hyperfine -N (no shell in between), 200 runs each
# after 20 warm-up runs; milliseconds per start (median, p99), CPU per
# start, and the difference. Without hyperfine: a timed loop of fork+exec
# (median and p99 then n/a).

sc_startup() {
  local runs=200 t
  [ "$QUICK" = 1 ] && runs=50
  step_begin startup all 0
  if command -v hyperfine >/dev/null; then
    if timeout -k 2 120 hyperfine -N --style none --warmup 20 --runs "$runs" \
      --export-json "$STEP/hyperfine.json" \
      "env /bin/true" "env LD_PRELOAD=$SHIM /bin/true" >"$STEP/hyperfine.log" 2>&1; then
      python3 - "$STEP/hyperfine.json" >"$STEP/startup.out" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
for name, r in zip(("none", "xio"), res):
    t = sorted(r["times"])
    p99 = t[min(len(t) - 1, -(-len(t) * 99 // 100) - 1)]
    print(name, r["median"] * 1e3, p99 * 1e3, (r["user"] + r["system"]) * 1e6)
PY
    else
      fail_step "hyperfine failed or timed out"
    fi
  else
    for t in none xio; do
      local pre=(env) n0 n1 i
      [ $t = xio ] && pre=(env "LD_PRELOAD=$SHIM")
      n0=$(date +%s%N)
      for ((i = 0; i < runs; i++)); do "${pre[@]}" /bin/true; done
      n1=$(date +%s%N)
      echo "$t $(div $((n1 - n0)) $((runs * 1000000)))" >>"$STEP/startup.out"
    done
  fi
  if [ -s "$STEP/startup.out" ]; then
    local name med p99 cpu base=""
    while read -r name med p99 cpu; do
      rec startup "$name" 0 ms_per_start "$med"
      rec startup "$name" 0 p99_ms "$p99"
      rec startup "$name" 0 cpu_us_per_start "$cpu"
      [ "$name" = none ] && base=$med
      [ "$name" = xio ] && [ -n "$base" ] &&
        rec startup xio 0 diff_ms "$(awk -v a="$med" -v b="$base" 'BEGIN { printf "%.3f", a - b }')"
      say "startup $name: $(printf '%.3f' "$med") ms per start${p99:+, p99 $(printf '%.3f' "$p99") ms}"
    done <"$STEP/startup.out"
  fi
  step_end
}
