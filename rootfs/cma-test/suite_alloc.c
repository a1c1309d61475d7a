// SPDX-License-Identifier: GPL-2.0
/*
 * Suite alloc-free: one page at every alignment order, sizes from one page
 * to the whole area, each placed, aligned, written and read back; then the
 * error cases of the ioctls and of mmap(), and the area must be restored.
 */
#include "suite.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

/* Writes a pattern through one mapping and reads it back through another. */
static bool pattern_via_mmap(struct ktap *k, struct ctx *c, u32 handle,
			     size_t len, u32 seed, const char *name)
{
	long long bad;
	bool ok = true;
	void *p;
	int err;

	p = dev_map(c->fd, handle, len, &err);
	if (!p) {
		kt_diag(k, "%s: mmap: %s", name, errname(-err));
		return false;
	}
	fill_pattern(p, len, seed);
	if (munmap(p, len)) {
		kt_diag(k, "%s: munmap: %s", name, strerror(errno));
		ok = false;
	}
	/* Map again: the data must have gone to the buffer itself. */
	p = dev_map(c->fd, handle, len, &err);
	if (!p) {
		kt_diag(k, "%s: second mmap: %s", name, errname(-err));
		return false;
	}
	bad = check_pattern(p, len, seed);
	if (bad >= 0) {
		kt_diag(k, "%s: pattern mismatch at +0x%llx", name, bad);
		ok = false;
	}
	if (munmap(p, len))
		ok = false;
	return ok;
}

/* Allocates, checks placement, writes and verifies a pattern, frees. */
static bool alloc_check_free(struct ktap *k, struct ctx *c, u64 size,
			     u32 order, struct lat *lat, const char *name)
{
	u32 handle;
	u64 phys, us;
	size_t len = page_align(size);
	int ret;
	bool ok = true;

	ret = dev_alloc(c->fd, c->area.name, size, order, &handle, &phys, &us);
	if (ret) {
		kt_diag(k, "%s: alloc size=%llu order=%u: %s", name, size,
			order, errname(-ret));
		return kt_result(k, false, "%s", name);
	}
	lat_add(lat, us);
	if (!in_area(&c->area, phys, len)) {
		kt_diag(k, "%s: phys 0x%llx+0x%zx outside area 0x%llx+0x%llx",
			name, phys, len, c->area.base, c->area.size);
		ok = false;
	}
	if (phys % ((u64)page_size << order)) {
		kt_diag(k, "%s: phys 0x%llx not aligned to order %u",
			name, phys, order);
		ok = false;
	}
	if (!pattern_via_mmap(k, c, handle, len, (u32)phys ^ order, name))
		ok = false;
	ret = dev_free(c->fd, handle);
	if (ret) {
		kt_diag(k, "%s: free: %s", name, errname(-ret));
		ok = false;
	}
	return kt_result(k, ok, "%s", name);
}

/* order-N: one page at every alignment order the driver accepts. */
static void alloc_orders(struct ktap *k, struct ctx *c, u64 max,
			 struct lat *lat)
{
	char name[32];
	u32 order;

	for (order = 0; order <= c->info.max_align_order; order++) {
		u64 sz = (u64)page_size << order;

		snprintf(name, sizeof(name), "order-%u", order);
		if (sz > max) {
			kt_skip(k, name, "area too small");
			continue;
		}
		alloc_check_free(k, c, page_size, order, lat, name);
	}
}

/* size-*: from one page to the whole area (or its largest free range). */
static void alloc_sizes(struct ktap *k, struct ctx *c, u64 max,
			struct lat *lat)
{
	static const char * const names[] = {
		"size-1-page", "size-2-pages", "size-3-pages-plus-1-byte",
		"size-64K", "size-1M", "size-quarter-area", "size-half-area",
		"size-whole-area",
	};
	u64 sizes[ARRAY_SIZE(names)];
	size_t i;

	sizes[0] = page_size;
	sizes[1] = 2 * page_size;
	sizes[2] = 3 * page_size + 1;
	sizes[3] = 64 << 10;
	sizes[4] = 1 << 20;
	sizes[5] = c->area.size / 4;
	sizes[6] = c->area.size / 2;
	sizes[7] = max;
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		if (sizes[i] > max) {
			kt_skip(k, names[i], "only %llu bytes allocatable", max);
			continue;
		}
		alloc_check_free(k, c, sizes[i], 0, lat, names[i]);
	}
	if (max != c->area.size)
		kt_diag(k, "size-whole-area used %llu bytes: the area was not entirely free",
			max);
}

