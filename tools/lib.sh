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

# 0 if a process may be given RLIMIT_NOFILE $1 (soft and hard): within the
# hard limit, or past it with CAP_SYS_RESOURCE.
xio_can_set_nofile() {
  prlimit --nofile="$1:$1" true 2>/dev/null
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
# sets XIO_MONITOR_SOCK and MONITOR_PID. XIO_MONITOR_NOFILE=N starts it
# with RLIMIT_NOFILE N (soft and hard) where that may be raised so far
# (CAP_SYS_RESOURCE): its limits per process and per uid are shares of its
# fd limit (docs/config.md, "Limits").
xio_monitor_start() {
  local build=$1 pre=(); shift
  if [ -n "${XIO_MONITOR_NOFILE:-}" ] && xio_can_set_nofile "$XIO_MONITOR_NOFILE"; then
    pre=(prlimit --nofile="$XIO_MONITOR_NOFILE:$XIO_MONITOR_NOFILE")
  fi
  MONITOR_DIR=$(mktemp -d /tmp/xio-run-XXXXXX)
  # Programs that drop privileges (nginx workers run as nobody) must reach
  # the socket: the directory is traversable, the socket itself is 0666.
  chmod 755 "$MONITOR_DIR"
  export XIO_MONITOR_SOCK=$MONITOR_DIR/monitor.sock
  "${pre[@]}" "$build/monitor/xio-monitor" --foreground --socket "$XIO_MONITOR_SOCK" "$@" \
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
