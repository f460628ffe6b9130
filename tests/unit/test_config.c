/*
 * test_config.c - the monitor's configuration parser and ACL evaluation.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"

static struct xio_config cfg;
static char err[512];

static void setup(void)
{
	xio_config_defaults(&cfg);
	err[0] = '\0';
}

static void teardown(void)
{
	xio_config_free(&cfg);
}

TestSuite(config, .init = setup, .fini = teardown);

static int parse(const char *text)
{
	return xio_config_parse_string(&cfg, "test.conf", text, err, sizeof(err));
}

/* Parse text that must be accepted. */
static void parse_ok(const char *text)
{
	int r = parse(text);

	cr_assert_eq(r, 0, "parse failed (%d): %s", r, err);
	cr_assert_str_empty(err);
}

/* Parse text that must be rejected, with each of the strings in the message. */
static void parse_err(const char *text, const char *line, const char *tok, const char *what)
{
	int r = parse(text);

	cr_assert_eq(r, -EINVAL, "expected -EINVAL, got %d for:\n%s", r, text);
	cr_assert(strstr(err, line), "no '%s' in: %s", line, err);
	cr_assert(strstr(err, tok), "no '%s' in: %s", tok, err);
	cr_assert(strstr(err, what), "no '%s' in: %s", what, err);
}

/* A query from client:cport to server:sport; both addresses of one family. */
static struct xio_acl_query query(const char *client, uint16_t cport, const char *server,
				  uint16_t sport, uint32_t cuid, uint32_t suid)
{
	struct xio_acl_query q = {
		.family = strchr(client, ':') ? AF_INET6 : AF_INET,
		.client_port = cport, .server_port = sport,
		.client_uid = cuid, .server_uid = suid,
	};

	cr_assert_eq(inet_pton(q.family, client, q.client_addr), 1, "bad test address %s", client);
	cr_assert_eq(inet_pton(q.family, server, q.server_addr), 1, "bad test address %s", server);
	return q;
}

/* Whether a connection from client to server:sport (uids 1000) is allowed. */
static int allowed(const char *client, const char *server, uint16_t sport)
{
	struct xio_acl_query q = query(client, 40000, server, sport, 1000, 1000);

	return xio_acl_check(&cfg, &q);
}

static int allowed_uids(uint32_t cuid, uint32_t suid)
{
	struct xio_acl_query q = query("127.0.0.1", 40000, "127.0.0.1", 80, cuid, suid);

	return xio_acl_check(&cfg, &q);
}

/* The defaults are a 2 MiB segment, 64 KiB messages, hugepages auto, allow all, no rules. */
Test(config, defaults)
{
	cr_assert_eq(cfg.segment_size, 2097152);
	cr_assert_eq(cfg.max_msg, 65536);
	cr_assert_eq(cfg.hugepages, XIO_HUGE_AUTO);
	cr_assert_eq(cfg.default_allow, 1);
	cr_assert_eq(cfg.nrules, 0);
	cr_assert_eq(allowed("10.1.2.3", "10.1.2.4", 80), 1);
}

/* Comments, blank lines, blanks of every kind and CRLF endings yield the defaults. */
Test(config, comments_and_blanks)
{
	parse_ok("# a comment\n\n   \t\n\r\n# segment-size 4M\nhugepages off # trailing\r\n");
	cr_assert_eq(cfg.segment_size, 2097152);
	cr_assert_eq(cfg.hugepages, XIO_HUGE_OFF);
	cr_assert_eq(cfg.nrules, 0);
}

/* segment-size takes plain bytes and K, M, G suffixes in either case. */
Test(config, segment_size_suffixes)
{
	parse_ok("segment-size 4194304\n");
	cr_assert_eq(cfg.segment_size, 4194304);
	parse_ok("segment-size 256K");
	cr_assert_eq(cfg.segment_size, 262144);
	parse_ok("segment-size 8m");
	cr_assert_eq(cfg.segment_size, 8388608);
	parse_ok("segment-size 1G");
	cr_assert_eq(cfg.segment_size, 1073741824);
}

