# shellcheck shell=bash
# bench/suite/pingpong.sh - scenario "pingpong": one connection, blocking
# read and write, a message and its echo (bench/pingpong.c), at 64 B,
# 1 KiB, 16 KiB and 64 KiB; p50 and p99 round trip, round trips per second,
# CPU per round trip of each end. Two placements: "pingpong" has the server
# on CPU 0 and the client on CPU 1, "pingpong-1core" both on CPU 0, where a
# waiting side must give the CPU to the other to make progress.

sc_pingpong() {
  local dur=1 warm=500 sizes=(64 1024 16384 65536) ncpu placement size t
  [ "$QUICK" = 1 ] && { dur=0.3; warm=100; }
  ncpu=$(nproc)
  for placement in 2core 1core; do
    local scen=pingpong scpu=0 ccpu=1
    [ "$ncpu" -lt 2 ] && ccpu=0
    if [ $placement = 1core ]; then scen=pingpong-1core; ccpu=0; fi
    for size in "${sizes[@]}"; do
      for t in tcp uds xio; do
        step_begin "$scen" "$t" "$size" || { step_end; continue; }
        if pair pingpong "$scpu" "$ccpu" 30 --size "$size" -- \
          --size "$size" --duration "$dur" --warmup "$warm"; then
          pingpong_record "$scen" "$size"
        fi
        step_end
      done
    done
  done
}

pingpong_record() {
  local scen=$1 size=$2 c=$STEP/cli.out s=$STEP/srv.out p50 p99 rts cs cc
  p50=$(div "$(kv "$c" p50_ns)" 1000)
  p99=$(div "$(kv "$c" p99_ns)" 1000)
  rts=$(kv "$c" rt_per_s)
  cs=$(div "$(kv "$s" cpu_us)" "$(kv "$s" msgs)")
  cc=$(div "$(kv "$c" cpu_us)" "$(kv "$c" rts)")
  xio_verify "$scen" "$size" || return
  rec "$scen" "$TRANSPORT" "$size" p50_us "$p50"
  rec "$scen" "$TRANSPORT" "$size" p99_us "$p99"
  rec "$scen" "$TRANSPORT" "$size" rt_per_s "$rts"
  rec "$scen" "$TRANSPORT" "$size" cpu_srv_us "$cs"
  rec "$scen" "$TRANSPORT" "$size" cpu_cli_us "$cc"
  say "$scen $size B $TRANSPORT: p50 $p50 us, p99 $p99 us, $rts rt/s, CPU srv $cs / cli $cc us per rt$XIO_NOTE"
}
