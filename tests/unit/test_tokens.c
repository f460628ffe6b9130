/*
 * test_tokens.c - sleep tokens (core/wait.c; seg.h, "Sleep tokens") and the
 * tokens of their own that parked members are armed with (issue 16,
 * docs/design.md "Waiting on many connections").
 */
#include <criterion/criterion.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xio/conn.h"

/* A sleep's token never carries XIO_TOKEN_OWN, whatever random start a
 * process draws (each forked child draws its own): one that did would pass
 * for a parked word's own token, be kept where a fresh one belongs, and
 * replace a real own token, so that a peer skipped a doorbell nobody else
 * would ring. Half of all processes drew such tokens before. */
Test(tokens, sleep_tokens_never_pass_for_own)
{
	for (int k = 0; k < 64; k++) {
		pid_t p = fork();
		cr_assert_geq(p, 0);
		if (p == 0) {
			for (int i = 0; i < 1000; i++) {
				uint64_t t = xio__wait_token();
				if (!t || (t & XIO_TOKEN_OWN))
					_exit(1);
			}
			_exit(0);
		}
		int st = 0;
		cr_assert_eq(waitpid(p, &st, 0), p);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			  "process %d of 64 drew a sleep token with XIO_TOKEN_OWN set, or 0", k);
	}
}

/* Batches for parking are disjoint from each other and from single
 * tokens: no two parked words, and no parked word and a sleep, share one. */
Test(tokens, batches_are_disjoint)
{
	uint64_t a = xio__wait_tokens(64), b = xio__wait_tokens(64), c = xio__wait_token();
	cr_assert(a && b, "a batch could not be had in one thread");
	cr_assert(!(a & XIO_TOKEN_OWN) && !(b & XIO_TOKEN_OWN));
	cr_assert(b >= a + 64 || a >= b + 64, "batches at %#lx and %#lx overlap", (unsigned long)a,
		  (unsigned long)b);
	cr_assert((c < a || c >= a + 64) && (c < b || c >= b + 64));
}