/* max-msg accepts both ends of 4K..1M when the segment is big enough. */
Test(config, max_msg_bounds)
{
	parse_ok("max-msg 4K\n");
	cr_assert_eq(cfg.max_msg, 4096);
	parse_ok("segment-size 8M\nmax-msg 1M\n");
	cr_assert_eq(cfg.max_msg, 1048576);
	cr_assert_eq(cfg.segment_size, 8388608);
	parse_ok("max-msg 262144\n"); /* exactly 2M / 8 */
	cr_assert_eq(cfg.max_msg, 262144);
}

/* buffer-start: the window a connection's direction starts with (issue
 * 17), 128K by default, a power of two from 16K to half the segment; a
 * bad value names its token and line. */
Test(config, buffer_start)
{
	parse_ok("");
	cr_assert_eq(cfg.buffer_start, 131072);
	parse_ok("buffer-start 16K\n");
	cr_assert_eq(cfg.buffer_start, 16384);
	parse_ok("segment-size 4M\nbuffer-start 2M\n");
	cr_assert_eq(cfg.buffer_start, 2097152);
	parse_err("buffer-start 24K\n", ":1:", "24K", "power of two");
	parse_err("buffer-start 8K\n", ":1:", "8K", "power of two");
	parse_err("\nbuffer-start 2M\n", ":2:", "2M", "exceeds segment-size/2");
	parse_err("buffer-start 64K\nbuffer-start 64K\n", ":2:", "buffer-start", "duplicate");
}

/* hugepages takes auto, on and off. */
Test(config, hugepages_modes)
{
	parse_ok("hugepages on");
	cr_assert_eq(cfg.hugepages, XIO_HUGE_ON);
	parse_ok("hugepages off");
	cr_assert_eq(cfg.hugepages, XIO_HUGE_OFF);
	parse_ok("hugepages auto");
	cr_assert_eq(cfg.hugepages, XIO_HUGE_AUTO);
}

/* A second parse starts again from the defaults rather than from the last file. */
Test(config, reparse_starts_from_defaults)
{
	parse_ok("segment-size 4M\ndefault deny\nallow port 80\n");
	parse_ok("hugepages on\n");
	cr_assert_eq(cfg.segment_size, 2097152);
	cr_assert_eq(cfg.default_allow, 1);
	cr_assert_eq(cfg.nrules, 0);
}

/* A rejected file leaves the configuration that was installed before it untouched. */
Test(config, failed_parse_keeps_old_config)
{
	parse_ok("segment-size 4M\ndeny port 22\n");
	cr_assert_eq(parse("segment-size 8M\nallow port 80\nbogus\n"), -EINVAL);
	cr_assert_eq(cfg.segment_size, 4194304);
	cr_assert_eq(cfg.nrules, 1);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 22), 0);
}

/* An unknown keyword is reported with its line and itself. */
Test(config, err_unknown_keyword)
{
	parse_err("# one\n\nhugepages on\nsegmentsize 2M\n", "test.conf:4:", "'segmentsize'",
		  "unknown keyword");
}

/* The message has exactly the documented shape NAME:LINE: what 'token'. */
Test(config, err_exact_format)
{
	cr_assert_eq(parse("allow\nallow port 80x\n"), -EINVAL);
	cr_assert_str_eq(err, "test.conf:2: bad number '80x'");
}

/* A keyword or selector without its value names the keyword. */
Test(config, err_missing_value)
{
	parse_err("segment-size\n", "test.conf:1:", "'segment-size'", "missing value");
	parse_err("\nallow client 10.0.0.1 port\n", "test.conf:2:", "'port'", "missing value");
	parse_err("default # deny\n", "test.conf:1:", "'default'", "missing value");
}

