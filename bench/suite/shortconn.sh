# shellcheck shell=bash
# bench/suite/shortconn.sh - scenario "shortconn": connect, one 64-byte
# request and its reply, close, one connection after the other
# (bench/shortconn.c; the server is a blocking accept loop in one thread);
# connections per second, p50 and p99 of one connection's whole life, CPU
# per connection. Server on CPU 0, client on CPU 1.

sc_shortconn() {
  local dur=2 t ccpu=1
  [ "$QUICK" = 1 ] && dur=0.5
  [ "$(nproc)" -lt 2 ] && ccpu=0
  for t in tcp uds xio; do
    step_begin shortconn "$t" 64 || { step_end; continue; }
    if pair shortconn 0 "$ccpu" 40 -- --duration "$dur"; then
      shortconn_record
    fi
    step_end
  done
}

shortconn_record() {
  local c=$STEP/cli.out s=$STEP/srv.out cps p50 p99 cs cc
  cps=$(kv "$c" conns_per_s)
  p50=$(div "$(kv "$c" p50_ns)" 1000)
  p99=$(div "$(kv "$c" p99_ns)" 1000)
  cs=$(div "$(kv "$s" cpu_us)" "$(kv "$s" conns)")
  cc=$(div "$(kv "$c" cpu_us)" "$(kv "$c" conns)")
  xio_verify shortconn 64 || return
  rec shortconn "$TRANSPORT" 64 conns_per_s "$cps"
  rec shortconn "$TRANSPORT" 64 p50_us "$p50"
  rec shortconn "$TRANSPORT" 64 p99_us "$p99"
  rec shortconn "$TRANSPORT" 64 cpu_srv_us "$cs"
  rec shortconn "$TRANSPORT" 64 cpu_cli_us "$cc"
  say "shortconn 64 B $TRANSPORT: $cps conn/s, p50 $p50 us, p99 $p99 us, CPU srv $cs / cli $cc us per conn$XIO_NOTE"
}
