#!/usr/bin/env bash
# git.sh BUILD_DIR - git daemon (git://) with clone, push and pull, over
# protocol v0 and v2, both ends under the shim.
#
# git daemon forks a child per connection that runs `git upload-pack` or
# `git receive-pack` with the connection as its stdin and stdout (dup2 onto
# 0 and 1, then exec): the case the issue calls "exec with the socket as
# stdin and stdout". The client (clone, push, fetch) speaks over its socket
# from one process. Each step is checked: the cloned files and refs, the
# server's refs after a push, the pulled files in a second clone.
#
# Acceleration: the clients' connections and the daemon's carry the packs
# over shared memory (rx_bytes on both ends), or the connections moved back
# to TCP and each says why in an xio-left line (reason exec or stdio: git
# writes its ref advertisement with stdio on fd 1, which bypasses the shim).
. "$(dirname "$0")/lib.sh"
compat_init git "$@"
command -v git >/dev/null || fail "git is not installed (tools/deps)"
export GIT_CONFIG_NOSYSTEM=1 HOME=$WORK/home GIT_TERMINAL_PROMPT=0
mkdir -p "$HOME"
git config --global user.name "xio test"
git config --global user.email "xio@example.invalid"
git config --global init.defaultBranch main
git config --global protocol.allow always

srvroot=$WORK/srv
mkdir -p "$srvroot"
git init -q --bare "$srvroot/repo.git"
git -C "$srvroot/repo.git" config receive.denyCurrentBranch ignore
# A seed with a few files, one large enough to need several reads (1 MiB
# of random bytes: a pack that does not fit in one message).
seed=$WORK/seed
git init -q "$seed"
head -c 1048576 /dev/urandom >"$seed/blob.bin"
for i in $(seq 1 50); do echo "line $i" >>"$seed/text.txt"; done
git -C "$seed" add . && git -C "$seed" commit -q -m seed
git -C "$seed" push -q "$srvroot/repo.git" main:main || fail "seeding the bare repository"
chmod -R a+rwX "$srvroot"

port=$(free_port)
start_server daemon "$WORK/daemon.log" git daemon --reuseaddr --listen=127.0.0.1 \
  --port="$port" --base-path="$srvroot" --export-all --enable=receive-pack \
  --informative-errors --verbose "$srvroot"
wait_port "$port" "$daemon" || fail "git daemon did not start"
url=git://127.0.0.1:$port/repo.git

for v in 0 2; do
  a=$WORK/v$v-a; b=$WORK/v$v-b
  head=$(git -C "$srvroot/repo.git" rev-parse main)
  # clone: files and refs as in the seed.
  xio_client 30 git -c protocol.version=$v clone -q "$url" "$a" >"$WORK/clone$v.log" 2>&1 ||
    fail "v$v: clone exited $?: $(tail -3 "$WORK/clone$v.log")"
  [ "$(sha "$a/blob.bin")" = "$(sha "$seed/blob.bin")" ] || fail "v$v: cloned blob.bin differs"
  cmp -s "$a/text.txt" "$seed/text.txt" || fail "v$v: cloned text.txt differs"
  [ "$(git -C "$a" rev-parse HEAD)" = "$head" ] ||
    fail "v$v: cloned HEAD differs from the server's main"
  [ "$(git -C "$a" rev-parse origin/main)" = "$head" ] ||
    fail "v$v: origin/main differs from the server's main"
  # a second clone, which pulls later
  xio_client 30 git -c protocol.version=$v clone -q "$url" "$b" >"$WORK/clone$v-b.log" 2>&1 ||
    fail "v$v: second clone exited $?: $(tail -3 "$WORK/clone$v-b.log")"
  # push: a new commit on main and a new branch; the server's refs follow.
  head -c 262144 /dev/urandom >"$a/pushed-$v.bin"
  echo "pushed over v$v" >"$a/note-$v.txt"
  git -C "$a" add . && git -C "$a" commit -q -m "push v$v"
  xio_client 30 git -C "$a" -c protocol.version=$v push -q origin main "main:topic-$v" \
    >"$WORK/push$v.log" 2>&1 || fail "v$v: push exited $?: $(tail -3 "$WORK/push$v.log")"
  want=$(git -C "$a" rev-parse HEAD)
  [ "$(git -C "$srvroot/repo.git" rev-parse main)" = "$want" ] ||
    fail "v$v: the server's main is not the pushed commit"
  [ "$(git -C "$srvroot/repo.git" rev-parse "topic-$v")" = "$want" ] ||
    fail "v$v: the server has no branch topic-$v at the pushed commit"
  git -C "$srvroot/repo.git" fsck --no-progress >"$WORK/fsck$v.log" 2>&1 || fail "v$v: git fsck on the server: $(tail -3 "$WORK/fsck$v.log")"
  # pull into the second clone: the pushed files arrive, refs agree.
  xio_client 30 git -C "$b" -c protocol.version=$v pull -q --ff-only origin main \
    >"$WORK/pull$v.log" 2>&1 || fail "v$v: pull exited $?: $(tail -3 "$WORK/pull$v.log")"
  [ "$(git -C "$b" rev-parse HEAD)" = "$want" ] || fail "v$v: pulled HEAD is not the pushed commit"
  [ "$(sha "$b/pushed-$v.bin")" = "$(sha "$a/pushed-$v.bin")" ] || fail "v$v: pulled pushed-$v.bin differs"
  cmp -s "$b/note-$v.txt" "$a/note-$v.txt" || fail "v$v: pulled note-$v.txt differs"
  # ls-remote sees both branches.
  xio_client 20 git -c protocol.version=$v ls-remote "$url" >"$WORK/ls$v.out" 2>&1 ||
    fail "v$v: ls-remote exited $?"
  grep -q "^$want	refs/heads/topic-$v\$" "$WORK/ls$v.out" || fail "v$v: ls-remote lacks topic-$v: $(cat "$WORK/ls$v.out")"
  echo "  protocol v$v: clone, push (2 refs), pull, ls-remote: files and refs agree"
done
# The daemon saw the v2 clients ask for protocol v2 (--verbose logs it).
grep -q 'Extended attribute "protocol": version=2' "$WORK/daemon.log" ||
  fail "the daemon's log shows no client asking for protocol v2"
stop_server "$daemon" TERM 10

if [ "$NO_PRELOAD" != 1 ] && [ -z "$(left_lines "$SERVER_STATS" "$CLIENT_STATS")" ]; then
  # Accelerated all the way: four clones fetched the seed's 1 MiB of random
  # bytes, two pushes sent 256 KiB each, over shared memory.
  require_stat client rx_bytes -ge $((4 * 1048576))
  require_stat server rx_bytes -ge $((2 * 262144))
fi
# Or back over TCP, each connection that left saying why (the clients as
# peers): the daemon's children run upload-pack and receive-pack on stdin
# and stdout (exec), whose ref advertisement is written through stdio.
compat_finish_left "exec|stdio"
