/*
 * config.c - parse the xio-monitor's configuration and evaluate its ACL.
 *
 * The whole text is copied once and cut in place: lines at '\n', comments
 * at '#', tokens at blanks. Tokens are consumed one at a time from a cursor,
 * so neither line length nor token count has a limit and no fixed-size
 * buffer holds input. Every error goes through fail(), which gives the one
 * message shape "NAME:LINE: <what is wrong> '<bad token>'".
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define KIB (1ull << 10)
#define MIB (1ull << 20)
#define GIB (1ull << 30)

#define BLANKS " \t\r\v\f"

struct parser {
	const char *name;
	unsigned line;
	char *cur;                  /* rest of the current line */
	char *err;
	size_t errlen;
	struct xio_config cfg;      /* built here, installed on success */
	size_t rules_cap;           /* allocated length of cfg.rules */
	/* Line and token of each setting seen, for duplicates and for the
	 * segment-size/max-msg check that can only run at the end. */
	unsigned seg_line, msg_line, huge_line, default_line, start_line;
	const char *start_tok;
	unsigned limit_line[8]; /* the limit-* settings, in limit_keywords order */
	const char *seg_tok, *msg_tok;
};

static int fail(struct parser *p, const char *what, const char *tok)
{
	if (p->err && p->errlen)
		snprintf(p->err, p->errlen, "%s:%u: %s '%s'", p->name, p->line, what, tok);
	return -EINVAL;
}

static int fail_nomem(struct parser *p)
{
	if (p->err && p->errlen)
		snprintf(p->err, p->errlen, "%s: out of memory", p->name);
	return -ENOMEM;
}

/* The next token of the current line, NUL-terminated in place, or NULL. */
static char *next_token(struct parser *p)
{
	char *tok;

	p->cur += strspn(p->cur, BLANKS);
	if (!*p->cur)
		return NULL;
	tok = p->cur;
	p->cur += strcspn(p->cur, BLANKS);
	if (*p->cur)
		*p->cur++ = '\0';
	return tok;
}

static int take_value(struct parser *p, const char *kw, char **val)
{
	*val = next_token(p);
	return *val ? 0 : fail(p, "missing value for", kw);
}

static int expect_end(struct parser *p)
{
	char *tok = next_token(p);

	return tok ? fail(p, "trailing garbage", tok) : 0;
}

/*
 * Decimal digits only, from s up to end: no sign, no blanks, no base
 * prefix, so "80x", "+80" and "" are -EINVAL. The value saturates at
 * UINT64_MAX instead of wrapping, so a huge number is reported as out of
 * range by the caller rather than as a small one.
 */
static int parse_digits(const char *s, const char *end, uint64_t *out)
{
	uint64_t v = 0;

	if (s == end)
		return -EINVAL;
	for (; s < end; s++) {
		unsigned d = (unsigned char)*s - '0';

		if (d > 9)
			return -EINVAL;
		v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
	}
	*out = v;
	return 0;
}

/* "N" or "N-M" with min <= N <= M <= max; range_what names the range error. */
static int parse_range(struct parser *p, const char *tok, uint64_t min, uint64_t max,
		       const char *range_what, uint64_t *lo, uint64_t *hi)
{
	const char *end = tok + strlen(tok);
	const char *dash = strchr(tok, '-');

	if (parse_digits(tok, dash ? dash : end, lo))
		return fail(p, "bad number", tok);
	*hi = *lo;
	if (dash && parse_digits(dash + 1, end, hi))
		return fail(p, "bad number", tok);
	if (*lo < min || *lo > max || *hi < min || *hi > max)
		return fail(p, range_what, tok);
	if (*lo > *hi)
		return fail(p, "reversed range", tok);
	return 0;
}

/* Digits with an optional K, M or G (binary, either case). */
static int parse_size(const char *tok, uint64_t *out)
{
	const char *end = tok + strlen(tok);
	unsigned shift = 0;
	uint64_t v;

	switch (end > tok ? end[-1] : 0) {
	case 'K': case 'k': shift = 10; break;
	case 'M': case 'm': shift = 20; break;
	case 'G': case 'g': shift = 30; break;
	}
	if (shift)
		end--;
	if (parse_digits(tok, end, &v))
		return -EINVAL;
	*out = v > (UINT64_MAX >> shift) ? UINT64_MAX : v << shift;
	return 0;
}

