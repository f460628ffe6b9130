#!/usr/bin/env bash
# shim_env.sh BUILD_DIR - the shim's behaviour around the data path:
#  1. loading it into a program that makes no connection opens no socket
#     and starts no thread;
#  2. a malformed XIO_ALLOW is reported on stderr with the bad token, and
#     the program still works, on the kernel (nothing accelerated);
#  3. with no monitor, connections work over plain TCP and count as
#     fallbacks;
#  4. with a monitor and the default allowlist, the same pair is
#     accelerated (so 2 and 3 are not passing for a shim that never works);
#  5. `xio-monitor --status` reads the counters of a live connection from
#     its segment.
set -u
build=$(cd "$1" && pwd)
shim=$build/preload/libxio_preload.so
. "$(dirname "$0")/../../tools/lib.sh"
dir=$(mktemp -d /tmp/xio-shimenv-XXXXXX)
chmod 755 "$dir"
spid=""
cleanup() { [ -n "$spid" ] && kill "$spid" 2>/dev/null; xio_monitor_stop; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

# 1. No socket, no thread at load.
LD_PRELOAD=$shim strace -f -qq -e trace=socket,connect,clone,clone3 -o "$dir/st" /bin/true ||
  fail "/bin/true under the shim"
grep -E 'socket|connect|clone' "$dir/st" && fail "the shim opened a socket or a thread at load"

# An echo pair on a free port: server under the shim, client under the shim.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pair() { # pair TAG [env...]: echo 256 KiB through socat, compare
  local tag=$1; shift
  rm -f "$dir/$tag.stats"
  env "$@" LD_PRELOAD="$shim" XIO_STATS="$dir/$tag.stats" \
    socat TCP4-LISTEN:"$port",bind=127.0.0.1,reuseaddr EXEC:cat 2>"$dir/$tag.server.err" &
  spid=$!
  for _ in $(seq 100); do grep -q ":$(printf %04X "$port") 00000000:0000 0A" /proc/net/tcp && break; sleep 0.05; done
  head -c 262144 /dev/urandom >"$dir/in"
  env "$@" LD_PRELOAD="$shim" XIO_STATS="$dir/$tag.stats" timeout 20 \
    socat -t 2 - TCP4:127.0.0.1:"$port" <"$dir/in" >"$dir/out" 2>"$dir/$tag.client.err" ||
    fail "$tag: client failed: $(cat "$dir/$tag.client.err")"
  wait "$spid" 2>/dev/null; spid=""
  cmp -s "$dir/in" "$dir/out" || fail "$tag: echo differs"
}
sum() { awk -v k="$2" '{ for (i = 2; i <= NF; i++) { split($i, a, "="); if (a[1] == k) s += a[2] } } END { print s + 0 }' "$1"; }

# 2. Malformed allowlist.
xio_monitor_start "$build" || fail "monitor"
pair badallow XIO_ALLOW="127.0.0.1,10.0.0.0/40"
grep -q "bad token '10.0.0.0/40'" "$dir/badallow.client.err" ||
  fail "no message naming the bad token: $(cat "$dir/badallow.client.err")"
[ "$(sum "$dir/badallow.stats" accel_conns)" = 0 ] || fail "accelerated despite a bad XIO_ALLOW"

# 4. (before 3, with the same monitor) The default allowlist accelerates.
pair good
[ "$(sum "$dir/good.stats" accel_conns)" -ge 2 ] || fail "default: not accelerated: $(cat "$dir/good.stats")"
[ "$(sum "$dir/good.stats" rx_bytes)" -ge 524288 ] || fail "default: bytes not over xio: $(cat "$dir/good.stats")"

# 5. The monitor reads the per-connection counters of live connections.
LD_PRELOAD="$shim" socat TCP4-LISTEN:"$port",bind=127.0.0.1,reuseaddr EXEC:cat 2>/dev/null &
spid=$!
for _ in $(seq 100); do grep -q ":$(printf %04X "$port") 00000000:0000 0A" /proc/net/tcp && break; sleep 0.05; done
(head -c 300000 /dev/zero; sleep 3) | LD_PRELOAD="$shim" timeout 10 socat - TCP4:127.0.0.1:"$port" >/dev/null &
cpid=$!
live=0
for _ in $(seq 40); do
  live=$("$build/monitor/xio-monitor" --status --socket "$XIO_MONITOR_SOCK" | awk '$1 == "live_tx_bytes" { print $2 }')
  [ "${live:-0}" -ge 600000 ] && break
  sleep 0.05
done
[ "${live:-0}" -ge 600000 ] || fail "monitor --status: live_tx_bytes ${live:-none}, want >= 600000"
kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null
kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; spid=""
xio_monitor_stop

# 3. No monitor at all.
pair nomon XIO_MONITOR_SOCK="$dir/nobody-here.sock"
[ "$(sum "$dir/nomon.stats" accel_conns)" = 0 ] || fail "accelerated with no monitor"
[ "$(sum "$dir/nomon.stats" fallback_conns)" -ge 1 ] || fail "no fallback counted: $(cat "$dir/nomon.stats")"
[ -s "$dir/nomon.client.err" ] && fail "no monitor should be silent: $(cat "$dir/nomon.client.err")"
echo "1 passed, 0 failed"
