#!/usr/bin/env bash
# python_asyncio.sh BUILD_DIR - CPython's own asyncio tests of issue 17,
# from Debian's libpython3.11-testsuite: test_asyncio.test_sendfile's
# test_sendfile_close_peer_in_the_middle_of_receiving, for the epoll, poll
# and select event loops. In each, one Python process holds both ends: the
# client sets SO_SNDBUF 4096 and loop.sendfile()s a file of 256 KiB + 1
# (os.sendfile, non-blocking, waiting for writability between calls), the
# server (SO_RCVBUF 4096 on its listener) closes after 1 KiB, and the
# sendfile must fail with a ConnectionError before the whole file has gone.
# The socket buffer sizes are what make it fail: a connection that holds
# far more than they allow takes the whole file before the close.
# First over kernel TCP, never preloaded (the tests themselves must pass
# here), then under the shim, where the bytes must go over shared memory.
. "$(dirname "$0")/lib.sh"
compat_init python_asyncio "$@"

py=/usr/bin/python3.11
mod=test.test_asyncio.test_sendfile
[ -x "$py" ] || fail "$py is not installed (tools/deps: python3)"
plain 20 "$py" -c "import $mod" >/dev/null 2>&1 ||
  fail "CPython's test package is not installed (tools/deps: libpython3.11-testsuite)"
tests=()
for loop in EPoll Poll Select; do
  tests+=("$mod.${loop}EventLoopTests.test_sendfile_close_peer_in_the_middle_of_receiving")
done

# run_tests LOG RUNNER...: the three tests under RUNNER (plain or
# xio_client with a bound); fails unless unittest ran all three and every
# one passed (no skips: "OK" alone on its line).
run_tests() {
  local log=$1 rc=0
  shift
  # The tests write their file (os_helper.TESTFN) to the working directory.
  (cd "$WORK" && "$@" "$py" -m unittest -v "${tests[@]}") >"$log" 2>&1 || rc=$?
  if [ $rc -ne 0 ] || ! grep -q '^Ran 3 tests' "$log" || ! grep -qx 'OK' "$log"; then
    log "${log##*/}: $(grep -E '^AssertionError|^[A-Za-z]*Error:|^Ran |^OK|^FAILED' "$log" | sort | uniq -c | sed 's/^ *//' | paste -sd';' -)"
    return 1
  fi
}

run_tests "$WORK/kernel.log" plain 60 ||
  fail "the CPython tests fail over kernel TCP already (see kernel.log): not a test of xio"
run_tests "$WORK/xio.log" xio_client 60 ||
  fail "the CPython tests fail under the shim: $(grep -cE '^(FAIL|ERROR):' "$WORK/xio.log") of 3 ($(grep -E '^(FAIL|ERROR):' "$WORK/xio.log" | sed -E 's/.*\.([A-Za-z]+)EventLoopTests.*/\1/' | paste -sd, -) loops; see xio.log)"

# One process holds both ends, so its one stats line is both roles. Each
# test's receiver reads at least 1 KiB, over shared memory.
require_stat client accel_conns -ge 3
require_stat client rx_bytes -ge 3072
compat_finish "$CLIENT_STATS" "$CLIENT_STATS"