static int is_pow2_between(uint64_t v, uint64_t min, uint64_t max)
{
	return v >= min && v <= max && (v & (v - 1)) == 0;
}

/* Settings may appear once; a second one is more likely a mistake than an
 * override, and silently taking either would hide it. */
static int once(struct parser *p, unsigned *seen_line, const char *kw)
{
	if (*seen_line)
		return fail(p, "duplicate setting", kw);
	*seen_line = p->line;
	return 0;
}

static int kw_segment_size(struct parser *p, const char *kw)
{
	char *val;
	uint64_t v;
	int r;

	if ((r = once(p, &p->seg_line, kw)) || (r = take_value(p, kw, &val)))
		return r;
	if (parse_size(val, &v))
		return fail(p, "bad size", val);
	if (!is_pow2_between(v, 256 * KIB, GIB))
		return fail(p, "segment-size must be a power of two from 256K to 1G", val);
	p->cfg.segment_size = v;
	p->seg_tok = val;
	return expect_end(p);
}

static int kw_max_msg(struct parser *p, const char *kw)
{
	char *val;
	uint64_t v;
	int r;

	if ((r = once(p, &p->msg_line, kw)) || (r = take_value(p, kw, &val)))
		return r;
	if (parse_size(val, &v))
		return fail(p, "bad size", val);
	if (!is_pow2_between(v, 4 * KIB, MIB))
		return fail(p, "max-msg must be a power of two from 4K to 1M", val);
	p->cfg.max_msg = v;
	p->msg_tok = val;
	return expect_end(p);
}

static int kw_buffer_start(struct parser *p, const char *kw)
{
	char *val;
	uint64_t v;
	int r;

	if ((r = once(p, &p->start_line, kw)) || (r = take_value(p, kw, &val)))
		return r;
	if (parse_size(val, &v))
		return fail(p, "bad size", val);
	if (!is_pow2_between(v, 16 * KIB, 512 * MIB))
		return fail(p, "buffer-start must be a power of two from 16K to 512M", val);
	p->cfg.buffer_start = (uint32_t)v;
	p->start_tok = val;
	return expect_end(p);
}

static int kw_hugepages(struct parser *p, const char *kw)
{
	char *val;
	int r;

	if ((r = once(p, &p->huge_line, kw)) || (r = take_value(p, kw, &val)))
		return r;
	if (!strcmp(val, "auto"))
		p->cfg.hugepages = XIO_HUGE_AUTO;
	else if (!strcmp(val, "on"))
		p->cfg.hugepages = XIO_HUGE_ON;
	else if (!strcmp(val, "off"))
		p->cfg.hugepages = XIO_HUGE_OFF;
	else
		return fail(p, "hugepages must be auto, on or off", val);
	return expect_end(p);
}

static int kw_default(struct parser *p, const char *kw)
{
	char *val;
	int r;

	if ((r = once(p, &p->default_line, kw)) || (r = take_value(p, kw, &val)))
		return r;
	if (!strcmp(val, "allow"))
		p->cfg.default_allow = 1;
	else if (!strcmp(val, "deny"))
		p->cfg.default_allow = 0;
	else
		return fail(p, "default must be allow or deny", val);
	return expect_end(p);
}

/* What one process, all processes of one uid, and everyone together may
 * hold in the monitor at once (docs/config.md, "Limits"). Those that hold
 * fds or connections may be "auto": from the monitor's own fd limit or
 * vm.max_map_count, as when not written. */
static const struct limit_keyword {
	const char *name;
	size_t offset;
	int holds_fds;
} limit_keywords[] = {
	{ "limit-process-listeners", offsetof(struct xio_config, limit_process_listeners), 0 },
	{ "limit-process-pending", offsetof(struct xio_config, limit_process_pending), 1 },
	{ "limit-process-connections", offsetof(struct xio_config, limit_process_connections), 1 },
	{ "limit-uid-listeners", offsetof(struct xio_config, limit_uid_listeners), 0 },
	{ "limit-uid-pending", offsetof(struct xio_config, limit_uid_pending), 1 },
	{ "limit-uid-connections", offsetof(struct xio_config, limit_uid_connections), 1 },
	{ "limit-uid-sessions", offsetof(struct xio_config, limit_uid_sessions), 1 },
	{ "limit-connections", offsetof(struct xio_config, limit_connections), 1 },
};

