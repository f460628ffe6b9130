/*
 * config.h - the xio-monitor's configuration: settings and ACL rules.
 *
 * The file format is documented in docs/config.md. Private to monitor/.
 *
 * Usage: xio_config_defaults() once, then xio_config_load() or
 * xio_config_parse_string() (again on reload), xio_acl_check() per pairing,
 * xio_config_free() at exit. A parse builds a complete new configuration
 * (defaults plus the file) and installs it only on success, so a bad file
 * at reload leaves the running configuration untouched.
 */
#ifndef XIO_MONITOR_CONFIG_H
#define XIO_MONITOR_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

enum xio_hugepages_mode { XIO_HUGE_AUTO = 0, XIO_HUGE_ON, XIO_HUGE_OFF };

/* One connection to judge: who connects to whom, as the monitor read it from
 * the two sockets it was handed. */
struct xio_acl_query {
	int family;                 /* AF_INET or AF_INET6 */
	uint8_t client_addr[16];    /* network byte order; IPv4 in the first 4 bytes */
	uint8_t server_addr[16];
	uint16_t client_port, server_port; /* host byte order */
	uint32_t client_uid, server_uid;
};

/* An address selector. family 0 is `any` (or no selector) and matches every
 * query; otherwise the query's family must be equal and its first `prefix`
 * bits equal to addr's. Bits of addr past the prefix are always zero.
 * IPv4-mapped IPv6 rules (::ffff:a.b.c.d/96..128) are stored as IPv4. */
struct xio_acl_cidr {
	int family;                 /* 0, AF_INET or AF_INET6 */
	unsigned prefix;            /* 0..32 or 0..128 */
	uint8_t addr[16];           /* network byte order; IPv4 in the first 4 bytes */
};

/* Which selectors a rule was written with (each at most once). */
enum {
	XIO_ACL_CLIENT = 1 << 0,
	XIO_ACL_SERVER = 1 << 1,
	XIO_ACL_PORT = 1 << 2,
	XIO_ACL_CLIENT_UID = 1 << 3,
	XIO_ACL_SERVER_UID = 1 << 4,
	XIO_ACL_SAME_UID = 1 << 5,
};

/* One allow/deny line. A selector that was not written is stored as its
 * match-everything value (family 0, full port and uid ranges), so matching
 * only tests `selectors` for same-uid. */
struct xio_acl_rule {
	int allow;                  /* 1 allow, 0 deny */
	unsigned line;              /* line in the file, for logs */
	unsigned selectors;         /* XIO_ACL_* bits */
	struct xio_acl_cidr client, server;
	uint16_t port_lo, port_hi;  /* server port, inclusive */
	uint32_t client_uid_lo, client_uid_hi;
	uint32_t server_uid_lo, server_uid_hi;
};

struct xio_config {
	size_t segment_size;        /* bytes per connection segment, default 2 MiB (2097152) */
	uint32_t max_msg;           /* largest single message/descriptor, default 65536 */
	uint32_t buffer_start;      /* a direction's window at first and after idling, default 128K */
	enum xio_hugepages_mode hugepages; /* default XIO_HUGE_AUTO */
	int default_allow;          /* 1 unless "default deny" */
	/* Most a process / all processes of one uid may hold at once:
	 * registered listeners; pending connections (intents not yet
	 * answered, and connections one side has not taken yet); connections
	 * (each segment the monitor keeps, from pairing to the last close);
	 * control sessions. All but listeners hold fds or mappings in the
	 * monitor: 0, the default, means "from the monitor's own fd limit, or
	 * for connections from vm.max_map_count" (limits.c), which also caps
	 * a number written here. limit_connections is of all uids together. */
	unsigned limit_process_listeners;   /* default 1024 */
	unsigned limit_process_pending;     /* default 0: from the fd limit */
	unsigned limit_process_connections; /* default 0: from the fd limit */
	unsigned limit_uid_listeners;       /* default 4096 */
	unsigned limit_uid_pending;         /* default 0: from the fd limit */
	unsigned limit_uid_connections;     /* default 0: from the fd limit */
	unsigned limit_uid_sessions;        /* default 0: from the fd limit */
	unsigned limit_connections;         /* default 0: from the map or fd limit */
	struct xio_acl_rule *rules; /* in file order; first match wins */
	size_t nrules;
};

/*
 * Fill cfg with the defaults and no rules. Must be called before the first
 * parse or load, since those free the rules cfg already holds.
 */
void xio_config_defaults(struct xio_config *cfg);

/*
 * Parse a configuration text. The result is the defaults plus what the text
 * sets; it replaces *cfg (whose old rules are freed) only on success.
 *
 * @cfg: an initialised configuration (see xio_config_defaults).
 * @name: the name used in error messages (a path); NULL means "<string>".
 * @text: NUL-terminated text; lines may be of any length.
 * @err, @errlen: buffer for the error message, or NULL. On error it holds
 *   "NAME:LINE: <what is wrong> '<bad token>'", truncated to errlen; on
 *   success it is set to "".
 * Returns 0, -EINVAL on a syntax or value error (cfg unchanged), or
 * -ENOMEM (cfg unchanged; err is "NAME: out of memory").
 */
int xio_config_parse_string(struct xio_config *cfg, const char *name, const char *text,
			    char *err, size_t errlen);

/*
 * Read the file at path and parse it as xio_config_parse_string does, with
 * path as the name.
 * Returns 0, -EINVAL or -ENOMEM as the parse does (-EINVAL also for a NUL
 * byte in the file), or the negative errno of open/read when the file cannot
 * be read (-ENOENT, -EACCES, -EISDIR...), with err set to "PATH: <strerror>".
 */
int xio_config_load(struct xio_config *cfg, const char *path, char *err, size_t errlen);

/*
 * The first rule whose selectors all match q, or NULL if none does. An
 * IPv4-mapped IPv6 query (::ffff:a.b.c.d) is matched as IPv4.
 */
const struct xio_acl_rule *xio_acl_match(const struct xio_config *cfg,
					 const struct xio_acl_query *q);

/*
 * 1 if the connection is allowed, 0 if denied: the first matching rule
 * decides, else cfg->default_allow.
 */
int xio_acl_check(const struct xio_config *cfg, const struct xio_acl_query *q);

/* Free the rules; cfg keeps its settings and holds no rules afterwards. */
void xio_config_free(struct xio_config *cfg);

#ifdef __cplusplus
}
#endif

#endif /* XIO_MONITOR_CONFIG_H */
