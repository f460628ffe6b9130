# shellcheck shell=bash
# tests/compat/lib.sh - shared by the compatibility cases (issue 3): real,
# unmodified Debian programs with both ends under LD_PRELOAD.
#
# A case script does:
#   . "$(dirname "$0")/lib.sh"
#   compat_init NAME "$@"          # BUILD_DIR is $1; sets WORK, starts a monitor
#   port=$(free_port)
#   start_server pid "$WORK/srv.log" prog args...
#   wait_port "$port" "$pid" || fail "..."
#   xio_client 20 prog args... || fail "..."
#   stop_server "$pid" TERM        # fails unless it exits by itself, uncrashed
#   compat_finish                  # checks acceleration, prints the verdict
#
# Every preloaded process appends one line to $XIO_STATS at exit:
#   xio-stats pid=N accel_conns=N fallback_conns=N tx_bytes=N rx_bytes=N ...
# Servers write to $SERVER_STATS, clients to $CLIENT_STATS (one file per
# role, so forked workers and backends are counted with their role without
# knowing their pids).
#
# XIO_COMPAT_NO_PRELOAD=1 runs the same programs without the shim and
# without a monitor, skips the acceleration checks and prints
# "program part ok": the programs' own part of each case.
#
# Everything is bounded: client commands run under timeout(1); a watchdog
# ends the whole script after COMPAT_TIMEOUT seconds (default 120); the EXIT
# trap stops only the processes this script started (by pid).

set -u
# Debian's own programs first: a python3 from pyenv (or any wrapper script
# earlier in PATH) is not the program under test, and a shell-script shim
# in front of it would be preloaded too.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
NO_PRELOAD=${XIO_COMPAT_NO_PRELOAD:-0}
COMPAT_PIDS=()
COMPAT_CLEANUP_HOOKS=()
XIO_ENV=()
XIO_SERVER_ENV=()
XIO_CLIENT_ENV=()
MONITOR_PID=""
WATCHDOG_PID=""

log() { echo "[$COMPAT_NAME] $*" >&2; }

# The script's own stdout, saved at init: a failure (or the watchdog's trap)
# may fire inside a command whose output is redirected to a log file.
COMPAT_OUT=1
fail() {
  {
    echo "FAIL: ${COMPAT_NAME:-compat}: $*"
    if [ -n "${WORK:-}" ] && [ "${COMPAT_VERBOSE_FAIL:-1}" = 1 ]; then
      compat_dump_logs
    fi
  } >&"$COMPAT_OUT"
  exit 1
}

# compat_dump_logs: the tail of every *.log in WORK, and the stats lines, to
# help the reader of a failure.
compat_dump_logs() {
  local f
  for f in "$WORK"/*.log "$WORK"/*/*.log; do
    [ -s "$f" ] || continue
    echo "--- ${f#"$WORK"/} (last 15 lines)"
    tail -n 15 "$f"
  done
  for f in "$SERVER_STATS" "$CLIENT_STATS"; do
    [ -s "$f" ] || continue
    echo "--- ${f##*/}"
    head -n 40 "$f"
  done
}

# track PID...: remember pids this script started, for the cleanup trap.
track() { COMPAT_PIDS+=("$@"); }

# on_cleanup CMD...: a command (string, eval'd) the EXIT trap runs first,
# e.g. "pg_ctl stop".
on_cleanup() { COMPAT_CLEANUP_HOOKS+=("$*"); }

pid_alive() { kill -0 "$1" 2>/dev/null; }
# pid_running PID: alive and not a zombie waiting to be reaped.
pid_running() {
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  case $st in "" | Z*) return 1 ;; esac
  return 0
}