/* The error cases of the alloc and free ioctls. */
static void alloc_errors(struct ktap *k, struct ctx *c)
{
	u64 phys;
	u32 h;
	int ret;

	ret = dev_alloc(c->fd, c->area.name, 0, 0, &h, &phys, NULL);
	expect_err(k, ret, EINVAL, "size-0-einval");
	ret = dev_alloc(c->fd, c->area.name, page_size,
			c->info.max_align_order + 1, &h, &phys, NULL);
	expect_err(k, ret, EINVAL, "order-above-max-einval");
	ret = dev_alloc(c->fd, "no-such-area", page_size, 0, &h, &phys, NULL);
	expect_err(k, ret, ENOENT, "unknown-area-enoent");
	ret = dev_alloc(c->fd, c->area.name, c->area.size + page_size, 0, &h,
			&phys, NULL);
	expect_err(k, ret, ENOMEM, "beyond-area-enomem");
	ret = dev_alloc(c->fd, c->area.name, UINT64_MAX, 0, &h, &phys, NULL);
	expect_err(k, ret, ENOMEM, "size-u64-max-enomem");
	expect_err(k, dev_free(c->fd, 0x7fff), ENOENT, "free-unknown-enoent");
}

/* mmap-errors: beyond the buffer, an unknown handle, a private mapping. */
static void mmap_errors(struct ktap *k, struct ctx *c, u32 h)
{
	bool ok = true;
	void *p;
	int err;

	p = dev_map(c->fd, h, 2 * page_size, &err);
	if (p || err != -EINVAL) {
		kt_diag(k, "mmap beyond buffer: %s",
			p ? "succeeded" : errname(-err));
		ok = false;
		if (p)
			munmap(p, 2 * page_size);
	}
	p = dev_map(c->fd, h + 1000, page_size, &err);
	if (p || err != -ENOENT) {
		kt_diag(k, "mmap unknown handle: %s",
			p ? "succeeded" : errname(-err));
		ok = false;
		if (p)
			munmap(p, page_size);
	}
	p = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE,
		 c->fd, (off_t)h * page_size);
	if (p != MAP_FAILED || errno != EINVAL) {
		kt_diag(k, "private mmap: %s",
			p != MAP_FAILED ? "succeeded" : strerror(errno));
		ok = false;
		if (p != MAP_FAILED)
			munmap(p, page_size);
	}
	kt_result(k, ok, "mmap-errors");
}

static void free_while_mapped(struct ktap *k, struct ctx *c, u32 h)
{
	void *p;
	int err;

	p = dev_map(c->fd, h, page_size, &err);
	if (!p) {
		kt_diag(k, "mmap: %s", errname(-err));
		kt_result(k, false, "free-while-mapped-ebusy");
		return;
	}
	expect_err(k, dev_free(c->fd, h), EBUSY, "free-while-mapped-ebusy");
	if (munmap(p, page_size))
		kt_diag(k, "munmap: %s", strerror(errno));
}

/* Handle @h is unknown to another open file, which then leaves a buffer. */
static void other_file_handle(struct ktap *k, struct ctx *c, u32 h)
{
	u64 phys;
	u32 h2;
	int fd2, ret;

	fd2 = dev_open();
	if (fd2 < 0) {
		kt_result(k, false, "other-file-handle-enoent");
		return;
	}
	expect_err(k, dev_free(fd2, h), ENOENT, "other-file-handle-enoent");
	/* Leave one buffer for close() to reclaim. */
	ret = dev_alloc(fd2, c->area.name, page_size, 0, &h2, &phys, NULL);
	if (ret)
		kt_diag(k, "alloc on second file: %s", errname(-ret));
	close(fd2);
}

/* What may and may not be done with the handle of a one-page buffer. */
static void handle_tests(struct ktap *k, struct ctx *c)
{
	u64 phys;
	u32 h;
	int ret;

	ret = dev_alloc(c->fd, c->area.name, page_size, 0, &h, &phys, NULL);
	if (ret) {
		kt_diag(k, "alloc for handle tests: %s", errname(-ret));
		kt_result(k, false, "handle-tests");
		return;
	}
	mmap_errors(k, c, h);
	free_while_mapped(k, c, h);
	other_file_handle(k, c, h);
	expect_err(k, dev_free(c->fd, h), 0, "free-ok");
	expect_err(k, dev_free(c->fd, h), ENOENT, "double-free-enoent");
}

void suite_alloc_free(struct ktap *k, struct ctx *c)
{
	struct lat lat = { 0 };
	u64 free0, max;
	long long used0;

	ctx_refresh(c);
	free0 = c->area.free_pages;
	used0 = debugfs_val(c->area.name, "used");
	max = area_max_alloc(c);
	kt_diag(k,
		"area %s base=0x%llx size=%llu free_pages=%llu max_alloc=%llu max_align_order=%u",
		c->area.name, c->area.base, c->area.size, free0, max,
		c->info.max_align_order);

	alloc_orders(k, c, max, &lat);
	alloc_sizes(k, c, max, &lat);
	alloc_errors(k, c);
	handle_tests(k, c);

	check_restored(k, c, free0, used0, "area-restored");
	kt_latency(k, NULL, &lat);
	lat_free(&lat);
}