/* Anything after a complete setting is trailing garbage. */
Test(config, err_trailing_garbage)
{
	parse_err("hugepages on off\n", "test.conf:1:", "'off'", "trailing garbage");
	parse_err("\n\nsegment-size 2M 4M\n", "test.conf:3:", "'4M'", "trailing garbage");
}

/* hugepages and default reject values outside their sets. */
Test(config, err_bad_enum_value)
{
	parse_err("hugepages yes\n", "test.conf:1:", "'yes'", "auto, on or off");
	parse_err("\ndefault Deny\n", "test.conf:2:", "'Deny'", "allow or deny");
}

/* A setting given twice is an error at the second one. */
Test(config, err_duplicate_setting)
{
	parse_err("max-msg 8K\n\nmax-msg 16K\n", "test.conf:3:", "'max-msg'", "duplicate setting");
}

/* Sizes that are not numbers with an optional K/M/G are bad sizes. */
Test(config, err_bad_size)
{
	parse_err("segment-size 2X\n", "test.conf:1:", "'2X'", "bad size");
	parse_err("segment-size M\n", "test.conf:1:", "'M'", "bad size");
	parse_err("segment-size -2M\n", "test.conf:1:", "'-2M'", "bad size");
	parse_err("max-msg 4KB\n", "test.conf:1:", "'4KB'", "bad size");
	parse_err("max-msg 0x1000\n", "test.conf:1:", "'0x1000'", "bad size");
}

/* Sizes out of range, not powers of two, or overflowing are refused. */
Test(config, err_size_range)
{
	parse_err("segment-size 128K\n", "test.conf:1:", "'128K'", "power of two");
	parse_err("segment-size 2G\n", "test.conf:1:", "'2G'", "power of two");
	parse_err("segment-size 3M\n", "test.conf:1:", "'3M'", "power of two");
	parse_err("segment-size 0\n", "test.conf:1:", "'0'", "power of two");
	parse_err("segment-size 99999999999999999999999G\n", "test.conf:1:",
		  "'99999999999999999999999G'", "power of two");
	parse_err("max-msg 2K\n", "test.conf:1:", "'2K'", "power of two");
	parse_err("max-msg 2M\n", "test.conf:1:", "'2M'", "power of two");
	parse_err("max-msg 12K\n", "test.conf:1:", "'12K'", "power of two");
}

/* An unset max-msg shrinks to segment-size/8 for small segments instead of failing. */
Test(config, max_msg_default_follows_segment)
{
	parse_ok("segment-size 256K\n");
	cr_assert_eq(cfg.max_msg, 32768);
	parse_ok("segment-size 512K\n");
	cr_assert_eq(cfg.max_msg, 65536);
	parse_ok("segment-size 1G\n");
	cr_assert_eq(cfg.max_msg, 65536);
}

/* An explicit max-msg above segment-size/8 blames whichever of the two lines came last. */
Test(config, err_max_msg_vs_segment)
{
	parse_err("max-msg 512K\n", "test.conf:1:", "'512K'", "segment-size/8");
	parse_err("max-msg 512K\n#\nsegment-size 2M\n", "test.conf:3:", "'2M'", "8 times max-msg");
	parse_err("segment-size 256K\nmax-msg 64K\n", "test.conf:2:", "'64K'", "segment-size/8");
}

/* A bad address, including a zone id or a bare 'any/8', is a bad address. */
Test(config, err_bad_address)
{
	parse_err("allow client 10.0.0.256\n", "test.conf:1:", "'10.0.0.256'", "bad address");
	parse_err("\nallow server 10.0.0\n", "test.conf:2:", "'10.0.0'", "bad address");
	parse_err("deny client fe80::1%lo\n", "test.conf:1:", "'fe80::1%lo'", "bad address");
	parse_err("deny client any/8\n", "test.conf:1:", "'any/8'", "bad address");
	parse_err("deny client 1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17\n", "test.conf:1:",
		  "'1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17'", "bad address");
}

