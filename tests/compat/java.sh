#!/usr/bin/env bash
# java.sh BUILD_DIR - OpenJDK 17 at both ends, under the shim: the threads
# and event loops of real JVM servers (sources in tests/compat/java/,
# compiled here with javac; no build system, no downloads).
#  1. com.sun.net.httpserver.HttpServer (HttpBlobServer): a dispatcher
#     thread in an epoll Selector, 4 worker threads doing blocking writes
#     of whole 6 MiB and 3 MiB responses, keep-alive connections handed
#     back to the selector after each exchange. Clients: SlowHttpClient (4
#     java.nio connections with their own Selectors, 2 rounds of 3 files
#     each, reading in bursts of 256 KiB with 3 ms pauses), and curl at a
#     limited rate. Every body by SHA-256; the server's count of responses.
#  2. WakeupEchoServer: one event-loop thread asleep in select() with no
#     timeout while an acceptor thread hands it new channels (queue +
#     wakeup(), or register() from the acceptor + wakeup()). Clients:
#     EchoClient (java.net.Socket, writer and reader threads), first one
#     connection of 4 MiB to an idle loop, then 4 of 3 MiB 150 ms apart;
#     echoes by SHA-256, the server's counts of connections and bytes.
# Each client is bounded and says where it stalled; the servers stop on
# SIGTERM through their shutdown hooks (which need the selector's wakeup
# too) and must exit by themselves.
: "${COMPAT_TIMEOUT:=100}"
. "$(dirname "$0")/lib.sh"
compat_init java "$@"
srv=""   # the server's pid, set by start_server
src=$(cd "$(dirname "$0")/java" && pwd)
if ! command -v java >/dev/null || ! command -v javac >/dev/null; then
  fail "java/javac are not installed (tools/deps: openjdk-17-jdk-headless)"
fi

# Small, quick JVMs: two cores are shared; no hsperfdata files in /tmp; a
# JVM that crashes writes its report into WORK (its log names the file).
JAVA=(java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData -Xmx256m
      -XX:ErrorFile="$WORK/hs_err_%p.txt" -cp "$WORK/classes")

# how RC: a client's exit status in words.
how() {
  case $1 in
    124 | 137) echo "timed out (exit $1)" ;;
    134) echo "crashed: SIGABRT (exit 134; a JVM aborts so on a fatal signal in native code)" ;;
    1[3-5][0-9]) echo "killed by signal $(($1 - 128)) (exit $1)" ;;
    *) echo "exit $1" ;;
  esac
}
# crash_frame: the native frame of a JVM crash report in WORK, if any.
crash_frame() {
  local f
  for f in "$WORK"/hs_err_*.txt; do
    [ -f "$f" ] || continue
    echo "; ${f##*/}: $(grep -m1 -A1 '^# Problematic frame:' "$f" | tail -n 1) $(grep -m1 '^siginfo:' "$f")"
  done
}

mkdir -p "$WORK/classes" "$WORK/www"
plain 60 javac -d "$WORK/classes" "$src"/*.java >"$WORK/javac.log" 2>&1 ||
  fail "javac exited $?: $(tail -5 "$WORK/javac.log")"

# --- 1. HttpServer: worker threads' blocking writes, slow bursty readers.
head -c $((6 * 1048576)) /dev/urandom >"$WORK/www/big.bin"
head -c $((3 * 1048576 + 12345)) /dev/urandom >"$WORK/www/odd.bin"
echo "small file" >"$WORK/www/small.txt"
port=$(free_port)
start_server srv "$WORK/httpserver.log" "${JAVA[@]}" HttpBlobServer "$port" "$WORK/www" 4
wait_port "$port" "$srv" 20 || fail "HttpBlobServer did not start"
url=http://127.0.0.1:$port

conns=4 rounds=2
xio_client 40 "${JAVA[@]}" SlowHttpClient "$port" "$WORK/www" $conns $rounds big.bin odd.bin small.txt \
  >"$WORK/slowclient.log" 2>&1 || fail "SlowHttpClient: $(how $?): $(tail -n 5 "$WORK/slowclient.log")$(crash_frame)"
cat "$WORK/slowclient.log"
http_bytes=$((conns * rounds * ($(stat -c %s "$WORK/www/big.bin") + $(stat -c %s "$WORK/www/odd.bin"))))

xio_client 20 curl -sS -f --limit-rate 32M -o "$WORK/big.out" "$url/p/big.bin" ||
  fail "curl --limit-rate /p/big.bin: $(how $?)"
[ "$(sha "$WORK/www/big.bin")" = "$(sha "$WORK/big.out")" ] ||
  fail "curl /p/big.bin differs ($(stat -c %s "$WORK/big.out") bytes back)"
code=$(xio_client 10 curl -sS -o /dev/null -w '%{http_code}' "$url/f/missing") || true
[ "$code" = 404 ] || fail "GET /f/missing: HTTP $code, want 404"
http_bytes=$((http_bytes + $(stat -c %s "$WORK/www/big.bin")))

stop_server "$srv" TERM 10
want=$((conns * rounds * 3 + 1))
grep -q "^served $want responses, [0-9]* bytes, 0 errors\$" "$WORK/httpserver.log" ||
  fail "HttpBlobServer: want 'served $want responses, ..., 0 errors', log says: $(tail -3 "$WORK/httpserver.log")"
grep "^served " "$WORK/httpserver.log" | sed 's/^/  HttpBlobServer: /'

# --- 2. A Selector loop asleep in select() while another thread hands it
# new connections.
port=$(free_port)
start_server srv "$WORK/wakeup.log" "${JAVA[@]}" WakeupEchoServer "$port"
wait_port "$port" "$srv" 20 || fail "WakeupEchoServer did not start"
sleep 0.3   # the loop is in select() with no channel yet
xio_client 30 "${JAVA[@]}" EchoClient "$port" 1 $((4 * 1048576)) 0 >"$WORK/echo1.log" 2>&1 ||
  fail "EchoClient (1 connection to an idle loop): $(how $?): $(grep -v "^#" "$WORK/echo1.log" | tail -n 6)$(crash_frame)"
cat "$WORK/echo1.log"
xio_client 30 "${JAVA[@]}" EchoClient "$port" 4 $((3 * 1048576)) 150 >"$WORK/echo4.log" 2>&1 ||
  fail "EchoClient (4 connections, 150 ms apart): $(how $?): $(grep -v "^#" "$WORK/echo4.log" | tail -n 6)$(crash_frame)"
cat "$WORK/echo4.log"
echo_bytes=$((4 * 1048576 + 4 * 3 * 1048576))

stop_server "$srv" TERM 10
grep -q "^accepted 5, closed 5, echoed $echo_bytes bytes\$" "$WORK/wakeup.log" ||
  fail "WakeupEchoServer: want 'accepted 5, closed 5, echoed $echo_bytes bytes', log says: $(tail -3 "$WORK/wakeup.log")"
grep "^accepted " "$WORK/wakeup.log" | sed 's/^/  WakeupEchoServer: /'

# The responses and the echoes came to the clients over shared memory, and
# what was echoed reached the server that way.
require_stat client rx_bytes -ge $((http_bytes + echo_bytes))
require_stat server rx_bytes -ge $echo_bytes
compat_finish
