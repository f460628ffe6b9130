#!/usr/bin/env bash
# node.sh BUILD_DIR - a node `net` echo server and a node client (libuv:
# epoll, non-blocking sockets, writev) sending 4 MiB and checking the echo
# by sha256, then a second round on 4 parallel connections. Both under the
# shim. The server leaves through process.exit() on SIGTERM so exit hooks run.
. "$(dirname "$0")/lib.sh"
compat_init node "$@"
srv=""   # the server's pid, set by start_server
node=$(command -v node || command -v nodejs || true)
[ -n "$node" ] || fail "node is not installed (tools/deps)"

port=$(free_port)
cat >"$WORK/server.js" <<'EOF'
const net = require('net');
const port = +process.argv[2];
let conns = 0;
const server = net.createServer((sock) => {
  conns++;
  sock.on('error', (e) => console.error('server socket error', e.message));
  sock.pipe(sock);   // echo, with backpressure; ends our side after the client's FIN
});
server.listen(port, '127.0.0.1', () => console.log('listening on', port));
process.on('SIGTERM', () => { console.log('connections:', conns); server.close(); process.exit(0); });
EOF
cat >"$WORK/client.js" <<'EOF'
const net = require('net');
const crypto = require('crypto');
const port = +process.argv[2], size = +process.argv[3], parallel = +process.argv[4];
function one(i) {
  return new Promise((resolve, reject) => {
    const data = crypto.randomBytes(size);
    const chunks = [];
    let got = 0;
    const sock = net.connect(port, '127.0.0.1', () => {
      // write in uneven pieces, then half-close
      let off = 0, k = 0;
      while (off < data.length) {
        const n = Math.min(data.length - off, 1000 + ((k++ * 7919) % 70000));
        sock.write(data.subarray(off, off + n));
        off += n;
      }
      sock.end();
    });
    sock.on('data', (d) => { chunks.push(d); got += d.length; });
    sock.on('error', reject);
    sock.on('close', () => {
      const back = Buffer.concat(chunks);
      const a = crypto.createHash('sha256').update(data).digest('hex');
      const b = crypto.createHash('sha256').update(back).digest('hex');
      if (a !== b) reject(new Error(`conn ${i}: echo differs: sent ${size}, got ${got}`));
      else resolve(got);
    });
  });
}
Promise.all([...Array(parallel).keys()].map(one)).then((r) => {
  console.log(`node client ok: ${parallel} x ${size} bytes echoed`);
  process.exit(0);
}, (e) => { console.error(e.message); process.exit(1); });
EOF
start_server srv "$WORK/node-server.log" "$node" "$WORK/server.js" "$port"
wait_port "$port" "$srv" || fail "node server did not start"

xio_client 30 "$node" "$WORK/client.js" "$port" $((4 * 1048576)) 1 || fail "node client exited $?"
xio_client 30 "$node" "$WORK/client.js" "$port" $((1048576)) 4 || fail "node client (4 connections) exited $?"

stop_server "$srv" TERM 10
# 4 MiB + 4 x 1 MiB echoed.
require_stat server rx_bytes -ge $((8 * 1048576))
require_stat client rx_bytes -ge $((8 * 1048576))
compat_finish
