// SPDX-License-Identifier: GPL-2.0
/*
 * cma-test - exercise the Contiguous Memory Allocator through /dev/cma-dev
 *
 * Built statically for the guest:
 *   arm-linux-gnueabihf-gcc -static -O2 -Wall -Wextra -Werror \
 *       -o cma-test rootfs/cma-test/cma-test.c -I<dir with linux/cma-dev.h>
 *
 * See README.md next to this file for the subcommands, the KTAP output of
 * "suite" and the format of the replay sequences.
 */
#define _GNU_SOURCE
#define _FILE_OFFSET_BITS 64

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <linux/cma-dev.h>

#define DEV_PATH	"/dev/cma-dev"
#define SEQ_DIR		"/usr/share/cma-test/sequences"
#define DEBUGFS_CMA	"/sys/kernel/debug/cma"
#define DEFAULT_AREA	"reserved"
#define MAX_AREAS	64
#define TAINT_WARN_BIT	(1UL << 9)

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

static const char *prog = "cma-test";
static long page_size;

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(1);
	}
	return p;
}

static void *xrealloc(void *old, size_t n)
{
	void *p = realloc(old, n ? n : 1);

	if (!p) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(1);
	}
	return p;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts)) {
		perror("clock_gettime");
		exit(1);
	}
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const struct {
	int err;
	const char *name;
} errnames[] = {
	{ 0, "ok" }, { ENOMEM, "ENOMEM" }, { EINVAL, "EINVAL" },
	{ ENOENT, "ENOENT" }, { EBUSY, "EBUSY" }, { EFAULT, "EFAULT" },
	{ ENOTTY, "ENOTTY" }, { EPERM, "EPERM" }, { EACCES, "EACCES" },
	{ ENXIO, "ENXIO" }, { ENOSPC, "ENOSPC" }, { EAGAIN, "EAGAIN" },
	{ EINTR, "EINTR" }, { ENODEV, "ENODEV" },
};

static const char *errname(int err)
{
	static char buf[16];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(errnames); i++)
		if (errnames[i].err == err)
			return errnames[i].name;
	snprintf(buf, sizeof(buf), "E%d", err);
	return buf;
}

static int parse_errname(const char *s, int *err)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(errnames); i++) {
		if (!strcmp(errnames[i].name, s)) {
			*err = errnames[i].err;
			return 0;
		}
	}
	return -1;
}

/* Parses an unsigned number with an optional K/M/G suffix (powers of 2). */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K':
		v <<= 10; end++; break;
	case 'm': case 'M':
		v <<= 20; end++; break;
	case 'g': case 'G':
		v <<= 30; end++; break;
	case 'p': case 'P':
		v *= (unsigned long long)page_size; end++; break;
	default:
		return -1;
	}
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	unsigned long v;

	if (!*s || *s == '-')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int read_file_u64(const char *path, uint64_t *val)
{
	char buf[64];
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	errno = 0;
	*val = strtoull(buf, NULL, 0);
	return errno ? -1 : 0;
}

/* Value of a /proc/meminfo field in kB, or -1. */
static long long meminfo_kb(const char *field)
{
	char line[256];
	size_t flen = strlen(field);
	long long val = -1;
	FILE *f;

	f = fopen("/proc/meminfo", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, field, flen) && line[flen] == ':') {
			val = strtoll(line + flen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return val;
}

static unsigned long tainted(void)
{
	uint64_t v = 0;

	if (read_file_u64("/proc/sys/kernel/tainted", &v))
		return 0;
	return (unsigned long)v;
}

/* Pattern helpers: every 32-bit word depends on the seed and its index. */
static void fill_pattern(void *buf, size_t len, uint32_t seed)
{
	uint32_t *w = buf;
	size_t i, n = len / sizeof(*w);

	for (i = 0; i < n; i++)
		w[i] = seed ^ ((uint32_t)i * 0x9e3779b1u);
}

/* Returns the byte offset of the first mismatch, or -1. */
static long long check_pattern(const void *buf, size_t len, uint32_t seed)
{
	const uint32_t *w = buf;
	size_t i, n = len / sizeof(*w);

	for (i = 0; i < n; i++)
		if (w[i] != (seed ^ ((uint32_t)i * 0x9e3779b1u)))
			return (long long)(i * sizeof(*w));
	return -1;
}

/* ------------------------------------------------------------------ */
/* Latency statistics                                                   */
/* ------------------------------------------------------------------ */

struct lat {
	uint64_t *us;
	size_t n, cap;
};

static void lat_add(struct lat *l, uint64_t us)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->us = xrealloc(l->us, l->cap * sizeof(*l->us));
	}
	l->us[l->n++] = us;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void lat_free(struct lat *l)
{
	free(l->us);
	memset(l, 0, sizeof(*l));
}

/* ------------------------------------------------------------------ */
/* /dev/cma-dev access                                                  */
/* ------------------------------------------------------------------ */

struct area {
	uint32_t index;
	char name[CMA_DEV_NAME_LEN];
	uint64_t base, size, total_pages, free_pages;
};

static int dev_open(void)
{
	int fd = open(DEV_PATH, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		fprintf(stderr, "%s: %s: %s\n", prog, DEV_PATH, strerror(errno));
	return fd;
}

static int dev_info(int fd, struct cma_dev_info *info)
{
	memset(info, 0, sizeof(*info));
	return ioctl(fd, CMA_DEV_IOC_INFO, info) ? -errno : 0;
}

static int dev_area(int fd, uint32_t index, struct area *a)
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
	return 0;
}

