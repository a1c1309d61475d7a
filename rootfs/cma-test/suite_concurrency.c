// SPDX-License-Identifier: GPL-2.0
/*
 * Suite concurrency: four processes allocate, fill, verify and free at once
 * on their own open files; two of them exit with buffers still allocated.
 * Afterwards no page may be lost or counted twice.
 */
#include "suite.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>

#define CONC_PROCS	4
#define CONC_ITERS	60
#define CONC_HELD	8

struct conc_report {
	u32 allocs, enomem, errors, corrupt, nlat;
	u32 lat_us[CONC_ITERS];
};

/* A child process: its open file, its buffers and what it saw. */
struct conc_child {
	int fd, id, nheld;
	u32 rnd;
	struct {
		u32 handle, seed;
		size_t len;
	} held[CONC_HELD];
	struct conc_report rep;
};

static u32 xorshift(u32 *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* Verifies and frees a random buffer of the child. */
static void conc_free_one(struct conc_child *ch)
{
	int j = (int)(xorshift(&ch->rnd) % (u32)ch->nheld);
	void *p;
	int err;

	p = dev_map(ch->fd, ch->held[j].handle, ch->held[j].len, &err);
	if (!p || check_pattern(p, ch->held[j].len, ch->held[j].seed) >= 0)
		ch->rep.corrupt++;
	if (p)
		munmap(p, ch->held[j].len);
	if (dev_free(ch->fd, ch->held[j].handle))
		ch->rep.errors++;
	ch->held[j] = ch->held[--ch->nheld];
}

/* Allocates a random size and order from @area, and fills the buffer. */
static void conc_alloc_one(struct conc_child *ch, const char *area,
			   u64 max_pages)
{
	u64 pages = 1 + xorshift(&ch->rnd) % max_pages;
	u32 order = xorshift(&ch->rnd) % 3;
	int ret, err, j = ch->nheld;
	u64 phys, us;
	void *p;
	u32 h;

	ret = dev_alloc(ch->fd, area, pages * page_size, order, &h, &phys,
			&us);
	if (ret == -ENOMEM) {
		ch->rep.enomem++;
		return;
	}
	if (ret) {
		ch->rep.errors++;
		return;
	}
	ch->rep.allocs++;
	if (ch->rep.nlat < CONC_ITERS)
		ch->rep.lat_us[ch->rep.nlat++] = (u32)us;
	ch->held[j].handle = h;
	ch->held[j].len = pages * page_size;
	ch->held[j].seed = (u32)phys ^ (u32)ch->id;
	p = dev_map(ch->fd, h, ch->held[j].len, &err);
	if (!p) {
		ch->rep.errors++;
	} else {
		fill_pattern(p, ch->held[j].len, ch->held[j].seed);
		munmap(p, ch->held[j].len);
	}
	ch->nheld++;
}

/* Child: random alloc/fill/verify/free; abandons its buffers if @leave. */
static void conc_child(const char *area, u64 max_pages, int id,
		       bool leave, int wfd)
{
	struct conc_child ch;
	int it, j;

	memset(&ch, 0, sizeof(ch));
	ch.id = id;
	ch.rnd = 0x12345u + (u32)id * 7919u;
	ch.fd = open(DEV_PATH, O_RDWR | O_CLOEXEC);
	if (ch.fd < 0)
		_exit(3);
	for (it = 0; it < CONC_ITERS; it++) {
		if (ch.nheld == CONC_HELD ||
		    (ch.nheld && (xorshift(&ch.rnd) & 1)))
			conc_free_one(&ch);
		else
			conc_alloc_one(&ch, area, max_pages);
	}
	if (!leave) {
		for (j = 0; j < ch.nheld; j++)
			if (dev_free(ch.fd, ch.held[j].handle))
				ch.rep.errors++;
	}
	if (write(wfd, &ch.rep, sizeof(ch.rep)) != (ssize_t)sizeof(ch.rep))
		_exit(4);
	/* With @leave, the buffers go away when the file is released. */
	_exit(0);
}

/* Forks the children; returns how many started. */
static int conc_spawn(struct ktap *k, struct ctx *c, u64 max_pages,
		      pid_t *pids, int (*pipes)[2])
{
	int i, nstarted = 0;

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
	return nstarted;
}

/* Subtest process-@i: the child's report, read from @rfd, and its exit. */
static void conc_collect(struct ktap *k, int i, pid_t pid, int rfd,
			 struct lat *lat)
{
	struct conc_report rep;
	char name[32];
	int status;
	ssize_t n;
	bool ok;
	u32 j;

	snprintf(name, sizeof(name), "process-%d", i);
	n = read(rfd, &rep, sizeof(rep));
	close(rfd);
	if (waitpid(pid, &status, 0) < 0)
		status = -1;
	ok = n == (ssize_t)sizeof(rep) && WIFEXITED(status) &&
	     !WEXITSTATUS(status) && !rep.errors && !rep.corrupt;
	if (n == (ssize_t)sizeof(rep)) {
		kt_diag(k, "%s: allocs=%u enomem=%u errors=%u corrupt=%u",
			name, rep.allocs, rep.enomem, rep.errors, rep.corrupt);
		for (j = 0; j < rep.nlat && j < CONC_ITERS; j++)
			lat_add(lat, rep.lat_us[j]);
	} else {
		kt_diag(k, "%s: no report, status 0x%x", name, status);
	}
	kt_result(k, ok, "%s", name);
}

void suite_concurrency(struct ktap *k, struct ctx *c)
{
	struct lat lat = { 0 };
	u64 free0, max_pages;
	long long used0;
	pid_t pids[CONC_PROCS];
	int pipes[CONC_PROCS][2];
	int i, nstarted;

	ctx_refresh(c);
	free0 = c->area.free_pages;
	used0 = debugfs_val(c->area.name, "used");
	/* Together the children may want more than the area: some ENOMEM. */
	max_pages = c->area.total_pages / (CONC_PROCS * CONC_HELD / 2);
	if (max_pages > 256)
		max_pages = 256;
	if (!max_pages)
		max_pages = 1;
	kt_diag(k,
		"%d processes x %d steps, up to %llu pages each, half of them exit without freeing",
		CONC_PROCS, CONC_ITERS, max_pages);

	nstarted = conc_spawn(k, c, max_pages, pids, pipes);
	for (i = 0; i < nstarted; i++)
		conc_collect(k, i, pids[i], pipes[i][0], &lat);
	kt_result(k, nstarted == CONC_PROCS, "all-processes-started");
	check_restored(k, c, free0, used0, "no-lost-or-double-counted-pages");
	kt_latency(k, NULL, &lat);
	lat_free(&lat);
}
