#!/usr/bin/env bash
# monitor_cli.sh MONITOR - the monitor's command line: bad configurations
# are refused naming file, line and token; a second monitor on a live socket
# is refused; SIGTERM stops it cleanly and removes the socket.
set -u
mon=$1
dir=$(mktemp -d /tmp/xio-cli-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

printf 'default deny\nallow client 127.0.0.1 port 80x\n' >"$dir/bad.conf"
out=$("$mon" --config "$dir/bad.conf" --check-config 2>&1); rc=$?
[ $rc -eq 2 ] || fail "bad config: exit $rc, want 2"
echo "$out" | grep -q "bad.conf:2: .*'80x'" || fail "bad config message: $out"

printf 'segment-size 3M\n' >"$dir/size.conf"
out=$("$mon" --config "$dir/size.conf" --check-config 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "size.conf:1:" || fail "bad size: exit $rc: $out"

out=$("$mon" --config "$dir/missing.conf" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "missing.conf" || fail "missing file: exit $rc: $out"

out=$("$mon" --hugepages sometimes 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "'sometimes'" || fail "bad --hugepages: exit $rc: $out"

out=$("$mon" --bogus 2>&1); rc=$?
[ $rc -eq 2 ] || fail "unknown option: exit $rc"

printf '# ok\ndefault deny\nallow client 127.0.0.0/8 server 127.0.0.0/8 port 1024-65535\n' \
  >"$dir/good.conf"
"$mon" --config "$dir/good.conf" --check-config >/dev/null || fail "good config refused"

sock=$dir/m.sock
"$mon" --foreground --socket "$sock" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || fail "monitor did not come up"
out=$("$mon" --foreground --socket "$sock" 2>&1); rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q "another monitor" || fail "second monitor: exit $rc: $out"
kill -TERM $pid
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
kill -0 $pid 2>/dev/null && { kill -9 $pid; fail "monitor ignored SIGTERM"; }
wait $pid; rc=$?
[ $rc -eq 0 ] || fail "monitor exit status $rc after SIGTERM"
[ -e "$sock" ] && fail "socket left behind"
grep -q "shutting down" "$dir/log" || fail "no shutdown line in the log"

# A stale socket file (no monitor behind it) is replaced.
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind(sys.argv[1])" "$sock"
"$mon" --socket "$sock" --log "$dir/log2" || fail "daemon start over a stale socket"
[ -S "$sock" ] || fail "daemon: no socket"
dpid=$(grep -o 'xio-monitor\[[0-9]*\]' "$dir/log2" | head -1 | tr -dc 0-9)
[ -n "$dpid" ] || fail "daemon: no pid in log"
kill -TERM "$dpid"
for _ in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.05; done
echo "1 passed, 0 failed"
