/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the suites of cma-test share: the context they run in, the checks
 * every suite uses, and the suite functions themselves.
 */
#ifndef _CMA_TEST_SUITE_H
#define _CMA_TEST_SUITE_H

#include "cmadev.h"
#include "ktap.h"

#define TAINT_WARN	BIT(9)	/* TAINT_WARN: a WARN() fired */

struct ctx {
	int fd;
	struct cma_dev_info info;
	struct area area;	/* the area the suites work on */
};

int ctx_refresh(struct ctx *c);
u64 area_max_alloc(struct ctx *c);
void check_taint(struct ktap *k, unsigned long before);
void check_restored(struct ktap *k, struct ctx *c, u64 free0,
		    long long used0, const char *name);
bool expect_err(struct ktap *k, int got, int want, const char *name);

/* The suites, in suite_*.c; suites.def gives their names. */
void suite_alloc_free(struct ktap *k, struct ctx *c);
void suite_exhaustion(struct ktap *k, struct ctx *c);
void suite_migrate(struct ktap *k, struct ctx *c);
void suite_dma(struct ktap *k, struct ctx *c);
void suite_replay(struct ktap *k, struct ctx *c);
void suite_concurrency(struct ktap *k, struct ctx *c);

#endif /* _CMA_TEST_SUITE_H */
