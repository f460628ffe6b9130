#!/usr/bin/env python3
"""xfer_client.py PORT CONNS BYTES - the client side of xfer.erl's protocol
in python3: CONNS connections at once, one thread each, modes P A N T in
turn; each sends BYTES random bytes from a second thread while it reads the
echo, then the server's MD5; both compared with what was sent. Every
blocking call times out after 15 s; the exit status is 0 only when every
connection was right, 1 otherwise (with where each failed one stood)."""
import hashlib
import os
import socket
import struct
import sys
import threading

STALL = 15.0
MODES = b"PANT"


def conn(port, i, size, errors):
    mode = MODES[i % 4]
    data = os.urandom(size)
    want = hashlib.md5(data).digest()
    state = {"sent": 0, "echoed": 0, "send_error": None}
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.settimeout(STALL)
        s.sendall(struct.pack(">BQ", mode, size))

        def sender():
            off, k = 0, 0
            try:
                while off < size:
                    n = min(size - off, 1 + (k * 104729 + i * 7919) % 200000)
                    s.sendall(data[off:off + n])
                    off += n
                    k += 1
                    state["sent"] = off
            except OSError as e:
                state["send_error"] = repr(e)

        t = threading.Thread(target=sender)
        t.start()
        h = hashlib.md5()
        tail = b""
        while state["echoed"] < size or len(tail) < 16:
            d = s.recv(262144)
            if not d:
                raise OSError("EOF")
            left = size - state["echoed"]
            h.update(d[:left])
            state["echoed"] += min(left, len(d))
            tail += d[left:] if len(d) > left else b""
        t.join(STALL)
        if t.is_alive() or state["send_error"]:
            raise OSError("sender: %s" % (state["send_error"] or "still sending"))
        if h.digest() != want:
            raise OSError("echo differs from what was sent (md5)")
        if tail != want:
            raise OSError("server's md5 differs (or %d stray bytes)" % (len(tail) - 16))
        if s.recv(1) != b"":
            raise OSError("bytes after the md5")
        s.close()
    except Exception as e:  # noqa: BLE001 - every failure is reported
        errors.append("conn %d (mode %c): %r; sent %d of %d, echoed back %d"
                      % (i, mode, e, state["sent"], size, state["echoed"]))


def main():
    port, conns, size = (int(a) for a in sys.argv[1:4])
    errors = []
    threads = [threading.Thread(target=conn, args=(port, i, size, errors)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        print("xfer_client.py: " + e, file=sys.stderr)
    if errors:
        sys.exit(1)
    print("xfer_client.py ok: %d x %d bytes echoed (modes P A N T in turn)" % (conns, size))


if __name__ == "__main__":
    main()
