#!/usr/bin/env bash
# socat.sh BUILD_DIR - an echo server made of socat (TCP4-LISTEN with fork:
# one child per connection, which runs `cat` over a socketpair) and a socat
# client that sends a 16 MiB random file and reads it back; the client's
# end of input half-closes the connection (shutdown SHUT_WR), the echo
# drains and closes. sha256 compared. Both socats under the shim.
. "$(dirname "$0")/lib.sh"
compat_init socat "$@"
srv=""   # the server's pid, set by start_server
command -v socat >/dev/null || fail "socat is not installed (tools/deps)"

port=$(free_port)
head -c $((16 * 1048576)) /dev/urandom >"$WORK/in.bin"
start_server srv "$WORK/socat-server.log" socat TCP4-LISTEN:"$port",bind=127.0.0.1,fork,reuseaddr EXEC:cat
wait_port "$port" "$srv" || fail "socat server did not start"

xio_client 40 socat -t 5 - TCP4:127.0.0.1:"$port" <"$WORK/in.bin" >"$WORK/out.bin" 2>"$WORK/socat-client.log" ||
  fail "socat client exited $?: $(tail -2 "$WORK/socat-client.log")"
[ "$(sha "$WORK/in.bin")" = "$(sha "$WORK/out.bin")" ] ||
  fail "echo differs: sent 16777216 bytes, got $(stat -c %s "$WORK/out.bin")"
# A second, small exchange: the fork server keeps accepting.
echo "second connection" | xio_client 10 socat -t 5 - TCP4:127.0.0.1:"$port" >"$WORK/small.out" ||
  fail "second socat client exited $?"
[ "$(cat "$WORK/small.out")" = "second connection" ] || fail "second echo: '$(cat "$WORK/small.out")'"

stop_server "$srv" TERM 10
# The whole 16 MiB, both ways.
require_stat server rx_bytes -ge 16777216
require_stat client rx_bytes -ge 16777216
compat_finish
