#!/usr/bin/env bash
# package_install.sh BUILD_DIR - the Debian package installed for real:
# `apt-get install ./xio_*.deb` gives /usr/bin/xio whose `xio run` and
# `xio stat` work (starting a monitor), `xio check` finds the installed
# shim, pkg-config finds xio.pc, the systemd unit verifies; then the package
# is purged again. Needs root and no xio package installed already: else
# it exits 77, which ctest reports as skipped, with the reason.
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
. "$here/xio_pair.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: installing a package needs root"; exit 77; }
command -v apt-get >/dev/null || { echo "SKIP: no apt-get"; exit 77; }
if dpkg-query -W -f='${Status}' xio 2>/dev/null | grep -q "install ok installed"; then
  echo "SKIP: an xio package is installed already; not replacing it"
  exit 77
fi
dir=$(mktemp -d /tmp/xio-pkginst-XXXXXX)
chmod 755 "$dir"
installed=0
cleanup() {
  [ $installed = 1 ] && apt-get -o DPkg::Lock::Timeout=120 purge -y -qq xio >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
(cd "$build" && cpack -G DEB -B "$dir/pkg" >"$dir/cpack.log" 2>&1) ||
  fail "cpack -G DEB: $(tail -5 "$dir/cpack.log")"
deb=$(ls "$dir"/pkg/xio_*_*.deb | head -1)
cp "$deb" "$dir/" && deb=$dir/$(basename "$deb")
# apt reads the file as the _apt user when it can; a readable copy.
chmod 644 "$deb"
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq "$deb" \
  >"$dir/apt.log" 2>&1 || fail "apt-get install $deb: $(tail -5 "$dir/apt.log")"
installed=1
[ "$(command -v xio)" = /usr/bin/xio ] || fail "xio is not /usr/bin/xio but '$(command -v xio)'"
export XIO_MONITOR_SOCK=$dir/monitor.sock
xio check >"$dir/check.out" 2>&1
grep -q "^ok    shim: /usr/bin/../lib/libxio_preload.so loads" "$dir/check.out" ||
  fail "xio check: the installed shim: $(cat "$dir/check.out")"
xio_pair_check /usr/bin/xio "$dir" || fail "xio run / xio stat from the installed package"
[ "$(PKG_CONFIG_PATH= pkg-config --modversion xio)" = "$(dpkg-deb -f "$deb" Version)" ] ||
  fail "pkg-config does not find the installed xio.pc"
if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze verify /usr/lib/systemd/system/xio-monitor.service 2>&1) ||
    fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
fi
apt-get -o DPkg::Lock::Timeout=120 purge -y -qq xio >/dev/null 2>&1 || fail "apt-get purge xio"
installed=0
[ -e /usr/bin/xio ] && fail "/usr/bin/xio is still there after removal"
dpkg-query -W xio >/dev/null 2>&1 && fail "dpkg still knows xio after the purge: $(dpkg-query -W -f='${Status}' xio)"
echo "1 passed, 0 failed"
