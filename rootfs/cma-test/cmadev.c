// SPDX-License-Identifier: GPL-2.0
/*
 * cma-test's access to /dev/cma-dev; see cmadev.h.
 */
#include "cmadev.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

int dev_open(void)
{
	int fd = open(DEV_PATH, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		fprintf(stderr, "%s: %s: %s\n", prog, DEV_PATH, strerror(errno));
	return fd;
}

int dev_info(int fd, struct cma_dev_info *info)
{
	memset(info, 0, sizeof(*info));
	return ioctl(fd, CMA_DEV_IOC_INFO, info) ? -errno : 0;
}

/* Fills a->ranges[] with CMA_DEV_IOC_RANGE; returns 0 or -errno. */
static int dev_ranges(int fd, struct area *a, u32 nr_ranges)
{
	struct cma_dev_range req;
	u32 i;

	if (nr_ranges > MAX_RANGES)
		return -E2BIG;
	for (i = 0; i < nr_ranges; i++) {
		memset(&req, 0, sizeof(req));
		req.area = a->index;
		req.index = i;
		if (ioctl(fd, CMA_DEV_IOC_RANGE, &req))
			return -errno;
		a->ranges[i].base = req.base;
		a->ranges[i].total_pages = req.total_pages;
		a->ranges[i].free_pages = req.free_pages;
	}
	a->nr_ranges = nr_ranges;
	return 0;
}

int dev_area(int fd, u32 index, struct area *a)
{
	struct cma_dev_area req;

	memset(&req, 0, sizeof(req));
	req.index = index;
	if (ioctl(fd, CMA_DEV_IOC_AREA, &req))
		return -errno;
	a->index = index;
	memcpy(a->name, req.name, sizeof(a->name));
	a->name[sizeof(a->name) - 1] = '\0';
	a->base = req.base;
	a->size = req.size;
	a->total_pages = req.total_pages;
	a->free_pages = req.free_pages;
	return dev_ranges(fd, a, req.nr_ranges);
}

/* Finds an area by name; refreshes *a; returns 0 or -errno. */
int dev_area_by_name(int fd, const char *name, struct area *a)
{
	struct cma_dev_info info;
	u32 i;
	int ret;

	ret = dev_info(fd, &info);
	if (ret)
		return ret;
	for (i = 0; i < info.nr_areas; i++) {
		ret = dev_area(fd, i, a);
		if (ret)
			return ret;
		if (!strcmp(a->name, name))
			return 0;
	}
	return -ENOENT;
}

/* Free pages of area @a now, or UINT64_MAX if they cannot be read. */
u64 area_free(int fd, const struct area *a)
{
	struct area cur;

	if (dev_area(fd, a->index, &cur))
		return UINT64_MAX;
	return cur.free_pages;
}

/* Allocates; returns 0 or -errno; *us gets the ioctl latency. */
int dev_alloc(int fd, const char *area, u64 size, u32 order,
	      u32 *handle, u64 *phys, u64 *us)
{
	struct cma_dev_alloc req;
	u64 t0;
	int ret;

	memset(&req, 0, sizeof(req));
	snprintf(req.name, sizeof(req.name), "%s", area);
	req.size = size;
	req.align_order = order;
	t0 = now_ns();
	ret = ioctl(fd, CMA_DEV_IOC_ALLOC, &req) ? -errno : 0;
	if (us)
		*us = (now_ns() - t0) / 1000;
	if (!ret) {
		*handle = req.handle;
		*phys = req.phys;
	}
	return ret;
}

int dev_dma_alloc(int fd, u64 size, u32 *handle, u64 *dma, u64 *phys,
		  u64 *us)
{
	struct cma_dev_dma_alloc req;
	u64 t0;
	int ret;

	memset(&req, 0, sizeof(req));
	req.size = size;
	t0 = now_ns();
	ret = ioctl(fd, CMA_DEV_IOC_DMA_ALLOC, &req) ? -errno : 0;
	if (us)
		*us = (now_ns() - t0) / 1000;
	if (!ret) {
		*handle = req.handle;
		*dma = req.dma_addr;
		*phys = req.phys;
	}
	return ret;
}

int dev_free(int fd, u32 handle)
{
	struct cma_dev_free req;

	memset(&req, 0, sizeof(req));
	req.handle = handle;
	return ioctl(fd, CMA_DEV_IOC_FREE, &req) ? -errno : 0;
}

/* Maps @len bytes of buffer @handle; NULL and *err = -errno on failure. */
void *dev_map(int fd, u32 handle, size_t len, int *err)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		       (off_t)handle * page_size);

	if (p == MAP_FAILED) {
		*err = -errno;
		return NULL;
	}
	*err = 0;
	return p;
}

size_t page_align(u64 size)
{
	return (size_t)((size + page_size - 1) / page_size * page_size);
}

/* Whether [phys, phys + len) lies inside one range of area @a. */
bool in_area(const struct area *a, u64 phys, u64 len)
{
	u32 i;

	if (phys + len < phys)
		return false;
	for (i = 0; i < a->nr_ranges; i++) {
		u64 base = a->ranges[i].base;
		u64 end = base + a->ranges[i].total_pages * page_size;

		if (phys >= base && phys + len <= end)
			return true;
	}
	return false;
}

/* Whether page frame @pfn belongs to one of the ranges of area @a. */
bool pfn_in_area(const struct area *a, u64 pfn)
{
	return in_area(a, pfn * page_size, page_size);
}

/* debugfs: "used" and "maxchunk" of an area, in pages; -1 if unavailable. */
long long debugfs_val(const char *area, const char *file)
{
	char path[PATH_MAX];
	u64 v;

	snprintf(path, sizeof(path), DEBUGFS_CMA "/%s/%s", area, file);
	if (read_file_u64(path, &v))
		return -1;
	return (long long)v;
}
