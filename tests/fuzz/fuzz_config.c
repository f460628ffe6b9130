/*
 * fuzz_config.c - libFuzzer harness for the monitor's configuration parser
 * and ACL evaluation (monitor/config.c).
 *
 * Input: the configuration text up to the first NUL; whatever follows fills
 * an ACL query. A parse that succeeds gives settings within the documented
 * limits and an answer of 0 or 1 for any query; one that fails leaves the
 * previous configuration as it was and a terminated message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	size_t tlen = strlen(text);
	const uint8_t *rest = tlen < size ? data + tlen + 1 : data + size;
	size_t restlen = (size_t)(data + size - rest);

	struct xio_config cfg;
	xio_config_defaults(&cfg);
	struct xio_config before = cfg;
	char err[80];
	memset(err, 'x', sizeof(err));
	int r = xio_config_parse_string(&cfg, "fuzz.conf", text, err, sizeof(err));
	if (r == 0) {
		if (cfg.max_msg == 0 || cfg.max_msg > cfg.segment_size)
			abort();
		struct xio_acl_query q;
		memset(&q, 0, sizeof(q));
		if (restlen >= sizeof(q) - sizeof(q.family))
			memcpy((char *)&q + sizeof(q.family), rest, sizeof(q) - sizeof(q.family));
		q.family = restlen && (rest[0] & 1) ? AF_INET6 : AF_INET;
		int a = xio_acl_check(&cfg, &q);
		if (a != 0 && a != 1)
			abort();
	} else {
		if (memchr(err, '\0', sizeof(err)) == NULL)
			abort();
		if (memcmp(&before, &cfg, sizeof(cfg)) != 0)
			abort(); /* a failed parse must not touch the configuration */
	}
	xio_config_free(&cfg);
	free(text);
	return 0;
}
