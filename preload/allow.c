/*
 * allow.c - XIO_ALLOW: parse the allowlist once, match addresses against it
 * on every connect() and listen(). Syntax: docs/allowlist.md.
 *
 * A parsed list is one allocation: a count and an array of entries, each an
 * address family, an address and mask (host bits already cleared, so a
 * match is two XORs and two ANDs) and an inclusive port range. The keywords
 * and the port-only form expand into plain entries at parse time, so the
 * matcher knows nothing about them.
 *
 * Runs inside arbitrary programs at start-up, so: no global state, only
 * malloc/free, getifaddrs/freeifaddrs, inet_pton and snprintf into the
 * caller's buffer; no locale-dependent function; errno saved and restored.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allow.h"

/* The port range of an entry without a port restriction. A port written in
 * XIO_ALLOW is at least 1, so lo == 0 marks exactly the unrestricted
 * entries, and a query for port 0 (unbound) matches only those. */
#define PORT_ANY_LO 0
#define PORT_ANY_HI 65535

/* Longest entry accepted; the longest meaningful one,
 * "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128]:65535-65535", is 63. */
#define TOKEN_MAX 127

struct entry {
	uint64_t addr[2]; /* address bytes in network order, host bits zero */
	uint64_t mask[2]; /* prefix mask in the same layout */
	uint16_t lo, hi;  /* inclusive port range */
	uint8_t family;   /* AF_INET, AF_INET6, or AF_UNSPEC for `any` */
};

struct xio_allow {
	size_t n;
	struct entry e[];
};

/* Everything one parse needs; lives on the caller's stack. */
struct parser {
	struct entry *v;      /* entries so far */
	size_t n, cap;
	struct ifaddrs *ifa;  /* the host's addresses, fetched at most once */
	int ifa_fetched;
	size_t entries;       /* entries written in spec, `none` included */
	size_t nones;         /* how many of them are `none` */
	const char *none_tok; /* the first `none`, to name it in an error */
	char *err;
	size_t errlen;
};

/* The one "why" that is not a syntax error; compared by address. */
static const char oom[] = "out of memory";

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int is_v4_mapped(const uint8_t b[16])
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(b, prefix, sizeof(prefix)) == 0;
}

/*
 * Decimal digits from s; returns the first non-digit (s itself if there is
 * none). No sign, no base prefix, no locale. The value saturates well above
 * any valid port or prefix, so a huge number reads as out of range rather
 * than wrapping to a small one.
 */
static const char *digits(const char *s, unsigned long *v)
{
	*v = 0;
	for (; *s >= '0' && *s <= '9'; s++)
		*v = *v > 1000000 ? *v : *v * 10 + (unsigned long)(*s - '0');
	return s;
}

/* "N" or "N-M", 1 <= N <= M <= 65535. Returns NULL or why it is bad. */
static const char *parse_ports(const char *s, uint16_t *lo, uint16_t *hi)
{
	unsigned long a, b;
	const char *e = digits(s, &a);

	if (e == s)
		return "bad port";
	b = a;
	if (*e == '-') {
		const char *f = digits(e + 1, &b);

		if (f == e + 1)
			return "bad port";
		e = f;
	}
	if (*e)
		return "trailing garbage";
	if (a == 0 || b == 0 || a > 65535 || b > 65535)
		return "port out of range";
	if (a > b)
		return "reversed range";
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return NULL;
}

/*
 * An IPv4 or IPv6 address with an optional /prefix (no prefix: a single
 * host). Fills family, the 16 address bytes (IPv4 in the first four) and the
 * prefix length. Returns NULL or why it is bad.
 */
