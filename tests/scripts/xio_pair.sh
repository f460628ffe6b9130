# shellcheck shell=bash
# xio_pair.sh - sourced by the package tests: xio_pair_check XIO DIR runs
# the echo server and client (echo_server.py, echo_client.py) under
# `XIO run`, with no monitor running on $XIO_MONITOR_SOCK (so xio run
# starts one), and checks that `XIO stat --json` shows their connection on
# shared memory with both programs and 100000 bytes each way. Prints why
# and returns 1 on failure; stops what it started, by pid.
xio_pair_check() {
  local xio=$1 dir=$2 here py srv cli rc=0
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  py=/usr/bin/python3
  [ -x $py ] || py=$(command -v python3)
  "$xio" run -- $py "$here/echo_server.py" "$dir/port" >"$dir/srv.out" 2>"$dir/srv.err" &
  srv=$!
  for _ in $(seq 200); do [ -e "$dir/port" ] && break; sleep 0.05; done
  if [ ! -e "$dir/port" ]; then
    echo "the echo server did not start under $xio run: $(cat "$dir/srv.err")"
    kill -TERM $srv 2>/dev/null
    return 1
  fi
  "$xio" run -- $py "$here/echo_client.py" "$(cat "$dir/port")" "$dir/ready" "$dir/done" \
    >"$dir/cli.out" 2>"$dir/cli.err" &
  cli=$!
  for _ in $(seq 400); do [ -e "$dir/ready" ] && break; sleep 0.05; done
  "$xio" stat --json >"$dir/stat.json" 2>"$dir/stat.err" || rc=1
  [ $rc = 0 ] && $py - "$dir/stat.json" "$(cat "$dir/port")" <<'PY' || rc=1
import json, sys
t = json.load(open(sys.argv[1]))
c = [c for c in t["connections"] if c["server"]["port"] == int(sys.argv[2])]
assert len(c) == 1 and c[0]["transport"] == "shm", c
c = c[0]
assert c["client"]["program"] == "python3" and c["server"]["program"] == "python3", c
assert c["bytes"] == {"c2s": 100000, "s2c": 100000}, c["bytes"]
PY
  [ $rc = 0 ] || echo "xio stat --json does not show the connection on shared memory: $(cat "$dir/stat.json" "$dir/stat.err" "$dir/srv.err" "$dir/cli.err")"
  touch "$dir/done"
  wait $cli || { echo "the client under xio run failed: $(cat "$dir/cli.err")"; rc=1; }
  kill -TERM $srv
  wait $srv
  [ $? = 43 ] || { echo "the server under xio run did not end on SIGTERM"; rc=1; }
  return $rc
}
