# shellcheck shell=bash
# bench/suite/stream.sh - scenario "stream": one-way streaming over one
# connection (bench/stream.c): 64-byte messages (messages per second: the
# cost per send) and 64 KiB messages (GB/s: the cost per byte), every
# message sequence-checked by the receiver, which reports the count back
# before the sender's clock stops. The receiver (server) runs on CPU 0, the
# sender (client) on CPU 1.

sc_stream() {
  local dur=1.5 size t ccpu=1
  [ "$QUICK" = 1 ] && dur=0.5
  [ "$(nproc)" -lt 2 ] && ccpu=0
  for size in 64 65536; do
    for t in tcp uds xio; do
      step_begin stream "$t" "$size" || { step_end; continue; }
      if pair stream 0 "$ccpu" 30 --size "$size" -- --size "$size" --duration "$dur"; then
        stream_record "$size"
      fi
      step_end
    done
  done
}

stream_record() {
  local size=$1 c=$STEP/cli.out s=$STEP/srv.out mps gbs cs cc
  mps=$(kv "$c" msgs_per_s)
  gbs=$(kv "$c" gb_per_s)
  cs=$(div "$(kv "$s" cpu_us)" "$(kv "$s" msgs)")
  cc=$(div "$(kv "$c" cpu_us)" "$(kv "$c" msgs)")
  xio_verify stream "$size" || return
  rec stream "$TRANSPORT" "$size" msgs_per_s "$mps"
  rec stream "$TRANSPORT" "$size" gb_per_s "$gbs"
  rec stream "$TRANSPORT" "$size" cpu_srv_us "$cs"
  rec stream "$TRANSPORT" "$size" cpu_cli_us "$cc"
  say "stream $size B $TRANSPORT: $mps msg/s, $gbs GB/s, CPU receiver $cs / sender $cc us per msg$XIO_NOTE"
}
