#!/usr/bin/env bash
# ssh.sh BUILD_DIR - OpenSSH: sshd on a high loopback port with a throwaway
# host key and a throwaway authorized key (both in the case's temp dir),
# ssh running commands, and scp of a checksummed 4 MiB file both ways (the
# SFTP protocol, scp's default, and the legacy one with -O), both ends under
# the shim. Twice: sshd in its default mode (it re-executes itself for each
# connection, the socket on its stdin and stdout, and its pre-auth child
# runs in a seccomp sandbox) and with -r (no re-exec).
#
# The session's own processes (the shell, scp -t, sftp-server) get a fresh
# environment from sshd: they run without the shim and talk to sshd over
# pipes. The accelerated connection is ssh <-> sshd.
#
# Acceleration: the clients and sshd must show bytes over shared memory,
# or each server process whose connection moved back to TCP must say why
# (xio-left lines: exec, stdio, seccomp).
. "$(dirname "$0")/lib.sh"
compat_init ssh "$@"
sshd=/usr/sbin/sshd
[ -x "$sshd" ] || fail "sshd is not installed (openssh-server, tools/deps)"
command -v ssh >/dev/null && command -v scp >/dev/null && command -v ssh-keygen >/dev/null ||
  fail "ssh, scp or ssh-keygen is missing (openssh-client, tools/deps)"
[ "$(id -u)" = 0 ] || fail "sshd must run as root to log in (run the case as root)"
# sshd's privilege separation directory; created as the package would.
[ -d /run/sshd ] || { mkdir -p /run/sshd && chmod 755 /run/sshd; } || fail "cannot create /run/sshd"

ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key" -C xio-test-host >/dev/null || fail "ssh-keygen (host key)"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/user_key" -C xio-test-user >/dev/null || fail "ssh-keygen (user key)"
cp "$WORK/user_key.pub" "$WORK/authorized_keys"
chmod 600 "$WORK/host_key" "$WORK/user_key"

head -c $((4 * 1048576)) /dev/urandom >"$WORK/up.bin"
head -c $((4 * 1048576)) /dev/urandom >"$WORK/down.bin"
chmod 644 "$WORK/down.bin"

ssh_opts=(-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=10 -o LogLevel=ERROR
          -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -i "$WORK/user_key")

# one_mode NAME [SSHD_FLAGS...]: start sshd, run the client steps, stop it.
# Connections sshd's processes moved back to TCP: their own lines, and the
# clients' lines naming sshd's reason (its sandboxed pre-authentication
# child, under `sshd -r`, can open no stats file: RLIMIT_NOFILE 1).
sshd_moves() {
  echo $(($(left_lines "$SERVER_STATS" | grep -vc ' reason=peer ') +
    $(left_lines "$CLIENT_STATS" | grep -cE ' reason=peer .* peer=(seccomp|stdio|exec)$')))
}

