#!/usr/bin/env bash
# install_check.sh BUILD_DIR SOURCE_DIR - `cmake --install` puts the header,
# libraries, monitor and xio.pc in place, and a program built with
# `pkg-config --cflags --libs xio` against the installed tree links and runs.
set -u
build=$1 src=$2
dir=$(mktemp -d /tmp/xio-inst-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cmake --install "$build" --prefix "$dir/usr" >/dev/null || fail "cmake --install"
for f in include/xio.h bin/xio-monitor lib/libxio.so lib/libxio_preload.so lib/pkgconfig/xio.pc; do
  [ -e "$dir/usr/$f" ] || fail "missing $f"
done
export PKG_CONFIG_PATH=$dir/usr/lib/pkgconfig
cat >"$dir/p.c" <<'C'
#include <xio.h>
#include <stdio.h>
int main(void) { printf("%s\n", xio_strerror(-71)); return 0; }
C
cc "$dir/p.c" $(pkg-config --cflags --libs xio) -Wl,-rpath,"$dir/usr/lib" -o "$dir/p" ||
  fail "build against the installed tree"
"$dir/p" | grep -q "protocol" || fail "program did not run"
# Only the public API leaves libxio.so.
extra=$(nm -D --defined-only "$dir/usr/lib/libxio.so" | awk '$2 ~ /[TDBR]/ {print $3}' |
  grep -v '^xio_' | grep -v '^XIO_' || true)
[ -z "$extra" ] || fail "libxio.so exports non-API symbols: $extra"
echo "1 passed, 0 failed"