# stop_pid PID [SIG] [SECS]: signal one pid we started and wait (bounded)
# for it to exit; SIGKILL after SECS (default 10). Returns 0 when it exited
# by itself, 1 when it had to be killed, 2 when it died of a crash signal
# (SEGV, ABRT, BUS, ILL, FPE) on the way out. Its exit status: STOP_RC.
STOP_RC=0
stop_pid() {
  local pid=$1 sig=${2:-TERM} secs=${3:-10} i
  STOP_RC=0
  [ -n "$pid" ] || return 0
  if pid_alive "$pid"; then
    kill -s "$sig" "$pid" 2>/dev/null
    for ((i = 0; i < secs * 20; i++)); do
      pid_running "$pid" || break
      sleep 0.05
    done
    if pid_running "$pid"; then
      log "pid $pid did not exit within ${secs}s of SIG$sig: SIGKILL"
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
      STOP_RC=$?
      return 1
    fi
  fi
  wait "$pid" 2>/dev/null
  STOP_RC=$?
  case $STOP_RC in
    132 | 134 | 135 | 136 | 139)
      log "pid $pid died of signal $((STOP_RC - 128))"
      return 2 ;;
  esac
  return 0
}

# stop_server PID SIG [SECS]: stop_pid, and fail the case unless the server
# exited by itself without crashing.
stop_server() {
  local r=0
  stop_pid "$@" || r=$?
  case $r in
    0) ;;
    1) fail "server (pid $1) did not exit within ${3:-10}s of SIG$2 (killed; its stats line is lost)" ;;
    *) fail "server (pid $1) crashed on the way out: exit status $STOP_RC (signal $((STOP_RC - 128)))" ;;
  esac
}

# no_crash_in LOG PATTERN WHAT: fail when a server's own log reports a child
# that died of a signal (nginx workers, postgres backends).
no_crash_in() {
  local log=$1 pattern=$2 what=$3
  if [ -f "$log" ] && grep -Eq "$pattern" "$log"; then
    fail "$what: $(grep -E "$pattern" "$log" | head -n 3 | tr '\n' ' ')"
  fi
}

compat_cleanup() {
  local rc=$? h p
  trap - EXIT INT TERM
  for h in "${COMPAT_CLEANUP_HOOKS[@]}"; do
    eval "$h" >/dev/null 2>&1 || true
  done
  for p in "${COMPAT_PIDS[@]}"; do
    pid_alive "$p" && kill -TERM "$p" 2>/dev/null
  done
  for p in "${COMPAT_PIDS[@]}"; do
    stop_pid "$p" TERM 3 >/dev/null 2>&1
  done
  [ -n "$WATCHDOG_PID" ] && { kill "$WATCHDOG_PID" 2>/dev/null; wait "$WATCHDOG_PID" 2>/dev/null; }
  xio_monitor_stop_compat
  if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
    if [ $rc -ne 0 ] && [ "${XIO_COMPAT_KEEP:-0}" = 1 ]; then
      echo "(kept $WORK)" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  exit $rc
}

# compat_init NAME BUILD_DIR: temp dir, traps, watchdog, monitor, XIO_ENV.
compat_init() {
  COMPAT_NAME=$1
  BUILD=${2:-}
  [ -n "$BUILD" ] || { echo "usage: $0 BUILD_DIR"; exit 2; }
  BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "FAIL: $COMPAT_NAME: no build dir $2"; exit 2; }
  PRELOAD=$BUILD/preload/libxio_preload.so
  exec {COMPAT_OUT}>&1
  trap compat_cleanup EXIT
  trap 'exit 130' INT
  trap 'echo "FAIL: $COMPAT_NAME: timed out after ${COMPAT_TIMEOUT:-120}s (watchdog) or terminated" >&"$COMPAT_OUT"; exit 143' TERM
  WORK=$(mktemp -d "/tmp/xio-compat-$COMPAT_NAME-XXXXXX")
  # Servers that drop privileges (nginx workers, postgres, memcached) must
  # reach the monitor socket and append to the stats files.
  chmod 755 "$WORK"
  SERVER_STATS=$WORK/server.stats
  CLIENT_STATS=$WORK/client.stats
  : >"$SERVER_STATS"; : >"$CLIENT_STATS"
  chmod 666 "$SERVER_STATS" "$CLIENT_STATS"
  local self=$$
  (
    trap 'kill $s 2>/dev/null; wait $s; exit 0' TERM
    sleep "${COMPAT_TIMEOUT:-120}" & s=$!
    wait $s && kill -TERM "$self" 2>/dev/null
  ) >/dev/null 2>&1 </dev/null {COMPAT_OUT}>&- &
  WATCHDOG_PID=$!
  if [ "$NO_PRELOAD" = 1 ]; then
    log "XIO_COMPAT_NO_PRELOAD=1: programs run without the shim"
    return 0
  fi
  [ -f "$PRELOAD" ] || fail "no $PRELOAD (build first)"
  [ -x "$BUILD/monitor/xio-monitor" ] || fail "no $BUILD/monitor/xio-monitor"
  xio_monitor_start_compat || fail "monitor did not start"
  XIO_ENV=(LD_PRELOAD="$PRELOAD" XIO_MONITOR_SOCK="$XIO_MONITOR_SOCK")
  XIO_SERVER_ENV=("${XIO_ENV[@]}" XIO_STATS="$SERVER_STATS")
  XIO_CLIENT_ENV=("${XIO_ENV[@]}" XIO_STATS="$CLIENT_STATS")
}

