# shellcheck shell=bash
# bench/suite/scale.sh - scenario "scale" (issue 17's targets): what N
# connections cost in time and in memory, each moving 256 KiB and then held
# open and silent, over kernel TCP, a UNIX socket and xio (both ends under
# the shim), side by side, for N = 1,000, 5,000 and 10,000 (--quick: 1,000
# and 2,500).
#
# bench/scale.c's server on CPU 0 (one epoll set; it greets every
# connection, reads and discards, and acks each 256 KiB) and its client on
# CPU 1, one process holding all N: it opens them all at once
# (non-blocking connects) and waits for every greeting, writes 256 KiB on
# each in 64 KiB writes interleaved across the connections and waits for
# every ack (the traffic phase: the row's time), then holds them all in
# epoll_wait for SCALE_HOLD seconds and checks that none was closed. Once
# the client says the hold began, and SCALE_SAMPLE seconds into it (the
# connections drained and idle for that long), the step samples the
# memory:
#   /proc/meminfo   MemAvailable and Shmem, and the hugepages taken
#                   (HugePages_Free less HugePages_Rsvd: reserved hugepages
#                   are not in MemAvailable), against a sample taken just
#                   before the server started;
#   /proc/PID/status of both ends: VmRSS, RssAnon, RssShmem, and VmHWM
#                   (the peak, over the traffic phase as well);
#   /proc/PID/smaps_rollup of both ends and the monitor: Pss and hugepages;
#   /proc/slabinfo  the slab caches of sockets, files and epoll entries.
# A row's memory is the MemAvailable drop plus the hugepages taken: all the
# system gave the N connections (both ends' private memory, shared memory,
# the kernel's socket memory, the monitor's share), per connection too.
# Beside it, the accounted memory: both ends' Pss and hugepages, the
# monitor's Pss growth and the socket slab's growth, which what else runs
# on the machine does not move (scale_record says what each counts).
# Under xio the shim's counters must show accel_conns of at least N on both
# ends and no connection fallen back or gone back to TCP, or the row FAILs
# as not accelerated (as in crowd.sh). results.md gives xio's traffic speed
# and memory against TCP's beside the issue's targets (speed >= 1.5x TCP's,
# memory <= 1.5x TCP's) and a chart of both against N.
#
# MemAvailable is the whole machine's: what else runs meanwhile moves it
# (by +-90 MiB within a step here, beside other engineers' builds), so
# the step also records what was still missing after both ends exited
# (left_mib: near 0 on a quiet machine) and the TCP listen overflows of
# the step (which would cost TCP 1 s retransmits in the connect phase).
#
# Limits: each process needs N descriptors and a few (soft RLIMIT_NOFILE
# raised to N + 1,024 within the hard limit, as in busyidle.sh), and the
# monitor accelerates at most its per-process and per-uid limits (read from
# its log, monitor_limit): a row past one FAILs at once, naming it.

SCALE_SAID=""
SCALE_HOLD=${SCALE_HOLD:-3}  # SCALE_HOLD, SCALE_SAMPLE: seconds (env)
SCALE_SAMPLE=${SCALE_SAMPLE:-2}
declare -A SCALE_TCP_MS=() SCALE_TCP_MEM=() SCALE_TCP_ACCT=()

sc_scale() {
  local ns=(1000 5000 10000) n t hard soft mproc muid
  [ "$QUICK" = 1 ] && ns=(1000 2500)
  # SCALE_NS="10000" (space-separated) measures only those N.
  [ -n "${SCALE_NS:-}" ] && read -r -a ns <<<"$SCALE_NS"
  if [ ! -x "$BUILD/bench/xio-bench-scale" ]; then
    step_begin scale all 0
    fail_step "$BUILD/bench/xio-bench-scale is missing (build first)"
    step_end
    return
  fi
  hard=$(ulimit -Hn) soft=$(ulimit -Sn)
  # A hard limit we may raise (CAP_SYS_RESOURCE) is no bound here.
  xio_can_set_nofile 65536 && hard=unlimited
  mproc=$(monitor_limit process) muid=$(monitor_limit uid)
  if [ -z "$SCALE_SAID" ]; then
    say "scale: RLIMIT_NOFILE here: soft $soft, hard $(ulimit -Hn)$([ "$hard" = unlimited ] && echo ' (may be raised here)'); each end gets N + 1024; the monitor accelerates at most ${mproc:-?} connections per process and ${muid:-?} per uid; memory sampled ${SCALE_SAMPLE} s into a hold of ${SCALE_HOLD} s"
    SCALE_SAID=1
    rec scale-limits all 0 nofile_hard "$(ulimit -Hn)"
    rec scale-limits all 0 monitor_proc_conns "$mproc"
    rec scale-limits all 0 monitor_uid_conns "$muid"
  fi
  for n in "${ns[@]}"; do
    for t in tcp uds xio; do
      step_begin scale "$t" "$n" || { step_end; continue; }
      scale_fits "$n" "$hard" "$mproc" "$muid" && scale_step "$n" "$(scale_nofile "$n" "$hard" "$soft")"
      step_end
    done
  done
}