/* Prefixes beyond the family's length, or not numbers, are refused. */
Test(config, err_prefix)
{
	parse_err("allow client 10.0.0.0/33\n", "test.conf:1:", "'10.0.0.0/33'", "prefix out of range");
	parse_err("allow server ::/129\n", "test.conf:1:", "'::/129'", "prefix out of range");
	parse_err("allow client 10.0.0.0/\n", "test.conf:1:", "'10.0.0.0/'", "bad prefix");
	parse_err("allow client 10.0.0.0/8x\n", "test.conf:1:", "'10.0.0.0/8x'", "bad prefix");
	parse_err("allow client 10.0.0.0/-1\n", "test.conf:1:", "'10.0.0.0/-1'", "bad prefix");
}

/* Ports outside 1..65535 and reversed ranges are refused with the whole value. */
Test(config, err_port)
{
	parse_err("allow port 0\n", "test.conf:1:", "'0'", "port out of range");
	parse_err("allow port 65536\n", "test.conf:1:", "'65536'", "port out of range");
	parse_err("allow port 0-80\n", "test.conf:1:", "'0-80'", "port out of range");
	parse_err("allow port 90-80\n", "test.conf:1:", "'90-80'", "reversed range");
}

/* Numbers with junk, signs, spaces-free garbage or extra dashes are bad numbers. */
Test(config, err_bad_number)
{
	parse_err("allow port 80x\n", "test.conf:1:", "'80x'", "bad number");
	parse_err("allow port +80\n", "test.conf:1:", "'+80'", "bad number");
	parse_err("allow port 80-\n", "test.conf:1:", "'80-'", "bad number");
	parse_err("allow port -80\n", "test.conf:1:", "'-80'", "bad number");
	parse_err("allow port 1-2-3\n", "test.conf:1:", "'1-2-3'", "bad number");
	parse_err("allow client-uid abc\n", "test.conf:1:", "'abc'", "bad number");
	parse_err("allow server-uid 4294967296\n", "test.conf:1:", "'4294967296'", "uid out of range");
}

/* A selector used twice in one rule, even as 'any', is refused. */
Test(config, err_duplicated_selector)
{
	parse_err("allow port 80 same-uid port 81\n", "test.conf:1:", "'port'", "duplicated selector");
	parse_err("deny same-uid same-uid\n", "test.conf:1:", "'same-uid'", "duplicated selector");
	parse_err("deny client any client 10.0.0.1\n", "test.conf:1:", "'client'", "duplicated selector");
}

/* An unknown word inside a rule is an unknown selector. */
Test(config, err_unknown_selector)
{
	parse_err("allow port 80 uid 5\n", "test.conf:1:", "'uid'", "unknown selector");
}

/* A rule with an IPv4 side and an IPv6 side could never match, so it is refused. */
Test(config, err_mixed_families)
{
	parse_err("allow client 10.0.0.1 server ::1\n", "test.conf:1:", "'::1'", "families differ");
}

/* A 1 MiB line neither overflows nor loses count, and a huge token is truncated safely. */
Test(config, long_lines)
{
	size_t n = 1 << 20;
	char *text = malloc(2 * n + 64);
	char small[16];

	cr_assert_not_null(text);
	text[0] = '#';
	memset(text + 1, 'x', n);
	strcpy(text + 1 + n, "\nallow port 80\nbogus\n");
	cr_assert_eq(parse(text), -EINVAL);
	cr_assert(strstr(err, "test.conf:3: unknown keyword 'bogus'"), "%s", err);

	memset(text, 'y', n);
	strcpy(text + n, " 1\n");
	cr_assert_eq(parse(text), -EINVAL);
	cr_assert(strstr(err, "test.conf:1: unknown keyword 'yyyy"), "%.60s", err);
	cr_assert_eq(strlen(err), sizeof(err) - 1);

	cr_assert_eq(xio_config_parse_string(&cfg, "t", text, small, sizeof(small)), -EINVAL);
	cr_assert_eq(strlen(small), sizeof(small) - 1);
	cr_assert_eq(xio_config_parse_string(&cfg, "t", text, NULL, 0), -EINVAL);
	free(text);
}

