#!/usr/bin/env bash
# memcached.sh BUILD_DIR - memcached (dropping root to the memcache user,
# 4 worker threads handed connections by the listener thread) and a python3
# client over a plain socket, both under the shim: 1,000 keys set one by
# one then fetched with one multi-get, a 512 KiB binary value, incr, and
# the text protocol's "stats" counters.
. "$(dirname "$0")/lib.sh"
compat_init memcached "$@"
srv=""   # the server's pid, set by start_server
mc=$(command -v memcached || echo /usr/bin/memcached)
[ -x "$mc" ] || fail "memcached is not installed (tools/deps)"

port=$(free_port)
args=(-l 127.0.0.1 -p "$port" -U 0 -m 64 -t 4 -c 256)
if [ "$(id -u)" = 0 ]; then
  if id memcache >/dev/null 2>&1; then args+=(-u memcache); else args+=(-u nobody); fi
fi
start_server srv "$WORK/memcached.log" "$mc" "${args[@]}"
wait_port "$port" "$srv" || fail "memcached did not start"

cat >"$WORK/client.py" <<'EOF'
import hashlib, os, socket, sys

port = int(sys.argv[1])
P = sys.argv[2].encode() if len(sys.argv) > 2 else b""   # key prefix
alone = len(sys.argv) <= 2
s = socket.create_connection(("127.0.0.1", port), timeout=20)
buf = b""

def readline():
    global buf
    while b"\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise SystemExit("connection closed by memcached")
        buf += d
    line, buf = buf.split(b"\r\n", 1)
    return line

def readexact(n):
    global buf
    while len(buf) < n:
        d = s.recv(1 << 20)
        if not d:
            raise SystemExit("connection closed by memcached")
        buf += d
    out, buf = buf[:n], buf[n:]
    return out

def setv(key, val, flags=0):
    s.sendall(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(val), val))
    r = readline()
    if r != b"STORED":
        raise SystemExit("set %r: %r" % (key, r))

def get(*keys):
    s.sendall(b"get " + b" ".join(keys) + b"\r\n")
    out = {}
    while True:
        line = readline()
        if line == b"END":
            return out
        parts = line.split()
        if parts[0] != b"VALUE":
            raise SystemExit("get: %r" % line)
        n = int(parts[3])
        out[parts[1]] = readexact(n)
        if readexact(2) != b"\r\n":
            raise SystemExit("get: bad trailer")

# 1,000 keys, one request each, then one multi-get of all of them.
vals = {P + b"k%04d" % i: (b"v%d-" % i) * (1 + i % 50) for i in range(1000)}
for k, v in vals.items():
    setv(k, v, flags=7)
got = get(*vals.keys())
if got != vals:
    raise SystemExit("multi-get: %d of 1000 keys right" % sum(got.get(k) == v for k, v in vals.items()))
# and each one singly for a sample
for i in range(0, 1000, 37):
    k = P + b"k%04d" % i
    if get(k) != {k: vals[k]}:
        raise SystemExit("get %r" % k)

# A 512 KiB binary value.
big = os.urandom(512 * 1024)
setv(P + b"big", big)
back = get(P + b"big")[P + b"big"]
if hashlib.sha256(back).digest() != hashlib.sha256(big).digest():
    raise SystemExit("big value differs (%d bytes back)" % len(back))

# incr, delete, stats
setv(P + b"n", b"10")
s.sendall(b"incr " + P + b"n 32\r\n")
if readline() != b"42":
    raise SystemExit("incr")
s.sendall(b"delete " + P + b"k0000\r\n")
if readline() != b"DELETED":
    raise SystemExit("delete")
s.sendall(b"stats\r\n")
st = {}
while True:
    line = readline()
    if line == b"END":
        break
    _, k, v = line.split(b" ", 2)
    st[k] = v
if alone and int(st[b"curr_items"]) != 1001:
    raise SystemExit("stats curr_items %s, want 1001" % st[b"curr_items"])
s.sendall(b"quit\r\n")
s.close()
print("memcached client ok: 1000 keys, 512 KiB value, get_hits=%s" % st[b"get_hits"].decode())
EOF

xio_client 30 python3 "$WORK/client.py" "$port" || fail "client exited $?"
# A second client connection at the same time as a third: two worker threads.
xio_client 30 python3 "$WORK/client.py" "$port" a >/dev/null & c1=$!
xio_client 30 python3 "$WORK/client.py" "$port" b >/dev/null & c2=$!
track "$c1" "$c2"
wait "$c1" || fail "concurrent client 1 exited $?"
wait "$c2" || fail "concurrent client 2 exited $?"

stop_server "$srv" TERM
# Three clients each stored and fetched 512 KiB.
require_stat server rx_bytes -ge $((3 * 524288))
require_stat client rx_bytes -ge $((3 * 524288))
compat_finish