# scale_nofile N HARD SOFT: the soft RLIMIT_NOFILE for an end of N
# connections: N + 1,024 (the listener, the epoll set, the shim's own
# descriptors), within the hard limit and no less than the soft one.
scale_nofile() {
  local lim=$(($1 + 1024))
  [ "$2" != unlimited ] && [ "$lim" -gt "$2" ] && lim=$2
  [ "$3" != unlimited ] && [ "$lim" -lt "$3" ] && lim=$3
  echo "$lim"
}

# scale_fits N HARD MPROC MUID: whether this step can run as it says: N
# connections in each end within the hard RLIMIT_NOFILE, and under xio the
# client's N within the monitor's per-process and per-uid limits (both
# ends run as root; the monitor charges a connection to the process that
# connects). Returns 1 after a FAIL line.
scale_fits() {
  local n=$1 hard=$2 mproc=$3 muid=$4 why=""
  if [ "$hard" != unlimited ] && [ $((n + 64)) -gt "$hard" ]; then
    fail_step "$n connections need about $((n + 64)) descriptors in each end; the hard RLIMIT_NOFILE is $hard"
    return 1
  fi
  [ "$TRANSPORT" = xio ] || return 0
  if [ -n "$mproc" ] && [ "$n" -gt "$mproc" ]; then
    why="at most $mproc connections per process (limit-process-connections), fewer than the $n the one client opens"
  fi
  if [ -n "$muid" ] && [ "$n" -gt "$muid" ]; then
    why="${why:+$why, and }at most $muid per uid (limit-uid-connections), fewer than the $n of this row"
  fi
  [ -n "$why" ] || return 0
  fail_step "NOT ACCELERATED: not run: the monitor accelerates $why (docs/config.md, \"Limits\")"
  return 1
}

# scale_meminfo: "MemAvailable Shmem HugePages-taken" in KiB, the last the
# hugepages no longer free for others (HugePages_Total less Free, plus
# Rsvd: reserved by a mapping but not yet touched).
scale_meminfo() {
  awk '$1 == "MemAvailable:" { a = $2 } $1 == "Shmem:" { s = $2 } $1 == "HugePages_Total:" { t = $2 }
    $1 == "HugePages_Free:" { f = $2 } $1 == "HugePages_Rsvd:" { r = $2 } $1 == "Hugepagesize:" { z = $2 }
    END { printf "%d %d %d\n", a, s, (t - f + r) * z }' /proc/meminfo
}

# scale_overflows: TcpExt ListenOverflows of this network namespace.
scale_overflows() {
  awk '$1 == "TcpExt:" { if (!c) { for (i = 2; i <= NF; i++) if ($i == "ListenOverflows") c = i }
    else { print $c; exit } }' /proc/net/netstat 2>/dev/null
}