static int kw_limit(struct parser *p, const char *kw)
{
	char *val;
	uint64_t v;
	size_t i = 0;
	int r;

	while (strcmp(limit_keywords[i].name, kw))
		i++;
	if ((r = once(p, &p->limit_line[i], kw)) || (r = take_value(p, kw, &val)))
		return r;
	if (limit_keywords[i].holds_fds && !strcmp(val, "auto")) {
		*(unsigned *)((char *)&p->cfg + limit_keywords[i].offset) = 0;
		return expect_end(p);
	}
	if (parse_digits(val, val + strlen(val), &v))
		return fail(p, "bad number", val);
	if (v < 1 || v > 1000000)
		return fail(p, "limit must be from 1 to 1000000", val);
	*(unsigned *)((char *)&p->cfg + limit_keywords[i].offset) = (unsigned)v;
	return expect_end(p);
}

/* ::ffff:a.b.c.d */
static int is_v4_mapped(const uint8_t a[16])
{
	static const uint8_t pfx[12] = { [10] = 0xff, [11] = 0xff };

	return !memcmp(a, pfx, sizeof(pfx));
}

/* Zero the bits past the prefix, so matching can compare whole bytes. */
static void mask_host_bits(struct xio_acl_cidr *c)
{
	unsigned i;

	for (i = 0; i < 16; i++) {
		unsigned bits = c->prefix > i * 8 ? c->prefix - i * 8 : 0;

		if (bits < 8)
			c->addr[i] &= (uint8_t)(0xff00u >> bits);
	}
}

/* "any", or an IPv4/IPv6 address with an optional /prefix. */
static int parse_cidr(struct parser *p, const char *tok, struct xio_acl_cidr *c)
{
	const char *slash = strchr(tok, '/');
	size_t len = slash ? (size_t)(slash - tok) : strlen(tok);
	char addr[INET6_ADDRSTRLEN];
	uint64_t prefix;

	memset(c, 0, sizeof(*c));
	if (!strcmp(tok, "any"))
		return 0;
	if (len >= sizeof(addr))
		return fail(p, "bad address", tok);
	memcpy(addr, tok, len);
	addr[len] = '\0';
	if (inet_pton(AF_INET, addr, c->addr) == 1)
		c->family = AF_INET;
	else if (inet_pton(AF_INET6, addr, c->addr) == 1)
		c->family = AF_INET6;
	else
		return fail(p, "bad address", tok);
	prefix = c->family == AF_INET ? 32 : 128;
	if (slash && parse_digits(slash + 1, slash + strlen(slash), &prefix))
		return fail(p, "bad prefix", tok);
	if (prefix > (c->family == AF_INET ? 32u : 128u))
		return fail(p, "prefix out of range", tok);
	c->prefix = prefix;
	/* Queries are normalised to IPv4 when mapped; do the same to rules
	 * so that ::ffff:10.0.0.0/104 means 10.0.0.0/8 rather than nothing. */
	if (c->family == AF_INET6 && c->prefix >= 96 && is_v4_mapped(c->addr)) {
		memmove(c->addr, c->addr + 12, 4);
		memset(c->addr + 4, 0, 12);
		c->family = AF_INET;
		c->prefix -= 96;
	}
	mask_host_bits(c);
	return 0;
}

/* A query has one family, so a rule with an IPv4 and an IPv6 side could
 * never match: that is a mistake in the file, not a rule. */
static int sel_addr(struct parser *p, struct xio_acl_rule *r, const char *val,
		    struct xio_acl_cidr *c)
{
	int ret = parse_cidr(p, val, c);

	if (ret)
		return ret;
	if (r->client.family && r->server.family && r->client.family != r->server.family)
		return fail(p, "client and server address families differ", val);
	return 0;
}

