/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cma-test's access to /dev/cma-dev: the ioctl wrappers, mmap() of a
 * buffer and the debugfs counters of an area.  The ABI is
 * include/uapi/linux/cma-dev.h of the patched kernel.
 */
#ifndef _CMA_TEST_CMADEV_H
#define _CMA_TEST_CMADEV_H

#include "common.h"

#include <linux/cma-dev.h>

#define DEV_PATH	"/dev/cma-dev"
#define DEBUGFS_CMA	"/sys/kernel/debug/cma"
#define DEFAULT_AREA	"reserved"
#define MAX_AREAS	64
#define MAX_RANGES	8	/* CMA_MAX_RANGES of mm/cma.h (Linux 6.15+) */

/* One physical range of an area (an area has one before Linux 6.15). */
struct range {
	u64 base;		/* physical address, bytes */
	u64 total_pages, free_pages;
};

struct area {
	u32 index;
	char name[CMA_DEV_NAME_LEN];
	u64 base, size, total_pages, free_pages;	/* size in bytes */
	u32 nr_ranges;		/* entries of ranges[] filled */
	struct range ranges[MAX_RANGES];
};

int dev_open(void);
int dev_info(int fd, struct cma_dev_info *info);
int dev_area(int fd, u32 index, struct area *a);
int dev_area_by_name(int fd, const char *name, struct area *a);
u64 area_free(int fd, const struct area *a);
int dev_alloc(int fd, const char *area, u64 size, u32 order,
	      u32 *handle, u64 *phys, u64 *us);
int dev_dma_alloc(int fd, u64 size, u32 *handle, u64 *dma, u64 *phys,
		  u64 *us);
int dev_free(int fd, u32 handle);
void *dev_map(int fd, u32 handle, size_t len, int *err);

size_t page_align(u64 size);
bool in_area(const struct area *a, u64 phys, u64 len);
bool pfn_in_area(const struct area *a, u64 pfn);
long long debugfs_val(const char *area, const char *file);

#endif /* _CMA_TEST_CMADEV_H */