# scale_status PID: "VmRSS RssAnon RssShmem VmHWM Pss Hugetlb" in KiB
# (missing fields as 0): /proc/PID/status, and from smaps_rollup the
# proportional set size (a page mapped by k processes counts 1/k in each,
# so the Pss of all the processes that map a segment add up to it once)
# and the hugepages mapped, those shared with another process halved (the
# two ends map every connection's segment).
scale_status() {
  local st
  st=$(awk '$1 == "VmRSS:" { r = $2 } $1 == "RssAnon:" { a = $2 } $1 == "RssShmem:" { s = $2 }
    $1 == "VmHWM:" { h = $2 } END { printf "%d %d %d %d", r, a, s, h }' "/proc/$1/status" 2>/dev/null)
  echo "${st:-0 0 0 0} $(awk '$1 == "Pss:" { p = $2 } $1 == "Private_Hugetlb:" { h += $2 }
    $1 == "Shared_Hugetlb:" { h += $2 / 2 } END { printf "%d %d", p, h }' "/proc/$1/smaps_rollup" 2>/dev/null)"
}

# scale_slab: KiB of slab pages in the caches of sockets and their
# descriptors (/proc/slabinfo, root only: empty without it), for the
# kernel's share of a connection that no process's memory shows.
scale_slab() {
  [ -r /proc/slabinfo ] || return 0
  awk -v pg="$(getconf PAGESIZE)" '$1 ~ /^(TCP|TCPv6|UNIX|sock_inode_cache|eventpoll_epi|eventpoll_pwq|filp|request_sock_TCP|skbuff_head_cache)$/ {
    k += $14 * $6 * pg / 1024 } END { printf "%d\n", k }' /proc/slabinfo 2>/dev/null
}

# scale_step N LIM: one row (STEP, TRANSPORT set by step_begin).
scale_step() {
  local n=$1 lim=$2 prog=$BUILD/bench/xio-bench-scale limit=120 lep cep spid cpid
  local a0 s0 h0 a1 s1 h1 a2 h2 lo0 lo1 k0 k1 m0=0 m1=0 srv cli
  if [ "$TRANSPORT" = uds ]; then lep=uds:$STEP/s.sock; else lep=tcp:127.0.0.1:0; fi
  read -r a0 s0 h0 <<<"$(scale_meminfo)"
  lo0=$(scale_overflows) k0=$(scale_slab)
  [ "$TRANSPORT" = xio ] && m0=$(scale_status "$MONITOR_PID" | cut -d' ' -f5)
  bg_start spid "$STEP/srv.out" "$STEP/srv.err" prlimit --nofile="$(nofile_opt "$lim")" taskset -c 0 \
    "${SRV_ENV[@]}" "$prog" server --listen "$lep" --conns "$n" --ready "$STEP/ready"
  if ! wait_file "$STEP/ready" "$spid" 10; then
    bg_stop "$spid" KILL 2
    fail_step "the server did not start listening within 10 s"
    return
  fi
  if [ "$TRANSPORT" = uds ]; then cep=$lep; else cep=tcp:127.0.0.1:$(cat "$STEP/ready"); fi
  bg_start cpid "$STEP/cli.out" "$STEP/cli.err" prlimit --nofile="$(nofile_opt "$lim")" taskset -c 1 \
    "${CLI_ENV[@]}" "$prog" client --connect "$cep" --conns "$n" --hold "$SCALE_HOLD" \
    --holding "$STEP/holding"
  if ! wait_file "$STEP/holding" "$cpid" $limit; then
    if pid_running "$cpid"; then
      bg_stop "$cpid" KILL 2
      bg_stop "$spid" KILL 2
      fail_step "the client did not connect, send and get its acks within the time limit of $limit s"
    else
      bg_stop "$cpid" - 1
      bg_stop "$spid" KILL 2
      fail_step "the client exited with status $BG_RC before the hold"
    fi
    return
  fi
  sleep "$SCALE_SAMPLE"
  read -r a1 s1 h1 <<<"$(scale_meminfo)"
  srv=$(scale_status "$spid") cli=$(scale_status "$cpid") k1=$(scale_slab)
  [ "$TRANSPORT" = xio ] && m1=$(scale_status "$MONITOR_PID" | cut -d' ' -f5)
  echo "KiB before: MemAvailable $a0 Shmem $s0 hugepages $h0 socket-slab $k0 monitor-Pss $m0;" \
    "hold: MemAvailable $a1 Shmem $s1 hugepages $h1 socket-slab $k1 monitor-Pss $m1;" \
    "srv (VmRSS RssAnon RssShmem VmHWM Pss Hugetlb) $srv; cli $cli" >"$STEP/memory"
  # A sample taken after the hold ended would not be the held connections'.
  if grep -q '^phase=held' "$STEP/cli.out"; then
    bg_stop "$cpid" KILL 2
    bg_stop "$spid" KILL 2
    fail_step "the memory was sampled after the client's hold of $SCALE_HOLD s had ended (a busy machine?): no figure"
    return
  fi
  if ! bg_stop "$cpid" - $((SCALE_HOLD + 60)); then
    bg_stop "$spid" KILL 2
    fail_step "the client did not exit normally after its hold (status $BG_RC)"
    return
  fi
  # The client closed everything, so the server ends by itself.
  if ! bg_stop "$spid" - 20; then
    fail_step "the server did not exit normally after the client closed its connections (status $BG_RC)"
    return
  fi
  lo1=$(scale_overflows)
  read -r a2 _ h2 <<<"$(scale_meminfo)"
  [ -n "$(kv "$STEP/cli.out" traffic_us)" ] || { fail_step "the client wrote no result line"; return; }
  xio_verify scale "$n" || return
  scale_accel "$n" || return
  scale_record "$n" "$a0" "$s0" "$h0" "$a1" "$s1" "$h1" "$a2" "$h2" "$((${m1:-0} - ${m0:-0}))" \
    "$([ -n "$k0" ] && [ -n "$k1" ] && echo $((k1 - k0)))" "$((${lo1:-0} - ${lo0:-0}))" "$srv" "$cli"
}