one_mode() {
  local name=$1; shift
  local port d=$WORK/$name
  port=$(free_port)
  mkdir -p "$d"
  cat >"$d/sshd_config" <<EOF
ListenAddress 127.0.0.1
HostKey $WORK/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
Subsystem sftp internal-sftp
EOF
  "$sshd" -t -f "$d/sshd_config" -p "$port" >"$d/sshd-t.out" 2>&1 ||
    fail "$name: sshd -t: $(cat "$d/sshd-t.out")"
  start_server srv "$d/sshd.log" "$sshd" -D -e -f "$d/sshd_config" -p "$port" "$@"
  wait_port "$port" "$srv" || fail "$name: sshd did not start: $(tail -5 "$d/sshd.log")"
  local to=(-p "$port" root@127.0.0.1) out
  local rx0 left0
  rx0=$(stats_sum "$SERVER_STATS" rx_bytes)
  left0=$(sshd_moves)

  # A command, its output and exit status.
  out=$(xio_client 30 ssh "${ssh_opts[@]}" "${to[@]}" 'echo hello-$((6*7)); exit 3' 2>"$d/ssh1.err")
  local rc=$?
  [ "$rc" = 3 ] || fail "$name: ssh command exited $rc, want 3: $(tail -3 "$d/ssh1.err"; tail -5 "$d/sshd.log")"
  [ "$out" = "hello-42" ] || fail "$name: ssh command printed '$out', want hello-42"
  # stdin through the connection to a remote command and back.
  out=$(xio_client 30 ssh "${ssh_opts[@]}" "${to[@]}" 'sha256sum' <"$WORK/up.bin" 2>"$d/ssh2.err") ||
    fail "$name: ssh sha256sum exited $?: $(tail -3 "$d/ssh2.err")"
  [ "${out%% *}" = "$(sha "$WORK/up.bin")" ] || fail "$name: the remote sha256 of 4 MiB sent on stdin differs"

  # scp both ways, SFTP (default) and legacy (-O).
  local mode flag
  for mode in sftp legacy; do
    flag=(); [ $mode = legacy ] && flag=(-O)
    rm -f "$d/up-$mode.bin" "$d/down-$mode.bin"
    xio_client 60 scp -q "${flag[@]}" "${ssh_opts[@]}" -P "$port" "$WORK/up.bin" \
      "root@127.0.0.1:$d/up-$mode.bin" 2>"$d/scp-up-$mode.err" ||
      fail "$name: scp ($mode) upload exited $?: $(tail -3 "$d/scp-up-$mode.err")"
    [ "$(sha "$d/up-$mode.bin")" = "$(sha "$WORK/up.bin")" ] || fail "$name: scp ($mode) upload: checksum differs"
    xio_client 60 scp -q "${flag[@]}" "${ssh_opts[@]}" -P "$port" \
      "root@127.0.0.1:$WORK/down.bin" "$d/down-$mode.bin" 2>"$d/scp-down-$mode.err" ||
      fail "$name: scp ($mode) download exited $?: $(tail -3 "$d/scp-down-$mode.err")"
    [ "$(sha "$d/down-$mode.bin")" = "$(sha "$WORK/down.bin")" ] || fail "$name: scp ($mode) download: checksum differs"
  done
  echo "  $name: ssh command (output, exit status), 4 MiB through stdin, scp sftp and legacy both ways: checksums agree"
  stop_server "$srv" TERM 10
  no_crash_in "$d/sshd.log" "fatal|seccomp|Bad system call|SIGSYS" "sshd ($name)"
  # In this mode too, sshd's side either read over shared memory or
  # reported why its connections moved back to TCP (the clients' lines
  # only say that the other end left).
  if [ "$NO_PRELOAD" != 1 ]; then
    local rx1 left1
    rx1=$(stats_sum "$SERVER_STATS" rx_bytes)
    left1=$(sshd_moves)
    [ "$rx1" -gt "$rx0" ] || [ "$left1" -gt "$left0" ] ||
      fail "$name: sshd's processes read nothing over shared memory and report no connection moved back to TCP (xio-left lines: none from sshd, $(left_lines "$CLIENT_STATS" | grep -c ' reason=peer ') peer lines from the clients so far)"
    echo "  $name: sshd: $((rx1 - rx0)) bytes read over shared memory, $((left1 - left0)) connection(s) moved back to TCP"
  fi
}

one_mode reexec
one_mode norexec -r

if [ "$NO_PRELOAD" != 1 ] && [ -z "$(left_lines "$SERVER_STATS" "$CLIENT_STATS")" ]; then
  # Accelerated all the way. Each mode moved 2 x 4 MiB each way at least,
  # plus 4 MiB on stdin (SSH's own framing only adds to it).
  require_stat server rx_bytes -ge $((2 * 3 * 4 * 1048576))
  require_stat client rx_bytes -ge $((2 * 2 * 4 * 1048576))
fi
# Or back over TCP, each connection that left saying why: sshd re-executes
# itself with the socket on stdin and stdout, and its pre-auth child
# installs a seccomp filter.
compat_finish_left "exec|stdio|seccomp"
