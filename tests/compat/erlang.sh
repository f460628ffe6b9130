#!/usr/bin/env bash
# erlang.sh BUILD_DIR - the Erlang VM (erl -noshell +K true) at both ends,
# under the shim: an echo server on gen_tcp (tests/compat/erlang/xfer.erl,
# compiled here with erlc) whose VM waits for every socket in its own poll
# thread and runs the connections' processes on its scheduler threads. Each
# connection is served one of four ways in turn: passive (gen_tcp:recv),
# {active, once}, {active, 32} (with tcp_passive re-arming) and
# {active, true}. Clients: a python3 client with 4 threads of 2 MiB, then
# three erl VMs at once, 4 connections of 2 MiB each (a sender process
# writes while the connection's process reads the echo). Every echo and the
# server's MD5 of what it received are compared with what was sent; the
# server, stopped by SIGTERM (its handler prints the counts, then
# init:stop()), must have served every connection without an error.
: "${COMPAT_TIMEOUT:=100}"
. "$(dirname "$0")/lib.sh"
compat_init erlang "$@"
srv=""   # the server's pid, set by start_server
src=$(cd "$(dirname "$0")/erlang" && pwd)
if ! command -v erl >/dev/null || ! command -v erlc >/dev/null; then
  fail "erl/erlc are not installed (tools/deps: erlang-base)"
fi

# how RC: a client's exit status in words.
how() {
  case $1 in
    124 | 137) echo "timed out (exit $1)" ;;
    1[3-5][0-9]) echo "killed by signal $(($1 - 128)) (exit $1)" ;;
    *) echo "exit $1" ;;
  esac
}

# +K true: kernel poll (epoll; the default since OTP 21, spelled out as
# deployments do); two schedulers for the two cores.
ERL=(erl -noshell +K true +S 2:2 -pa "$WORK/ebin")
mkdir -p "$WORK/ebin"
plain 60 erlc -o "$WORK/ebin" "$src/xfer.erl" >"$WORK/erlc.log" 2>&1 ||
  fail "erlc exited $?: $(tail -5 "$WORK/erlc.log")"

port=$(free_port)
start_server srv "$WORK/server.log" "${ERL[@]}" -run xfer server "$port"
wait_port "$port" "$srv" 20 || fail "the Erlang server did not start: $(tail -3 "$WORK/server.log")"

size=$((2 * 1048576))
# python3 first: the Erlang VM at the server end only.
xio_client 45 python3 "$src/xfer_client.py" "$port" 4 $size >"$WORK/pyclient.log" 2>&1 ||
  fail "python3 client: $(how $?): $(tail -n 6 "$WORK/pyclient.log")"
cat "$WORK/pyclient.log"

# Then Erlang at both ends: three client VMs at once.
vms=3 per_vm=4
pids=()
for ((v = 0; v < vms; v++)); do
  xio_client 45 "${ERL[@]}" -run xfer client "$port" $per_vm $size >"$WORK/client$v.log" 2>&1 &
  pids+=($!)
  track $!
done
for ((v = 0; v < vms; v++)); do
  wait "${pids[v]}" || fail "erl client $v of $vms: $(how $?): $(tail -n 6 "$WORK/client$v.log")"
  cat "$WORK/client$v.log"
done

stop_server "$srv" TERM 10
conns=$((vms * per_vm + 4))
bytes=$((conns * size))
grep -q "^connections $conns, closed $conns, echoed $bytes bytes, errors 0\$" "$WORK/server.log" ||
  fail "the Erlang server: want 'connections $conns, closed $conns, echoed $bytes bytes, errors 0', its log says: $(tail -n 4 "$WORK/server.log")"
grep '^connections ' "$WORK/server.log" | sed 's/^/  xfer server: /'

# Every payload byte went to the server, and came back, over shared memory.
require_stat server rx_bytes -ge $bytes
require_stat client rx_bytes -ge $bytes
compat_finish