# Monitor on a private socket in its own temp dir (readable by other users).
xio_monitor_start_compat() {
  MONITOR_DIR=$(mktemp -d /tmp/xio-compat-mon-XXXXXX)
  chmod 755 "$MONITOR_DIR"
  XIO_MONITOR_SOCK=$MONITOR_DIR/monitor.sock
  "$BUILD/monitor/xio-monitor" --foreground --socket "$XIO_MONITOR_SOCK" \
    ${XIO_COMPAT_MONITOR_ARGS:-} 2>"$WORK/monitor.log" </dev/null {COMPAT_OUT}>&- &
  MONITOR_PID=$!
  local i
  for ((i = 0; i < 200; i++)); do
    [ -S "$XIO_MONITOR_SOCK" ] && return 0
    pid_alive "$MONITOR_PID" || break
    sleep 0.05
  done
  cat "$WORK/monitor.log" >&2
  return 1
}

xio_monitor_stop_compat() {
  if [ -n "$MONITOR_PID" ]; then
    stop_pid "$MONITOR_PID" TERM 5 >/dev/null 2>&1
    MONITOR_PID=""
  fi
  [ -n "${MONITOR_DIR:-}" ] && rm -rf "$MONITOR_DIR"
  return 0
}

# xio_run CMD...: CMD with the shim (stats to the client file). Without the
# shim (XIO_COMPAT_NO_PRELOAD=1), CMD as it is.
xio_run() { env "${XIO_CLIENT_ENV[@]}" "$@"; }
# start_server VAR LOG CMD...: start CMD in the background under the shim
# (stats to the server file), output to LOG; its pid (env execs CMD, so it
# is the server's own pid) goes into VAR and is tracked for cleanup.
# Signal dispositions are reset to default: a non-interactive bash starts
# background jobs with SIGINT and SIGQUIT ignored, and Python then never
# installs its KeyboardInterrupt handler.
start_server() {
  local __var=$1 __log=$2; shift 2
  env --default-signal "${XIO_SERVER_ENV[@]}" "$@" >"$__log" 2>&1 </dev/null {COMPAT_OUT}>&- &
  local __pid=$!
  track "$__pid"
  printf -v "$__var" '%s' "$__pid"
}
# xio_client SECS CMD...: a client under the shim, bounded by timeout(1)
# (SIGTERM at SECS, SIGKILL 3 s later). timeout itself is not preloaded.
xio_client() {
  local secs=$1; shift
  timeout -k 3 "$secs" env "${XIO_CLIENT_ENV[@]}" "$@" {COMPAT_OUT}>&-
}
# plain SECS CMD...: a bounded client that is never preloaded.
plain() {
  local secs=$1; shift
  timeout -k 3 "$secs" "$@" {COMPAT_OUT}>&-
}

# free_port: a TCP port on 127.0.0.1 that is free right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# port_listening PORT: someone listens on 127.0.0.1:PORT (no connection is
# made, so servers see no stray client).
port_listening() {
  local hex
  hex=$(printf '%04X' "$1")
  grep -q ":$hex [0-9A-F:]* 0A " /proc/net/tcp 2>/dev/null ||
    grep -q ":$hex [0-9A-F:]* 0A " /proc/net/tcp6 2>/dev/null
}

