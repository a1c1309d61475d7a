// SPDX-License-Identifier: GPL-2.0
/*
 * Suite dma: dma_alloc_coherent() buffers of 4 KiB to 4 MiB must come from
 * the default CMA area, lower its free pages while they exist and be
 * usable through mmap(); then the error cases, and the area is restored.
 */
#include "suite.h"

#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>

/* Writes and reads back a pattern through a mapping of buffer @h. */
static bool dma_pattern(struct ktap *k, struct ctx *c, u32 h, size_t len,
			u64 dma, const char *name)
{
	long long bad;
	bool ok = true;
	void *p;
	int err;

	p = dev_map(c->fd, h, len, &err);
	if (!p) {
		kt_diag(k, "%s: mmap: %s", name, errname(-err));
		return false;
	}
	fill_pattern(p, len, (u32)dma);
	bad = check_pattern(p, len, (u32)dma);
	if (bad >= 0) {
		kt_diag(k, "%s: mismatch at +0x%llx", name, bad);
		ok = false;
	}
	if (munmap(p, len))
		ok = false;
	return ok;
}

/* Subtest dma-@size: one buffer from area @dflt, which had @free0 pages. */
static void dma_one(struct ktap *k, struct ctx *c, const struct area *dflt,
		    u64 free0, u64 size, struct lat *lat)
{
	u64 dma, phys, us, during;
	size_t len = page_align(size);
	char name[48];
	bool ok = true;
	int ret;
	u32 h;

	snprintf(name, sizeof(name), "dma-%llu", size);
	if (size > dflt->free_pages * page_size) {
		kt_skip(k, name, "area too small");
		return;
	}
	ret = dev_dma_alloc(c->fd, size, &h, &dma, &phys, &us);
	if (ret) {
		kt_diag(k, "%s: %s", name, errname(-ret));
		kt_result(k, false, "%s", name);
		return;
	}
	lat_add(lat, us);
	during = area_free(c->fd, dflt);
	if (!in_area(dflt, phys, len)) {
		kt_diag(k, "%s: phys 0x%llx (dma 0x%llx) outside %s", name,
			phys, dma, dflt->name);
		ok = false;
	}
	if (during == UINT64_MAX || free0 - during < len / page_size) {
		kt_diag(k, "%s: area free pages %llu -> %llu, expected a drop of %zu",
			name, free0, during, (size_t)(len / page_size));
		ok = false;
	}
	if (!dma_pattern(k, c, h, len, dma, name))
		ok = false;
	ret = dev_free(c->fd, h);
	if (ret) {
		kt_diag(k, "%s: free: %s", name, errname(-ret));
		ok = false;
	}
	kt_result(k, ok, "%s", name);
}

void suite_dma(struct ktap *k, struct ctx *c)
{
	static const u64 sizes[] = { 4096, 3 * 4096 + 100, 64 << 10,
				     1 << 20, 4 << 20 };
	struct lat lat = { 0 };
	struct area dflt;
	u64 free0, dma, phys;
	size_t i;
	int ret;
	u32 h;

	if (dev_area_by_name(c->fd, DEFAULT_AREA, &dflt)) {
		snprintf(k->skip_reason, sizeof(k->skip_reason),
			 "no default CMA area \"%s\"", DEFAULT_AREA);
		return;
	}
	free0 = dflt.free_pages;
	kt_diag(k, "default area %s base=0x%llx size=%llu free_pages=%llu",
		dflt.name, dflt.base, dflt.size, free0);

	for (i = 0; i < ARRAY_SIZE(sizes); i++)
		dma_one(k, c, &dflt, free0, sizes[i], &lat);

	ret = dev_dma_alloc(c->fd, 0, &h, &dma, &phys, NULL);
	expect_err(k, ret, EINVAL, "dma-size-0-einval");
	ret = dev_dma_alloc(c->fd, UINT64_MAX, &h, &dma, &phys, NULL);
	expect_err(k, ret, ENOMEM, "dma-huge-enomem");

	ret = dev_area(c->fd, dflt.index, &dflt);
	if (ret || dflt.free_pages != free0)
		kt_diag(k, "free pages %llu, expected %llu",
			dflt.free_pages, free0);
	kt_result(k, !ret && dflt.free_pages == free0, "area-restored");
	kt_latency(k, NULL, &lat);
	lat_free(&lat);
}
