/*
 * bulk.c - which services earn hugepage segments (docs/design.md, "Memory
 * that follows the traffic"). A hugepage cannot be given back in part, so
 * a segment on one holds 2 MiB for its whole life, busy or idle; it pays
 * only for connections that stream a lot (fewer TLB misses over a large
 * area). The monitor cannot know that of a new connection, but it can of
 * the service it goes to: when a connection ends, what both directions
 * moved (the counters in the monitor's view of the segment) scores its
 * server endpoint, and with `hugepages auto` only an endpoint whose recent
 * connections each moved at least BULK_BYTES gets hugepages for its next
 * ones. The counters are the peers' to write: a process that inflates
 * them earns hugepages for its own uid's connections only, within that
 * uid's share (limits.c), as before.
 */
#include <stdlib.h>
#include <string.h>

#include "monitor.h"
#include "xio/seg.h"

#define BULK_BYTES (64ull << 20)
#define SCORE_MAX 3
#define SCORE_HUGE 2       /* this many bulk connections more than small ones */
#define ENDPOINTS_MAX 4096 /* beyond, new endpoints are not followed */

struct mon_bulk {
	struct xio_ep server;
	int score;
	UT_hash_handle hh;
};

static struct mon_bulk *table;
static unsigned count;

static struct mon_bulk *find(const struct xio_ep *ep)
{
	struct mon_bulk *b;
	HASH_FIND(hh, table, ep, sizeof(*ep), b);
	return b;
}

int mon_bulk_wants_huge(const struct xio_ep *server)
{
	struct mon_bulk *b = find(server);
	return b && b->score >= SCORE_HUGE;
}

void mon_bulk_learn(const struct monitor *m, const struct mon_conn *c)
{
	struct xio_seg_layout l;
	if (!c->accel || !c->view || xio_seg_layout(&m->params, &l) < 0 ||
	    l.chan_off[1] + sizeof(struct xio_chan_ctl) > c->view_len)
		return;
	uint64_t moved = 0;
	for (int d = 0; d < 2; d++) {
		const struct xio_chan_ctl *ctl = (const void *)((const char *)c->view + l.chan_off[d]);
		moved += atomic_load_explicit(&ctl->tx_bytes, memory_order_relaxed);
	}
	int bulk = moved >= BULK_BYTES;
	struct mon_bulk *b = find(&c->key.server);
	if (!b) {
		if (!bulk || count >= ENDPOINTS_MAX)
			return; /* small connections to a service never followed: the default */
		b = calloc(1, sizeof(*b));
		if (!b)
			return;
		memcpy(&b->server, &c->key.server, sizeof(b->server));
		HASH_ADD(hh, table, server, sizeof(b->server), b);
		count++;
	}
	b->score += bulk ? 1 : -1;
	if (b->score > SCORE_MAX)
		b->score = SCORE_MAX;
	if (b->score <= 0) {
		HASH_DEL(table, b);
		free(b);
		count--;
	}
}

void mon_bulk_clear(void)
{
	struct mon_bulk *b, *t;
	HASH_ITER(hh, table, b, t)
	{
		HASH_DEL(table, b);
		free(b);
	}
	count = 0;
}