# wait_port PORT [PID] [SECS]: until PORT listens (default 10 s); fails
# early if PID (the server) died.
wait_port() {
  local port=$1 pid=${2:-} secs=${3:-10} i
  for ((i = 0; i < secs * 20; i++)); do
    port_listening "$port" && return 0
    if [ -n "$pid" ] && ! pid_alive "$pid"; then
      log "server pid $pid died before listening on $port"
      return 1
    fi
    sleep 0.05
  done
  log "nothing listens on 127.0.0.1:$port after ${secs}s"
  return 1
}

# sha FILE: its sha256.
sha() { sha256sum "$1" | cut -d' ' -f1; }

# stats_sum FILE KEY [PIDS]: the sum of KEY= over FILE's xio-stats lines
# (only the lines of PIDS, a space-separated list, when given).
stats_sum() {
  local file=$1 key=$2 pids=${3:-}
  [ -f "$file" ] || { echo 0; return; }
  awk -v key="$key" -v pids="$pids" '
    BEGIN { n = split(pids, p, " "); for (i = 1; i <= n; i++) want[p[i]] = 1; s = 0 }
    $1 == "xio-stats" {
      pid = ""; v = 0
      for (i = 2; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "pid") pid = kv[2]
        if (kv[1] == key) v = kv[2] + 0
      }
      if (n == 0 || (pid in want)) s += v
    }
    END { printf "%d\n", s }' "$file"
}

stats_lines() { grep -c '^xio-stats ' "$1" 2>/dev/null || true; }

# stats_summary FILE: one line with the summed counters.
stats_summary() {
  local file=$1 k out
  out="procs=$(stats_lines "$file")"
  for k in accel_conns fallback_conns left_conns tx_bytes rx_bytes tx_msgs rx_msgs doorbells; do
    out="$out $k=$(stats_sum "$file" "$k")"
  done
  echo "$out"
}

# check_accel [SERVER_FILE CLIENT_FILE]: prints the summed stats of both
# roles and asserts: server rx_bytes > 0, client rx_bytes > 0, and
# accel_conns > 0 on both sides. Returns 1 (with the reasons) otherwise.
check_accel() {
  local sf=${1:-$SERVER_STATS} cf=${2:-$CLIENT_STATS} why=""
  echo "server stats: $(stats_summary "$sf")"
  echo "client stats: $(stats_summary "$cf")"
  [ "$(stats_lines "$sf")" -gt 0 ] || why="$why; no xio-stats line from any server process (did the shim load, and did the server exit normally?)"
  [ "$(stats_lines "$cf")" -gt 0 ] || why="$why; no xio-stats line from any client process"
  [ "$(stats_sum "$sf" accel_conns)" -gt 0 ] || why="$why; server accel_conns = 0"
  [ "$(stats_sum "$cf" accel_conns)" -gt 0 ] || why="$why; client accel_conns = 0"
  [ "$(stats_sum "$sf" rx_bytes)" -gt 0 ] || why="$why; server rx_bytes over shared memory = 0"
  [ "$(stats_sum "$cf" rx_bytes)" -gt 0 ] || why="$why; client rx_bytes over shared memory = 0"
  if [ -n "$why" ]; then
    echo "acceleration check failed: ${why#; }"
    return 1
  fi
  return 0
}

# require_stat ROLE KEY OP VALUE: beyond check_accel, a bound on one summed
# counter of a role (server or client), e.g. "client rx_bytes -ge 10485760":
# the payload itself went over shared memory, not only some of the bytes.
# VALUE may be "server:KEY" or "client:KEY" to compare with the other sum.
# Skipped without the shim.
require_stat() {
  [ "$NO_PRELOAD" = 1 ] && return 0
  local role=$1 key=$2 op=$3 want=$4 file have
  case $role in server) file=$SERVER_STATS ;; *) file=$CLIENT_STATS ;; esac
  case $want in
    server:*) want=$(stats_sum "$SERVER_STATS" "${want#server:}") ;;
    client:*) want=$(stats_sum "$CLIENT_STATS" "${want#client:}") ;;
  esac
  have=$(stats_sum "$file" "$key")
  local ok=1
  case $op in
    -ge) ((have >= want)) || ok=0 ;;
    -gt) ((have > want)) || ok=0 ;;
    -eq) ((have == want)) || ok=0 ;;
    -le) ((have <= want)) || ok=0 ;;
    *) fail "require_stat: unknown operator $op" ;;
  esac
  if [ $ok = 0 ]; then
    echo "server stats: $(stats_summary "$SERVER_STATS")"
    echo "client stats: $(stats_summary "$CLIENT_STATS")"
    COMPAT_VERBOSE_FAIL=0
    fail "$role $key = $have, want $op $want"
  fi
}

