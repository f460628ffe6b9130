#!/usr/bin/env bash
# xio_cli.sh BUILD_DIR - the xio command: usage errors name the bad
# argument; `xio run` starts a monitor when none answers, and that monitor
# stops by itself once no program uses it; programs under `xio run` go over
# shared memory (their XIO_STATS counters); `xio stat`, `--json` and
# `--watch` show the live connection with both pids, programs and bytes, one
# left on TCP, one refused by a rule and one moved back to TCP (urgent data)
# with their reasons,
# and totals per process; a table longer than a page arrives whole;
# `xio monitor --pidfile` stops cleanly on SIGTERM; `xio check` reports each
# problem with what to do.
set -u
build=$1
here=$(cd "$(dirname "$0")" && pwd)
xio=$build/tools/xio/xio
dir=$(mktemp -d /tmp/xio-clitest-XXXXXX)
chmod 755 "$dir"
pids=()
# stop_all PID...: SIGTERM (xio run passes it on to its program), then
# SIGKILL for what is still there after 3 s.
stop_all() {
  local p left
  for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 60); do
    left=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && left=1; done
    [ $left = 0 ] && break
    sleep 0.05
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null; done
}
cleanup() {
  local m
  stop_all "${pids[@]}"
  [ -f "$dir/m2.pid" ] && stop_all "$(cat "$dir/m2.pid")"
  # The monitor xio run started stops by itself once its programs are gone;
  # after a failure, stop it here (its pid is in its log).
  m=$(grep -o 'xio-monitor\[[0-9]*\]' "$dir/monitor.log" 2>/dev/null | head -1 | tr -dc 0-9)
  [ -n "$m" ] && stop_all "$m"
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$dir"/*.err "$dir"/monitor.log; do [ -s "$f" ] && { echo "--- $f"; tail -5 "$f"; }; done; exit 1; }
export XIO_MONITOR_SOCK=$dir/monitor.sock
# The system's python, not a version manager's shell wrapper (its extra
# processes would add their own counters).
py=/usr/bin/python3
[ -x $py ] || py=$(command -v python3)

# wait_for FILE [SECS]: until FILE exists (default 10 s).
wait_for() {
  for _ in $(seq $((${2:-10} * 20))); do [ -e "$1" ] && return 0; sleep 0.05; done
  return 1
}

# --- usage -----------------------------------------------------------------
out=$("$xio" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "usage: xio" || fail "no command: exit $rc: $out"
out=$("$xio" frobnicate 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "'frobnicate'" || fail "unknown command: exit $rc: $out"
for c in run monitor stat check; do
  out=$("$xio" $c --help 2>&1); rc=$?
  [ $rc -eq 0 ] && echo "$out" | grep -q "usage: xio[- ]$c\|usage: xio-monitor" ||
    fail "$c --help: exit $rc: $out"
done
out=$("$xio" stat --count 3x 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "'3x'" || fail "stat --count 3x: exit $rc: $out"
out=$("$xio" stat --interval 0 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "'0'" || fail "stat --interval 0: exit $rc: $out"
out=$("$xio" stat --bogus 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "^xio stat: unrecognized option '--bogus'" ||
  fail "stat --bogus: exit $rc: $out"
out=$("$xio" check extra 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "'extra'" || fail "check extra: exit $rc: $out"
out=$("$xio" run --allow '127.0.0.1:http' -- true 2>&1); rc=$?
[ $rc -eq 125 ] && echo "$out" | grep -q "bad token '127.0.0.1:http'" ||
  fail "run --allow with a bad token: exit $rc: $out"
out=$("$xio" run 2>&1); rc=$?
[ $rc -eq 125 ] && echo "$out" | grep -q "no program" || fail "run without a program: exit $rc: $out"
[ -e "$XIO_MONITOR_SOCK" ] && fail "a usage error started a monitor"

# --- no monitor ------------------------------------------------------------
out=$("$xio" stat 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "no monitor answers on $XIO_MONITOR_SOCK" ||
  fail "stat without a monitor: exit $rc: $out"
out=$("$xio" check 2>&1); rc=$?
echo "$out" | grep -q "^warn  monitor: none on $XIO_MONITOR_SOCK; do: " ||
  fail "check without a monitor: $out"
echo "$out" | grep -q "^ok    shim: " || fail "check: the shim does not load: $out"
echo "$out" | grep -q "^ok    memfd: " || fail "check: memfd: $out"
echo "$out" | grep -E "^(warn|FAIL)" | grep -v "do: " && fail "check: a problem without a remedy: $out"

# --- xio run starts a monitor; programs go over shared memory --------------
"$xio" run --stats="$dir/srv.stats" -- $py "$here/echo_server.py" "$dir/port" \
  >"$dir/srv.out" 2>"$dir/srv.err" &
srv=$!; pids+=($srv)
wait_for "$dir/port" || fail "the server did not start"
grep -q "started one on $XIO_MONITOR_SOCK" "$dir/srv.err" || fail "xio run did not say it started a monitor"
"$xio" stat >/dev/null || fail "no monitor answers after xio run started one"
port=$(cat "$dir/port")
"$xio" run --stats="$dir/cli.stats" -- $py "$here/echo_client.py" "$port" "$dir/ready" "$dir/done" \
  >"$dir/cli.out" 2>"$dir/cli.err" &
cli=$!; pids+=($cli)
# A program whose server does not run xio: its connection stays on TCP.
$py "$here/echo_server.py" "$dir/port2" >/dev/null 2>"$dir/plain.err" &
plain=$!; pids+=($plain)
wait_for "$dir/port2" || fail "the plain server did not start"
"$xio" run -- $py "$here/echo_client.py" "$(cat "$dir/port2")" "$dir/ready2" "$dir/done" \
  >"$dir/cli2.out" 2>"$dir/cli2.err" &
cli2=$!; pids+=($cli2)
# A client that sends urgent data (MSG_OOB): its connection moves back to
# the kernel's TCP, which stat must show with the reason.
"$xio" run -- $py -c 'import os, socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"hello")
assert c.recv(5) == b"hello"
c.send(b"!", socket.MSG_OOB)
open(sys.argv[2], "w").close()
for _ in range(1200):
    if os.path.exists(sys.argv[3]):
        break
    time.sleep(0.05)' "$(cat "$dir/port")" "$dir/ready3" "$dir/done" >"$dir/cli3.out" 2>"$dir/cli3.err" &
cli3=$!; pids+=($cli3)
wait_for "$dir/ready" 20 || fail "the client did not finish its round trips"
wait_for "$dir/ready2" 20 || fail "the second client did not finish its round trips"
wait_for "$dir/ready3" 20 || fail "the urgent-data client did not get its echo: $(cat "$dir/cli3.err")"

"$xio" stat --json >"$dir/stat.json" || fail "stat --json: exit $?"
python3 - "$dir/stat.json" "$port" "$(cat "$dir/port2")" <<'PY' || fail "stat --json: $(cat "$dir/stat.json")"
import json, sys
t = json.load(open(sys.argv[1]))
port, port2 = int(sys.argv[2]), int(sys.argv[3])
shm_and_moved = [c for c in t["connections"] if c["server"]["port"] == port]
shm = [c for c in shm_and_moved if c["transport"] != "tcp-moved"]
assert len(shm) == 1, "one connection to the xio server on shm: %r" % shm
c = shm[0]
assert c["transport"] == "shm" and c["reason"] is None, c
assert c["client"]["program"] == "python3" and c["server"]["program"] == "python3", c
assert c["client"]["pid"] and c["server"]["pid"] and c["client"]["pid"] != c["server"]["pid"], c
assert c["client"]["address"] == "127.0.0.1" and c["client"]["port"] > 0, c
assert c["bytes"]["c2s"] == 100000 and c["bytes"]["s2c"] == 100000, c["bytes"]
assert c["msgs"]["c2s"] >= 100 and c["msgs"]["s2c"] >= 100, c["msgs"]
assert c["queued"] == {"c2s": 0, "s2c": 0} and c["buffer_bytes"] > 0, c
assert c["age_ms"] > 0, c
moved = [c for c in shm_and_moved if c["transport"] == "tcp-moved"]
assert len(moved) == 1 and moved[0]["reason"] == "oob", moved
assert moved[0]["bytes"]["c2s"] == 5 and moved[0]["bytes"]["s2c"] == 5, moved
tcp = [c for c in t["connections"] if c["server"]["port"] == port2]
assert len(tcp) == 1 and tcp[0]["transport"] == "tcp" and tcp[0]["reason"] == "no-listener", tcp
pids = {p["pid"]: p for p in t["processes"]}
s = pids[c["server"]["pid"]]
# Its two connections: one on shared memory, one moved back after 5 bytes
# each way over shared memory.
assert s["connections"] == 2 and s["shm"] == 1 and s["tcp"] == 1, s
assert s["bytes_out"] == 100005 and s["bytes_in"] == 100005, s
assert t["monitor"]["listeners"] >= 1, t["monitor"]
PY

out=$("$xio" stat) || fail "stat: exit $?"
echo "$out" | grep -E "127\.0\.0\.1:$port .*/python3 .*shm " | grep -q "97\.7K" ||
  fail "stat: no shm line with the bytes for port $port: $out"
echo "$out" | grep -q "127\.0\.0\.1:$(cat "$dir/port2") .*tcp:no-listener" ||
  fail "stat: no TCP line with its reason: $out"
echo "$out" | grep -q "127\.0\.0\.1:$port .*tcp-moved:oob " || fail "stat: no moved-back line: $out"
echo "$out" | grep -q "^PID .*BYTES OUT" || fail "stat: no totals per process: $out"

"$xio" stat --watch --count 2 --interval 0.2 >"$dir/watch.out" || fail "stat --watch: exit $?"
n=$(grep -o $'\033\[H\033\[J' "$dir/watch.out" | wc -l)
[ "$n" -eq 2 ] || fail "stat --watch --count 2: $n screen refreshes"
[ "$(grep -c 'shm ' "$dir/watch.out")" -eq 2 ] || fail "stat --watch: the table is not in each refresh"
"$xio" stat --json --watch --count 2 --interval 0.2 >"$dir/watch.json" || fail "stat --json --watch"
[ "$(wc -l <"$dir/watch.json")" -eq 2 ] || fail "stat --json --watch: not one document per line"
python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$dir/watch.json" ||
  fail "stat --json --watch: not JSON"

out=$("$xio" check 2>&1); rc=$?
echo "$out" | grep -q "^ok    monitor: answers on $XIO_MONITOR_SOCK" || fail "check with a monitor: $out"

# 40 more connections left on TCP: the table then takes more than one page
# (32 entries) of the monitor's answer, and every entry must arrive.
"$xio" run -- $py -c 'import socket, sys
for _ in range(40):
    socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()' "$(cat "$dir/port2")" ||
  fail "40 connections to the plain server"
"$xio" stat --json >"$dir/stat2.json" || fail "stat --json, 40 more: exit $?"
$py - "$dir/stat2.json" "$(cat "$dir/port2")" <<'PY' || fail "stat --json after 40 more: $(head -c 600 "$dir/stat2.json")"
import json, sys
t = json.load(open(sys.argv[1]))
ids = [c["id"] for c in t["connections"]]
assert ids == sorted(set(ids)), "ids in order, each once: %r" % ids
tcp = [c for c in t["connections"] if c["server"]["port"] == int(sys.argv[2])]
assert len(tcp) == 41, "41 TCP entries to the plain server, got %d" % len(tcp)
assert len(ids) == 43, "43 entries in all, got %d" % len(ids)
PY

touch "$dir/done"
wait $cli; rc=$?
[ $rc -eq 0 ] || fail "client under xio run: exit $rc"
wait $cli2 || fail "second client under xio run: exit $?"
wait $cli3 || fail "urgent-data client under xio run: exit $?"
kill -TERM $srv
wait $srv; rc=$?
[ $rc -eq 43 ] || fail "xio run did not pass SIGTERM on, or lost the status (exit $rc, want 43)"
kill $plain 2>/dev/null; wait $plain 2>/dev/null
for side in srv cli; do
  acc=$(grep -o 'accel_conns=[0-9]*' "$dir/$side.stats" | awk -F= '{ s += $2 } END { print s + 0 }')
  tx=$(grep -o 'tx_bytes=[0-9]*' "$dir/$side.stats" | awk -F= '{ s += $2 } END { print s + 0 }')
  # The server also echoed the urgent-data client's 5 bytes.
  want=100000
  [ $side = srv ] && want=100005
  [ "${acc:-0}" -ge 1 ] && [ "${tx:-0}" -eq $want ] ||
    fail "$side: not over shared memory: $(cat "$dir/$side.stats")"
done

# The monitor xio run started goes away once nothing uses it.
for _ in $(seq 200); do [ -e "$XIO_MONITOR_SOCK" ] || break; sleep 0.05; done
[ -e "$XIO_MONITOR_SOCK" ] && fail "the monitor xio run started is still there 10 s after the last program"
grep -q "no process for 2 s: stopping" "$dir/monitor.log" || fail "monitor log: no idle stop"
out=$("$xio" run -- /nonexistent/program 2>&1); rc=$?
[ $rc -eq 127 ] && echo "$out" | grep -q "cannot run '/nonexistent/program'" ||
  fail "run of a missing program: exit $rc: $out"

# --- xio monitor: pid file, clean stop -------------------------------------
sock2=$dir/m2.sock
printf 'default deny\n' >"$dir/deny.conf"
"$xio" monitor --socket "$sock2" --config "$dir/deny.conf" --pidfile "$dir/m2.pid" \
  --log "$dir/m2.log" || fail "xio monitor: exit $?"
[ -s "$dir/m2.pid" ] || fail "xio monitor: no pid file"
mpid=$(cat "$dir/m2.pid")
kill -0 "$mpid" || fail "xio monitor: pid $mpid from the pid file is not running"
# Its rules refuse everything: both ends run xio, and the connection stays
# on TCP, shown with that reason and both programs.
(
  export XIO_MONITOR_SOCK=$sock2
  "$xio" run -- $py "$here/echo_server.py" "$dir/port4" >/dev/null 2>"$dir/srv4.err" &
  srv4=$!
  wait_for "$dir/port4" || { kill -TERM $srv4; exit 1; }
  "$xio" run -- $py "$here/echo_client.py" "$(cat "$dir/port4")" "$dir/ready4" "$dir/done4" \
    >/dev/null 2>"$dir/cli4.err" &
  cli4=$!
  wait_for "$dir/ready4" 20
  "$xio" stat --json >"$dir/stat4.json"
  touch "$dir/done4"
  wait $cli4
  kill -TERM $srv4
  wait $srv4
  exit 0
) || fail "the echo pair under a monitor that denies: $(cat "$dir/srv4.err" "$dir/cli4.err")"
$py - "$dir/stat4.json" "$(cat "$dir/port4")" <<'PY' || fail "stat --json, refused by a rule: $(cat "$dir/stat4.json")"
import json, sys
t = json.load(open(sys.argv[1]))
c = [c for c in t["connections"] if c["server"]["port"] == int(sys.argv[2])]
assert len(c) == 1 and c[0]["transport"] == "tcp" and c[0]["reason"] == "acl", c
assert c[0]["client"]["program"] == "python3" and c[0]["server"]["program"] == "python3", c
assert c[0]["client"]["pid"] and c[0]["server"]["pid"], c
PY
kill -TERM "$mpid"
for _ in $(seq 100); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$mpid" 2>/dev/null && fail "xio monitor ignored SIGTERM"
[ -e "$sock2" ] && fail "xio monitor left its socket"
[ -e "$dir/m2.pid" ] && fail "xio monitor left its pid file"
out=$("$xio" monitor --idle-exit soon 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "'soon'" || fail "monitor --idle-exit soon: exit $rc: $out"

# A socket file nobody answers on: check says so and what to do.
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind(sys.argv[1])" "$dir/stale.sock"
out=$(XIO_MONITOR_SOCK=$dir/stale.sock "$xio" check 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "^FAIL  monitor: .*left over.*do: " ||
  fail "check with a stale socket: exit $rc: $out"
echo "1 passed, 0 failed"
