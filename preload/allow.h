/*
 * allow.h - XIO_ALLOW, the process's own list of the TCP destinations
 * (connect) and local listening addresses (listen) that the shim tries to
 * accelerate. Private to preload/. Syntax and semantics: docs/allowlist.md.
 *
 * The list is parsed once, at start-up, inside whatever program the shim
 * was preloaded into. So the parser keeps no global state, calls no
 * interposed function (getifaddrs() is the only socket-family call, and only
 * when the host's addresses are needed), uses no stdio apart from snprintf
 * into the caller's buffer, and leaves errno as it found it.
 */
#ifndef XIO_PRELOAD_ALLOW_H
#define XIO_PRELOAD_ALLOW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A parsed allowlist: a small immutable array of entries. Opaque. */
struct xio_allow;

/*
 * Parse an XIO_ALLOW value.
 *
 * spec:   the value; NULL, "" or only blanks mean the default: loopback
 *         (127.0.0.0/8 and ::1) and the host's own addresses (every address
 *         of every interface, read once here with getifaddrs()), any port.
 *         If getifaddrs() fails, the host's addresses are left out rather
 *         than failing the parse: not accelerating is always correct.
 * out:    on success, the new allowlist, to be released with
 *         xio_allow_free(); set to NULL on failure.
 * err:    on failure, a NUL-terminated message of the shape
 *         "XIO_ALLOW: bad token 'TOKEN': why", truncated to errlen; may be
 *         NULL when errlen is 0. Set to "" on success.
 * errlen: size of err.
 *
 * Returns 0, or:
 *   -EINVAL  spec is malformed (err names the token), or out is NULL;
 *   -ENOMEM  out of memory (err is "XIO_ALLOW: out of memory").
 * errno is left unchanged in every case.
 */
int xio_allow_parse(const char *spec, struct xio_allow **out, char *err, size_t errlen);

/*
 * Whether addr is on the allowlist: 1 if some entry matches both its
 * address and its port, else 0. Called on every connect() and listen(), so
 * it only scans a small array: no allocation, no system call, errno
 * untouched.
 *
 * a:    a parsed allowlist; NULL matches nothing.
 * addr: a struct sockaddr_in or sockaddr_in6, port included. An IPv4-mapped
 *       IPv6 address (::ffff:a.b.c.d) is judged as the IPv4 address. Port 0
 *       (not yet bound) matches only entries without a port restriction.
 *       The unspecified address (0.0.0.0 or ::, a wildcard listener) matches
 *       when any entry admits the port: 0.0.0.0 any IPv4 or `any` entry, ::
 *       any entry at all, since such a listener is reachable at every
 *       allowed local address.
 * len:  the size of *addr; a NULL addr, another family or a len too short
 *       for the family match nothing.
 *
 * Returns 1 (allowed) or 0 (left to the kernel).
 */
int xio_allow_match(const struct xio_allow *a, const struct sockaddr *addr, socklen_t len);

/* Release an allowlist from xio_allow_parse(); NULL is a no-op. errno is
 * left unchanged. */
void xio_allow_free(struct xio_allow *a);

#ifdef __cplusplus
}
#endif

#endif /* XIO_PRELOAD_ALLOW_H */
