/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared helpers of cma-test: memory, numbers and names, /proc readers,
 * buffer patterns and latency statistics.
 *
 * Every source file of cma-test includes this header first: it sets the
 * feature macros the C library headers look at.
 */
#ifndef _CMA_TEST_COMMON_H
#define _CMA_TEST_COMMON_H

#define _GNU_SOURCE
#define _FILE_OFFSET_BITS 64

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define BIT(nr)		(1UL << (nr))
#define BIT_ULL(nr)	(1ULL << (nr))
#define __printf(a, b)	__attribute__((__format__(printf, a, b)))

typedef unsigned int u32;
typedef unsigned long long u64;

extern const char *prog;
extern long page_size;

void *xmalloc(size_t n);
void *xrealloc(void *old, size_t n);
u64 now_ns(void);

const char *errname(int err);
int parse_errname(const char *s, int *err);
int parse_size(const char *s, u64 *out);
int parse_u32(const char *s, u32 *out);

int read_file_u64(const char *path, u64 *val);
long long meminfo_kb(const char *field);
unsigned long taint_flags(void);

void fill_pattern(void *buf, size_t len, u32 seed);
long long check_pattern(const void *buf, size_t len, u32 seed);

/* Latencies in microseconds; lat_sort() orders them for min/median/max. */
struct lat {
	u64 *us;
	size_t n, cap;
};

void lat_add(struct lat *l, u64 us);
void lat_sort(struct lat *l);
void lat_free(struct lat *l);

#endif /* _CMA_TEST_COMMON_H */
