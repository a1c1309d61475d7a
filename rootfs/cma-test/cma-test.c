// SPDX-License-Identifier: GPL-2.0
/*
 * cma-test - exercise the Contiguous Memory Allocator through /dev/cma-dev
 *
 * Built statically for the guest from every .c file of its directory:
 *   arm-linux-gnueabihf-gcc -static -O2 -Wall -Wextra -Werror \
 *       -o cma-test <the .c files> -I<dir with linux/cma-dev.h>
 *
 * This file holds main(), the subcommands and the suite table; the suites
 * are in suite_*.c, the KTAP report in ktap.c, the /dev/cma-dev calls in
 * cmadev.c and the replay sequences in replay.c.  See README.md next to
 * this file for the subcommands, the KTAP output of "suite" and the format
 * of the replay sequences.
 */
#include "common.h"
#include "cmadev.h"
#include "ktap.h"
#include "replay.h"
#include "suite.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct suite {
	const char *name;
	void (*run)(struct ktap *k, struct ctx *c);
} suites[] = {
#define SUITE(name, func) { name, func },
#include "suites.def"
#undef SUITE
};

static void print_usage(FILE *f)
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
	fprintf(f,
		"\nEnvironment: CMA_TEST_AREA (default \"%s\"), CMA_TEST_SEQDIR (default %s), CMA_TEST_VERBOSE\n",
		DEFAULT_AREA, SEQ_DIR);
}

/* One "range" row per physical range, under its area's row. */
static void print_ranges(const struct area *a)
{
	u32 r;

	for (r = 0; r < a->nr_ranges; r++)
		printf("    range %u/%u 0x%010llx %llu %llu\n", r, a->nr_ranges,
		       a->ranges[r].base, a->ranges[r].total_pages,
		       a->ranges[r].free_pages);
}

static int cmd_areas(void)
{
	struct cma_dev_info info;
	struct area a;
	u32 i;
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
		printf("%-3u %-20s 0x%010llx %-12llu %-8llu %-8llu\n", i,
		       a.name, a.base, a.size, a.total_pages, a.free_pages);
		print_ranges(&a);
	}
	close(fd);
	return 0;
}

static int cmd_alloc(int argc, char **argv)
{
	u64 size, phys, us;
	u32 order = 0, handle;
	int fd, ret;

	if (argc < 2 || argc > 3 || parse_size(argv[1], &size) ||
	    (argc == 3 && parse_u32(argv[2], &order))) {
		print_usage(stderr);
		return 2;
	}
	fd = dev_open();
	if (fd < 0)
		return 1;
	ret = dev_alloc(fd, argv[0], size, order, &handle, &phys, &us);
	if (ret) {
		printf("alloc %s %llu order=%u: %s\n", argv[0], size, order,
		       errname(-ret));
	} else {
		printf("handle=%u phys=0x%llx size=%llu order=%u latency_us=%llu\n",
		       handle, phys, size, order, us);
		printf("# freed again when this process exits\n");
	}
	close(fd);
	return ret ? 1 : 0;
}

static int cmd_dma_alloc(int argc, char **argv)
{
	u64 size, dma, phys, us;
	u32 handle;
	int fd, ret;

	if (argc != 1 || parse_size(argv[0], &size)) {
		print_usage(stderr);
		return 2;
	}
	fd = dev_open();
	if (fd < 0)
		return 1;
	ret = dev_dma_alloc(fd, size, &handle, &dma, &phys, &us);
	if (ret)
		printf("dma-alloc %llu: %s\n", size, errname(-ret));
	else
		printf("handle=%u dma=0x%llx phys=0x%llx latency_us=%llu\n",
		       handle, dma, phys, us);
	close(fd);
	return ret ? 1 : 0;
}

static int cmd_free(int argc, char **argv)
{
	u32 handle;
	int fd, ret;

	if (argc != 1 || parse_u32(argv[0], &handle)) {
		print_usage(stderr);
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
		print_usage(stderr);
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
			lat_sort(&r->lat);
			printf("# latency_us min=%llu median=%llu max=%llu n=%zu\n",
			       r->lat.us[0], r->lat.us[r->lat.n / 2],
			       r->lat.us[r->lat.n - 1], r->lat.n);
		}
		lat_free(&r->lat);
		failed |= res == 0;
	}
	free(r);
	return failed;
}

/* The suites named in @argv (all if none) into @sel; -1 for a bad name. */
static int select_suites(int argc, char **argv, const struct suite **sel)
{
	size_t nsel = 0, i, j;

	for (i = 0; i < (size_t)argc; i++) {
		for (j = 0; j < ARRAY_SIZE(suites); j++)
			if (!strcmp(argv[i], suites[j].name))
				break;
		if (j == ARRAY_SIZE(suites) || nsel == ARRAY_SIZE(suites)) {
			fprintf(stderr, "%s: unknown suite %s\n", prog,
				argv[i]);
			print_usage(stderr);
			return -1;
		}
		sel[nsel++] = &suites[j];
	}
	if (!nsel)
		for (j = 0; j < ARRAY_SIZE(suites); j++)
			sel[nsel++] = &suites[j];
	return (int)nsel;
}

/* Opens /dev/cma-dev and finds the area the suites work on. */
static int open_ctx(struct ctx *c, const char *area)
{
	int ret;

	memset(c, 0, sizeof(*c));
	c->fd = dev_open();
	ret = c->fd < 0 ? -ENODEV : dev_info(c->fd, &c->info);
	if (!ret) {
		ret = dev_area_by_name(c->fd, area ? area : DEFAULT_AREA,
				       &c->area);
		if (ret == -ENOENT && !area && c->info.nr_areas)
			ret = dev_area(c->fd, 0, &c->area);
	}
	return ret;
}

/* Runs suite @s as top-level test @num; returns true if it passed. */
static bool run_suite(struct ctx *c, const struct suite *s, int num)
{
	unsigned long taint0 = taint_flags();
	struct ktap k;
	u64 t0 = now_ns();

	kt_init(&k);
	s->run(&k, c);
	if (!k.skip_reason[0])
		check_taint(&k, taint0);
	kt_diag(&k, "duration_ms=%llu", (now_ns() - t0) / 1000000);
	return kt_finish(&k, num, s->name);
}

static int cmd_suite(int argc, char **argv)
{
	const struct suite *sel[ARRAY_SIZE(suites)];
	const char *area = getenv("CMA_TEST_AREA");
	int failed = 0, nsel, ret, i;
	struct ctx c;

	nsel = select_suites(argc, argv, sel);
	if (nsel < 0)
		return 2;

	printf("KTAP version 1\n1..%d\n", nsel);
	fflush(stdout);

	ret = open_ctx(&c, area);
	if (ret) {
		printf("# cannot use " DEV_PATH " / area %s: %s\n",
		       area ? area : DEFAULT_AREA, errname(-ret));
		for (i = 0; i < nsel; i++)
			printf("not ok %d %s\n", i + 1, sel[i]->name);
		if (c.fd >= 0)
			close(c.fd);
		return 1;
	}

	for (i = 0; i < nsel; i++)
		if (!run_suite(&c, sel[i], i + 1))
			failed = 1;
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
		print_usage(stderr);
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
		print_usage(stdout);
		return 0;
	}
	print_usage(stderr);
	return 2;
}