/* A rule without selectors matches every query, IPv4 and IPv6. */
Test(config, empty_rule_matches_all)
{
	parse_ok("deny\n");
	cr_assert_eq(cfg.nrules, 1);
	cr_assert_eq(allowed("10.0.0.1", "10.0.0.2", 1), 0);
	cr_assert_eq(allowed("::1", "::1", 65535), 0);
}

/* The first matching rule decides, whatever follows it. */
Test(config, first_match_wins)
{
	parse_ok("deny client 10.0.0.0/8\nallow\n");
	cr_assert_eq(allowed("10.9.9.9", "127.0.0.1", 80), 0);
	cr_assert_eq(allowed("11.0.0.1", "127.0.0.1", 80), 1);

	parse_ok("allow\ndeny client 10.0.0.0/8\n");
	cr_assert_eq(allowed("10.9.9.9", "127.0.0.1", 80), 1);
	cr_assert_eq(xio_acl_match(&cfg, &(struct xio_acl_query){ .family = AF_INET })->line, 1);
}

/* default deny denies what no rule allows, and only that. */
Test(config, default_deny)
{
	parse_ok("allow port 443\ndefault deny\n");
	cr_assert_eq(cfg.default_allow, 0);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 443), 1);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 80), 0);
	cr_assert_null(xio_acl_match(&cfg, &(struct xio_acl_query){ .family = AF_INET, .server_port = 80 }));
}

/* IPv4 CIDRs match on exactly their prefix; host bits past it in the rule are ignored. */
Test(config, cidr_v4_prefixes)
{
	parse_ok("allow client 192.168.1.77\n"
		 "allow client 10.20.30.40/31\n"
		 "allow client 172.16.255.1/12\n"
		 "default deny\n");
	cr_assert_eq(allowed("192.168.1.77", "1.1.1.1", 1), 1);
	cr_assert_eq(allowed("192.168.1.76", "1.1.1.1", 1), 0);
	cr_assert_eq(allowed("10.20.30.40", "1.1.1.1", 1), 1);
	cr_assert_eq(allowed("10.20.30.41", "1.1.1.1", 1), 1);
	cr_assert_eq(allowed("10.20.30.42", "1.1.1.1", 1), 0);
	cr_assert_eq(allowed("10.20.30.39", "1.1.1.1", 1), 0);
	cr_assert_eq(allowed("172.16.0.0", "1.1.1.1", 1), 1);
	cr_assert_eq(allowed("172.31.255.255", "1.1.1.1", 1), 1);
	cr_assert_eq(allowed("172.32.0.0", "1.1.1.1", 1), 0);
	cr_assert_eq(allowed("172.15.255.255", "1.1.1.1", 1), 0);
}

/* IPv4 /0 matches every IPv4 address and /32 only one. */
Test(config, cidr_v4_zero_and_full)
{
	parse_ok("deny server 127.0.0.1/32\nallow client 0.0.0.0/0\ndefault deny\n");
	cr_assert_eq(allowed("255.255.255.255", "0.0.0.0", 1), 1);
	cr_assert_eq(allowed("0.0.0.0", "127.0.0.2", 1), 1);
	cr_assert_eq(allowed("0.0.0.0", "127.0.0.1", 1), 0);
}