static int sel_client(struct parser *p, struct xio_acl_rule *r, const char *val)
{
	return sel_addr(p, r, val, &r->client);
}

static int sel_server(struct parser *p, struct xio_acl_rule *r, const char *val)
{
	return sel_addr(p, r, val, &r->server);
}

static int sel_port(struct parser *p, struct xio_acl_rule *r, const char *val)
{
	uint64_t lo, hi;
	int ret = parse_range(p, val, 1, 65535, "port out of range", &lo, &hi);

	if (ret)
		return ret;
	r->port_lo = lo;
	r->port_hi = hi;
	return 0;
}

static int sel_client_uid(struct parser *p, struct xio_acl_rule *r, const char *val)
{
	uint64_t lo, hi;
	int ret = parse_range(p, val, 0, UINT32_MAX, "uid out of range", &lo, &hi);

	if (ret)
		return ret;
	r->client_uid_lo = lo;
	r->client_uid_hi = hi;
	return 0;
}

static int sel_server_uid(struct parser *p, struct xio_acl_rule *r, const char *val)
{
	uint64_t lo, hi;
	int ret = parse_range(p, val, 0, UINT32_MAX, "uid out of range", &lo, &hi);

	if (ret)
		return ret;
	r->server_uid_lo = lo;
	r->server_uid_hi = hi;
	return 0;
}

static const struct selector {
	const char *name;
	unsigned bit;
	/* NULL: the selector takes no value. */
	int (*parse)(struct parser *p, struct xio_acl_rule *r, const char *val);
} selectors[] = {
	{ "client", XIO_ACL_CLIENT, sel_client },
	{ "server", XIO_ACL_SERVER, sel_server },
	{ "port", XIO_ACL_PORT, sel_port },
	{ "client-uid", XIO_ACL_CLIENT_UID, sel_client_uid },
	{ "server-uid", XIO_ACL_SERVER_UID, sel_server_uid },
	{ "same-uid", XIO_ACL_SAME_UID, NULL },
};

static const struct selector *find_selector(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(selectors) / sizeof(selectors[0]); i++)
		if (!strcmp(selectors[i].name, name))
			return &selectors[i];
	return NULL;
}

static int parse_selector(struct parser *p, struct xio_acl_rule *r, const char *name)
{
	const struct selector *s = find_selector(name);
	char *val;
	int ret;

	if (!s)
		return fail(p, "unknown selector", name);
	if (r->selectors & s->bit)
		return fail(p, "duplicated selector", name);
	r->selectors |= s->bit;
	if (!s->parse)
		return 0;
	if ((ret = take_value(p, name, &val)))
		return ret;
	return s->parse(p, r, val);
}

static int add_rule(struct parser *p, const struct xio_acl_rule *r)
{
	struct xio_config *cfg = &p->cfg;
	struct xio_acl_rule *rules;
	size_t cap = p->rules_cap ? p->rules_cap * 2 : 8;

	if (cfg->nrules == p->rules_cap) {
		rules = realloc(cfg->rules, cap * sizeof(*rules));
		if (!rules)
			return fail_nomem(p);
		cfg->rules = rules;
		p->rules_cap = cap;
	}
	cfg->rules[cfg->nrules++] = *r;
	return 0;
}

static int parse_rule(struct parser *p, int allow)
{
	struct xio_acl_rule r = {
		.allow = allow,
		.line = p->line,
		.port_lo = 0, .port_hi = UINT16_MAX,
		.client_uid_lo = 0, .client_uid_hi = UINT32_MAX,
		.server_uid_lo = 0, .server_uid_hi = UINT32_MAX,
	};
	char *tok;
	int ret;

	while ((tok = next_token(p)))
		if ((ret = parse_selector(p, &r, tok)))
			return ret;
	return add_rule(p, &r);
}

static int kw_allow(struct parser *p, const char *kw)
{
	(void)kw;
	return parse_rule(p, 1);
}

static int kw_deny(struct parser *p, const char *kw)
{
	(void)kw;
	return parse_rule(p, 0);
}

