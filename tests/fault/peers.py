"""peers.py - the programs the fault tests run under the shim.

  python3 peers.py server PORT     echo server: blocking accept(), one thread
                                   per connection; prints "ready" once it
                                   listens, then nothing (it never touches
                                   the listener again but to accept).
  python3 peers.py client          reads commands on stdin, answers one line
                                   each on stdout:
      open PORT   open the long-lived connection and check an echo
      echo        check an echo on the long-lived connection
      new PORT    a new connection: echo check, close
      close       close the long-lived connection
  Every echo is 4096 patterned bytes, checked byte for byte; an answer is
  "ok" or "fail <why>".
"""
import os
import socket
import sys
import threading


def pattern(n, seed):
    return bytes((i * 31 + seed) & 0xFF for i in range(n))


def serve(conn):
    with conn:
        while True:
            d = conn.recv(65536)
            if not d:
                return
            conn.sendall(d)


def server(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def echo(s, seed):
    data = pattern(4096, seed)
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        d = s.recv(len(data) - len(got))
        if not d:
            return "fail end of file after %d bytes" % len(got)
        got += d
    return "ok" if got == data else "fail bytes differ"


def client():
    held = None
    seed = 0
    for line in sys.stdin:
        words = line.split()
        seed += 1
        try:
            if words[0] == "open":
                held = socket.create_connection(("127.0.0.1", int(words[1])), timeout=5)
                ans = echo(held, seed)
            elif words[0] == "echo":
                ans = echo(held, seed)
            elif words[0] == "new":
                with socket.create_connection(("127.0.0.1", int(words[1])), timeout=5) as s:
                    ans = echo(s, seed)
            elif words[0] == "close":
                held.close()
                ans = "ok"
            else:
                ans = "fail unknown command"
        except OSError as e:
            ans = "fail %s" % e
        print(ans, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client()
