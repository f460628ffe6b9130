#!/usr/bin/env python3
"""monitor_restart.py BUILD_DIR - issue 8 item 10: kill -9 the monitor and
start a new one on the same socket while programs run under the shim.

  - an established accelerated connection keeps working while the monitor
    is down and after it is back;
  - a connection made while it is down works (over TCP);
  - from one second after the new monitor is up, new connections are
    accelerated again: to a server whose listener was registered with the
    dead monitor (it sits in accept() and never calls the shim otherwise)
    and to one that started listening while no monitor ran; the client is
    the same process as before the crash.
Acceleration is read from the new monitor's own count (--status).
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

build = os.path.abspath(sys.argv[1])
here = os.path.dirname(os.path.abspath(__file__))
monitor_bin = os.path.join(build, "monitor", "xio-monitor")
shim = os.path.join(build, "preload", "libxio_preload.so")
tmp = tempfile.mkdtemp(prefix="xio-restart-")
sock = os.path.join(tmp, "monitor.sock")
env = dict(os.environ, XIO_MONITOR_SOCK=sock, LD_PRELOAD=shim)
procs = []


def fail(why):
    print("FAIL: " + why)
    for p in procs:
        if p.poll() is None:
            p.kill()
    for f in sorted(os.listdir(tmp)):
        if f.endswith(".log"):
            print("--- %s (last 15 lines)" % f)
            with open(os.path.join(tmp, f)) as fh:
                print("".join(fh.readlines()[-15:]))
    sys.exit(1)


def start_monitor(n):
    log = open(os.path.join(tmp, "monitor%d.log" % n), "w")
    m = subprocess.Popen([monitor_bin, "--foreground", "--socket", sock], stderr=log,
                         env=dict(os.environ))
    procs.append(m)
    end = time.time() + 5
    while time.time() < end:
        if status(quiet=True) is not None:
            return m, time.time()
        time.sleep(0.01)
    fail("monitor %d did not start" % n)


def status(quiet=False):
    r = subprocess.run([monitor_bin, "--status", "--socket", sock], capture_output=True,
                       text=True, env=dict(os.environ))
    if r.returncode != 0:
        if quiet:
            return None
        fail("no status: " + r.stderr)
    return dict((k, int(v)) for k, v in (l.split() for l in r.stdout.splitlines()))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_server(port, name):
    p = subprocess.Popen([sys.executable, os.path.join(here, "peers.py"), "server", str(port)],
                         stdout=subprocess.PIPE, text=True, env=env,
                         stderr=open(os.path.join(tmp, name + ".log"), "w"))
    procs.append(p)
    if p.stdout.readline().strip() != "ready":
        fail(name + " did not start")
    return p


def ask(cmd):
    client.stdin.write(cmd + "\n")
    client.stdin.flush()
    ans = client.stdout.readline().strip()
    if ans != "ok":
        fail("client '%s': %s" % (cmd, ans or "no answer"))


m1, _ = start_monitor(1)
port1, port3 = free_port(), free_port()
start_server(port1, "server1")
client = subprocess.Popen([sys.executable, os.path.join(here, "peers.py"), "client"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                          stderr=open(os.path.join(tmp, "client.log"), "w"))
procs.append(client)
ask("open %d" % port1)
if status()["accelerated_total"] != 1:
    fail("the first connection was not accelerated: the test proves nothing")

m1.send_signal(signal.SIGKILL)
m1.wait()
ask("echo")                # established: keeps working
ask("new %d" % port1)      # made while the monitor is down: TCP
start_server(port3, "server3")  # listens while no monitor runs
ask("echo")

m2, up = start_monitor(2)
# Programs get one second to find the new monitor.
time.sleep(max(0.0, up + 1.0 - time.time()))
st = status()
ask("new %d" % port1)
ask("new %d" % port3)
ask("echo")
after = status()
print("new monitor after 1 s: listeners=%d; two new connections: accelerated=%d fallback=%d"
      % (st["listeners"], after["accelerated_total"], after["fallback_total"]))
if after["accelerated_total"] != 2:
    fail("new connections were not accelerated 1 s after the restart "
         "(accelerated_total=%d, listeners=%d)" % (after["accelerated_total"], st["listeners"]))
ask("close")
for p in procs:
    if p.poll() is None:
        p.kill()
        p.wait()
subprocess.run(["rm", "-rf", tmp])
print("1 passed, 0 failed")
