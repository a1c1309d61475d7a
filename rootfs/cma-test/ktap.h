/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The KTAP report of "cma-test suite": one top-level test per suite, its
 * checks as subtests (see README.md next to this file).
 */
#ifndef _CMA_TEST_KTAP_H
#define _CMA_TEST_KTAP_H

#include "common.h"

#include <stdio.h>

/*
 * A suite writes its subtest lines into a memory stream; when it is done,
 * the header with the plan, the buffered lines and the suite result are
 * printed, so the plan always precedes the results.
 */
struct ktap {
	FILE *out;
	char *buf;
	size_t len;
	int n;
	int failed;
	int skipped;
	char skip_reason[160];	/* whole suite skipped if set */
};

void kt_init(struct ktap *k);
void __printf(2, 3) kt_diag(struct ktap *k, const char *fmt, ...);
bool __printf(3, 4) kt_result(struct ktap *k, bool ok, const char *fmt, ...);
void __printf(3, 4) kt_skip(struct ktap *k, const char *name,
			    const char *fmt, ...);
void kt_latency(struct ktap *k, const char *what, struct lat *l);
bool kt_finish(struct ktap *k, int num, const char *name);

#endif /* _CMA_TEST_KTAP_H */
