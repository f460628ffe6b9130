#!/usr/bin/env bash
# package_check.sh BUILD_DIR - `cpack -G DEB` builds xio_VERSION_ARCH.deb
# holding libxio, the shim, xio-monitor, the xio command, the header,
# xio.pc, the systemd unit and the docs, with its library dependencies;
# unpacked anywhere, its own xio finds its own shim and monitor, and `xio
# run` and `xio stat` work from it. (package_install.sh installs it for
# real with apt.)
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
. "$here/xio_pair.sh"
dir=$(mktemp -d /tmp/xio-pkg-XXXXXX)
chmod 755 "$dir"
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
(cd "$build" && cpack -G DEB -B "$dir/pkg" >"$dir/cpack.log" 2>&1) ||
  fail "cpack -G DEB: $(tail -5 "$dir/cpack.log")"
deb=$(ls "$dir"/pkg/xio_*_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || fail "no xio_*.deb in $dir/pkg"
dpkg-deb -c "$deb" | awk '{ print $6 }' >"$dir/files"
for f in usr/bin/xio usr/bin/xio-monitor usr/lib/libxio.so.0 usr/lib/libxio_preload.so \
  usr/include/xio.h usr/lib/pkgconfig/xio.pc usr/lib/systemd/system/xio-monitor.service \
  usr/share/doc/xio/configuration.md; do
  grep -qx "./$f" "$dir/files" || fail "the package lacks /$f"
done
dpkg-deb -f "$deb" Depends | grep -q "librte-ring" || fail "Depends: $(dpkg-deb -f "$deb" Depends)"
dpkg-deb -x "$deb" "$dir/root" || fail "dpkg-deb -x"
xio=$dir/root/usr/bin/xio
export XIO_MONITOR_SOCK=$dir/monitor.sock
"$xio" check >"$dir/check.out" 2>&1
grep -q "^ok    shim: $dir/root/usr/bin/../lib/libxio_preload.so loads" "$dir/check.out" ||
  fail "the unpacked xio does not use its own shim: $(cat "$dir/check.out")"
xio_pair_check "$xio" "$dir" || fail "xio run / xio stat from the unpacked package"
grep -q "^ExecStart=xio-monitor --foreground" "$dir/root/usr/lib/systemd/system/xio-monitor.service" ||
  fail "the unit does not start xio-monitor in the foreground"
# The monitor xio run started came from the package too, and stops by itself.
for _ in $(seq 200); do [ -e "$XIO_MONITOR_SOCK" ] || break; sleep 0.05; done
[ -e "$XIO_MONITOR_SOCK" ] && fail "the monitor xio run started did not stop"
echo "1 passed, 0 failed"