static const struct keyword {
	const char *name;
	int (*parse)(struct parser *p, const char *kw);
} keywords[] = {
	{ "segment-size", kw_segment_size },
	{ "max-msg", kw_max_msg },
	{ "buffer-start", kw_buffer_start },
	{ "hugepages", kw_hugepages },
	{ "default", kw_default },
	{ "limit-process-listeners", kw_limit },
	{ "limit-process-pending", kw_limit },
	{ "limit-process-connections", kw_limit },
	{ "limit-uid-listeners", kw_limit },
	{ "limit-uid-pending", kw_limit },
	{ "limit-uid-connections", kw_limit },
	{ "limit-uid-sessions", kw_limit },
	{ "limit-connections", kw_limit },
	{ "allow", kw_allow },
	{ "deny", kw_deny },
};

static int parse_line(struct parser *p)
{
	char *kw = next_token(p);
	size_t i;

	if (!kw)
		return 0;
	for (i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
		if (!strcmp(keywords[i].name, kw))
			return keywords[i].parse(p, kw);
	return fail(p, "unknown keyword", kw);
}

/* buf is consumed: cut into lines, comments and tokens in place. */
static int parse_lines(struct parser *p, char *buf)
{
	char *line, *next;
	int ret;

	for (line = buf; line; line = next) {
		p->line++;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		p->cur = line;
		p->cur[strcspn(p->cur, "#")] = '\0';
		if ((ret = parse_line(p)))
			return ret;
	}
	return 0;
}

/*
 * The one check that involves two settings, run once both are known. A
 * max-msg left at its default shrinks to segment-size/8, so that
 * "segment-size 256K" alone is valid. When both are written, the error
 * blames whichever line came last, since that one broke it.
 */
static int check_sizes(struct parser *p)
{
	if (p->start_line && p->cfg.buffer_start > p->cfg.segment_size / 2) {
		p->line = p->start_line;
		return fail(p, "buffer-start exceeds segment-size/2", p->start_tok);
	}
	if (p->cfg.max_msg <= p->cfg.segment_size / 8)
		return 0;
	if (!p->msg_line) {
		p->cfg.max_msg = p->cfg.segment_size / 8;
		return 0;
	}
	if (p->msg_line > p->seg_line) {
		p->line = p->msg_line;
		return fail(p, "max-msg exceeds segment-size/8", p->msg_tok);
	}
	p->line = p->seg_line;
	return fail(p, "segment-size is less than 8 times max-msg", p->seg_tok);
}

void xio_config_defaults(struct xio_config *cfg)
{
	*cfg = (struct xio_config){
		.segment_size = 2 * MIB,
		.max_msg = 64 * KIB,
		.buffer_start = 128 * KIB,
		.hugepages = XIO_HUGE_AUTO,
		.default_allow = 1,
		.limit_process_listeners = 1024,
		.limit_uid_listeners = 4096,
		/* The limits on what holds fds come from the monitor's own fd
		 * limit (limits.c): a fixed number is too many for a monitor
		 * with 1024 fds, and needlessly few for one with a million. */
		.limit_process_pending = 0,
		.limit_process_connections = 0,
		.limit_uid_pending = 0,
		.limit_uid_connections = 0,
		.limit_uid_sessions = 0,
		.limit_connections = 0,
		.rules = NULL,
		.nrules = 0,
	};
}

int xio_config_parse_string(struct xio_config *cfg, const char *name, const char *text,
			    char *err, size_t errlen)
{
	struct parser p = { .name = name ? name : "<string>", .err = err, .errlen = errlen };
	char *buf;
	int ret;

	xio_config_defaults(&p.cfg);
	if (err && errlen)
		err[0] = '\0';
	buf = strdup(text);
	if (!buf)
		return fail_nomem(&p);
	ret = parse_lines(&p, buf);
	if (!ret)
		ret = check_sizes(&p); /* before free(buf): it quotes tokens in buf */
	free(buf);
	if (ret) {
		xio_config_free(&p.cfg);
		return ret;
	}
	xio_config_free(cfg);
	*cfg = p.cfg;
	return 0;
}

static int fail_errno(const char *path, int e, char *err, size_t errlen)
{
	char buf[128];

	if (err && errlen)
		snprintf(err, errlen, "%s: %s", path, strerror_r(e, buf, sizeof(buf)));
	return -e;
}

/* The whole file, NUL-terminated, in *out; *len excludes the NUL. */
static int read_file(int fd, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap), *tmp;
	ssize_t got;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (cap - n < 2) {
			tmp = realloc(buf, cap * 2);
			if (!tmp)
				goto nomem;
			buf = tmp;
			cap *= 2;
		}
		got = read(fd, buf + n, cap - n - 1);
		if (got == 0)
			break;
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int e = errno;

			free(buf);
			return -e;
		}
		n += got;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