static const char *parse_cidr(const char *s, int *family, uint8_t bytes[16], unsigned *prefix)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t len = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long v;
	unsigned max;

	if (len == 0 || len >= sizeof(buf))
		return "bad address";
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(bytes, 0, 16);
	if (inet_pton(AF_INET, buf, bytes) == 1)
		*family = AF_INET;
	else if (inet_pton(AF_INET6, buf, bytes) == 1)
		*family = AF_INET6;
	else
		return "bad address";
	max = *family == AF_INET ? 32 : 128;
	*prefix = max;
	if (slash) {
		const char *e = digits(slash + 1, &v);

		if (e == slash + 1 || *e)
			return "bad prefix";
		if (v > max)
			return "prefix out of range";
		*prefix = (unsigned)v;
	}
	return NULL;
}

static int same_entry(const struct entry *x, const struct entry *y)
{
	return x->family == y->family && x->lo == y->lo && x->hi == y->hi &&
	       x->addr[0] == y->addr[0] && x->addr[1] == y->addr[1] &&
	       x->mask[0] == y->mask[0] && x->mask[1] == y->mask[1];
}

/*
 * Append one entry, unless an identical one is already there (`host`
 * repeats 127.0.0.1 and ::1 from `loopback`; the matcher should not scan
 * them twice). An IPv6 CIDR that lies within ::ffff:0:0/96 is stored as the
 * IPv4 CIDR it denotes, since queries in that range are judged as IPv4.
 */
static const char *add(struct parser *p, int family, const uint8_t *bytes, unsigned prefix,
		       uint16_t lo, uint16_t hi)
{
	uint8_t a[16] = { 0 }, m[16] = { 0 };
	struct entry e;
	unsigned len, i;

	if (family == AF_INET6 && prefix >= 96 && is_v4_mapped(bytes)) {
		family = AF_INET;
		bytes += 12;
		prefix -= 96;
	}
	len = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
	for (i = 0; i < len; i++) {
		unsigned bits = prefix > i * 8 ? prefix - i * 8 : 0;

		m[i] = bits >= 8 ? 0xff : (uint8_t)(0xff00u >> bits);
		a[i] = bytes[i] & m[i];
	}
	memset(&e, 0, sizeof(e));
	memcpy(e.addr, a, sizeof(a));
	memcpy(e.mask, m, sizeof(m));
	e.lo = lo;
	e.hi = hi;
	e.family = (uint8_t)family;

	for (i = 0; i < p->n; i++)
		if (same_entry(&p->v[i], &e))
			return NULL;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct entry *v = malloc(cap * sizeof(*v));

		if (!v)
			return oom;
		if (p->n)
			memcpy(v, p->v, p->n * sizeof(*v));
		free(p->v);
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = e;
	return NULL;
}

/* 127.0.0.0/8 and ::1. */
static const char *add_loopback(struct parser *p, uint16_t lo, uint16_t hi)
{
	static const uint8_t v4[4] = { 127, 0, 0, 0 };
	static const uint8_t v6[16] = { [15] = 1 };
	const char *why = add(p, AF_INET, v4, 8, lo, hi);

	return why ? why : add(p, AF_INET6, v6, 128, lo, hi);
}

/*
 * Every IPv4 and IPv6 address of every interface, up or down. getifaddrs()
 * runs at most once per parse. glibc reaches netlink through its internal
 * socket calls, not through the interposed ones. If it fails, the host's
 * addresses are simply not on the list.
 */
static const char *add_host(struct parser *p, uint16_t lo, uint16_t hi)
{
	const struct ifaddrs *i;

	if (!p->ifa_fetched) {
		p->ifa_fetched = 1;
		if (getifaddrs(&p->ifa) != 0)
			p->ifa = NULL;
	}
	for (i = p->ifa; i; i = i->ifa_next) {
		const char *why = NULL;

		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET) {
			const struct sockaddr_in *s = (const struct sockaddr_in *)(const void *)i->ifa_addr;

			why = add(p, AF_INET, (const uint8_t *)&s->sin_addr, 32, lo, hi);
		} else if (i->ifa_addr->sa_family == AF_INET6) {
			const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)(const void *)i->ifa_addr;

			why = add(p, AF_INET6, (const uint8_t *)&s->sin6_addr, 128, lo, hi);
		}
		if (why)
			return why;
	}
	return NULL;
}

