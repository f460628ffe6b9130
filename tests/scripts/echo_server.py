#!/usr/bin/env python3
# echo_server.py PORTFILE - a TCP echo server on 127.0.0.1 and a free port,
# written to PORTFILE once it listens; a thread per connection. Runs until
# SIGTERM, which ends it normally with status 43 (so that the shim's
# counters are written, and a wrapper's passing of the signal shows).
import os, signal, socket, sys, threading
signal.signal(signal.SIGTERM, lambda *a: sys.exit(43))


def echo(c):
    with c:
        while True:
            b = c.recv(65536)
            if not b:
                return
            c.sendall(b)


s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