nomem:
	free(buf);
	return -ENOMEM;
}

/* A NUL would silently end the text early; report where it is instead. */
static int check_no_nul(const char *path, const char *buf, size_t len, char *err,
			size_t errlen)
{
	const char *nul = memchr(buf, '\0', len);
	unsigned line = 1;
	const char *s;

	if (!nul)
		return 0;
	for (s = buf; s < nul; s++)
		line += *s == '\n';
	if (err && errlen)
		snprintf(err, errlen, "%s:%u: NUL byte in file '\\0'", path, line);
	return -EINVAL;
}

int xio_config_load(struct xio_config *cfg, const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	size_t len = 0;
	int ret;

	if (fd < 0)
		return fail_errno(path, errno, err, errlen);
	ret = read_file(fd, &buf, &len);
	close(fd);
	if (ret)
		return fail_errno(path, -ret, err, errlen);
	ret = check_no_nul(path, buf, len, err, errlen);
	if (!ret)
		ret = xio_config_parse_string(cfg, path, buf, err, errlen);
	free(buf);
	return ret;
}

/* An IPv4-mapped IPv6 query is an IPv4 connection seen through a dual-stack
 * socket; judge it by the same rules as the plain IPv4 one. */
static void normalise(struct xio_acl_query *q)
{
	if (q->family != AF_INET6 || !is_v4_mapped(q->client_addr) ||
	    !is_v4_mapped(q->server_addr))
		return;
	q->family = AF_INET;
	memmove(q->client_addr, q->client_addr + 12, 4);
	memset(q->client_addr + 4, 0, 12);
	memmove(q->server_addr, q->server_addr + 12, 4);
	memset(q->server_addr + 4, 0, 12);
}

static int cidr_match(const struct xio_acl_cidr *c, int family, const uint8_t addr[16])
{
	unsigned full = c->prefix / 8, rest = c->prefix % 8;
	uint8_t mask = (uint8_t)(0xff00u >> rest);

	if (!c->family)
		return 1;
	if (c->family != family)
		return 0;
	if (memcmp(c->addr, addr, full))
		return 0;
	return !rest || (addr[full] & mask) == c->addr[full];
}

static int in_range(uint32_t v, uint32_t lo, uint32_t hi)
{
	return v >= lo && v <= hi;
}

static int rule_match(const struct xio_acl_rule *r, const struct xio_acl_query *q)
{
	return cidr_match(&r->client, q->family, q->client_addr) &&
	       cidr_match(&r->server, q->family, q->server_addr) &&
	       in_range(q->server_port, r->port_lo, r->port_hi) &&
	       in_range(q->client_uid, r->client_uid_lo, r->client_uid_hi) &&
	       in_range(q->server_uid, r->server_uid_lo, r->server_uid_hi) &&
	       (!(r->selectors & XIO_ACL_SAME_UID) || q->client_uid == q->server_uid);
}

const struct xio_acl_rule *xio_acl_match(const struct xio_config *cfg,
					 const struct xio_acl_query *q)
{
	struct xio_acl_query nq = *q;
	size_t i;

	normalise(&nq);
	for (i = 0; i < cfg->nrules; i++)
		if (rule_match(&cfg->rules[i], &nq))
			return &cfg->rules[i];
	return NULL;
}

int xio_acl_check(const struct xio_config *cfg, const struct xio_acl_query *q)
{
	const struct xio_acl_rule *r = xio_acl_match(cfg, q);

	return r ? r->allow : cfg->default_allow;
}

void xio_config_free(struct xio_config *cfg)
{
	free(cfg->rules);
	cfg->rules = NULL;
	cfg->nrules = 0;
}
