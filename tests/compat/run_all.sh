#!/usr/bin/env bash
# run_all.sh BUILD_DIR [NAME...] - run the compatibility cases (all, or the
# named ones) one after the other; print each one's result and a summary.
# Exit status 0 only if every case passed. XIO_COMPAT_NO_PRELOAD=1 is passed
# through (program parts only).
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run_all.sh BUILD_DIR [NAME...]}
shift
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(redis nginx postgres memcached python_http python_asyncio socat node mixed git ssh nginx_proxy java erlang)
passed=0; failed=0; failed_names=()
for c in "${cases[@]}"; do
  start=$(date +%s)
  out=$(timeout -k 5 180 "$here/$c.sh" "$build" 2>&1)
  rc=$?
  secs=$(( $(date +%s) - start ))
  if [ $rc -eq 0 ] && grep -qx '1 passed, 0 failed' <<<"$out"; then
    passed=$((passed + 1))
    echo "PASS $c (${secs}s)"
    grep -E '^(server|client) stats:' <<<"$out" | sed 's/^/     /'
  else
    failed=$((failed + 1)); failed_names+=("$c")
    echo "FAIL $c (exit $rc, ${secs}s)"
    sed 's/^/     /' <<<"$out"
  fi
done
[ $failed -gt 0 ] && echo "compat: failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