/* IPv6 CIDRs match on exactly their prefix, from /0 to /128. */
Test(config, cidr_v6_prefixes)
{
	parse_ok("allow client 2001:db8::1/128\n"
		 "allow client 2001:db8:1::/64\n"
		 "allow client 2001:db8:2::/127\n"
		 "allow client fd00::/7\n"
		 "default deny\n");
	cr_assert_eq(allowed("2001:db8::1", "::1", 1), 1);
	cr_assert_eq(allowed("2001:db8::2", "::1", 1), 0);
	cr_assert_eq(allowed("2001:db8:1::ffff:ffff:ffff:ffff", "::1", 1), 1);
	cr_assert_eq(allowed("2001:db8:1:1::", "::1", 1), 0);
	cr_assert_eq(allowed("2001:db8:2::", "::1", 1), 1);
	cr_assert_eq(allowed("2001:db8:2::1", "::1", 1), 1);
	cr_assert_eq(allowed("2001:db8:2::2", "::1", 1), 0);
	cr_assert_eq(allowed("fc00::5", "::1", 1), 1);
	cr_assert_eq(allowed("fdff:ffff::5", "::1", 1), 1);
	cr_assert_eq(allowed("fe00::5", "::1", 1), 0);

	parse_ok("allow server ::/0\ndefault deny\n");
	cr_assert_eq(allowed("ffff::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1), 1);
	cr_assert_eq(allowed("10.0.0.1", "10.0.0.1", 1), 0);
}

/* An IPv4 rule never matches an IPv6 query and vice versa; 'any' matches both. */
Test(config, cidr_family_separation)
{
	parse_ok("deny client 0.0.0.0/0\n");
	cr_assert_eq(allowed("::1", "::1", 1), 1);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 1), 0);

	parse_ok("deny client ::/0\n");
	cr_assert_eq(allowed("::1", "::1", 1), 0);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 1), 1);

	parse_ok("deny client any server any\n");
	cr_assert_eq(allowed("::1", "::1", 1), 0);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 1), 0);
}

/* IPv4-mapped IPv6 queries are judged as IPv4, and mapped rules mean IPv4 too. */
Test(config, v4_mapped_queries)
{
	parse_ok("deny client 127.0.0.0/8 server 127.0.0.1\ndefault allow\n");
	cr_assert_eq(allowed("::ffff:127.0.0.5", "::ffff:127.0.0.1", 1), 0);
	cr_assert_eq(allowed("::ffff:128.0.0.5", "::ffff:127.0.0.1", 1), 1);

	parse_ok("deny client ::/0\n");
	cr_assert_eq(allowed("::ffff:127.0.0.5", "::ffff:127.0.0.1", 1), 1);

	parse_ok("deny client ::ffff:10.0.0.0/104\n");
	cr_assert_eq(cfg.rules[0].client.family, AF_INET);
	cr_assert_eq(cfg.rules[0].client.prefix, 8);
	cr_assert_eq(allowed("10.1.2.3", "10.0.0.1", 1), 0);
	cr_assert_eq(allowed("::ffff:10.1.2.3", "::ffff:10.0.0.1", 1), 0);
	cr_assert_eq(allowed("11.1.2.3", "10.0.0.1", 1), 1);
}

/* port matches the server port within inclusive bounds, never the client port. */
Test(config, port_ranges)
{
	parse_ok("allow port 8000-8080\nallow port 1\nallow port 65535\ndefault deny\n");
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 7999), 0);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 8000), 1);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 8080), 1);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 8081), 0);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 1), 1);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 2), 0);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 65535), 1);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 65534), 0);

	struct xio_acl_query q = query("127.0.0.1", 8000, "127.0.0.1", 9000, 0, 0);

	cr_assert_eq(xio_acl_check(&cfg, &q), 0);
}

/* client-uid and server-uid match their own uid within inclusive bounds, up to 2^32-1. */
Test(config, uid_ranges)
{
	parse_ok("allow client-uid 1000-1999 server-uid 0\n"
		 "allow client-uid 4294967295\n"
		 "default deny\n");
	cr_assert_eq(allowed_uids(1000, 0), 1);
	cr_assert_eq(allowed_uids(1999, 0), 1);
	cr_assert_eq(allowed_uids(999, 0), 0);
	cr_assert_eq(allowed_uids(2000, 0), 0);
	cr_assert_eq(allowed_uids(1500, 1), 0);
	cr_assert_eq(allowed_uids(0, 1500), 0);
	cr_assert_eq(allowed_uids(4294967295u, 7), 1);
	cr_assert_eq(allowed_uids(4294967294u, 7), 0);
}

