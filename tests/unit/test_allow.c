/*
 * test_allow.c - XIO_ALLOW: the shim's allowlist parser and matcher.
 *
 * "Other" addresses come from the documentation ranges only: 192.0.2.0/24,
 * 198.51.100.0/24 and 2001:db8::/32. Those ranges can still be assigned to a
 * test machine (a sandbox's eth0 may be 192.0.2.2), so where the host's
 * addresses are on the list, foreign4()/foreign6() pick one that is not.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "allow.h"

static struct xio_allow *al;
static char err[256];

static void setup(void)
{
	al = NULL;
	err[0] = '\0';
}

static void teardown(void)
{
	xio_allow_free(al);
}

TestSuite(allow, .init = setup, .fini = teardown);

/* Parse spec, which must be accepted, into al (replacing any earlier list). */
static void parse_ok(const char *spec)
{
	int r;

	xio_allow_free(al);
	al = NULL;
	r = xio_allow_parse(spec, &al, err, sizeof(err));
	cr_assert_eq(r, 0, "parse '%s' failed (%d): %s", spec ? spec : "(null)", r, err);
	cr_assert_not_null(al);
	cr_assert_str_empty(err);
}

/* Parse spec, which must be rejected with a message naming tok and why. */
static void parse_bad(const char *spec, const char *tok, const char *why)
{
	char quoted[160];
	struct xio_allow *a = (struct xio_allow *)1;
	int r = xio_allow_parse(spec, &a, err, sizeof(err));

	cr_assert_eq(r, -EINVAL, "parse '%s' returned %d, want -EINVAL (err: %s)", spec, r, err);
	cr_assert_null(a, "parse '%s' failed but left *out set", spec);
	snprintf(quoted, sizeof(quoted), "XIO_ALLOW: bad token '%s': ", tok);
	cr_assert(strstr(err, quoted) == err, "parse '%s': err '%s' does not name '%s'", spec, err, tok);
	cr_assert(strstr(err, why), "parse '%s': err '%s' does not say '%s'", spec, err, why);
}

/* Build a sockaddr_in or sockaddr_in6 from text and ask the matcher. */
static int allowed(const char *ip, unsigned port)
{
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;

	memset(&s4, 0, sizeof(s4));
	memset(&s6, 0, sizeof(s6));
	if (inet_pton(AF_INET, ip, &s4.sin_addr) == 1) {
		s4.sin_family = AF_INET;
		s4.sin_port = htons((uint16_t)port);
		return xio_allow_match(al, (struct sockaddr *)&s4, sizeof(s4));
	}
	cr_assert_eq(inet_pton(AF_INET6, ip, &s6.sin6_addr), 1, "test bug: bad address %s", ip);
	s6.sin6_family = AF_INET6;
	s6.sin6_port = htons((uint16_t)port);
	return xio_allow_match(al, (struct sockaddr *)&s6, sizeof(s6));
}

#define ALLOWED(ip, port) cr_assert(allowed(ip, port), "%s port %u denied", ip, (unsigned)(port))
#define DENIED(ip, port) cr_assert(!allowed(ip, port), "%s port %u allowed", ip, (unsigned)(port))

/* Call fn on every IPv4/IPv6 address of every interface; how many. */
static int each_host_address(void (*fn)(const struct sockaddr *, socklen_t, unsigned), unsigned port)
{
	struct ifaddrs *ifa, *i;
	int n = 0;

	if (getifaddrs(&ifa) != 0)
		cr_skip_test("getifaddrs failed: %s", strerror(errno));
	for (i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET)
			fn(i->ifa_addr, sizeof(struct sockaddr_in), port), n++;
		else if (i->ifa_addr->sa_family == AF_INET6)
			fn(i->ifa_addr, sizeof(struct sockaddr_in6), port), n++;
	}
	freeifaddrs(ifa);
	return n;
}

