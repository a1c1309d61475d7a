// SPDX-License-Identifier: GPL-2.0
/*
 * Suite exhaustion: allocate 1/16 of the area at a time, then single pages,
 * until ENOMEM; the area must then be empty, with every page that was free
 * handed out.  After freeing everything, the free pages and the debugfs
 * counters must be back where they started.
 */
#include "suite.h"

#include <errno.h>
#include <stdlib.h>

struct handles {
	u32 *h;
	size_t n, cap;
	size_t nbig;		/* the first nbig are chunks, the rest pages */
};

static void handles_add(struct handles *hs, u32 h)
{
	if (hs->n == hs->cap) {
		hs->cap = hs->cap ? hs->cap * 2 : 256;
		hs->h = xrealloc(hs->h, hs->cap * sizeof(*hs->h));
	}
	hs->h[hs->n++] = h;
}

/* Big chunks first, then single pages until nothing is left. */
static int exhaust(struct ctx *c, u64 chunk, struct handles *hs,
		   struct lat *lat)
{
	u64 phys, us;
	int pass, ret = 0;
	u32 h;

	for (pass = 0; pass < 2; pass++) {
		u64 sz = pass ? (u64)page_size : chunk;

		for (;;) {
			ret = dev_alloc(c->fd, c->area.name, sz, 0, &h, &phys,
					&us);
			if (ret)
				break;
			lat_add(lat, us);
			handles_add(hs, h);
			if (!pass)
				hs->nbig++;
		}
		if (ret != -ENOMEM)
			break;
	}
	return ret;
}

/* area-empty, all-free-pages-allocated and still-enomem. */
static void check_exhausted(struct ktap *k, struct ctx *c, u64 free0,
			    u64 chunk, const struct handles *hs)
{
	size_t n = hs->n, nbig = hs->nbig;
	u64 phys;
	int ret;
	u32 h;
	bool ok;

	ctx_refresh(c);
	ok = c->area.free_pages == 0;
	if (!ok)
		kt_diag(k, "free pages left: %llu", c->area.free_pages);
	kt_result(k, ok, "area-empty");

	ok = (n - nbig) * page_size + nbig * chunk ==
	     free0 * (u64)page_size;
	if (!ok)
		kt_diag(k, "allocated %llu bytes, %llu were free",
			(u64)((n - nbig) * page_size + nbig * chunk),
			free0 * (u64)page_size);
	kt_result(k, ok, "all-free-pages-allocated");

	ret = dev_alloc(c->fd, c->area.name, page_size, 0, &h, &phys, NULL);
	expect_err(k, ret, ENOMEM, "still-enomem");
	if (!ret)
		dev_free(c->fd, h);
}

static void free_all(struct ktap *k, struct ctx *c, struct handles *hs)
{
	bool ok = true;
	size_t i;
	int ret;

	for (i = 0; i < hs->n; i++) {
		ret = dev_free(c->fd, hs->h[i]);
		if (ret) {
			kt_diag(k, "free handle %u: %s", hs->h[i],
				errname(-ret));
			ok = false;
		}
	}
	kt_result(k, ok, "free-all");
	free(hs->h);
}

/* maxchunk-restored: as at the start, the whole area if it was empty. */
static void check_maxchunk(struct ktap *k, struct ctx *c, u64 free0,
			   long long mc0)
{
	long long v = debugfs_val(c->area.name, "maxchunk");
	bool ok;

	if (mc0 < 0) {
		kt_skip(k, "maxchunk-restored", "no debugfs cma/%s/maxchunk",
			c->area.name);
		return;
	}
	ok = v == mc0;
	if (free0 == c->area.total_pages)
		ok = ok && (u64)v == c->area.total_pages;
	if (!ok)
		kt_diag(k, "maxchunk %lld, expected %lld (area %llu pages)",
			v, mc0, c->area.total_pages);
	kt_result(k, ok, "maxchunk-restored");
}

void suite_exhaustion(struct ktap *k, struct ctx *c)
{
	struct handles hs = { 0 };
	struct lat lat = { 0 };
	long long used0, mc0;
	u64 free0, chunk;
	int ret;

	ctx_refresh(c);
	free0 = c->area.free_pages;
	used0 = debugfs_val(c->area.name, "used");
	mc0 = debugfs_val(c->area.name, "maxchunk");
	kt_diag(k, "start free_pages=%llu used=%lld maxchunk=%lld",
		free0, used0, mc0);
	chunk = c->area.size / 16;
	if (chunk < (u64)page_size)
		chunk = page_size;

	ret = exhaust(c, chunk, &hs, &lat);
	kt_diag(k, "allocated %zu chunks of %llu bytes and %zu pages",
		hs.nbig, chunk, hs.n - hs.nbig);
	expect_err(k, ret, ENOMEM, "exhausted-enomem");
	check_exhausted(k, c, free0, chunk, &hs);
	free_all(k, c, &hs);

	check_restored(k, c, free0, used0, "area-restored");
	check_maxchunk(k, c, free0, mc0);
	kt_latency(k, NULL, &lat);
	lat_free(&lat);
}
