#!/usr/bin/env bash
# bench/suite/run.sh - the side-by-side benchmark suite (what `tools/bench`
# runs with no sub-command): every scenario over kernel TCP, a UNIX socket
# where the program has one, and xio (the same unmodified programs, both
# ends under LD_PRELOAD=libxio_preload.so, with a private monitor), in one
# run, for several rounds; medians, p99, ratios, CPU per request.
#
#   bench/suite/run.sh --build DIR [--rounds N] [--quick] [--only a,b]
#                      [--out DIR] [--csv]
#
# Scenarios, in the order they run in each round (one file each here):
#   pingpong stream shortconn redis nginx memcached idle busyidle crowd startup echo scale
# Output: a folder (default build/bench-results/DATE-TIME) with results.md,
# results.csv, raw.csv, failures.csv (if any), PNG charts and logs/ (each
# step's output and counters). Progress, one line per step, on stderr.
# Exit status 1 if any step failed, including an xio row that did not go
# over shared memory.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../tools/lib.sh"
. "$here/lib.sh"

ALL_SCENARIOS=(pingpong stream shortconn redis nginx memcached idle busyidle crowd startup echo scale)

usage() {
  cat <<EOF
usage: tools/bench [--rounds N] [--quick] [--only LIST] [--out DIR] [--csv] [--build DIR]
  Every scenario side by side over kernel TCP, UNIX sockets and xio.
  --rounds N   rounds of every scenario (default 3); figures are medians
  --quick      1 round (unless --rounds), short runs: a smoke test (~1 min)
  --only LIST  some of: ${ALL_SCENARIOS[*]}
  --out DIR    results folder (default build/bench-results/DATE-TIME)
  --csv        print results.csv (scenario,transport,size,metric,value) on stdout
  --build DIR  the build to measure (default build/release)
Sub-commands kept from before: tools/bench echo [...], tools/bench redis [ROUNDS].
EOF
}

BUILD=$top/build/release
ROUNDS="" QUICK=0 ONLY="" OUT="" CSV=0
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=${2:-}; shift ;;
    --quick) QUICK=1 ;;
    --only) ONLY=${2:-}; shift ;;
    --out) OUT=${2:-}; shift ;;
    --csv) CSV=1 ;;
    --build) BUILD=${2:-}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "tools/bench: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ -z $ROUNDS || $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "tools/bench: bad --rounds '$ROUNDS' (1..99)" >&2; exit 2; }
[ -n "$ROUNDS" ] || { [ $QUICK = 1 ] && ROUNDS=1 || ROUNDS=3; }
SCENARIOS=("${ALL_SCENARIOS[@]}")
if [ -n "$ONLY" ]; then
  SCENARIOS=()
  for s in ${ONLY//,/ }; do
    [[ " ${ALL_SCENARIOS[*]} " == *" $s "* ]] || { echo "tools/bench: unknown scenario '$s' (${ALL_SCENARIOS[*]})" >&2; exit 2; }
    SCENARIOS+=("$s")
  done
fi
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "tools/bench: no build directory $BUILD" >&2; exit 2; }
SHIM=$BUILD/preload/libxio_preload.so
for f in "$SHIM" "$BUILD/monitor/xio-monitor" "$BUILD/bench/xio-bench-pingpong" "$BUILD/bench/xio-bench-echo"; do
  [ -e "$f" ] || { echo "tools/bench: $f is missing (build first)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "tools/bench: python3 is needed for the report" >&2; exit 2; }
OUT=${OUT:-$top/build/bench-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
rm -f "$OUT/raw.csv" "$OUT/failures.csv"
echo "round,scenario,transport,size,metric,value" >"$OUT/raw.csv"

# Work files (sockets, servers' prefixes, counters) live in a private
# temporary directory that programs which drop root can traverse.
TMPW=$(mktemp -d /tmp/xio-bench-XXXXXX)
chmod 755 "$TMPW"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  suite_kill_all
  xio_monitor_stop
  rm -rf "$TMPW"
  exit $rc
}
trap cleanup EXIT
trap 'echo "tools/bench: interrupted" >&2; exit 130' INT TERM

# shellcheck source=/dev/null
for s in "${SCENARIOS[@]}"; do . "$here/$s.sh"; done

# The monitor gets an fd limit of 65536 where that may be set (past the
# hard limit only with CAP_SYS_RESOURCE): its per-process share (a quarter)
# must hold busyidle's 10,001 connections.
export XIO_MONITOR_NOFILE=${XIO_MONITOR_NOFILE:-65536}
xio_monitor_start "$BUILD" || { echo "FAIL: the xio monitor did not start" >&2; exit 1; }
export XIO_MONITOR_SOCK

{
  echo "# xio benchmark suite: $(date '+%Y-%m-%d %H:%M')"
  echo
  echo "\`tools/bench --rounds $ROUNDS$([ $QUICK = 1 ] && echo ' --quick')$([ -n "$ONLY" ] && echo " --only $ONLY")\`;"
  echo "commit $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$top" diff --quiet 2>/dev/null || echo ' (with local changes)');"
  echo "$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r);"
  echo "build $BUILD."
} >"$OUT/header.md"

say "results in $OUT; scenarios: ${SCENARIOS[*]}; $ROUNDS round(s)$([ $QUICK = 1 ] && echo ', quick')"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  for s in "${SCENARIOS[@]}"; do
    "sc_$s"
  done
done
ROUND=""
xio_monitor_stop

python3 "$here/report.py" "$OUT" || { echo "FAIL: the report could not be made" >&2; SUITE_FAILED=1; }
if [ $CSV = 1 ]; then
  cat "$OUT/results.csv"
else
  cat "$OUT/results.md"
fi
if [ -s "$OUT/failures.csv" ]; then
  echo >&2
  echo "FAILED steps ($(wc -l <"$OUT/failures.csv")):" >&2
  sed 's/^/  round /' "$OUT/failures.csv" >&2
fi
say "done in $(($(date +%s) - SUITE_T0)) s; results: $OUT"
[ $SUITE_FAILED = 0 ]
