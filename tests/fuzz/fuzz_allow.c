/*
 * fuzz_allow.c - libFuzzer harness for the XIO_ALLOW parser and matcher
 * (preload/allow.c), which reads whatever a user's environment holds.
 *
 * Input: the spec, up to the first NUL; whatever follows is an address to
 * match (an IPv4 or IPv6 socket address built from those bytes). A parse
 * either succeeds with a list or fails with a NUL-terminated message within
 * the buffer it was given.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "allow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 8192)
		return 0;
	char *spec = malloc(size + 1);
	if (!spec)
		return 0;
	memcpy(spec, data, size);
	spec[size] = '\0';
	size_t speclen = strlen(spec);
	const uint8_t *rest = data + speclen + 1 <= data + size ? data + speclen + 1 : data + size;
	size_t restlen = (size_t)(data + size - rest);

	char err[64];
	memset(err, 'x', sizeof(err));
	struct xio_allow *a = NULL;
	int r = xio_allow_parse(spec, &a, err, sizeof(err));
	if (r == 0) {
		if (!a)
			abort();
		struct sockaddr_in sin = { .sin_family = AF_INET };
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
		if (restlen >= 6) {
			memcpy(&sin.sin_addr, rest, 4);
			memcpy(&sin.sin_port, rest + 4, 2);
		}
		if (restlen >= 18) {
			memcpy(&sin6.sin6_addr, rest, 16);
			memcpy(&sin6.sin6_port, rest + 16, 2);
		}
		int m4 = xio_allow_match(a, (struct sockaddr *)&sin, sizeof(sin));
		int m6 = xio_allow_match(a, (struct sockaddr *)&sin6, sizeof(sin6));
		if ((m4 != 0 && m4 != 1) || (m6 != 0 && m6 != 1))
			abort();
		/* Too short an address is never on the list. */
		if (xio_allow_match(a, (struct sockaddr *)&sin, sizeof(sin) - 1) == 1)
			abort();
		xio_allow_free(a);
	} else if (memchr(err, '\0', sizeof(err)) == NULL) {
		abort(); /* the message overran or was not terminated */
	}
	free(spec);
	return 0;
}
