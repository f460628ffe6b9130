/*
 * xio_tool.h - the xio command (tools/xio): what its sub-commands share.
 * Private to tools/xio.
 *
 * Exit status, for every sub-command but run: 0 success, 1 the command
 * ran and found a problem (no monitor answers, a check failed), 2 bad
 * usage. xio run exits with the program's own status; when xio itself
 * fails it exits 125, 126 if the program cannot be executed and 127 if
 * it is not found (as env(1) and timeout(1) do).
 */
#ifndef XIO_TOOL_H
#define XIO_TOOL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "xio/ctl.h"

enum { XIO_EXIT_OK = 0, XIO_EXIT_PROBLEM = 1, XIO_EXIT_USAGE = 2 };
enum { XIO_RUN_FAILED = 125, XIO_RUN_NOEXEC = 126, XIO_RUN_NOTFOUND = 127 };

/* Sub-commands: argv[0] is the sub-command's name. */
int xio_cmd_run(int argc, char **argv);
int xio_cmd_monitor(int argc, char **argv);
int xio_cmd_stat(int argc, char **argv);
int xio_cmd_check(int argc, char **argv);

/* locate.c: where the parts are, and the monitor's socket. */

/* The shim (libxio_preload.so) or the monitor binary: next to this
 * installed program first, else in the build tree it was built in.
 * Returns a path that exists, or NULL. */
const char *xio_tool_shim_path(void);
const char *xio_tool_monitor_path(void);

/* The monitor socket xio talks to: $XIO_MONITOR_SOCK if set; else for root
 * the system one (/run/xio/monitor.sock); else the system one if a monitor
 * answers there, and otherwise the user's own ($XDG_RUNTIME_DIR/xio/ or
 * /tmp/xio-UID/, where xio run starts one). */
const char *xio_tool_sock_path(void);

/* Whether a monitor accepts connections on path (1) that this user's
 * programs would use (xio_tool_ctl_open). */
int xio_tool_monitor_answers(const char *path);

/* Whether the directory of the socket path may hold this user's monitor:
 * if it exists, it is a directory (not a symbolic link) of this user or of
 * root that nobody else may write to (else whoever owns it could put a
 * monitor of theirs there). Returns 0, or -1 with why in why (a whole
 * sentence, naming the directory and its owner). */
int xio_tool_sock_dir_ok(const char *path, char *why, size_t len);

/* Start a monitor on path that stops by itself idle_secs after the last
 * process left, and wait until it answers. Its log goes to log_path.
 * Returns 0, or -1 after printing why on stderr (prefixed with who). */
int xio_tool_monitor_spawn(const char *who, const char *path, unsigned idle_secs,
			   const char *log_path);

/* ctl.c: a control connection of the tool's own. */

/* Connect to the monitor at path (close-on-exec). Returns the fd or -errno,
 * or XIO_TOOL_UNTRUSTED if the monitor that answers is one this user's
 * programs would not use (xio_ctl_peer_trusted: neither root nor this
 * user), with its uid in *mon_uid (if not NULL); nothing is sent to it. */
#define XIO_TOOL_UNTRUSTED (-EPERM)
int xio_tool_ctl_open(const char *path, uint32_t *mon_uid);
/* HELLO: from now on the monitor counts this process as one using it. */
int xio_tool_ctl_hello(int fd);
/* The monitor's counts. Returns 0 or -errno. */
int xio_tool_ctl_status(int fd, struct xio_msg_status *st);
/* The whole connection table, in id order: *out (malloc'ed, free it) and
 * *n entries. Returns 0 or -errno. */
int xio_tool_ctl_conns(int fd, struct xio_msg_conn_info **out, size_t *n);

/* "127.0.0.1:6379", "[::1]:80", or "?" for an unknown endpoint. */
const char *xio_tool_ep_str(const struct xio_msg_ep *ep, char *buf, size_t len);

#endif