# scale_accel N: after xio_verify, both ends' accel_conns must be at least
# N, and no connection of either end may have fallen back or left for TCP.
# Returns 1 after a FAIL line.
scale_accel() {
  local n=$1 side acc fb left
  [ "$TRANSPORT" = xio ] || return 0
  for side in srv cli; do
    acc=$(stats_sum "$STEP/$side.stats" accel_conns)
    fb=$(stats_sum "$STEP/$side.stats" fallback_conns) left=$(stats_sum "$STEP/$side.stats" left_conns)
    if [ "$acc" -lt "$n" ]; then
      fail_step "NOT ACCELERATED: $side accel_conns=$acc, fewer than the $n connections ($fb fell back to TCP)"
      return 1
    fi
    if [ "$fb" -gt 0 ] || [ "$left" -gt 0 ]; then
      fail_step "NOT ACCELERATED: of the $side side's connections $fb fell back to TCP and $left left shared memory for TCP"
      return 1
    fi
  done
  return 0
}

# scale_record N A0 S0 H0 A1 S1 H1 A2 H2 MON SLAB OVERFLOWS "SRV" "CLI":
# the row's figures (meminfo in KiB: before, during the hold, after; the
# monitor's Pss growth and the socket slab's, in KiB (SLAB empty when
# unknown); both ends' scale_status).
#   mem_mib   MemAvailable drop + hugepages taken: the issue's measure,
#             the whole machine's (what else runs moves it);
#   acct_mib  what the row's own processes and sockets hold: both ends'
#             Pss and hugepages, the monitor's Pss growth, the socket
#             slab's growth: blind to the rest of the machine, and to
#             kernel memory other than the socket caches.
scale_record() {
  local n=$1 a0=$2 s0=$3 h0=$4 a1=$5 s1=$6 h1=$7 a2=$8 h2=$9 mon=${10} slab=${11} lo=${12}
  local sr sa ss sh sp shu cr ca cs ch cp chu mem acct c=$STEP/cli.out ms note="" r
  read -r sr sa ss sh sp shu <<<"${13}"
  read -r cr ca cs ch cp chu <<<"${14}"
  mem=$((a0 - a1 + h1 - h0))
  acct=$((sp + shu + cp + chu + mon + ${slab:-0}))
  ms=$(div "$(kv "$c" traffic_us)" 1000)
  rec scale "$TRANSPORT" "$n" traffic_ms "$ms"
  rec scale "$TRANSPORT" "$n" connect_ms "$(div "$(kv "$c" connect_us)" 1000)"
  rec scale "$TRANSPORT" "$n" close_ms "$(div "$(kv "$c" close_us)" 1000)"
  rec scale "$TRANSPORT" "$n" cpu_cli_ms "$(div "$(kv "$c" cpu_us)" 1000)"
  rec scale "$TRANSPORT" "$n" cpu_srv_ms "$(div "$(kv "$STEP/srv.out" cpu_us)" 1000)"
  rec scale "$TRANSPORT" "$n" mem_mib "$(div "$mem" 1024)"
  rec scale "$TRANSPORT" "$n" kib_per_conn "$(div "$mem" "$n")"
  rec scale "$TRANSPORT" "$n" acct_mib "$(div "$acct" 1024)"
  rec scale "$TRANSPORT" "$n" acct_kib_per_conn "$(div "$acct" "$n")"
  rec scale "$TRANSPORT" "$n" memavail_drop_mib "$(div $((a0 - a1)) 1024)"
  rec scale "$TRANSPORT" "$n" sock_slab_mib "$(div "$slab" 1024)"
  rec scale "$TRANSPORT" "$n" srv_pss_kib "$sp"
  rec scale "$TRANSPORT" "$n" cli_pss_kib "$cp"
  rec scale "$TRANSPORT" "$n" srv_hugetlb_kib "$shu"
  rec scale "$TRANSPORT" "$n" cli_hugetlb_kib "$chu"
  rec scale "$TRANSPORT" "$n" shmem_mib "$(div $((s1 - s0)) 1024)"
  rec scale "$TRANSPORT" "$n" huge_mib "$(div $((h1 - h0)) 1024)"
  rec scale "$TRANSPORT" "$n" left_mib "$(div $((a0 - a2 + h2 - h0)) 1024)"
  rec scale "$TRANSPORT" "$n" listen_overflows "$lo"
  rec scale "$TRANSPORT" "$n" srv_rss_kib "$sr"
  rec scale "$TRANSPORT" "$n" srv_anon_kib "$sa"
  rec scale "$TRANSPORT" "$n" srv_shmem_kib "$ss"
  rec scale "$TRANSPORT" "$n" srv_hwm_kib "$sh"
  rec scale "$TRANSPORT" "$n" cli_rss_kib "$cr"
  rec scale "$TRANSPORT" "$n" cli_anon_kib "$ca"
  rec scale "$TRANSPORT" "$n" cli_shmem_kib "$cs"
  rec scale "$TRANSPORT" "$n" cli_hwm_kib "$ch"
  if [ "$TRANSPORT" = xio ]; then
    rec scale xio "$n" monitor_pss_delta_kib "$mon"
    # Against this round's TCP row of the same N, for the progress line
    # (report.py computes the table's from the medians).
    if [ -n "${SCALE_TCP_MS[$n]:-}" ]; then
      r=$(div "${SCALE_TCP_MS[$n]}" "$ms")
      note=", ${r:-?}x TCP's speed (target >= 1.5x)"
      note="$note, $(scale_ratio "$mem" "${SCALE_TCP_MEM[$n]}")x TCP's memory ($(scale_ratio "$acct" "${SCALE_TCP_ACCT[$n]}")x accounted; target <= 1.5x)"
    fi
  elif [ "$TRANSPORT" = tcp ]; then
    SCALE_TCP_MS[$n]=$ms SCALE_TCP_MEM[$n]=$mem SCALE_TCP_ACCT[$n]=$acct
  fi
  say "scale $n conns $TRANSPORT: connect $(div "$(kv "$c" connect_us)" 1000) ms, traffic $ms ms; memory held $(div "$mem" 1024) MiB, $(div "$mem" "$n") KiB/conn (MemAvailable drop $(div $((a0 - a1)) 1024), Shmem $(scale_signed $((s1 - s0))), hugepages $(scale_signed $((h1 - h0))) MiB); accounted $(div "$acct" 1024) MiB, $(div "$acct" "$n") KiB/conn (Pss srv $(div "$sp" 1024) / cli $(div "$cp" 1024), socket slab $(scale_signed "$slab") MiB); RSS srv $(div "$sr" 1024) / cli $(div "$cr" 1024) MiB (peak $(div "$sh" 1024) / $(div "$ch" 1024))$([ "${lo:-0}" -gt 0 ] && echo ", $lo TCP listen overflows")$note$XIO_NOTE"
}

# scale_ratio A B: A / B, or "?" unless both are above 0 (a memory
# figure the machine's noise made 0 or less gives no ratio).
scale_ratio() {
  if [ "${1:-0}" -gt 0 ] && [ "${2:-0}" -gt 0 ]; then div "$1" "$2"; else echo "?"; fi
}

# scale_signed KIB: KIB in MiB with its sign ("+1.500", "-0.078"); "?"
# when empty.
scale_signed() {
  [ -n "$1" ] || { echo "?"; return; }
  awk -v k="$1" 'BEGIN { printf "%+.3f\n", k / 1024 }'
}
