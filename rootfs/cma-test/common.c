// SPDX-License-Identifier: GPL-2.0
/*
 * Shared helpers of cma-test; see common.h.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *prog = "cma-test";
long page_size;

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(1);
	}
	return p;
}

void *xrealloc(void *old, size_t n)
{
	void *p = realloc(old, n ? n : 1);

	if (!p) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(1);
	}
	return p;
}

u64 now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts)) {
		perror("clock_gettime");
		exit(1);
	}
	return (u64)ts.tv_sec * 1000000000ull + (u64)ts.tv_nsec;
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

const char *errname(int err)
{
	static char buf[16];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(errnames); i++)
		if (errnames[i].err == err)
			return errnames[i].name;
	snprintf(buf, sizeof(buf), "E%d", err);
	return buf;
}

int parse_errname(const char *s, int *err)
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
int parse_size(const char *s, u64 *out)
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

int parse_u32(const char *s, u32 *out)
{
	char *end;
	unsigned long v;

	if (!*s || *s == '-')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end || v > UINT32_MAX)
		return -1;
	*out = (u32)v;
	return 0;
}

int read_file_u64(const char *path, u64 *val)
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
long long meminfo_kb(const char *field)
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

/* The kernel's taint flags (/proc/sys/kernel/tainted), 0 if unreadable. */
unsigned long taint_flags(void)
{
	u64 v = 0;

	if (read_file_u64("/proc/sys/kernel/tainted", &v))
		return 0;
	return (unsigned long)v;
}

/* Pattern helpers: every 32-bit word depends on the seed and its index. */
void fill_pattern(void *buf, size_t len, u32 seed)
{
	u32 *w = buf;
	size_t i, n = len / sizeof(*w);

	for (i = 0; i < n; i++)
		w[i] = seed ^ ((u32)i * 0x9e3779b1u);
}

/* Returns the byte offset of the first mismatch, or -1. */
long long check_pattern(const void *buf, size_t len, u32 seed)
{
	const u32 *w = buf;
	size_t i, n = len / sizeof(*w);

	for (i = 0; i < n; i++)
		if (w[i] != (seed ^ ((u32)i * 0x9e3779b1u)))
			return (long long)(i * sizeof(*w));
	return -1;
}

void lat_add(struct lat *l, u64 us)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->us = xrealloc(l->us, l->cap * sizeof(*l->us));
	}
	l->us[l->n++] = us;
}

static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

void lat_sort(struct lat *l)
{
	qsort(l->us, l->n, sizeof(*l->us), cmp_u64);
}

void lat_free(struct lat *l)
{
	free(l->us);
	memset(l, 0, sizeof(*l));
}
