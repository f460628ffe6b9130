#!/usr/bin/env python3
# echo_client.py PORT READY DONE - 100 round trips of 1000 bytes with the
# echo server, then creates READY and keeps the connection open until DONE
# exists (at most 60 s).
import os, socket, sys, time
port, ready, done = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = socket.create_connection(("127.0.0.1", port))
for i in range(100):
    c.sendall(b"x" * 1000)
    got = 0
    while got < 1000:
        got += len(c.recv(1000 - got))
open(ready, "w").close()
for _ in range(1200):         # at most 60 s
    if os.path.exists(done):
        break
    time.sleep(0.05)
c.close()