/* same-uid matches only when both ends run as the same user. */
Test(config, same_uid)
{
	parse_ok("allow same-uid\ndefault deny\n");
	cr_assert_eq(allowed_uids(1000, 1000), 1);
	cr_assert_eq(allowed_uids(0, 0), 1);
	cr_assert_eq(allowed_uids(1000, 1001), 0);
	cr_assert_eq(allowed_uids(0, 1000), 0);
}

/* A rule matches only when every one of its selectors matches. */
Test(config, all_selectors_must_match)
{
	parse_ok("allow client 127.0.0.0/8 server 127.0.0.1 port 80 client-uid 1000 "
		 "server-uid 33 \tsame-uid\n"
		 "allow client 127.0.0.0/8 server 127.0.0.1 port 80 client-uid 1000 server-uid 33\n"
		 "default deny\n");
	cr_assert_eq(cfg.nrules, 2);
	struct xio_acl_query q = query("127.0.0.9", 5, "127.0.0.1", 80, 1000, 33);

	cr_assert_eq(xio_acl_match(&cfg, &q)->line, 2); /* same-uid fails in rule 1 */
	q.server_port = 81;
	cr_assert_eq(xio_acl_check(&cfg, &q), 0);
	q = query("127.0.0.9", 5, "127.0.0.2", 80, 1000, 33);
	cr_assert_eq(xio_acl_check(&cfg, &q), 0);
	q = query("128.0.0.9", 5, "127.0.0.1", 80, 1000, 33);
	cr_assert_eq(xio_acl_check(&cfg, &q), 0);
	q = query("127.0.0.9", 5, "127.0.0.1", 80, 1001, 33);
	cr_assert_eq(xio_acl_check(&cfg, &q), 0);
	q = query("127.0.0.9", 5, "127.0.0.1", 80, 1000, 34);
	cr_assert_eq(xio_acl_check(&cfg, &q), 0);
}

/* Many rules keep their order across the array's growth. */
Test(config, many_rules)
{
	size_t n = 1000, i;
	char *text = malloc(n * 32), *s = text;

	cr_assert_not_null(text);
	for (i = 0; i < n; i++)
		s += sprintf(s, "%s port %zu\n", i % 2 ? "allow" : "deny", i + 1);
	parse_ok(text);
	free(text);
	cr_assert_eq(cfg.nrules, n);
	for (i = 0; i < n; i++) {
		cr_assert_eq(cfg.rules[i].line, i + 1);
		cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", i + 1), i % 2);
	}
}

