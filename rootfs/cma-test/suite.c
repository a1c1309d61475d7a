// SPDX-License-Identifier: GPL-2.0
/*
 * Checks the suites of cma-test share; see suite.h.
 */
#include "suite.h"

int ctx_refresh(struct ctx *c)
{
	return dev_area(c->fd, c->area.index, &c->area);
}

/* Largest allocation the area can currently satisfy, in bytes. */
u64 area_max_alloc(struct ctx *c)
{
	long long mc;

	ctx_refresh(c);
	if (c->area.free_pages == c->area.total_pages)
		return c->area.size;
	mc = debugfs_val(c->area.name, "maxchunk");
	if (mc > 0)
		return (u64)mc * page_size;
	return c->area.free_pages * page_size;
}

/* no-kernel-warning: the taint flag W was not set while the suite ran. */
void check_taint(struct ktap *k, unsigned long before)
{
	unsigned long after = taint_flags();

	if ((after & TAINT_WARN) && !(before & TAINT_WARN))
		kt_result(k, false, "no-kernel-warning");
	else
		kt_result(k, true, "no-kernel-warning");
	if (after != before)
		kt_diag(k, "tainted changed 0x%lx -> 0x%lx", before, after);
}

/* Checks the free page count (and debugfs used) against a snapshot. */
void check_restored(struct ktap *k, struct ctx *c, u64 free0,
		    long long used0, const char *name)
{
	long long used;
	bool ok = true;

	ctx_refresh(c);
	if (c->area.free_pages != free0) {
		kt_diag(k, "%s: free pages %llu, expected %llu",
			name, c->area.free_pages, free0);
		ok = false;
	}
	used = debugfs_val(c->area.name, "used");
	if (used0 >= 0 && used != used0) {
		kt_diag(k, "%s: debugfs used %lld, expected %lld", name, used,
			used0);
		ok = false;
	}
	kt_result(k, ok, "%s", name);
}

/* Subtest @name: @got (0 or -errno) must be -@want. */
bool expect_err(struct ktap *k, int got, int want, const char *name)
{
	if (got != -want)
		kt_diag(k, "%s: got %s, expected %s", name,
			errname(got < 0 ? -got : got), errname(want));
	return kt_result(k, got == -want, "%s", name);
}