/* Finds an area by name; refreshes *a; returns 0 or -errno. */
static int dev_area_by_name(int fd, const char *name, struct area *a)
{
	struct cma_dev_info info;
	uint32_t i;
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

static uint64_t area_free(int fd, const struct area *a)
{
	struct area cur;

	if (dev_area(fd, a->index, &cur))
		return UINT64_MAX;
	return cur.free_pages;
}

/* Allocates; returns 0 or -errno; *us gets the ioctl latency. */
static int dev_alloc(int fd, const char *area, uint64_t size, uint32_t order,
		     uint32_t *handle, uint64_t *phys, uint64_t *us)
{
	struct cma_dev_alloc req;
	uint64_t t0;
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

static int dev_dma_alloc(int fd, uint64_t size, uint32_t *handle,
			 uint64_t *dma, uint64_t *phys, uint64_t *us)
{
	struct cma_dev_dma_alloc req;
	uint64_t t0;
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

static int dev_free(int fd, uint32_t handle)
{
	struct cma_dev_free req;

	memset(&req, 0, sizeof(req));
	req.handle = handle;
	return ioctl(fd, CMA_DEV_IOC_FREE, &req) ? -errno : 0;
}

static void *dev_map(int fd, uint32_t handle, size_t len, int *err)
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

static size_t page_align(uint64_t size)
{
	return (size_t)((size + page_size - 1) / page_size * page_size);
}

/* debugfs: "used" and "maxchunk" of an area, in pages; -1 if unavailable. */
static long long debugfs_val(const char *area, const char *file)
{
	char path[PATH_MAX];
	uint64_t v;

	snprintf(path, sizeof(path), DEBUGFS_CMA "/%s/%s", area, file);
	if (read_file_u64(path, &v))
		return -1;
	return (long long)v;
}

/* ------------------------------------------------------------------ */
/* KTAP output                                                          */
/* ------------------------------------------------------------------ */

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

static void kt_init(struct ktap *k)
{
	memset(k, 0, sizeof(*k));
	k->out = open_memstream(&k->buf, &k->len);
	if (!k->out) {
		perror("open_memstream");
		exit(1);
	}
}

static void __attribute__((format(printf, 2, 3)))
kt_diag(struct ktap *k, const char *fmt, ...)
{
	va_list ap;

	fputs("    # ", k->out);
	va_start(ap, fmt);
	vfprintf(k->out, fmt, ap);
	va_end(ap);
	fputc('\n', k->out);
	if (getenv("CMA_TEST_VERBOSE")) {
		va_start(ap, fmt);
		fputs("# ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
}

static bool __attribute__((format(printf, 3, 4)))
kt_result(struct ktap *k, bool ok, const char *fmt, ...)
{
	va_list ap;

	k->n++;
	if (!ok)
		k->failed++;
	fprintf(k->out, "    %sok %d ", ok ? "" : "not ", k->n);
	va_start(ap, fmt);
	vfprintf(k->out, fmt, ap);
	va_end(ap);
	fputc('\n', k->out);
	return ok;
}

static void __attribute__((format(printf, 3, 4)))
kt_skip(struct ktap *k, const char *name, const char *fmt, ...)
{
	va_list ap;

	k->n++;
	k->skipped++;
	fprintf(k->out, "    ok %d %s # SKIP ", k->n, name);
	va_start(ap, fmt);
	vfprintf(k->out, fmt, ap);
	va_end(ap);
	fputc('\n', k->out);
}

static void kt_latency(struct ktap *k, const char *what, struct lat *l)
{
	if (!l->n) {
		kt_diag(k, "latency_us%s%s n=0", what ? " " : "",
			what ? what : "");
		return;
	}
	qsort(l->us, l->n, sizeof(*l->us), cmp_u64);
	kt_diag(k, "latency_us%s%s min=%" PRIu64 " median=%" PRIu64
		" max=%" PRIu64 " n=%zu", what ? " " : "", what ? what : "",
		l->us[0], l->us[l->n / 2], l->us[l->n - 1], l->n);
}

/* Prints the finished suite as subtest @num; returns true if it passed. */
static bool kt_finish(struct ktap *k, int num, const char *name)
{
	bool ok = !k->failed;

	fclose(k->out);
	printf("    KTAP version 1\n    # Subtest: %s\n    1..%d\n", name, k->n);
	fwrite(k->buf, 1, k->len, stdout);
	if (k->skip_reason[0] && ok)
		printf("ok %d %s # SKIP %s\n", num, name, k->skip_reason);
	else
		printf("%sok %d %s\n", ok ? "" : "not ", num, name);
	fflush(stdout);
	free(k->buf);
	return ok;
}

/* ------------------------------------------------------------------ */
/* Suite context                                                        */
/* ------------------------------------------------------------------ */

struct ctx {
	int fd;
	struct cma_dev_info info;
	struct area area;	/* the area the suites work on */
};

static int ctx_refresh(struct ctx *c)
{
	return dev_area(c->fd, c->area.index, &c->area);
}

/* Largest allocation the area can currently satisfy, in bytes. */
static uint64_t area_max_alloc(struct ctx *c)
{
	long long mc;

	ctx_refresh(c);
	if (c->area.free_pages == c->area.total_pages)
		return c->area.size;
	mc = debugfs_val(c->area.name, "maxchunk");
	if (mc > 0)
		return (uint64_t)mc * page_size;
	return c->area.free_pages * page_size;
}

static bool in_area(const struct area *a, uint64_t phys, uint64_t len)
{
	return phys >= a->base && phys + len <= a->base + a->size &&
	       phys + len >= phys;
}

static void check_taint(struct ktap *k, unsigned long before)
{
	unsigned long after = tainted();

	if ((after & TAINT_WARN_BIT) && !(before & TAINT_WARN_BIT))
		kt_result(k, false, "no-kernel-warning");
	else
		kt_result(k, true, "no-kernel-warning");
	if (after != before)
		kt_diag(k, "tainted changed 0x%lx -> 0x%lx", before, after);
}

/* Checks the free page count (and debugfs used) against a snapshot. */
static void check_restored(struct ktap *k, struct ctx *c, uint64_t free0,
			   long long used0, const char *name)
{
	long long used;
	bool ok = true;

	ctx_refresh(c);
	if (c->area.free_pages != free0) {
		kt_diag(k, "%s: free pages %" PRIu64 ", expected %" PRIu64,
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

/* Allocates, checks placement, writes and verifies a pattern, frees. */
static bool alloc_check_free(struct ktap *k, struct ctx *c, uint64_t size,
			     uint32_t order, struct lat *lat, const char *name)
{
	uint32_t handle;
	uint64_t phys, us;
	size_t len = page_align(size);
	long long bad;
	void *p;
	int ret, err;
	bool ok = true;

	ret = dev_alloc(c->fd, c->area.name, size, order, &handle, &phys, &us);
	if (ret) {
		kt_diag(k, "%s: alloc size=%" PRIu64 " order=%u: %s", name,
			size, order, errname(-ret));
		return kt_result(k, false, "%s", name);
	}
	lat_add(lat, us);
	if (!in_area(&c->area, phys, len)) {
		kt_diag(k, "%s: phys 0x%" PRIx64 "+0x%zx outside area 0x%"
			PRIx64 "+0x%" PRIx64, name, phys, len, c->area.base,
			c->area.size);
		ok = false;
	}
	if (phys % ((uint64_t)page_size << order)) {
		kt_diag(k, "%s: phys 0x%" PRIx64 " not aligned to order %u",
			name, phys, order);
		ok = false;
	}
	p = dev_map(c->fd, handle, len, &err);
	if (!p) {
		kt_diag(k, "%s: mmap: %s", name, errname(-err));
		ok = false;
	} else {
		fill_pattern(p, len, (uint32_t)phys ^ order);
		if (munmap(p, len)) {
			kt_diag(k, "%s: munmap: %s", name, strerror(errno));
			ok = false;
		}
		/* Map again: the data must have gone to the buffer itself. */
		p = dev_map(c->fd, handle, len, &err);
		if (!p) {
			kt_diag(k, "%s: second mmap: %s", name, errname(-err));
			ok = false;
		} else {
			bad = check_pattern(p, len, (uint32_t)phys ^ order);
			if (bad >= 0) {
				kt_diag(k, "%s: pattern mismatch at +0x%llx",
					name, bad);
				ok = false;
			}
			if (munmap(p, len))
				ok = false;
		}
	}
	ret = dev_free(c->fd, handle);
	if (ret) {
		kt_diag(k, "%s: free: %s", name, errname(-ret));
		ok = false;
	}
	return kt_result(k, ok, "%s", name);
}

static bool expect_err(struct ktap *k, int got, int want, const char *name)
{
	if (got != -want)
		kt_diag(k, "%s: got %s, expected %s", name,
			errname(got < 0 ? -got : got), errname(want));
	return kt_result(k, got == -want, "%s", name);
}

/* ------------------------------------------------------------------ */
/* Suite: alloc-free                                                    */
/* ------------------------------------------------------------------ */

static void suite_alloc_free(struct ktap *k, struct ctx *c)
{
	struct lat lat = { 0 };
	uint64_t free0, max, sizes[8];
	const char *snames[8] = {
		"size-1-page", "size-2-pages", "size-3-pages-plus-1-byte",
		"size-64K", "size-1M", "size-quarter-area", "size-half-area",
		"size-whole-area",
	};
	long long used0;
	uint32_t order, h, h2;
	uint64_t phys;
	size_t i;
	void *p;
	int ret, err, fd2;

	ctx_refresh(c);
	free0 = c->area.free_pages;
	used0 = debugfs_val(c->area.name, "used");
	max = area_max_alloc(c);
	kt_diag(k, "area %s base=0x%" PRIx64 " size=%" PRIu64 " free_pages=%"
		PRIu64 " max_alloc=%" PRIu64 " max_align_order=%u",
		c->area.name, c->area.base, c->area.size, free0, max,
		c->info.max_align_order);

	for (order = 0; order <= c->info.max_align_order; order++) {
		char name[32];
		uint64_t sz = (uint64_t)page_size << order;

		snprintf(name, sizeof(name), "order-%u", order);
		if (sz > max) {
			kt_skip(k, name, "area too small");
			continue;
		}
		alloc_check_free(k, c, page_size, order, &lat, name);
	}

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
			kt_skip(k, snames[i], "only %" PRIu64 " bytes allocatable",
				max);
			continue;
		}
		alloc_check_free(k, c, sizes[i], 0, &lat, snames[i]);
	}
	if (max != c->area.size)
		kt_diag(k, "size-whole-area used %" PRIu64
			" bytes: the area was not entirely free", max);

	/* Error cases. */
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

	ret = dev_alloc(c->fd, c->area.name, page_size, 0, &h, &phys, NULL);
	if (ret) {
		kt_diag(k, "alloc for handle tests: %s", errname(-ret));
		kt_result(k, false, "handle-tests");
	} else {
		bool ok = true;

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

		p = dev_map(c->fd, h, page_size, &err);
		if (!p) {
			kt_diag(k, "mmap: %s", errname(-err));
			kt_result(k, false, "free-while-mapped-ebusy");
		} else {
			expect_err(k, dev_free(c->fd, h), EBUSY,
				   "free-while-mapped-ebusy");
			if (munmap(p, page_size))
				kt_diag(k, "munmap: %s", strerror(errno));
		}

		fd2 = dev_open();
		if (fd2 < 0) {
			kt_result(k, false, "other-file-handle-enoent");
		} else {
			expect_err(k, dev_free(fd2, h), ENOENT,
				   "other-file-handle-enoent");
			/* Leave one buffer for close() to reclaim. */
			ret = dev_alloc(fd2, c->area.name, page_size, 0, &h2,
					&phys, NULL);
			if (ret)
				kt_diag(k, "alloc on second file: %s",
					errname(-ret));
			close(fd2);
		}
		expect_err(k, dev_free(c->fd, h), 0, "free-ok");
		expect_err(k, dev_free(c->fd, h), ENOENT, "double-free-enoent");
	}

	check_restored(k, c, free0, used0, "area-restored");
	kt_latency(k, NULL, &lat);
	lat_free(&lat);
}

/* ------------------------------------------------------------------ */
/* Suite: exhaustion                                                    */
/* ------------------------------------------------------------------ */

static void suite_exhaustion(struct ktap *k, struct ctx *c)
{
	struct lat lat = { 0 };
	uint32_t *handles = NULL;
	size_t n = 0, cap = 0, i, nbig = 0;
	uint64_t free0, chunk, phys, us;
	long long used0, mc0, v;
	int ret = 0, first_err = 0;
	uint32_t h;
	bool ok;

	ctx_refresh(c);
	free0 = c->area.free_pages;
	used0 = debugfs_val(c->area.name, "used");
	mc0 = debugfs_val(c->area.name, "maxchunk");
	kt_diag(k, "start free_pages=%" PRIu64 " used=%lld maxchunk=%lld",
		free0, used0, mc0);
	chunk = c->area.size / 16;
	if (chunk < (uint64_t)page_size)
		chunk = page_size;

	/* Big chunks first, then single pages until nothing is left. */
	for (int pass = 0; pass < 2; pass++) {
		uint64_t sz = pass ? (uint64_t)page_size : chunk;

		for (;;) {
			ret = dev_alloc(c->fd, c->area.name, sz, 0, &h, &phys,
					&us);
			if (ret)
				break;
			lat_add(&lat, us);
			if (n == cap) {
				cap = cap ? cap * 2 : 256;
				handles = xrealloc(handles,
						   cap * sizeof(*handles));
			}
			handles[n++] = h;
			if (!pass)
				nbig++;
		}
		if (!first_err)
			first_err = ret;
		if (ret != -ENOMEM)
			break;
	}
	kt_diag(k, "allocated %zu chunks of %" PRIu64 " bytes and %zu pages",
		nbig, chunk, n - nbig);
	expect_err(k, ret, ENOMEM, "exhausted-enomem");

	ctx_refresh(c);
	ok = c->area.free_pages == 0;
	if (!ok)
		kt_diag(k, "free pages left: %" PRIu64, c->area.free_pages);
	kt_result(k, ok, "area-empty");

	ok = (n - nbig) * page_size + nbig * chunk ==
	     free0 * (uint64_t)page_size;
	if (!ok)
		kt_diag(k, "allocated %" PRIu64 " bytes, %" PRIu64 " were free",
			(uint64_t)((n - nbig) * page_size + nbig * chunk),
			free0 * (uint64_t)page_size);
	kt_result(k, ok, "all-free-pages-allocated");

	ret = dev_alloc(c->fd, c->area.name, page_size, 0, &h, &phys, NULL);
	expect_err(k, ret, ENOMEM, "still-enomem");
	if (!ret)
		dev_free(c->fd, h);

	ok = true;
	for (i = 0; i < n; i++) {
		ret = dev_free(c->fd, handles[i]);
		if (ret) {
			kt_diag(k, "free handle %u: %s", handles[i],
				errname(-ret));
			ok = false;
		}
	}
	kt_result(k, ok, "free-all");
	free(handles);

	check_restored(k, c, free0, used0, "area-restored");
	v = debugfs_val(c->area.name, "maxchunk");
	if (mc0 < 0) {
		kt_skip(k, "maxchunk-restored", "no debugfs cma/%s/maxchunk",
			c->area.name);
	} else {
		ok = v == mc0;
		if (free0 == c->area.total_pages)
			ok = ok && (uint64_t)v == c->area.total_pages;
		if (!ok)
			kt_diag(k, "maxchunk %lld, expected %lld (area %" PRIu64
				" pages)", v, mc0, c->area.total_pages);
		kt_result(k, ok, "maxchunk-restored");
	}
	kt_latency(k, NULL, &lat);
	lat_free(&lat);
}

/* ------------------------------------------------------------------ */
/* Suite: migrate                                                       */
/* ------------------------------------------------------------------ */

#define MIG_CHUNK	(1u << 20)
#define PM_PRESENT	(1ULL << 63)
#define PM_PFN_MASK	((1ULL << 55) - 1)

struct mig_chunk {
	void *anon;		/* anonymous chunk, or NULL */
	int memfd;		/* shmem page cache chunk, or -1 */
	uint32_t seed;
	long in_area;		/* pages in the area right after the fill */
};

/*
 * Counts the pages of [addr, addr + len) that are present at a PFN inside
 * area @a, from /proc/self/pagemap (bits 0-54 PFN, bit 63 present; see
 * Documentation/admin-guide/mm/pagemap.rst).  Returns -errno on error.
 */
static long pagemap_in_area(int pagemap, const void *addr, size_t len,
			    const struct area *a)
{
	uint64_t first = a->base / page_size;
	uint64_t end = (a->base + a->size) / page_size;
	size_t n = len / page_size, i;
	uint64_t *ent = xmalloc(n * sizeof(*ent));
	off_t off = (off_t)((uintptr_t)addr / page_size * sizeof(*ent));
	long count = 0, nopfn = 0;

	if (pread(pagemap, ent, n * sizeof(*ent), off) !=
	    (ssize_t)(n * sizeof(*ent))) {
		free(ent);
		return errno ? -errno : -EIO;
	}
	for (i = 0; i < n; i++) {
		uint64_t pfn = ent[i] & PM_PFN_MASK;

		if (!(ent[i] & PM_PRESENT))
			continue;
		if (!pfn)
			nopfn++;
		if (pfn >= first && pfn < end)
			count++;
	}
	free(ent);
	/* PFNs read as 0 without CAP_SYS_ADMIN: no answer, not "none". */
	return nopfn ? -EPERM : count;
}

/* Pages of chunk @m that lie in area @a now; -errno on error. */
static long mig_in_area(struct mig_chunk *m, int pagemap,
			const struct area *a)
{
	volatile const char *p;
	size_t off;
	long ret;

	if (m->anon)
		return pagemap_in_area(pagemap, m->anon, MIG_CHUNK, a);
	/* Map the page cache pages to look up their PFNs. */
	p = mmap(NULL, MIG_CHUNK, PROT_READ, MAP_SHARED, m->memfd, 0);
	if (p == MAP_FAILED)
		return -errno;
	for (off = 0; off < MIG_CHUNK; off += page_size)
		(void)p[off];
	ret = pagemap_in_area(pagemap, (const void *)p, MIG_CHUNK, a);
	munmap((void *)p, MIG_CHUNK);
	return ret;
}

static int mig_fill(struct mig_chunk *m, uint32_t seed, bool file,
		    void *pagebuf)
{
	size_t off;

	m->seed = seed;
	m->anon = NULL;
	m->memfd = -1;
	m->in_area = 0;
	if (!file) {
		m->anon = mmap(NULL, MIG_CHUNK, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m->anon == MAP_FAILED) {
			m->anon = NULL;
			return -errno;
		}
		/* Touch page by page: each page gets its own pattern. */
		for (off = 0; off < MIG_CHUNK; off += page_size)
			fill_pattern((char *)m->anon + off, page_size,
				     seed + (uint32_t)(off / page_size));
		return 0;
	}
	m->memfd = memfd_create("cma-test-migrate", MFD_CLOEXEC);
	if (m->memfd < 0)
		return -errno;
	for (off = 0; off < MIG_CHUNK; off += page_size) {
		fill_pattern(pagebuf, page_size,
			     seed + (uint32_t)(off / page_size));
		if (pwrite(m->memfd, pagebuf, page_size, (off_t)off) !=
		    page_size) {
			int err = errno ? -errno : -EIO;

			close(m->memfd);
			m->memfd = -1;
			return err;
		}
	}
	return 0;
}

/* Returns the number of corrupted pages. */
static size_t mig_verify(struct mig_chunk *m, void *pagebuf)
{
	size_t off, bad = 0;

	for (off = 0; off < MIG_CHUNK; off += page_size) {
		const void *p = (char *)m->anon + off;
		uint32_t seed = m->seed + (uint32_t)(off / page_size);

		if (!m->anon) {
			if (pread(m->memfd, pagebuf, page_size, (off_t)off) !=
			    page_size) {
				bad++;
				continue;
			}
			p = pagebuf;
		}
		if (check_pattern(p, page_size, seed) >= 0)
			bad++;
	}
	return bad;
}

static void mig_release(struct mig_chunk *m)
{
	if (m->anon && munmap(m->anon, MIG_CHUNK))
		perror("munmap");
	if (m->memfd >= 0)
		close(m->memfd);
	m->anon = NULL;
	m->memfd = -1;
}

static void suite_migrate(struct ktap *k, struct ctx *c)
{
	struct lat lat = { 0 };
	struct mig_chunk *chunks;
	long long cma_total, cma_free0, cma_free, mem_total, floor_kb;
	long long nballast = 0;
	size_t n = 0, maxchunks, i, bad = 0, nanon = 0, nfile = 0;
	uint64_t free0, want, phys, us, t0, ours = 0, target, left = 0;
	uint32_t h;
	uint64_t minfree = 0;
	struct statfs sfs;
	void *pagebuf;
	int ret = 0, attempt, pagemap;
	struct rlimit nofile;
	long cnt;

	cma_total = meminfo_kb("CmaTotal");
	cma_free0 = meminfo_kb("CmaFree");
	mem_total = meminfo_kb("MemTotal");
	if (cma_total <= 0 || cma_free0 < 0 || mem_total <= 0) {
		snprintf(k->skip_reason, sizeof(k->skip_reason),
			 "no CmaTotal/CmaFree in /proc/meminfo");
		return;
	}
	/* One memfd per shmem chunk: a 3 GiB board needs more than 1024. */
	if (!getrlimit(RLIMIT_NOFILE, &nofile) &&
	    nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pagemap < 0) {
		snprintf(k->skip_reason, sizeof(k->skip_reason),
			 "/proc/self/pagemap: %s", strerror(errno));
		return;
	}
	ctx_refresh(c);
	free0 = c->area.free_pages;
	want = area_max_alloc(c);
	/* Stop filling once our pages hold 7/8 of the area's free pages. */
	target = free0 - free0 / 8;
	if (!statfs("/", &sfs))
		kt_diag(k, "rootfs magic 0x%lx (%s); file pages come from memfd (shmem page cache)",
			(unsigned long)sfs.f_type,
			(unsigned long)sfs.f_type == 0x858458f6UL ? "ramfs, not movable" :
			(unsigned long)sfs.f_type == 0x01021994UL ? "tmpfs" : "other");
	if (read_file_u64("/proc/sys/vm/min_free_kbytes", &minfree))
		minfree = 4096;
	/*
	 * Movable allocations only take CMA pages while more than half of the
	 * free memory is CMA, so CMA drains in step with the rest: stop a
	 * little above the min watermark, or small areas never fill up.
	 */
	floor_kb = (long long)minfree + 2048;
	if (floor_kb < 4096)
		floor_kb = 4096;
	kt_diag(k, "MemTotal=%lld kB CmaTotal=%lld kB CmaFree=%lld kB area %s free_pages=%" PRIu64 " target alloc=%" PRIu64 " bytes",
		mem_total, cma_total, cma_free0, c->area.name, free0, want);

	maxchunks = (size_t)(mem_total / (MIG_CHUNK / 1024)) + 1;
	chunks = xmalloc(maxchunks * sizeof(*chunks));
	pagebuf = xmalloc(page_size);

	/*
	 * Fill memory with movable pages, alternating anonymous memory and
	 * shmem page cache, until our own pages hold most of the area or
	 * memory outside CMA runs low.  Where each page landed is read from
	 * /proc/self/pagemap, so the proof does not depend on CmaFree (which
	 * misses CMA pages parked on per-cpu lists).  The page allocator only
	 * dips into CMA for movable pages once about half of the free memory
	 * is CMA, so most of memory has to be filled.  Chunks with no page in
	 * the area are "ballast": they are released before the big allocation
	 * so that the pages in the area have somewhere to migrate to.
	 */
	t0 = now_ns();
	while (n < maxchunks && ours < target) {
		long long mem_free = meminfo_kb("MemFree");

		cma_free = meminfo_kb("CmaFree");
		if (mem_free - cma_free < floor_kb)
			break;
		ret = mig_fill(&chunks[n], (uint32_t)n * 0x10001u + 7, n & 1,
			       pagebuf);
		if (ret) {
			kt_diag(k, "fill chunk %zu: %s", n, errname(-ret));
			break;
		}
		cnt = mig_in_area(&chunks[n], pagemap, &c->area);
		if (cnt < 0) {
			kt_diag(k, "pagemap of chunk %zu: %s", n,
				errname((int)-cnt));
			cnt = 0;
		}
		chunks[n].in_area = cnt;
		ours += (uint64_t)cnt;
		if (!cnt)
			nballast++;
		if (chunks[n].anon)
			nanon++;
		else
			nfile++;
		n++;
	}
	kt_diag(k, "filled %zu MiB (%zu anon, %zu shmem file) in %" PRIu64
		" ms; CmaFree %lld -> %lld kB, MemFree %lld kB",
		n, nanon, nfile, (now_ns() - t0) / 1000000, cma_free0,
		meminfo_kb("CmaFree"), meminfo_kb("MemFree"));

	/* "Mostly occupied": our pages hold at least half of the free area. */
	kt_diag(k, "pagemap: %" PRIu64 " of our pages lie in area %s (%" PRIu64
		" pages free at the start, %" PRIu64 "%%)", ours, c->area.name,
		free0, free0 ? ours * 100 / free0 : 0);
	kt_result(k, free0 && ours * 2 >= free0,
		  "cma-occupied-by-movable-pages");

	for (i = 0; i < n; i++)
		if (!chunks[i].in_area)
			mig_release(&chunks[i]);
	kt_diag(k, "released %lld MiB of ballast; CmaFree now %lld kB, MemFree %lld kB",
		nballast, meminfo_kb("CmaFree"), meminfo_kb("MemFree"));

	/* The allocation has to migrate everything we put into the area. */
	ret = -ENOMEM;
	for (attempt = 1; attempt <= 3; attempt++) {
		ret = dev_alloc(c->fd, c->area.name, want, 0, &h, &phys, &us);
		if (!ret)
			break;
		lat_add(&lat, us);
		kt_diag(k, "attempt %d: alloc %" PRIu64 " bytes: %s after %"
			PRIu64 " us", attempt, want, errname(-ret), us);
	}
	if (!ret) {
		lat_add(&lat, us);
		kt_diag(k, "allocated %" PRIu64 " bytes at 0x%" PRIx64
			" in %" PRIu64 " us (attempt %d); CmaFree now %lld kB",
			want, phys, us, attempt, meminfo_kb("CmaFree"));
	}
	kt_result(k, !ret, "alloc-whole-area");

	/*
	 * Every page of ours that was in the area must have been migrated out
	 * of the allocated range and must still hold its pattern.
	 */
	if (!ret) {
		struct area got = c->area;

		got.base = phys;
		got.size = want;
		for (i = 0; i < n; i++) {
			if (!chunks[i].in_area)
				continue;
			cnt = mig_in_area(&chunks[i], pagemap, &got);
			if (cnt > 0)
				left += (uint64_t)cnt;
		}
	}
	for (i = 0; i < n; i++)
		if (chunks[i].in_area)
			bad += mig_verify(&chunks[i], pagebuf);
	if (ret) {
		kt_skip(k, "moved-pages-left-area", "the allocation failed");
	} else {
		if (left)
			kt_diag(k, "%" PRIu64 " of our pages still in the allocated range",
				left);
		kt_result(k, ours && !left, "moved-pages-left-area");
	}
	if (bad)
		kt_diag(k, "%zu corrupted pages", bad);
	if (!ours)
		kt_diag(k, "none of our pages were in the area: nothing was migrated");
	kt_result(k, ours && !bad, "moved-pages-intact");

	if (!ret) {
		ret = dev_free(c->fd, h);
		if (ret)
			kt_diag(k, "free: %s", errname(-ret));
	}
	for (i = 0; i < n; i++)
		mig_release(&chunks[i]);
	free(chunks);
	free(pagebuf);
	close(pagemap);
	check_restored(k, c, free0, -1, "area-restored");
	kt_latency(k, NULL, &lat);
	lat_free(&lat);
}

/* ------------------------------------------------------------------ */
/* Suite: dma                                                           */
/* ------------------------------------------------------------------ */

static void suite_dma(struct ktap *k, struct ctx *c)
{
	static const uint64_t sizes[] = { 4096, 3 * 4096 + 100, 64 << 10,
					  1 << 20, 4 << 20 };
	struct lat lat = { 0 };
	struct area dflt;
	uint64_t free0, dma, phys, us, max;
	uint32_t h;
	size_t i, len;
	void *p;
	int ret, err;

	if (dev_area_by_name(c->fd, DEFAULT_AREA, &dflt)) {
		snprintf(k->skip_reason, sizeof(k->skip_reason),
			 "no default CMA area \"%s\"", DEFAULT_AREA);
		return;
	}
	free0 = dflt.free_pages;
	max = dflt.free_pages * page_size;
	kt_diag(k, "default area %s base=0x%" PRIx64 " size=%" PRIu64
		" free_pages=%" PRIu64, dflt.name, dflt.base, dflt.size, free0);

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		char name[48];
		uint64_t during;
		bool ok = true;

		snprintf(name, sizeof(name), "dma-%" PRIu64, sizes[i]);
		if (sizes[i] > max) {
			kt_skip(k, name, "area too small");
			continue;
		}
		len = page_align(sizes[i]);
		ret = dev_dma_alloc(c->fd, sizes[i], &h, &dma, &phys, &us);
		if (ret) {
			kt_diag(k, "%s: %s", name, errname(-ret));
			kt_result(k, false, "%s", name);
			continue;
		}
		lat_add(&lat, us);
		during = area_free(c->fd, &dflt);
		if (!in_area(&dflt, phys, len)) {
			kt_diag(k, "%s: phys 0x%" PRIx64 " (dma 0x%" PRIx64
				") outside %s", name, phys, dma, dflt.name);
			ok = false;
		}
		if (during == UINT64_MAX || free0 - during < len / page_size) {
			kt_diag(k, "%s: area free pages %" PRIu64 " -> %" PRIu64
				", expected a drop of %zu", name, free0, during,
				(size_t)(len / page_size));
			ok = false;
		}
		p = dev_map(c->fd, h, len, &err);
		if (!p) {
			kt_diag(k, "%s: mmap: %s", name, errname(-err));
			ok = false;
		} else {
			long long bad;

			fill_pattern(p, len, (uint32_t)dma);
			bad = check_pattern(p, len, (uint32_t)dma);
			if (bad >= 0) {
				kt_diag(k, "%s: mismatch at +0x%llx", name,
					bad);
				ok = false;
			}
			if (munmap(p, len))
				ok = false;
		}
		ret = dev_free(c->fd, h);
		if (ret) {
			kt_diag(k, "%s: free: %s", name, errname(-ret));
			ok = false;
		}
		kt_result(k, ok, "%s", name);
	}

	ret = dev_dma_alloc(c->fd, 0, &h, &dma, &phys, NULL);
	expect_err(k, ret, EINVAL, "dma-size-0-einval");
	ret = dev_dma_alloc(c->fd, UINT64_MAX, &h, &dma, &phys, NULL);
	expect_err(k, ret, ENOMEM, "dma-huge-enomem");

	ret = dev_area(c->fd, dflt.index, &dflt);
	if (ret || dflt.free_pages != free0)
		kt_diag(k, "free pages %" PRIu64 ", expected %" PRIu64,
			dflt.free_pages, free0);
	kt_result(k, !ret && dflt.free_pages == free0, "area-restored");
	kt_latency(k, NULL, &lat);
	lat_free(&lat);
}

/* ------------------------------------------------------------------ */
/* Replay                                                               */
/* ------------------------------------------------------------------ */

#define MAX_LABELS	512

struct label {
	char name[32];
	char area[CMA_DEV_NAME_LEN];
	uint32_t handle;
	uint64_t phys, size;
	uint32_t seed;
	bool live, filled;
};

struct replay {
	int fd;
	struct label labels[MAX_LABELS];
	size_t nlabels;
	struct area areas[MAX_AREAS];
	uint64_t start_free[MAX_AREAS];
	uint32_t nareas;
	uint32_t max_order;
	const struct area *win;	/* area with a window, or NULL */
	uint64_t win_start;	/* first page of the window, from the base */
	uint64_t win_pages;	/* size of the window */
	struct lat lat;
	int steps;
	bool skip;
	char msg[256];		/* first failure, or skip reason */
};

static struct label *find_label(struct replay *r, const char *name,
				bool create)
{
	size_t i;

	for (i = 0; i < r->nlabels; i++)
		if (!strcmp(r->labels[i].name, name))
			return &r->labels[i];
	if (!create || r->nlabels == MAX_LABELS ||
	    strlen(name) >= sizeof(r->labels[0].name))
		return NULL;
	memset(&r->labels[r->nlabels], 0, sizeof(r->labels[0]));
	snprintf(r->labels[r->nlabels].name, sizeof(r->labels[0].name), "%s",
		 name);
	return &r->labels[r->nlabels++];
}

static struct area *replay_area(struct replay *r, const char *name)
{
	uint32_t i;

	for (i = 0; i < r->nareas; i++)
		if (!strcmp(r->areas[i].name, name))
			return &r->areas[i];
	return NULL;
}

/*
 * SIZE: bytes with optional K/M/G suffix, pages with a "p" suffix,
 * "all" (the area, or its window) or "A/B" (that fraction of it).
 */
static int replay_size(struct replay *r, const char *s, const struct area *a,
		       uint64_t *out)
{
	uint64_t num, den, span = 0;
	const char *slash = strchr(s, '/');

	if (a)
		span = a == r->win ? r->win_pages : a->total_pages;
	if (!strcmp(s, "all")) {
		if (!a)
			return -1;
		*out = span * page_size;
		return 0;
	}
	if (slash) {
		char tmp[32];

		if (!a || (size_t)(slash - s) >= sizeof(tmp))
			return -1;
		memcpy(tmp, s, slash - s);
		tmp[slash - s] = '\0';
		if (parse_size(tmp, &num) || parse_size(slash + 1, &den) ||
		    !den)
			return -1;
		/* Whole pages, so that fractions add up exactly. */
		*out = span * num / den * page_size;
		return 0;
	}
	return parse_size(s, out);
}

static int replay_order(struct replay *r, const char *s, uint32_t *out)
{
	if (!strcmp(s, "max")) {
		*out = r->max_order;
		return 0;
	}
	if (!strcmp(s, "max+1")) {
		*out = r->max_order + 1;
		return 0;
	}
	return parse_u32(s, out);
}

static void __attribute__((format(printf, 3, 4)))
replay_fail(struct replay *r, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->msg[0])
		return;
	n = snprintf(r->msg, sizeof(r->msg), "line %d: ", line);
	va_start(ap, fmt);
	vsnprintf(r->msg + n, sizeof(r->msg) - n, fmt, ap);
	va_end(ap);
}

/* Pages currently held by this replay in @area. */
static uint64_t replay_held(struct replay *r, const char *area)
{
	uint64_t pages = 0;
	size_t i;

	for (i = 0; i < r->nlabels; i++)
		if (r->labels[i].live && !strcmp(r->labels[i].area, area))
			pages += page_align(r->labels[i].size) / page_size;
	return pages;
}

static int replay_check_area(struct replay *r, const char *name, int line)
{
	struct area *a = replay_area(r, name);
	uint64_t now, want;

	if (!a) {
		replay_fail(r, line, "check: unknown area %s", name);
		return -1;
	}
	now = area_free(r->fd, a);
	want = r->start_free[a - r->areas] - replay_held(r, name);
	if (now != want) {
		replay_fail(r, line, "check %s: %" PRIu64
			    " free pages, expected %" PRIu64, name, now, want);
		return -1;
	}
	return 0;
}

/*
 * window AREA [order=N]: the sequence works on the free tail of AREA.
 * Pages held by others at the start of the area (the ARM DMA atomic pool,
 * for one) shift first-fit placements; the window starts at the lowest
 * free page, rounded up to 2^N pages with a pad allocation that the
 * sequence holds, and "all", fractions and at= offsets refer to it.
 * Skips the sequence unless everything above the lowest free page is free.
 */
static int replay_window(struct replay *r, const char *name,
			 const char *order_s, int lineno)
{
	uint64_t phys, first, pad;
	struct area *a;
	struct label *l;
	uint32_t order, h;
	int ret;

	a = replay_area(r, name);
	if (!a || replay_order(r, order_s, &order) || order > 20) {
		replay_fail(r, lineno, "window: bad area or order");
		return -1;
	}
	ret = dev_alloc(r->fd, name, page_size, 0, &h, &phys, NULL);
	if (ret || dev_free(r->fd, h)) {
		r->skip = true;
		snprintf(r->msg, sizeof(r->msg), "no free page in %s", name);
		return -1;
	}
	first = (phys - a->base) / page_size;
	if (r->start_free[a - r->areas] != a->total_pages - first) {
		r->skip = true;
		snprintf(r->msg, sizeof(r->msg),
			 "free pages of %s are not one range up to its end",
			 name);
		return -1;
	}
	pad = ((first + (1ull << order) - 1) & ~((1ull << order) - 1)) - first;
	if (pad >= a->total_pages - first) {
		r->skip = true;
		snprintf(r->msg, sizeof(r->msg), "%s too small for the window",
			 name);
		return -1;
	}
	if (pad) {
		l = find_label(r, "(window-pad)", true);
		if (!l || l->live) {
			replay_fail(r, lineno, "window: used twice");
			return -1;
		}
		ret = dev_alloc(r->fd, name, pad * page_size, 0, &l->handle,
				&l->phys, NULL);
		if (ret || l->phys != a->base + first * page_size) {
			if (!ret)
				dev_free(r->fd, l->handle);
			replay_fail(r, lineno, "window: pad of %" PRIu64
				    " pages: %s", pad, errname(-ret));
			return -1;
		}
		l->live = true;
		l->size = pad * page_size;
		snprintf(l->area, sizeof(l->area), "%s", name);
	}
	r->win = a;
	r->win_start = first + pad;
	r->win_pages = a->total_pages - first - pad;
	return 0;
}

static int replay_line(struct replay *r, char *line, int lineno)
{
	char *argv[16], *save = NULL, *tok;
	const char *expect_s = "ok", *order_s = "0", *at_s = NULL;
	int argc = 0, expect = 0, ret, err, i;
	uint32_t order;
	struct label *l;
	struct area *a;
	uint64_t size, dma, us, at, at0;

	tok = strchr(line, '#');
	if (tok)
		*tok = '\0';
	for (tok = strtok_r(line, " \t\r\n", &save); tok && argc < 16;
	     tok = strtok_r(NULL, " \t\r\n", &save)) {
		if (!strncmp(tok, "expect=", 7))
			expect_s = tok + 7;
		else if (!strncmp(tok, "order=", 6))
			order_s = tok + 6;
		else if (!strncmp(tok, "at=", 3))
			at_s = tok + 3;
		else
			argv[argc++] = tok;
	}
	if (!argc)
		return 0;
	if (parse_errname(expect_s, &expect)) {
		replay_fail(r, lineno, "bad expect=%s", expect_s);
		return -1;
	}
	r->steps++;

	if (!strcmp(argv[0], "require-free") && argc == 2) {
		a = replay_area(r, argv[1]);
		if (!a || r->start_free[a - r->areas] != a->total_pages) {
			r->skip = true;
			snprintf(r->msg, sizeof(r->msg),
				 "area %s missing or not entirely free",
				 argv[1]);
			return -1;
		}
		return 0;
	}
	if (!strcmp(argv[0], "check") && argc == 2)
		return replay_check_area(r, argv[1], lineno);
	if (!strcmp(argv[0], "window") && argc == 2)
		return replay_window(r, argv[1], order_s, lineno);

	if (!strcmp(argv[0], "alloc") && argc == 4) {
		a = replay_area(r, argv[2]);
		if (replay_size(r, argv[3], a, &size) ||
		    replay_order(r, order_s, &order)) {
			replay_fail(r, lineno, "bad size or order");
			return -1;
		}
		l = find_label(r, argv[1], true);
		if (!l || l->live) {
			replay_fail(r, lineno, "label %s unusable", argv[1]);
			return -1;
		}
		ret = dev_alloc(r->fd, argv[2], size, order, &l->handle,
				&l->phys, &us);
		if (!ret) {
			lat_add(&r->lat, us);
			l->live = true;
			l->filled = false;
			l->size = size;
			snprintf(l->area, sizeof(l->area), "%s", argv[2]);
			if (!a || !in_area(a, l->phys, page_align(size)) ||
			    l->phys % ((uint64_t)page_size << order)) {
				replay_fail(r, lineno, "%s: bad placement 0x%"
					    PRIx64, argv[1], l->phys);
				return -1;
			}
			if (a == r->win)
				at0 = a->base + r->win_start * page_size;
			else
				at0 = a->base;
			if (at_s && (replay_size(r, at_s, a, &at) ||
				     l->phys - at0 != at)) {
				replay_fail(r, lineno, "%s: at +0x%" PRIx64
					    ", expected at=%s", argv[1],
					    l->phys - at0, at_s);
				return -1;
			}
		}
	} else if (!strcmp(argv[0], "dma") && argc == 3) {
		a = replay_area(r, DEFAULT_AREA);
		if (replay_size(r, argv[2], a, &size)) {
			replay_fail(r, lineno, "bad size");
			return -1;
		}
		l = find_label(r, argv[1], true);
		if (!l || l->live) {
			replay_fail(r, lineno, "label %s unusable", argv[1]);
			return -1;
		}
		ret = dev_dma_alloc(r->fd, size, &l->handle, &dma, &l->phys,
				    &us);
		if (!ret) {
			lat_add(&r->lat, us);
			l->live = true;
			l->filled = false;
			l->size = size;
			snprintf(l->area, sizeof(l->area), "%s", DEFAULT_AREA);
		}
	} else if (!strcmp(argv[0], "free") && argc == 2) {
		l = find_label(r, argv[1], false);
		if (!l) {
			replay_fail(r, lineno, "unknown label %s", argv[1]);
			return -1;
		}
		/* A dead label keeps its old handle: double free. */
		ret = dev_free(r->fd, l->handle);
		if (!ret)
			l->live = false;
	} else if ((!strcmp(argv[0], "fill") || !strcmp(argv[0], "verify")) &&
		   argc == 2) {
		size_t len;
		void *p;

		l = find_label(r, argv[1], false);
		if (!l || !l->live) {
			replay_fail(r, lineno, "%s: no live label %s", argv[0],
				    argv[1]);
			return -1;
		}
		len = page_align(l->size);
		p = dev_map(r->fd, l->handle, len, &err);
		ret = err;
		if (p) {
			if (argv[0][0] == 'f') {
				l->seed = (uint32_t)l->phys ^ (uint32_t)lineno;
				fill_pattern(p, len, l->seed);
				l->filled = true;
			} else if (!l->filled ||
				   check_pattern(p, len, l->seed) >= 0) {
				replay_fail(r, lineno, "verify %s: %s",
					    argv[1], l->filled ?
					    "content changed" : "never filled");
				munmap(p, len);
				return -1;
			}
			if (munmap(p, len))
				ret = -errno;
		}
	} else {
		replay_fail(r, lineno, "cannot parse \"%s\" with %d words",
			    argv[0], argc);
		return -1;
	}

	if (ret != -expect) {
		size_t n;

		replay_fail(r, lineno, "%s", argv[0]);
		for (i = 1; i < argc; i++) {
			n = strlen(r->msg);
			snprintf(r->msg + n, sizeof(r->msg) - n, " %s",
				 argv[i]);
		}
		n = strlen(r->msg);
		snprintf(r->msg + n, sizeof(r->msg) - n,
			 " gave %s, expected %s", errname(ret < 0 ? -ret : ret),
			 expect_s);
		return -1;
	}
	return 0;
}

/*
 * Runs one sequence file on its own open file.  Returns 1 on success,
 * 0 on failure and -1 if skipped; r->msg tells why.
 */
static int replay_file(const char *path, struct replay *r)
{
	struct cma_dev_info info;
	char line[512];
	int lineno = 0, result;
	uint32_t i;
	FILE *f;

	memset(r, 0, sizeof(*r));
	f = fopen(path, "re");
	if (!f) {
		snprintf(r->msg, sizeof(r->msg), "%s: %s", path,
			 strerror(errno));
		return 0;
	}
	r->fd = dev_open();
	if (r->fd < 0) {
		snprintf(r->msg, sizeof(r->msg), "cannot open " DEV_PATH);
		fclose(f);
		return 0;
	}
	if (dev_info(r->fd, &info)) {
		snprintf(r->msg, sizeof(r->msg), "CMA_DEV_IOC_INFO failed");
		goto out;
	}
	r->max_order = info.max_align_order;
	for (i = 0; i < info.nr_areas && i < MAX_AREAS; i++) {
		if (dev_area(r->fd, i, &r->areas[i]))
			break;
		r->start_free[i] = r->areas[i].free_pages;
	}
	r->nareas = i;

	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (replay_line(r, line, lineno))
			break;
	}
out:
	/* Free what is left, then every area must be back where it was. */
	for (i = 0; i < r->nlabels; i++)
		if (r->labels[i].live && !dev_free(r->fd, r->labels[i].handle))
			r->labels[i].live = false;
	if (!r->msg[0])
		for (i = 0; i < r->nareas; i++)
			if (replay_check_area(r, r->areas[i].name, lineno))
				break;
	close(r->fd);
	fclose(f);
	if (r->skip)
		result = -1;
	else
		result = r->msg[0] ? 0 : 1;
	return result;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted list of *.seq files in @dir; returns the count or -1. */
static int list_sequences(const char *dir, char ***out)
{
	struct dirent *de;
	char **names = NULL;
	int n = 0;
	DIR *d;

	d = opendir(dir);
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);

		if (len < 5 || strcmp(de->d_name + len - 4, ".seq"))
			continue;
		names = xrealloc(names, (n + 1) * sizeof(*names));
		names[n] = xmalloc(strlen(dir) + len + 2);
		sprintf(names[n], "%s/%s", dir, de->d_name);
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	*out = names;
	return n;
}

static void suite_replay(struct ktap *k, struct ctx *c)
{
	const char *dir = getenv("CMA_TEST_SEQDIR");
	struct replay *r = xmalloc(sizeof(*r));
	struct lat lat = { 0 };
	char **files = NULL;
	int n, i, res;
	size_t j;

	(void)c;
	if (!dir)
		dir = SEQ_DIR;
	n = list_sequences(dir, &files);
	if (n <= 0) {
		snprintf(k->skip_reason, sizeof(k->skip_reason),
			 "no sequences in %s", dir);
		free(files);
		free(r);
		return;
	}
	for (i = 0; i < n; i++) {
		const char *base = strrchr(files[i], '/') + 1;

		res = replay_file(files[i], r);
		for (j = 0; j < r->lat.n; j++)
			lat_add(&lat, r->lat.us[j]);
		if (res < 0) {
			kt_skip(k, base, "%s", r->msg);
		} else {
			if (!res)
				kt_diag(k, "%s: %s", base, r->msg);
			else
				kt_diag(k, "%s: %d steps", base, r->steps);
			kt_result(k, res == 1, "%s", base);
		}
		lat_free(&r->lat);
		free(files[i]);
	}
	free(files);
	free(r);
	kt_latency(k, NULL, &lat);
	lat_free(&lat);
}

/* ------------------------------------------------------------------ */
/* Suite: concurrency                                                   */
/* ------------------------------------------------------------------ */

#define CONC_PROCS	4
#define CONC_ITERS	60
#define CONC_HELD	8

struct conc_report {
	uint32_t allocs, enomem, errors, corrupt, nlat;
	uint32_t lat_us[CONC_ITERS];
};

static uint32_t xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* Child: random alloc/fill/verify/free; abandons its buffers if @leave. */
static void conc_child(const char *area, uint64_t max_pages, int id,
		       bool leave, int wfd)
{
	struct {
		uint32_t handle, seed;
		size_t len;
	} held[CONC_HELD];
	struct conc_report rep;
	uint32_t rnd = 0x12345u + (uint32_t)id * 7919u;
	int fd, nheld = 0, it, ret, err, j;
	uint64_t phys, us;
	void *p;

	memset(&rep, 0, sizeof(rep));
	fd = open(DEV_PATH, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		_exit(3);
	for (it = 0; it < CONC_ITERS; it++) {
		if (nheld == CONC_HELD || (nheld && (xorshift(&rnd) & 1))) {
			j = (int)(xorshift(&rnd) % (uint32_t)nheld);
			p = dev_map(fd, held[j].handle, held[j].len, &err);
			if (!p || check_pattern(p, held[j].len,
						held[j].seed) >= 0)
				rep.corrupt++;
			if (p)
				munmap(p, held[j].len);
			if (dev_free(fd, held[j].handle))
				rep.errors++;
			held[j] = held[--nheld];
			continue;
		}
		{
			uint64_t pages = 1 + xorshift(&rnd) % max_pages;
			uint32_t order = xorshift(&rnd) % 3;
			uint32_t h;

			ret = dev_alloc(fd, area, pages * page_size, order, &h,
					&phys, &us);
			if (ret == -ENOMEM) {
				rep.enomem++;
				continue;
			}
			if (ret) {
				rep.errors++;
				continue;
			}
			rep.allocs++;
			if (rep.nlat < CONC_ITERS)
				rep.lat_us[rep.nlat++] = (uint32_t)us;
			held[nheld].handle = h;
			held[nheld].len = pages * page_size;
			held[nheld].seed = (uint32_t)phys ^ (uint32_t)id;
			p = dev_map(fd, h, held[nheld].len, &err);
			if (!p) {
				rep.errors++;
			} else {
				fill_pattern(p, held[nheld].len,
					     held[nheld].seed);
				munmap(p, held[nheld].len);
			}
			nheld++;
		}
	}
	if (!leave) {
		for (j = 0; j < nheld; j++)
			if (dev_free(fd, held[j].handle))
				rep.errors++;
	}
	if (write(wfd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		_exit(4);
	/* With @leave, the buffers go away when the file is released. */
	_exit(0);
}

static void suite_concurrency(struct ktap *k, struct ctx *c)
{
	struct lat lat = { 0 };
	struct conc_report rep;
	uint64_t free0, max_pages;
	long long used0;
	pid_t pids[CONC_PROCS];
	int pipes[CONC_PROCS][2];
	int i, status, nstarted = 0;
	uint32_t j;
	bool ok;

	ctx_refresh(c);
	free0 = c->area.free_pages;
	used0 = debugfs_val(c->area.name, "used");
	/* Together the children may want more than the area: some ENOMEM. */
	max_pages = c->area.total_pages / (CONC_PROCS * CONC_HELD / 2);
	if (max_pages > 256)
		max_pages = 256;
	if (!max_pages)
		max_pages = 1;
	kt_diag(k, "%d processes x %d steps, up to %" PRIu64
		" pages each, half of them exit without freeing", CONC_PROCS,
		CONC_ITERS, max_pages);

	fflush(stdout);
	fflush(stderr);
	fflush(k->out);
	for (i = 0; i < CONC_PROCS; i++) {
		if (pipe(pipes[i])) {
			kt_diag(k, "pipe: %s", strerror(errno));
			break;
		}
		pids[i] = fork();
		if (pids[i] < 0) {
			kt_diag(k, "fork: %s", strerror(errno));
			close(pipes[i][0]);
			close(pipes[i][1]);
			break;
		}
		if (!pids[i]) {
			close(pipes[i][0]);
			conc_child(c->area.name, max_pages, i, i & 1,
				   pipes[i][1]);
		}
		close(pipes[i][1]);
		nstarted++;
	}
	for (i = 0; i < nstarted; i++) {
		char name[32];
		ssize_t n;

		snprintf(name, sizeof(name), "process-%d", i);
		n = read(pipes[i][0], &rep, sizeof(rep));
		close(pipes[i][0]);
		if (waitpid(pids[i], &status, 0) < 0)
			status = -1;
		ok = n == (ssize_t)sizeof(rep) && WIFEXITED(status) &&
		     !WEXITSTATUS(status) && !rep.errors && !rep.corrupt;
		if (n == (ssize_t)sizeof(rep)) {
			kt_diag(k, "%s: allocs=%u enomem=%u errors=%u corrupt=%u",
				name, rep.allocs, rep.enomem, rep.errors,
				rep.corrupt);
			for (j = 0; j < rep.nlat && j < CONC_ITERS; j++)
				lat_add(&lat, rep.lat_us[j]);
		} else {
			kt_diag(k, "%s: no report, status 0x%x", name, status);
		}
		kt_result(k, ok, "%s", name);
	}
	kt_result(k, nstarted == CONC_PROCS, "all-processes-started");
	check_restored(k, c, free0, used0, "no-lost-or-double-counted-pages");
	kt_latency(k, NULL, &lat);
	lat_free(&lat);
}

/* ------------------------------------------------------------------ */
/* Subcommands                                                          */
/* ------------------------------------------------------------------ */

static const struct suite {
	const char *name;
	void (*run)(struct ktap *k, struct ctx *c);
} suites[] = {
	{ "alloc-free", suite_alloc_free },
	{ "exhaustion", suite_exhaustion },
	{ "migrate", suite_migrate },
	{ "dma", suite_dma },
	{ "replay", suite_replay },
	{ "concurrency", suite_concurrency },
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f,
		"usage: %s areas\n"
		"       %s alloc AREA SIZE [ORDER]\n"
		"       %s dma-alloc SIZE\n"
		"       %s free HANDLE\n"
		"       %s replay FILE...\n"
		"       %s suite [NAME...]\n"
		"\n"
		"SIZE is bytes with an optional K, M or G suffix, or pages with\n"
		"a p suffix; ORDER is the alignment order in pages.\n"
		"Handles belong to the open file: alloc and dma-alloc free\n"
		"their buffer when the process exits, so a later \"free\" in\n"
		"another process gets ENOENT; they only demonstrate the API.\n"
		"Use replay or suite for alloc/free sequences.\n"
		"\nSuites (KTAP output; default all):",
		prog, prog, prog, prog, prog, prog);
	for (i = 0; i < ARRAY_SIZE(suites); i++)
		fprintf(f, " %s", suites[i].name);
	fprintf(f, "\nEnvironment: CMA_TEST_AREA (default \"%s\"), "
		"CMA_TEST_SEQDIR (default %s), CMA_TEST_VERBOSE\n",
		DEFAULT_AREA, SEQ_DIR);
}

static int cmd_areas(void)
{
	struct cma_dev_info info;
	struct area a;
	uint32_t i;
	int fd, ret;

	fd = dev_open();
	if (fd < 0)
		return 1;
	ret = dev_info(fd, &info);
	if (ret) {
		fprintf(stderr, "%s: CMA_DEV_IOC_INFO: %s\n", prog,
			strerror(-ret));
		close(fd);
		return 1;
	}
	printf("# abi=%u areas=%u max_align_order=%u page_size=%u\n",
	       info.version, info.nr_areas, info.max_align_order,
	       info.page_size);
	printf("%-3s %-20s %-12s %-12s %-8s %-8s\n", "idx", "name", "base",
	       "size", "total", "free");
	for (i = 0; i < info.nr_areas; i++) {
		ret = dev_area(fd, i, &a);
		if (ret) {
			fprintf(stderr, "%s: CMA_DEV_IOC_AREA %u: %s\n", prog,
				i, strerror(-ret));
			close(fd);
			return 1;
		}
		printf("%-3u %-20s 0x%010" PRIx64 " %-12" PRIu64 " %-8" PRIu64
		       " %-8" PRIu64 "\n", i, a.name, a.base, a.size,
		       a.total_pages, a.free_pages);
	}
	close(fd);
	return 0;
}

static int cmd_alloc(int argc, char **argv)
{
	uint64_t size, phys, us;
	uint32_t order = 0, handle;
	int fd, ret;

	if (argc < 2 || argc > 3 || parse_size(argv[1], &size) ||
	    (argc == 3 && parse_u32(argv[2], &order))) {
		usage(stderr);
		return 2;
	}
	fd = dev_open();
	if (fd < 0)
		return 1;
	ret = dev_alloc(fd, argv[0], size, order, &handle, &phys, &us);
	if (ret) {
		printf("alloc %s %" PRIu64 " order=%u: %s\n", argv[0], size,
		       order, errname(-ret));
	} else {
		printf("handle=%u phys=0x%" PRIx64 " size=%" PRIu64
		       " order=%u latency_us=%" PRIu64 "\n", handle, phys,
		       size, order, us);
		printf("# freed again when this process exits\n");
	}
	close(fd);
	return ret ? 1 : 0;
}

static int cmd_dma_alloc(int argc, char **argv)
{
	uint64_t size, dma, phys, us;
	uint32_t handle;
	int fd, ret;

	if (argc != 1 || parse_size(argv[0], &size)) {
		usage(stderr);
		return 2;
	}
	fd = dev_open();
	if (fd < 0)
		return 1;
	ret = dev_dma_alloc(fd, size, &handle, &dma, &phys, &us);
	if (ret)
		printf("dma-alloc %" PRIu64 ": %s\n", size, errname(-ret));
	else
		printf("handle=%u dma=0x%" PRIx64 " phys=0x%" PRIx64
		       " latency_us=%" PRIu64 "\n", handle, dma, phys, us);
	close(fd);
	return ret ? 1 : 0;
}

static int cmd_free(int argc, char **argv)
{
	uint32_t handle;
	int fd, ret;

	if (argc != 1 || parse_u32(argv[0], &handle)) {
		usage(stderr);
		return 2;
	}
	fd = dev_open();
	if (fd < 0)
		return 1;
	ret = dev_free(fd, handle);
	printf("free %u: %s%s\n", handle, errname(-ret),
	       ret == -ENOENT ?
	       " (handles only live as long as the file that made them)" : "");
	close(fd);
	return ret ? 1 : 0;
}

static int cmd_replay(int argc, char **argv)
{
	struct replay *r;
	int i, res, failed = 0;

	if (argc < 1) {
		usage(stderr);
		return 2;
	}
	r = xmalloc(sizeof(*r));
	for (i = 0; i < argc; i++) {
		res = replay_file(argv[i], r);
		if (res < 0)
			printf("%s: SKIP %s\n", argv[i], r->msg);
		else if (res)
			printf("%s: ok (%d steps)\n", argv[i], r->steps);
		else
			printf("%s: FAIL %s\n", argv[i], r->msg);
		if (r->lat.n) {
			qsort(r->lat.us, r->lat.n, sizeof(*r->lat.us),
			      cmp_u64);
			printf("# latency_us min=%" PRIu64 " median=%" PRIu64
			       " max=%" PRIu64 " n=%zu\n", r->lat.us[0],
			       r->lat.us[r->lat.n / 2],
			       r->lat.us[r->lat.n - 1], r->lat.n);
		}
		lat_free(&r->lat);
		failed |= res == 0;
	}
	free(r);
	return failed;
}

static int cmd_suite(int argc, char **argv)
{
	const struct suite *sel[ARRAY_SIZE(suites)];
	const char *area = getenv("CMA_TEST_AREA");
	size_t nsel = 0, i, j;
	struct ctx c;
	int failed = 0, ret;

	for (i = 0; i < (size_t)argc; i++) {
		for (j = 0; j < ARRAY_SIZE(suites); j++)
			if (!strcmp(argv[i], suites[j].name))
				break;
		if (j == ARRAY_SIZE(suites) || nsel == ARRAY_SIZE(sel)) {
			fprintf(stderr, "%s: unknown suite %s\n", prog,
				argv[i]);
			usage(stderr);
			return 2;
		}
		sel[nsel++] = &suites[j];
	}
	if (!nsel)
		for (j = 0; j < ARRAY_SIZE(suites); j++)
			sel[nsel++] = &suites[j];

	printf("KTAP version 1\n1..%zu\n", nsel);
	fflush(stdout);

	memset(&c, 0, sizeof(c));
	c.fd = dev_open();
	ret = c.fd < 0 ? -ENODEV : dev_info(c.fd, &c.info);
	if (!ret) {
		ret = dev_area_by_name(c.fd, area ? area : DEFAULT_AREA,
				       &c.area);
		if (ret == -ENOENT && !area && c.info.nr_areas)
			ret = dev_area(c.fd, 0, &c.area);
	}
	if (ret) {
		printf("# cannot use " DEV_PATH " / area %s: %s\n",
		       area ? area : DEFAULT_AREA, errname(-ret));
		for (i = 0; i < nsel; i++)
			printf("not ok %zu %s\n", i + 1, sel[i]->name);
		if (c.fd >= 0)
			close(c.fd);
		return 1;
	}

	for (i = 0; i < nsel; i++) {
		unsigned long taint0 = tainted();
		struct ktap k;
		uint64_t t0 = now_ns();

		kt_init(&k);
		sel[i]->run(&k, &c);
		if (!k.skip_reason[0])
			check_taint(&k, taint0);
		kt_diag(&k, "duration_ms=%" PRIu64, (now_ns() - t0) / 1000000);
		if (!kt_finish(&k, (int)i + 1, sel[i]->name))
			failed = 1;
	}
	close(c.fd);
	return failed;
}

int main(int argc, char **argv)
{
	const char *cmd;

	page_size = sysconf(_SC_PAGESIZE);
	if (page_size <= 0)
		page_size = 4096;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	argc -= 2;
	argv += 2;
	if (!strcmp(cmd, "areas") && !argc)
		return cmd_areas();
	if (!strcmp(cmd, "alloc"))
		return cmd_alloc(argc, argv);
	if (!strcmp(cmd, "dma-alloc"))
		return cmd_dma_alloc(argc, argv);
	if (!strcmp(cmd, "free"))
		return cmd_free(argc, argv);
	if (!strcmp(cmd, "replay"))
		return cmd_replay(argc, argv);
	if (!strcmp(cmd, "suite"))
		return cmd_suite(argc, argv);
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