/* Writes text to a fresh temp file and returns its path in path. */
static void temp_file(char *path, const char *text, size_t len)
{
	int fd;

	strcpy(path, "/tmp/xio_test_config.XXXXXX");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

/* A real file loads, and its errors carry its path as the name. */
Test(config, load_file)
{
	static const char good[] = "segment-size 16M # big\nmax-msg 1M\ndeny port 22\n";
	static const char bad[] = "hugepages on\n\nallow port 22 port 23\n";
	char path[64];

	temp_file(path, good, strlen(good));
	cr_assert_eq(xio_config_load(&cfg, path, err, sizeof(err)), 0, "%s", err);
	unlink(path);
	cr_assert_eq(cfg.segment_size, 16777216);
	cr_assert_eq(cfg.max_msg, 1048576);
	cr_assert_eq(allowed("127.0.0.1", "127.0.0.1", 22), 0);

	temp_file(path, bad, strlen(bad));
	cr_assert_eq(xio_config_load(&cfg, path, err, sizeof(err)), -EINVAL);
	unlink(path);
	char want[128];

	snprintf(want, sizeof(want), "%s:3: duplicated selector 'port'", path);
	cr_assert_str_eq(err, want);
}

/* A missing file is -ENOENT with the path and the reason in err. */
Test(config, load_missing_file)
{
	int r = xio_config_load(&cfg, "/nonexistent/xio.conf", err, sizeof(err));

	cr_assert_eq(r, -ENOENT);
	cr_assert(strstr(err, "/nonexistent/xio.conf"), "%s", err);
	cr_assert(strstr(err, strerror(ENOENT)), "%s", err);
	cr_assert_eq(cfg.segment_size, 2097152);
}

/* A directory is -EISDIR, reported like any unreadable file. */
Test(config, load_directory)
{
	cr_assert_eq(xio_config_load(&cfg, "/tmp", err, sizeof(err)), -EISDIR);
	cr_assert(strstr(err, "/tmp: "), "%s", err);
}

/* A NUL byte in a file is an error at its line rather than a silent end of text. */
Test(config, load_nul_byte)
{
	static const char text[] = "hugepages on\ndeny port 22\0\nallow\n";
	char path[64];

	temp_file(path, text, sizeof(text) - 1);
	cr_assert_eq(xio_config_load(&cfg, path, err, sizeof(err)), -EINVAL);
	unlink(path);
	cr_assert(strstr(err, ":2: NUL byte"), "%s", err);
}

/* The limits have their documented defaults (0: those that hold fds or
 * connections come from the monitor's fd limit or vm.max_map_count), and a
 * file sets each one, or sets one of those back to "auto". */
Test(config, limits)
{
	cr_assert_eq(cfg.limit_process_listeners, 1024);
	cr_assert_eq(cfg.limit_process_pending, 0);
	cr_assert_eq(cfg.limit_process_connections, 0);
	cr_assert_eq(cfg.limit_uid_listeners, 4096);
	cr_assert_eq(cfg.limit_uid_pending, 0);
	cr_assert_eq(cfg.limit_uid_connections, 0);
	cr_assert_eq(cfg.limit_uid_sessions, 0);
	cr_assert_eq(cfg.limit_connections, 0);
	parse_ok("limit-process-listeners 1\nlimit-process-pending 2\nlimit-uid-listeners 3\n"
		 "limit-uid-pending 4\nlimit-uid-sessions 1000000\nlimit-process-connections 5\n"
		 "limit-uid-connections 6\nlimit-connections 7\n");
	cr_assert_eq(cfg.limit_process_listeners, 1);
	cr_assert_eq(cfg.limit_process_pending, 2);
	cr_assert_eq(cfg.limit_uid_listeners, 3);
	cr_assert_eq(cfg.limit_uid_pending, 4);
	cr_assert_eq(cfg.limit_uid_sessions, 1000000);
	cr_assert_eq(cfg.limit_process_connections, 5);
	cr_assert_eq(cfg.limit_uid_connections, 6);
	cr_assert_eq(cfg.limit_connections, 7);
	parse_ok("limit-process-pending auto\nlimit-uid-connections auto\nlimit-connections auto\n");
	cr_assert_eq(cfg.limit_process_pending, 0);
	cr_assert_eq(cfg.limit_uid_connections, 0);
	cr_assert_eq(cfg.limit_connections, 0);
}

/* A limit is a number from 1 to 1000000, set once. */
Test(config, err_limits)
{
	parse_err("limit-uid-pending 0\n", "test.conf:1:", "'0'", "limit must be from 1 to 1000000");
	parse_err("limit-process-pending 1000001\n", "test.conf:1:", "'1000001'",
		  "limit must be from 1 to 1000000");
	parse_err("limit-uid-sessions 4k\n", "test.conf:1:", "'4k'", "bad number");
	parse_err("limit-uid-sessions\n", "test.conf:1:", "'limit-uid-sessions'", "missing value");
	parse_err("limit-process-listeners 5\nlimit-process-listeners 6\n", "test.conf:2:",
		  "'limit-process-listeners'", "duplicate setting");
	/* Listeners hold no fd: their limit is a number. */
	parse_err("limit-uid-listeners auto\n", "test.conf:1:", "'auto'", "bad number");
}