/* Whether ip (text) is an address of some interface here. */
static int is_host_address(const char *ip)
{
	uint8_t want[16], *have;
	struct ifaddrs *ifa, *i;
	int family = strchr(ip, ':') ? AF_INET6 : AF_INET, found = 0;

	cr_assert_eq(inet_pton(family, ip, want), 1, "test bug: bad address %s", ip);
	if (getifaddrs(&ifa) != 0)
		cr_skip_test("getifaddrs failed: %s", strerror(errno));
	for (i = ifa; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != family)
			continue;
		if (family == AF_INET)
			have = (uint8_t *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr;
		else
			have = (uint8_t *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		found = memcmp(have, want, family == AF_INET ? 4 : 16) == 0;
	}
	freeifaddrs(ifa);
	return found;
}

/* The first of a few documentation-range addresses that is not a host address. */
static const char *foreign(const char *const *candidates)
{
	for (; *candidates; candidates++)
		if (!is_host_address(*candidates))
			return *candidates;
	cr_assert_fail("every candidate documentation address is assigned to this host");
	return NULL;
}

static const char *foreign4(void)
{
	static const char *const c[] = { "192.0.2.1", "198.51.100.1", "192.0.2.201",
					 "198.51.100.201", NULL };

	return foreign(c);
}

static const char *foreign6(void)
{
	static const char *const c[] = { "2001:db8::1", "2001:db8:ffff::201", NULL };

	return foreign(c);
}

static void expect_host_allowed(const struct sockaddr *sa, socklen_t len, unsigned port)
{
	struct sockaddr_in6 s; /* big enough for both families */
	char text[INET6_ADDRSTRLEN];

	memcpy(&s, sa, len);
	if (sa->sa_family == AF_INET) {
		((struct sockaddr_in *)&s)->sin_port = htons((uint16_t)port);
		inet_ntop(AF_INET, &((struct sockaddr_in *)&s)->sin_addr, text, sizeof(text));
	} else {
		s.sin6_port = htons((uint16_t)port);
		inet_ntop(AF_INET6, &s.sin6_addr, text, sizeof(text));
	}
	cr_assert(xio_allow_match(al, (struct sockaddr *)&s, len), "host address %s port %u denied",
		  text, port);
}

static void expect_host_denied(const struct sockaddr *sa, socklen_t len, unsigned port)
{
	struct sockaddr_in6 s;

	memcpy(&s, sa, len);
	if (sa->sa_family == AF_INET)
		((struct sockaddr_in *)&s)->sin_port = htons((uint16_t)port);
	else
		s.sin6_port = htons((uint16_t)port);
	cr_assert(!xio_allow_match(al, (struct sockaddr *)&s, len), "host address port %u allowed", port);
}

/* ---- the default ---- */

/* NULL means loopback and host addresses on any port, nothing else. */
Test(allow, default_null)
{
	parse_ok(NULL);
	ALLOWED("127.0.0.1", 6379);
	ALLOWED("127.0.0.1", 0);
	ALLOWED("::1", 443);
	ALLOWED("127.255.255.254", 65535);
	DENIED(foreign4(), 6379);
	DENIED(foreign6(), 80);
}

/* An empty value, or one of blanks only, is the same default. */
Test(allow, default_empty_and_blank)
{
	parse_ok("");
	ALLOWED("127.0.0.1", 1);
	ALLOWED("::1", 1);
	DENIED(foreign4(), 1);
	parse_ok(" \t ");
	ALLOWED("127.0.0.1", 1);
	DENIED(foreign6(), 1);
}

/* The default includes every address of every interface, on any port. */
Test(allow, default_host_addresses)
{
	parse_ok(NULL);
	cr_assert_gt(each_host_address(expect_host_allowed, 8080), 0, "no interface addresses");
}

/* ---- addresses and CIDRs ---- */

/* A bare IPv4 address is that single host, on any port. */
Test(allow, ipv4_address)
{
	parse_ok("198.51.100.7");
	ALLOWED("198.51.100.7", 1);
	ALLOWED("198.51.100.7", 65535);
	DENIED("198.51.100.8", 1);
	DENIED("127.0.0.1", 1);
}

/* An IPv6 address may be written plain or in brackets. */
Test(allow, ipv6_address_plain_and_bracketed)
{
	parse_ok("2001:db8::1");
	ALLOWED("2001:db8::1", 80);
	DENIED("2001:db8::2", 80);
	DENIED("::1", 80);
	parse_ok("[2001:db8::2]");
	ALLOWED("2001:db8::2", 80);
	DENIED("2001:db8::1", 80);
}

/* An IPv4 CIDR covers exactly its range, and bits past the prefix are ignored. */
Test(allow, ipv4_cidr_boundaries)
{
	parse_ok("192.0.2.77/24");
	ALLOWED("192.0.2.0", 80);
	ALLOWED("192.0.2.255", 80);
	DENIED("192.0.1.255", 80);
	DENIED("192.0.3.0", 80);
	parse_ok("198.51.100.128/25");
	ALLOWED("198.51.100.128", 80);
	DENIED("198.51.100.127", 80);
}

/* An IPv6 CIDR, also with a prefix that is not a whole number of bytes. */
Test(allow, ipv6_cidr_boundaries)
{
	parse_ok("2001:db8::/33");
	ALLOWED("2001:db8::", 80);
	ALLOWED("2001:db8:7fff:ffff:ffff:ffff:ffff:ffff", 80);
	DENIED("2001:db8:8000::", 80);
	DENIED("2001:db9::", 80);
	parse_ok("[2001:db8::/32]");
	ALLOWED("2001:db8:ffff::1", 80);
	DENIED("2001:db7::1", 80);
}

/* A /0 covers its own family only: 0.0.0.0/0 is no IPv6 address, ::/0 no IPv4 one. */
Test(allow, zero_prefix_keeps_family)
{
	parse_ok("0.0.0.0/0");
	ALLOWED("192.0.2.1", 80);
	ALLOWED("198.51.100.1", 80);
	DENIED("2001:db8::1", 80);
	parse_ok("::/0");
	ALLOWED("2001:db8::1", 80);
	DENIED("192.0.2.1", 80);
}

/* ---- ports ---- */

/* An address with a port matches that port only, and not port 0. */
Test(allow, address_with_port)
{
	parse_ok("127.0.0.1:6379");
	ALLOWED("127.0.0.1", 6379);
	DENIED("127.0.0.1", 6378);
	DENIED("127.0.0.1", 6380);
	DENIED("127.0.0.1", 0);
	DENIED("127.0.0.2", 6379);
}

/* A CIDR with a port range matches both ends of the range and nothing past them. */
Test(allow, cidr_with_port_range)
{
	parse_ok("127.0.0.0/8:8000-8100");
	ALLOWED("127.1.2.3", 8000);
	ALLOWED("127.1.2.3", 8100);
	DENIED("127.1.2.3", 7999);
	DENIED("127.1.2.3", 8101);
	DENIED("192.0.2.1", 8050);
}

/* A bracketed IPv6 address or CIDR takes a port or range after the bracket. */
Test(allow, ipv6_bracketed_with_port)
{
	parse_ok("[::1]:80");
	ALLOWED("::1", 80);
	DENIED("::1", 81);
	parse_ok("[2001:db8::/32]:1000-2000");
	ALLOWED("2001:db8::5", 1000);
	ALLOWED("2001:db8::5", 2000);
	DENIED("2001:db8::5", 999);
	DENIED("2001:db8::5", 2001);
}

/* The widest range 1-65535 admits both extremes, but still not port 0. */
Test(allow, port_range_extremes)
{
	parse_ok("192.0.2.1:1-65535");
	ALLOWED("192.0.2.1", 1);
	ALLOWED("192.0.2.1", 65535);
	DENIED("192.0.2.1", 0);
	parse_ok("192.0.2.1:65535");
	ALLOWED("192.0.2.1", 65535);
	DENIED("192.0.2.1", 65534);
}

/* A port or range alone means loopback and host addresses on those ports. */
Test(allow, port_only)
{
	parse_ok(":6379,:8000-9000");
	ALLOWED("127.0.0.1", 6379);
	ALLOWED("::1", 6379);
	ALLOWED("127.0.0.1", 8000);
	ALLOWED("127.0.0.1", 9000);
	DENIED("127.0.0.1", 6380);
	DENIED("127.0.0.1", 9001);
	DENIED(foreign4(), 6379);
	each_host_address(expect_host_allowed, 6379);
	each_host_address(expect_host_denied, 6380);
}

/* A query for port 0 (not yet bound) matches only entries without a port. */
Test(allow, port_zero_query)
{
	parse_ok("192.0.2.1:80,198.51.100.1");
	DENIED("192.0.2.1", 0);
	ALLOWED("198.51.100.1", 0);
}

/* ---- IPv4-mapped IPv6 ---- */

/* A v4-mapped query is judged as IPv4: IPv4 entries match it, IPv6 ones do not. */
Test(allow, v4_mapped_query)
{
	char mapped[64];

	parse_ok("192.0.2.0/24:443,2001:db8::/32");
	ALLOWED("::ffff:192.0.2.9", 443);
	DENIED("::ffff:192.0.2.9", 444);
	DENIED("::ffff:198.51.100.1", 443);
	parse_ok(NULL);
	ALLOWED("::ffff:127.0.0.1", 80);
	snprintf(mapped, sizeof(mapped), "::ffff:%s", foreign4());
	DENIED(mapped, 80);
	parse_ok("::/0");
	DENIED("::ffff:192.0.2.1", 80);
}

/* An entry written as a v4-mapped address or CIDR matches the plain IPv4 address. */
Test(allow, v4_mapped_entry)
{
	parse_ok("::ffff:192.0.2.0/120,[::ffff:198.51.100.1]:80");
	ALLOWED("192.0.2.200", 1);
	ALLOWED("::ffff:192.0.2.200", 1);
	DENIED("192.0.3.1", 1);
	ALLOWED("198.51.100.1", 80);
	DENIED("198.51.100.1", 81);
}

/* ---- keywords ---- */

/* loopback is 127.0.0.0/8 and ::1, optionally on a port. */
Test(allow, keyword_loopback)
{
	parse_ok("loopback");
	ALLOWED("127.0.0.1", 1);
	ALLOWED("127.9.9.9", 1);
	ALLOWED("::1", 1);
	DENIED("::2", 1);
	DENIED("192.0.2.1", 1);
	parse_ok("loopback:5432");
	ALLOWED("127.0.0.1", 5432);
	ALLOWED("::1", 5432);
	DENIED("127.0.0.1", 5433);
}

/* host is every interface address (loopback's among them), optionally on a port range. */
Test(allow, keyword_host)
{
	parse_ok("host");
	each_host_address(expect_host_allowed, 1);
	DENIED(foreign4(), 1);
	DENIED(foreign6(), 1);
	parse_ok("host:100-200");
	each_host_address(expect_host_allowed, 100);
	each_host_address(expect_host_allowed, 200);
	each_host_address(expect_host_denied, 201);
}

/* any is every address of both families, optionally on a port. */
Test(allow, keyword_any)
{
	parse_ok("any");
	ALLOWED("192.0.2.1", 1);
	ALLOWED("2001:db8::1", 65535);
	ALLOWED("::ffff:198.51.100.1", 0);
	parse_ok("any:443");
	ALLOWED("192.0.2.1", 443);
	ALLOWED("2001:db8::1", 443);
	DENIED("192.0.2.1", 80);
}

/* none matches nothing, loopback and wildcards included, with or without a port. */
Test(allow, keyword_none)
{
	parse_ok("none");
	DENIED("127.0.0.1", 80);
	DENIED("::1", 80);
	DENIED("0.0.0.0", 80);
	DENIED("::", 80);
	parse_ok("none:80");
	DENIED("127.0.0.1", 80);
	parse_ok(" none , none ");
	DENIED("127.0.0.1", 80);
}

/* none alongside other entries contradicts itself and is rejected. */
Test(allow, none_combined_is_error)
{
	parse_bad("loopback,none", "none", "cannot be combined");
	parse_bad("none:80 ::1", "none:80", "cannot be combined");
}

/* ---- separators ---- */

/* Entries are separated by commas or blanks, with blanks around commas allowed. */
Test(allow, separators_and_blanks)
{
	parse_ok("  192.0.2.1 ,198.51.100.1\t2001:db8::1,\n[2001:db8::2]:80  ");
	ALLOWED("192.0.2.1", 1);
	ALLOWED("198.51.100.1", 1);
	ALLOWED("2001:db8::1", 1);
	ALLOWED("2001:db8::2", 80);
	DENIED("2001:db8::2", 81);
	DENIED("127.0.0.1", 1);
}

/* More entries than the parser's first allocation holds are all kept. */
Test(allow, many_entries)
{
	char spec[2048] = "";
	char ip[32];
	int i;

	for (i = 0; i < 100; i++) {
		snprintf(ip, sizeof(ip), "%s198.51.100.%d:%d", i ? "," : "", i, 1000 + i);
		strcat(spec, ip);
	}
	parse_ok(spec);
	for (i = 0; i < 100; i++) {
		snprintf(ip, sizeof(ip), "198.51.100.%d", i);
		ALLOWED(ip, 1000 + i);
		DENIED(ip, 1001 + i);
	}
}

/* ---- wildcard listeners ---- */

/* 0.0.0.0 matches when an IPv4 (or any) entry admits the port; :: when any entry does. */
Test(allow, wildcard_query)
{
	parse_ok("127.0.0.1:6379,[::1]:80");
	ALLOWED("0.0.0.0", 6379);
	DENIED("0.0.0.0", 80);
	DENIED("0.0.0.0", 443);
	ALLOWED("::", 6379);
	ALLOWED("::", 80);
	DENIED("::", 443);
	ALLOWED("::ffff:0.0.0.0", 6379);
	DENIED("::ffff:0.0.0.0", 80);
	parse_ok(NULL);
	ALLOWED("0.0.0.0", 8080);
	ALLOWED("::", 8080);
}

/* ---- errors ---- */

/* Anything that is neither an address nor a keyword is a bad address. */
Test(allow, error_bad_address)
{
	parse_bad("192.0.2.256", "192.0.2.256", "bad address");
	parse_bad("loopback,localhost", "localhost", "bad address");
	parse_bad("fe80::1%eth0", "fe80::1%eth0", "bad address");
	parse_bad("192.0.2.1:80:90", "192.0.2.1:80:90", "bad address");
	parse_bad("/8", "/8", "bad address");
	parse_bad("Loopback", "Loopback", "bad address");
	parse_bad("[]", "[]", "bad address");
}

/* A prefix must be digits within the family's length. */
Test(allow, error_prefix)
{
	parse_bad("192.0.2.0/33", "192.0.2.0/33", "prefix out of range");
	parse_bad("2001:db8::/129", "2001:db8::/129", "prefix out of range");
	parse_bad("[fd00::/200]:80", "[fd00::/200]:80", "prefix out of range");
	parse_bad("10.0.0.0/", "10.0.0.0/", "bad prefix");
	parse_bad("10.0.0.0/x", "10.0.0.0/x", "bad prefix");
	parse_bad("10.0.0.0/-1", "10.0.0.0/-1", "bad prefix");
}

/* Ports in a spec run from 1 to 65535; 0 and larger numbers are rejected. */
Test(allow, error_port_out_of_range)
{
	parse_bad(":0", ":0", "port out of range");
	parse_bad("127.0.0.1:65536", "127.0.0.1:65536", "port out of range");
	parse_bad("[::1]:0-80", "[::1]:0-80", "port out of range");
	parse_bad("any:1-99999999999999999999", "any:1-99999999999999999999", "port out of range");
}

/* A range whose low end exceeds its high end is rejected. */
Test(allow, error_reversed_range)
{
	parse_bad("127.0.0.0/8:8100-8000", "127.0.0.0/8:8100-8000", "reversed range");
	parse_bad(":2-1", ":2-1", "reversed range");
}

/* A colon or dash with no digits after it is a bad port. */
Test(allow, error_bad_port)
{
	parse_bad("127.0.0.1:", "127.0.0.1:", "bad port");
	parse_bad(":80-", ":80-", "bad port");
	parse_bad("[::1]:", "[::1]:", "bad port");
	parse_bad("host:+80", "host:+80", "bad port");
	parse_bad(":", ":", "bad port");
}

/* An empty entry between, before or after commas is named by its commas. */
Test(allow, error_empty_entry)
{
	parse_bad("127.0.0.1,,::1", ",,", "empty entry");
	parse_bad("127.0.0.1, ,::1", ", ,", "empty entry");
	parse_bad(",127.0.0.1", ",", "empty entry");
	parse_bad("127.0.0.1,", ",", "empty entry");
	parse_bad(",", ",", "empty entry");
}

/* Characters left over after a complete entry are trailing garbage. */
Test(allow, error_trailing_garbage)
{
	parse_bad("[::1]x", "[::1]x", "trailing garbage");
	parse_bad("[::1]:80x", "[::1]:80x", "trailing garbage");
	parse_bad(":80-90-100", ":80-90-100", "trailing garbage");
	parse_bad("loopback:80x", "loopback:80x", "trailing garbage");
}

/* Brackets hold an IPv6 address and must be closed. */
Test(allow, error_brackets)
{
	parse_bad("[127.0.0.1]:80", "[127.0.0.1]:80", "brackets");
	parse_bad("[::1:80", "[::1:80", "missing ']'");
}

/* An entry too long to be an address is rejected, not truncated. */
Test(allow, error_too_long)
{
	char spec[300];

	memset(spec, '1', 200);
	spec[200] = '\0';
	cr_assert_eq(xio_allow_parse(spec, &al, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "too long"), "err: %s", err);
	cr_assert(strstr(err, "bad token '111"), "err: %s", err);
}

/* The message has exactly the documented shape, and a short buffer truncates it. */
Test(allow, error_message_shape)
{
	char small[12];

	cr_assert_eq(xio_allow_parse("::1,bogus", &al, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "XIO_ALLOW: bad token 'bogus': bad address");
	cr_assert_eq(xio_allow_parse("bogus", &al, small, sizeof(small)), -EINVAL);
	cr_assert_str_eq(small, "XIO_ALLOW: ");
	cr_assert_eq(xio_allow_parse("bogus", &al, NULL, 0), -EINVAL);
	cr_assert_eq(xio_allow_parse("::1", NULL, err, sizeof(err)), -EINVAL);
}

/* ---- errno and odd queries ---- */

/* Parsing (good, bad, default), matching and freeing leave errno alone. */
Test(allow, errno_preserved)
{
	const char *other = foreign4(); /* calls getifaddrs, so before errno is set */

	errno = 12345;
	parse_ok(NULL);
	cr_assert_eq(errno, 12345, "errno %d after default parse", errno);
	ALLOWED("127.0.0.1", 80);
	DENIED(other, 80);
	cr_assert_eq(errno, 12345, "errno %d after match", errno);
	parse_ok("host:80, 2001:db8::/32");
	cr_assert_eq(errno, 12345, "errno %d after host parse", errno);
	parse_bad("192.0.2.1,,", ",,", "empty entry");
	cr_assert_eq(errno, 12345, "errno %d after bad parse", errno);
	xio_allow_free(al);
	al = NULL;
	cr_assert_eq(errno, 12345, "errno %d after free", errno);
}

/* A NULL list or address, a short length or another family matches nothing. */
Test(allow, match_rejects_odd_queries)
{
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;
	struct sockaddr un = { .sa_family = AF_UNIX };

	parse_ok("any");
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	s4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	s6.sin6_addr = in6addr_loopback;
	cr_assert(xio_allow_match(al, (struct sockaddr *)&s4, sizeof(s4)));
	cr_assert(xio_allow_match(al, (struct sockaddr *)&s6, sizeof(s6)));
	cr_assert(!xio_allow_match(NULL, (struct sockaddr *)&s4, sizeof(s4)));
	cr_assert(!xio_allow_match(al, NULL, sizeof(s4)));
	cr_assert(!xio_allow_match(al, (struct sockaddr *)&s4, sizeof(s4) - 1));
	cr_assert(!xio_allow_match(al, (struct sockaddr *)&s6, sizeof(s6) - 1));
	cr_assert(!xio_allow_match(al, &un, sizeof(un)));
}
