# shellcheck shell=bash
# bench/suite/lib.sh - what the suite's scenario files share: recording
# results, progress lines, starting and stopping the processes of a step
# (bounded, by pid), the transports' environments, CPU time from /proc, and
# the proof that an xio row really went over shared memory.
#
# run.sh sets, before sourcing the scenarios:
#   BUILD SHIM OUT TMPW ROUNDS QUICK XIO_MONITOR_SOCK MONITOR_PID
# and for each step a scenario calls step_begin, which sets STEP (a work
# directory), STEP_ID, TRANSPORT, SRV_ENV and CLI_ENV.

SUITE_PIDS=()     # every background process a step started, for the trap
SUITE_FAILED=0
SUITE_T0=$(date +%s)
CLK_TCK=$(getconf CLK_TCK)

# say MSG: one progress line on stderr, with the time, elapsed seconds and
# round.
say() {
  printf '[%s +%ds%s] %s\n' "$(date +%T)" $(($(date +%s) - SUITE_T0)) \
    "${ROUND:+ round $ROUND/$ROUNDS}" "$*" >&2
}

# rec SCENARIO TRANSPORT SIZE METRIC VALUE: one raw measurement of this
# round. report.py takes the median over the rounds.
rec() {
  [ -n "$5" ] || return 0
  echo "$ROUND,$1,$2,$3,$4,$5" >>"$OUT/raw.csv"
}

# fail_step WHY: a loud FAIL line naming the step, the tail of its logs,
# and a note for results.md; the suite ends non-zero. A step that ran out
# of time is not run again in later rounds (step_begin skips it): a hang
# would otherwise cost its whole time limit every round.
SUITE_HUNG=" "
fail_step() {
  local f
  SUITE_FAILED=1
  case $* in *"time limit"* | *timeout* | *"did not exit"*) SUITE_HUNG+="$STEP_ID_ANY " ;; esac
  echo "FAIL: $STEP_SCEN $STEP_SIZE $TRANSPORT (round $ROUND): $*" >&2
  for f in "$STEP"/*.err "$STEP"/*.log "$STEP"/logs/*.log; do
    [ -s "$f" ] || continue
    echo "  --- ${f##*/}:" >&2
    tail -n 5 "$f" | sed 's/^/  /' >&2
  done
  echo "$ROUND,$STEP_SCEN,$TRANSPORT,$STEP_SIZE,$*" >>"$OUT/failures.csv"
}

# step_begin SCENARIO TRANSPORT SIZE: a fresh work directory and the
# environments of both ends. Under xio both ends load the shim, talk to the
# run's monitor and write their counters (XIO_STATS) to srv.stats and
# cli.stats; the files are world-writable because nginx workers and
# memcached drop root.
# Returns 1 (after a FAIL line) when the same step ran out of time in an
# earlier round; the caller then skips to step_end.
step_begin() {
  STEP_SCEN=$1 TRANSPORT=$2 STEP_SIZE=$3
  STEP_ID=r$ROUND-$1-$3-$2
  STEP_ID_ANY=$1-$3-$2
  STEP=$TMPW/$STEP_ID
  mkdir -p "$STEP"
  chmod 777 "$STEP"
  if [ "$TRANSPORT" = xio ] || [ "$TRANSPORT" = xio-zc ]; then
    : >"$STEP/srv.stats"
    : >"$STEP/cli.stats"
    chmod 666 "$STEP/srv.stats" "$STEP/cli.stats"
    SRV_ENV=(env "LD_PRELOAD=$SHIM" "XIO_MONITOR_SOCK=$XIO_MONITOR_SOCK" "XIO_STATS=$STEP/srv.stats")
    CLI_ENV=(env "LD_PRELOAD=$SHIM" "XIO_MONITOR_SOCK=$XIO_MONITOR_SOCK" "XIO_STATS=$STEP/cli.stats")
  else
    SRV_ENV=(env -u LD_PRELOAD)
    CLI_ENV=(env -u LD_PRELOAD)
  fi
  if [[ $SUITE_HUNG == *" $STEP_ID_ANY "* ]]; then
    SUITE_FAILED=1
    echo "FAIL: $1 $3 $2 (round $ROUND): skipped, it ran out of time in an earlier round" >&2
    echo "$ROUND,$1,$2,$3,skipped: ran out of time in an earlier round" >>"$OUT/failures.csv"
    return 1
  fi
  return 0
}

