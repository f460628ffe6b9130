#!/usr/bin/env bash
# run.sh FUZZER CORPUS WORKDIR - run one libFuzzer harness for
# $XIO_FUZZ_SECONDS (default 15) over its committed seed corpus. New inputs
# go to WORKDIR/new (the committed corpus is only read); a crashing input is
# written to WORKDIR/crash-* and the run fails: copy it into CORPUS once
# fixed, so that every later run replays it.
set -u
fuzzer=$1 corpus=$2 work=$3
secs=${XIO_FUZZ_SECONDS:-15}
[ -d "$corpus" ] || { echo "FAIL: no seed corpus at $corpus"; exit 1; }
mkdir -p "$work/new"
# The seeds first, alone: every committed input (old crashes too) must pass.
"$fuzzer" -runs=0 "$corpus" >"$work/replay.log" 2>&1 ||
  { tail -40 "$work/replay.log"; echo "FAIL: a committed input fails"; exit 1; }
"$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/" "$work/new" "$corpus" >"$work/fuzz.log" 2>&1
rc=$?
grep -E '^stat::number_of_executed_units|^Done|^#[0-9]+.*DONE' "$work/fuzz.log" | tail -2
if [ $rc -ne 0 ]; then
  tail -60 "$work/fuzz.log"
  echo "FAIL: $(basename "$fuzzer") found a crash: $(ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* 2>/dev/null | head -3)"
  exit 1
fi
echo "$(basename "$fuzzer"): ${secs}s, no crash"
