# tools/lib.sh - shared by the tools/ scripts: where things are, building
# out of tree, and a private monitor for a run.
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

# build DIR [cmake args...]: configure once, then build.
xio_build() {
  local dir=$1; shift
  mkdir -p "$dir"
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$top" -B "$dir" "$@" >"$dir/configure.log" 2>&1 ||
      { cat "$dir/configure.log"; return 1; }
  fi
  cmake --build "$dir" -j "$jobs" >"$dir/build.log" 2>&1 ||
    { grep -E 'error|Error' -A3 "$dir/build.log" | head -60; return 1; }
}

# Reserve a few 2 MiB hugepages if we may (root), so the hugepage paths are
# tested too; harmless when not allowed.
xio_reserve_hugepages() {
  local want=${1:-64} f=/proc/sys/vm/nr_hugepages
  if [ -w "$f" ] && [ "$(cat $f)" -lt "$want" ]; then
    echo "$want" >"$f" 2>/dev/null || true
  fi
}

# xio_monitor_start BUILD_DIR [args...]: a monitor on a private socket;
# sets XIO_MONITOR_SOCK and MONITOR_PID.
xio_monitor_start() {
  local build=$1; shift
  MONITOR_DIR=$(mktemp -d /tmp/xio-run-XXXXXX)
  # Programs that drop privileges (nginx workers run as nobody) must reach
  # the socket: the directory is traversable, the socket itself is 0666.
  chmod 755 "$MONITOR_DIR"
  export XIO_MONITOR_SOCK=$MONITOR_DIR/monitor.sock
  "$build/monitor/xio-monitor" --foreground --socket "$XIO_MONITOR_SOCK" "$@" \
    2>"$MONITOR_DIR/monitor.log" &
  MONITOR_PID=$!
  for _ in $(seq 100); do
    [ -S "$XIO_MONITOR_SOCK" ] && return 0
    sleep 0.05
  done
  cat "$MONITOR_DIR/monitor.log" >&2
  return 1
}

xio_monitor_stop() {
  [ -n "${MONITOR_PID:-}" ] && kill "$MONITOR_PID" 2>/dev/null && wait "$MONITOR_PID" 2>/dev/null
  MONITOR_PID=""
  [ -n "${MONITOR_DIR:-}" ] && rm -rf "$MONITOR_DIR"
  return 0
}