/* What the default and the port-only form stand for. */
static const char *add_local(struct parser *p, uint16_t lo, uint16_t hi)
{
	const char *why = add_loopback(p, lo, hi);

	return why ? why : add_host(p, lo, hi);
}

/*
 * One entry, NUL-terminated, without blanks or commas. Forms:
 *   [V6 or V6/P] with an optional :PORTS after the bracket;
 *   :PORTS alone;
 *   KEYWORD, ADDR or ADDR/P, each with an optional :PORTS (one colon);
 *   an unbracketed IPv6 address or CIDR (two colons or more), without a port.
 * Everything is checked before anything is added, so a bad entry adds
 * nothing. Returns NULL or why the entry is bad.
 */
static const char *parse_entry(struct parser *p, const char *tok)
{
	char addr[TOKEN_MAX + 1];
	const char *ports = NULL, *colon, *why;
	uint16_t lo = PORT_ANY_LO, hi = PORT_ANY_HI;
	uint8_t bytes[16];
	unsigned prefix, colons = 0;
	int family, bracketed = tok[0] == '[';
	size_t len;

	if (bracketed) {
		const char *close = strchr(tok, ']');

		if (!close)
			return "missing ']'";
		len = (size_t)(close - tok - 1);
		memcpy(addr, tok + 1, len);
		addr[len] = '\0';
		if (close[1] == ':')
			ports = close + 2;
		else if (close[1])
			return "trailing garbage";
	} else {
		for (colon = tok; *colon; colon++)
			colons += *colon == ':';
		colon = strchr(tok, ':');
		len = colons == 1 ? (size_t)(colon - tok) : strlen(tok);
		memcpy(addr, tok, len);
		addr[len] = '\0';
		if (colons == 1)
			ports = colon + 1;
	}
	if (ports && (why = parse_ports(ports, &lo, &hi)))
		return why;

	if (!bracketed && addr[0] == '\0')
		return add_local(p, lo, hi);
	if (!bracketed && strcmp(addr, "loopback") == 0)
		return add_loopback(p, lo, hi);
	if (!bracketed && strcmp(addr, "host") == 0)
		return add_host(p, lo, hi);
	if (!bracketed && strcmp(addr, "any") == 0) {
		static const uint8_t zero[16];

		return add(p, AF_UNSPEC, zero, 0, lo, hi);
	}
	if (!bracketed && strcmp(addr, "none") == 0) {
		p->nones++;
		return NULL;
	}

	if ((why = parse_cidr(addr, &family, bytes, &prefix)))
		return why;
	if (bracketed && family != AF_INET6)
		return "brackets are only for IPv6";
	return add(p, family, bytes, prefix, lo, hi);
}

static int fail(struct parser *p, const char *tok, size_t len, const char *why)
{
	if (why == oom) {
		if (p->errlen)
			snprintf(p->err, p->errlen, "XIO_ALLOW: out of memory");
		return -ENOMEM;
	}
	if (p->errlen)
		snprintf(p->err, p->errlen, "XIO_ALLOW: bad token '%.*s': %s", (int)len, tok, why);
	return -EINVAL;
}

/*
 * Split spec into entries: separated by commas or blanks, blanks around
 * commas allowed, but an empty entry (",a", "a,,b", "a,") is an error; its
 * token is the text from the previous comma to the offending one.
 */