# step_end: keep the step's small files (results, logs, counters) in the
# results folder, drop the work directory.
step_end() {
  local dst=$OUT/logs/$STEP_ID f
  mkdir -p "$dst"
  for f in "$STEP"/* "$STEP"/logs/*; do
    [ -f "$f" ] && [ ! -S "$f" ] && [ "$(stat -c %s "$f")" -lt 1048576 ] && cp "$f" "$dst/"
  done
  rm -rf "$STEP"
}

# bg_start VAR OUT ERR CMD...: CMD in the background, stdout and stderr to
# files; its pid in VAR (CMD should exec the program, as env and taskset do,
# so that it is the program's own pid). Default signal dispositions: a
# non-interactive shell starts background jobs with SIGINT and SIGQUIT
# ignored, and nginx needs SIGQUIT.
bg_start() {
  local __var=$1 out=$2 err=$3; shift 3
  env --default-signal "$@" >"$out" 2>"$err" </dev/null &
  local __pid=$!
  SUITE_PIDS+=("$__pid")
  printf -v "$__var" '%s' "$__pid"
}

pid_running() {
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  case $st in "" | Z*) return 1 ;; esac
  return 0
}

# bg_stop PID [SIG] [SECS]: send SIG (none if "-") and wait up to SECS
# (default 10) for PID to exit, SIGKILL after. Returns 0 when it exited by
# itself with status 0, 1 when it had to be killed, 2 when it exited with
# an error or a crash signal (BG_RC holds its status).
BG_RC=0
bg_stop() {
  local pid=$1 sig=${2:--} secs=${3:-10} i
  BG_RC=0
  if pid_running "$pid" && [ "$sig" != - ]; then
    kill -s "$sig" "$pid" 2>/dev/null
  fi
  for ((i = 0; i < secs * 20; i++)); do
    pid_running "$pid" || break
    sleep 0.05
  done
  if pid_running "$pid"; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    BG_RC=$?
    return 1
  fi
  wait "$pid" 2>/dev/null
  BG_RC=$?
  [ "$BG_RC" = 0 ] || return 2
  return 0
}

# suite_kill_all: the trap's part: every process still running that a step
# started, by pid.
suite_kill_all() {
  local p
  for p in "${SUITE_PIDS[@]}"; do
    pid_running "$p" && kill -KILL "$p" 2>/dev/null
  done
  return 0
}

# wait_file FILE PID [SECS]: until FILE exists (default 10 s); fails early
# when PID died.
wait_file() {
  local f=$1 pid=$2 secs=${3:-10} i
  for ((i = 0; i < secs * 20; i++)); do
    [ -e "$f" ] && return 0
    pid_running "$pid" || return 1
    sleep 0.05
  done
  return 1
}

# port_listening PORT: something listens on 127.0.0.1:PORT (from
# /proc/net/tcp, so that no stray connection reaches the server).
port_listening() {
  local hex
  hex=$(printf '%04X' "$1")
  grep -q ":$hex [0-9A-F:]* 0A " /proc/net/tcp 2>/dev/null
}

wait_port() {
  local port=$1 pid=$2 secs=${3:-10} i
  for ((i = 0; i < secs * 20; i++)); do
    port_listening "$port" && return 0
    pid_running "$pid" || return 1
    sleep 0.05
  done
  return 1
}

# free_port: a random port in 20000..32767 (below the ephemeral range, so
# clients' ports never take it) that nothing listens on.
free_port() {
  local p i
  for ((i = 0; i < 100; i++)); do
    p=$((20000 + RANDOM % 12768))
    port_listening "$p" || { echo "$p"; return 0; }
  done
  return 1
}

# proc_cpu_us PID...: CPU time of the processes (all their threads), in
# microseconds. From /proc/PID/task/*/schedstat (time on CPU in ns, which
# is user + system without the 10 ms ticks of /proc/PID/stat), or else from
# /proc/PID/stat's utime + stime (fields 14 and 15, counted after the
# command name, which may hold spaces). Gone pids count 0.
proc_cpu_us() {
  local p s ns=0 ticks=0
  for p in "$@"; do
    if [ -r "/proc/$p/schedstat" ]; then
      ns=$((ns + $(cat /proc/"$p"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }')))
      continue
    fi
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    ticks=$((ticks + ${12} + ${13}))
  done
  echo $((ns / 1000 + ticks * 1000000 / CLK_TCK))
}

# proc_status PID KEY: KEY's figure in /proc/PID/status (VmRSS, VmHWM: in
# KiB); empty when PID is gone.
proc_status() {
  awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null
}

# proc_children PID: the pids of PID's children (nginx workers).
proc_children() {
  cat /proc/"$1"/task/*/children 2>/dev/null
}

# run_with_cpu FILE CMD...: run CMD in the foreground; write the CPU time
# (user + system, microseconds) of everything it started, once reaped, to
# FILE (the shell's `times`, children line). Returns CMD's status.
run_with_cpu() {
  local f=$1; shift
  (
    "$@"
    rc=$?
    # Into a file, not a pipe: in a pipeline `times` would run in a forked
    # copy of the shell, which has no reaped children yet.
    times >"$f.times"
    awk 'NR == 2 {
      us = 0
      for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); us += (a[1] * 60 + a[2]) * 1e6 }
      printf "%.0f\n", us
    }' "$f.times" >"$f"
    rm -f "$f.times"
    exit $rc
  )
}

# kv FILE KEY: the value of KEY=... on the result line in FILE.
kv() {
  awk -v k="$2" '{ for (i = 1; i <= NF; i++) { n = index($i, "="); if (n && substr($i, 1, n - 1) == k) v = substr($i, n + 1) } } END { print v }' "$1" 2>/dev/null
}

# div A B [SCALE]: A / B with 3 decimals (times SCALE), empty when B is 0
# or either is empty.
div() {
  awk -v a="$1" -v b="$2" -v s="${3:-1}" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) exit; printf "%.3f\n", a * s / b }'
}

# monitor_limit process|uid: how many connections the run's monitor
# accelerates per process or per uid (limit-process-connections,
# limit-uid-connections; docs/config.md, "Limits"), from the line it logs
# at start ("info: limits: F fds for clients; per process P pending, C
# connections; per uid P pending, C connections, ..."). Empty when it
# logged no such line: then only a row's counters can tell that it was
# not accelerated. Read, not computed, so that a monitor with other limits
# is measured by what it says.
monitor_limit() {
  local re
  case $1 in
    process) re='s/.*limits: .*per process [0-9]* pending, \([0-9]*\) connections.*/\1/p' ;;
    uid) re='s/.*limits: .*per uid [0-9]* pending, \([0-9]*\) connections.*/\1/p' ;;
    *) return 1 ;;
  esac
  sed -n "$re" "${MONITOR_DIR:-/nonexistent}/monitor.log" 2>/dev/null | head -n 1
}

# stats_sum FILE KEY: the sum of KEY= over the xio-stats lines in FILE.
stats_sum() {
  awk -v key="$2" '$1 == "xio-stats" { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) s += kv[2] } } END { printf "%.0f\n", s }' "$1" 2>/dev/null || echo 0
}

# xio_verify SCENARIO SIZE: for an xio step, after both ends exited: both
# programs must have written counters with accelerated connections and
# bytes sent over shared memory, or the row proves nothing and the step
# FAILs. Records the counters and doorbells per message (both ends'
# doorbells over both ends' messages); prints "DB" (doorbells/msg) into
# XIO_NOTE for the progress line. Returns 1 when the row was not
# accelerated.
XIO_NOTE=""
xio_verify() {
  local scen=$1 size=$2 why="" side f acc tx
  XIO_NOTE=""
  [ "$TRANSPORT" = xio ] || return 0
  for side in srv cli; do
    f=$STEP/$side.stats
    if ! grep -q '^xio-stats ' "$f" 2>/dev/null; then
      why="$why; no xio-stats line from the $side side (the shim did not load, or the program did not exit normally)"
      continue
    fi
    acc=$(stats_sum "$f" accel_conns)
    tx=$(stats_sum "$f" tx_bytes)
    rec "$scen" xio "$size" "accel_conns_$side" "$acc"
    rec "$scen" xio "$size" "fallback_conns_$side" "$(stats_sum "$f" fallback_conns)"
    rec "$scen" xio "$size" "tx_bytes_$side" "$tx"
    [ "$acc" -gt 0 ] || why="$why; $side accel_conns=0"
    [ "$tx" -gt 0 ] || why="$why; $side tx_bytes=0 over shared memory"
  done
  local db msgs
  db=$(($(stats_sum "$STEP/srv.stats" doorbells) + $(stats_sum "$STEP/cli.stats" doorbells)))
  msgs=$(($(stats_sum "$STEP/srv.stats" tx_msgs) + $(stats_sum "$STEP/cli.stats" tx_msgs)))
  rec "$scen" xio "$size" doorbells_per_msg "$(div "$db" "$msgs")"
  XIO_NOTE=", $(div "$db" "$msgs") doorbells/msg"
  local fb
  fb=$(($(stats_sum "$STEP/srv.stats" fallback_conns) + $(stats_sum "$STEP/cli.stats" fallback_conns)))
  [ "$fb" -gt 0 ] && XIO_NOTE="$XIO_NOTE, WARNING $fb connection(s) fell back to TCP"
  if [ -n "$why" ]; then
    fail_step "NOT ACCELERATED: ${why#; }"
    return 1
  fi
  return 0
}

# nofile_opt LIM: prlimit's --nofile for a limit of LIM: soft and hard
# where the hard limit may be set so (CAP_SYS_RESOURCE past this
# machine's), else the soft one.
nofile_opt() {
  if xio_can_set_nofile "$1"; then echo "$1:$1"; else echo "$1:"; fi
}

# hold_start N LIM PORT PROTO [PER]: start the holders of N idle
# connections to 127.0.0.1:PORT (xio-bench-busyidle hold, greeting PROTO:
# echo, redis or http) on CPU 1, none when N is 0, each with RLIMIT_NOFILE
# LIM: one process, or as few as hold at most PER each (N split evenly);
# wait until all are set up. HOLD_PIDS are their pids. Under xio they write
# their counters to cli.stats, beside the busy client's. Returns 1 after a
# FAIL line, with none left running. (busyidle.sh, crowd.sh)
HOLD_PIDS=()
hold_start() {
  local n=$1 lim=$2 port=$3 proto=$4 per=${5:-$1} secs=180 k i share pid
  HOLD_PIDS=()
  [ "$n" -gt 0 ] || return 0
  k=$(((n + per - 1) / per))
  echo "soft RLIMIT_NOFILE $lim; $k holder(s)" >"$STEP/limits"
  for ((i = 1; i <= k; i++)); do
    # The first n % k holders take one more, so that the shares add up to N.
    share=$((n / k + (i <= n % k ? 1 : 0)))
    bg_start pid "$STEP/hold.$i.out" "$STEP/hold.$i.err" prlimit --nofile="$(nofile_opt "$lim")" \
      taskset -c 1 "${CLI_ENV[@]}" "$BUILD/bench/xio-bench-busyidle" hold --connect "tcp:127.0.0.1:$port" \
      --conns "$share" --proto "$proto" --ready "$STEP/held.$i"
    HOLD_PIDS+=("$pid")
  done
  for ((i = 1; i <= k; i++)); do
    if ! wait_file "$STEP/held.$i" "${HOLD_PIDS[i - 1]}" $secs; then
      hold_kill
      fail_step "holder $i of $k did not set up its connections (of $n in all) within $secs s"
      return 1
    fi
  done
  return 0
}

# hold_kill: the holders killed (after a failure).
hold_kill() {
  local pid
  for pid in "${HOLD_PIDS[@]}"; do bg_stop "$pid" KILL 2; done
  HOLD_PIDS=()
}

# hold_stop: the holders close their connections and exit normally
# (SIGTERM), so that their counters are written; each says how many of its
# connections had something to read by then, which a held idle connection
# never has: the server closed or reset it (a timeout, a limit), and the
# row did not have the idle load it names. Returns 1 after a FAIL line.
hold_stop() {
  local pid i=0 bad=0 f dropped=0 d
  for pid in "${HOLD_PIDS[@]}"; do
    bg_stop "$pid" TERM 60 || bad=$((bad + 1))
  done
  [ ${#HOLD_PIDS[@]} -gt 0 ] || return 0
  HOLD_PIDS=()
  if [ $bad -gt 0 ]; then
    fail_step "$bad holder(s) did not exit normally on SIGTERM (last status $BG_RC)"
    return 1
  fi
  for f in "$STEP"/hold.*.out; do
    i=$((i + 1))
    d=$(kv "$f" dropped)
    [ -n "$d" ] || { fail_step "holder $i wrote no result line"; return 1; }
    dropped=$((dropped + d))
  done
  if [ $dropped -gt 0 ]; then
    fail_step "$dropped of the idle connections were closed, reset or written to by the server while they were held: the row did not have its idle load"
    return 1
  fi
  return 0
}

# pair PROG SRV_CPU CLI_CPU LIMIT SRV_ARGS... -- CLI_ARGS...: one of the
# suite's own programs (xio-bench-PROG) as a server and a client in the
# current step: the server listens (tcp: a free port it reports; uds: a
# path), the client runs under timeout(1) for at most LIMIT seconds, the
# server must then exit by itself. CPU sets may be empty (no pinning).
# Results: $STEP/srv.out and $STEP/cli.out. Returns 1 after a FAIL line.
pair() {
  local prog=$BUILD/bench/xio-bench-$1 scpu=$2 ccpu=$3 limit=$4 spid rc
  shift 4
  local sargs=() cargs=() lep cep ts=() tc=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do sargs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  cargs=("$@")
  [ -n "$scpu" ] && ts=(taskset -c "$scpu")
  [ -n "$ccpu" ] && tc=(taskset -c "$ccpu")
  if [ "$TRANSPORT" = uds ]; then
    lep=uds:$STEP/s.sock
  else
    lep=tcp:127.0.0.1:0
  fi
  bg_start spid "$STEP/srv.out" "$STEP/srv.err" "${ts[@]}" "${SRV_ENV[@]}" "$prog" server \
    --listen "$lep" --ready "$STEP/ready" "${sargs[@]}"
  if ! wait_file "$STEP/ready" "$spid" 10; then
    bg_stop "$spid" KILL 2
    fail_step "the server did not start listening within 10 s"
    return 1
  fi
  if [ "$TRANSPORT" = uds ]; then cep=$lep; else cep=tcp:127.0.0.1:$(cat "$STEP/ready"); fi
  timeout -k 2 "$limit" "${tc[@]}" "${CLI_ENV[@]}" "$prog" client --connect "$cep" "${cargs[@]}" \
    >"$STEP/cli.out" 2>"$STEP/cli.err" </dev/null
  rc=$?
  if [ $rc -ne 0 ]; then
    bg_stop "$spid" KILL 2
    case $rc in
      124 | 137) fail_step "the client did not finish within ${limit} s (timeout; a hang?)" ;;
      *) fail_step "the client exited with status $rc" ;;
    esac
    return 1
  fi
  # The client is done, so the server ends by itself (end of stream or the
  # stop request); one that does not is stuck.
  if ! bg_stop "$spid" - 10; then
    fail_step "the server did not exit normally after the client finished (status $BG_RC)"
    return 1
  fi
  return 0
}