# Connections that moved back to kernel TCP (issue 7): a preloaded process
# writes one line per such connection when it moves,
#   xio-left pid=P fd=F reason=R tx_off=X rx_off=Y
# and counts them in left_conns=N on its xio-stats line at exit. R is one
# of stdio exec reattach seccomp oob shared peer; X and Y are the stream
# offsets (this side's, the peer's) at which the kernel took over.
left_lines() { grep -hE '^xio-left ' "$@" 2>/dev/null || true; }

# check_left REASONS: every xio-left line of both roles is well formed and
# names one of REASONS (an alternation, e.g. "exec|stdio") or peer (the
# other end of a connection that left), at least one names one of REASONS,
# and no role
# counts more moves (left_conns) than it has lines (a process that execs or
# ends in _exit writes lines without a count). Prints them. Returns 1 (with
# the reason on stdout) otherwise.
check_left() {
  local reasons=$1 f n s bad
  for f in "$SERVER_STATS" "$CLIENT_STATS"; do
    n=$(left_lines "$f" | wc -l)
    s=$(stats_sum "$f" left_conns)
    [ "$s" -le "$n" ] || { echo "${f##*/}: left_conns sums to $s, but only $n xio-left lines"; return 1; }
  done
  bad=$(left_lines "$SERVER_STATS" "$CLIENT_STATS" |
    grep -vE "^xio-left pid=[0-9]+ fd=[0-9]+ reason=($reasons|peer) tx_off=[0-9]+ rx_off=[0-9]+( peer=[a-z]+)?\$" | head -n 3)
  [ -z "$bad" ] || { echo "unexpected xio-left lines (want reason $reasons, or peer): $bad"; return 1; }
  # A peer only follows: some end must have left for one of REASONS.
  left_lines "$SERVER_STATS" "$CLIENT_STATS" | grep -qE " reason=($reasons) | peer=($reasons)\$" ||
    { echo "connections moved back to TCP, but only as peers (no line with reason $reasons)"; return 1; }
  left_lines "$SERVER_STATS" "$CLIENT_STATS" | sed 's/^/  /'
  return 0
}

# compat_finish_left REASONS: the verdict for a program whose connections
# may move back to TCP for a documented reason. With xio-left lines in
# either role, they must all be well formed with one of REASONS (the
# program's part, checked by the case, shows the bytes arrived all the
# same); without any, the connections stayed accelerated and compat_finish
# checks shared-memory bytes on both ends.
compat_finish_left() {
  local reasons=$1 out
  shift
  if [ "$NO_PRELOAD" != 1 ] && [ -n "$(left_lines "$SERVER_STATS" "$CLIENT_STATS")" ]; then
    echo "server stats: $(stats_summary "$SERVER_STATS")"
    echo "client stats: $(stats_summary "$CLIENT_STATS")"
    out=$(check_left "$reasons") || { COMPAT_VERBOSE_FAIL=0; fail "$out"; }
    echo "$out"
    echo "$COMPAT_NAME: ok (connections moved back to TCP: $(left_lines "$SERVER_STATS" "$CLIENT_STATS" | wc -l))"
    echo "1 passed, 0 failed"
    exit 0
  fi
  compat_finish "$@"
}

# compat_finish: the verdict. Call after every server was stopped (so their
# stats lines are written).
compat_finish() {
  if [ "$NO_PRELOAD" = 1 ]; then
    echo "$COMPAT_NAME: program part ok (no preload, acceleration not checked)"
    echo "1 passed, 0 failed"
    exit 0
  fi
  local out
  if ! out=$(check_accel "$@"); then
    grep ' stats: ' <<<"$out"
    COMPAT_VERBOSE_FAIL=0
    fail "$(echo "$out" | tail -n 1)"
  fi
  echo "$out"
  echo "$COMPAT_NAME: ok"
  echo "1 passed, 0 failed"
  exit 0
}