static int parse_list(struct parser *p, const char *spec)
{
	const char *s = spec, *comma = NULL;
	char tok[TOKEN_MAX + 1];

	for (;;) {
		const char *start, *why;
		size_t len;

		while (is_blank(*s))
			s++;
		if (*s == '\0' && comma)
			return fail(p, comma, (size_t)(s - comma), "empty entry");
		if (*s == '\0')
			break;
		if (*s == ',')
			return fail(p, comma ? comma : s, (size_t)(s + 1 - (comma ? comma : s)),
				    "empty entry");

		start = s;
		while (*s && *s != ',' && !is_blank(*s))
			s++;
		len = (size_t)(s - start);
		if (len > TOKEN_MAX)
			return fail(p, start, len, "too long");
		memcpy(tok, start, len);
		tok[len] = '\0';
		p->entries++;
		why = parse_entry(p, tok);
		if (why)
			return fail(p, start, len, why);
		if (p->nones && !p->none_tok)
			p->none_tok = start;

		while (is_blank(*s))
			s++;
		comma = NULL;
		if (*s == ',')
			comma = s++;
	}

	/* "none,none" is still just none; "none,::1" contradicts itself. */
	if (p->none_tok && p->nones < p->entries) {
		size_t len = 0;

		while (p->none_tok[len] && p->none_tok[len] != ',' && !is_blank(p->none_tok[len]))
			len++;
		return fail(p, p->none_tok, len, "none cannot be combined with other entries");
	}
	if (p->entries == 0) {
		const char *why = add_local(p, PORT_ANY_LO, PORT_ANY_HI);

		if (why)
			return fail(p, "", 0, why);
	}
	return 0;
}

int xio_allow_parse(const char *spec, struct xio_allow **out, char *err, size_t errlen)
{
	int saved = errno, ret;
	struct parser p;
	struct xio_allow *a;

	memset(&p, 0, sizeof(p));
	p.err = err;
	p.errlen = err ? errlen : 0;
	if (p.errlen)
		err[0] = '\0';
	if (!out) {
		errno = saved;
		return -EINVAL;
	}
	*out = NULL;

	ret = parse_list(&p, spec ? spec : "");
	if (ret)
		goto out;
	a = malloc(sizeof(*a) + p.n * sizeof(a->e[0]));
	if (!a) {
		ret = fail(&p, "", 0, oom);
		goto out;
	}
	a->n = p.n;
	if (p.n)
		memcpy(a->e, p.v, p.n * sizeof(a->e[0]));
	*out = a;
out:
	if (p.ifa)
		freeifaddrs(p.ifa);
	free(p.v);
	errno = saved;
	return ret;
}

int xio_allow_match(const struct xio_allow *a, const struct sockaddr *addr, socklen_t len)
{
	uint64_t q[2] = { 0, 0 };
	const uint8_t *port_bytes;
	int family, wildcard;
	uint16_t port;
	size_t i;

	if (!a || !addr || len < (socklen_t)sizeof(struct sockaddr_in))
		return 0;
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)(const void *)addr;

		memcpy(q, &s->sin_addr, 4);
		port_bytes = (const uint8_t *)&s->sin_port;
		family = AF_INET;
	} else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)(const void *)addr;
		const uint8_t *b = (const uint8_t *)&s->sin6_addr;

		if (is_v4_mapped(b)) {
			memcpy(q, b + 12, 4);
			family = AF_INET;
		} else {
			memcpy(q, b, 16);
			family = AF_INET6;
		}
		port_bytes = (const uint8_t *)&s->sin6_port;
	} else {
		return 0;
	}
	port = (uint16_t)(port_bytes[0] << 8 | port_bytes[1]);
	wildcard = q[0] == 0 && q[1] == 0;

	for (i = 0; i < a->n; i++) {
		const struct entry *e = &a->e[i];

		if (port < e->lo || port > e->hi)
			continue;
		if (wildcard) {
			/* 0.0.0.0 is reached over IPv4 only; :: (dual-stack) over both. */
			if (family == AF_INET6 || e->family != AF_INET6)
				return 1;
			continue;
		}
		if (e->family != AF_UNSPEC && e->family != family)
			continue;
		if (((q[0] ^ e->addr[0]) & e->mask[0]) | ((q[1] ^ e->addr[1]) & e->mask[1]))
			continue;
		return 1;
	}
	return 0;
}

void xio_allow_free(struct xio_allow *a)
{
	int saved = errno;

	free(a);
	errno = saved;
}
