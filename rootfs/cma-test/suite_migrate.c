// SPDX-License-Identifier: GPL-2.0
/*
 * Suite migrate: fill memory with movable pages until our own pages hold
 * most of the area, then allocate the whole area; that has to migrate every
 * one of our pages out of it, and each must keep its contents.
 */
#include "suite.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statfs.h>

#define MIG_CHUNK	(1024u * 1024u)
#define PM_PRESENT	BIT_ULL(63)
#define PM_PFN_MASK	(BIT_ULL(55) - 1)

struct mig_chunk {
	void *anon;		/* anonymous chunk, or NULL */
	int memfd;		/* shmem page cache chunk, or -1 */
	u32 seed;
	long in_area;		/* pages in the area right after the fill */
};

/* The state of one run of the suite. */
struct mig {
	struct mig_chunk *chunks;
	size_t n, maxchunks;
	long long cma_free0, floor_kb, nballast;
	bool stopped_low;	/* the fill stopped at MemAvailable's floor */
	u64 free0, want, target, ours;
	int pagemap;
	void *pagebuf;
	struct lat lat;
};

/*
 * Counts the pages of [addr, addr + len) that are present at a PFN inside
 * area @a, from /proc/self/pagemap (bits 0-54 PFN, bit 63 present; see
 * Documentation/admin-guide/mm/pagemap.rst).  Returns -errno on error.
 */
static long pagemap_in_area(int pagemap, const void *addr, size_t len,
			    const struct area *a)
{
	size_t n = len / page_size, i;
	u64 *ent = xmalloc(n * sizeof(*ent));
	off_t off = (off_t)((uintptr_t)addr / page_size * sizeof(*ent));
	long count = 0, nopfn = 0;

	if (pread(pagemap, ent, n * sizeof(*ent), off) !=
	    (ssize_t)(n * sizeof(*ent))) {
		free(ent);
		return errno ? -errno : -EIO;
	}
	for (i = 0; i < n; i++) {
		u64 pfn = ent[i] & PM_PFN_MASK;

		if (!(ent[i] & PM_PRESENT))
			continue;
		if (!pfn)
			nopfn++;
		if (pfn_in_area(a, pfn))
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

/* Anonymous memory, touched page by page: each page its own pattern. */
static int mig_fill_anon(struct mig_chunk *m, u32 seed)
{
	size_t off;

	m->anon = mmap(NULL, MIG_CHUNK, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m->anon == MAP_FAILED) {
		m->anon = NULL;
		return -errno;
	}
	for (off = 0; off < MIG_CHUNK; off += page_size)
		fill_pattern((char *)m->anon + off, page_size,
			     seed + (u32)(off / page_size));
	return 0;
}

/* Shmem page cache: a memfd written page by page with pwrite(). */
static int mig_fill_file(struct mig_chunk *m, u32 seed, void *pagebuf)
{
	size_t off;

	m->memfd = memfd_create("cma-test-migrate", MFD_CLOEXEC);
	if (m->memfd < 0)
		return -errno;
	for (off = 0; off < MIG_CHUNK; off += page_size) {
		fill_pattern(pagebuf, page_size,
			     seed + (u32)(off / page_size));
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

static int mig_fill(struct mig_chunk *m, u32 seed, bool file, void *pagebuf)
{
	m->seed = seed;
	m->anon = NULL;
	m->memfd = -1;
	m->in_area = 0;
	if (!file)
		return mig_fill_anon(m, seed);
	return mig_fill_file(m, seed, pagebuf);
}

/* Returns the number of corrupted pages. */
static size_t mig_verify(struct mig_chunk *m, void *pagebuf)
{
	size_t off, bad = 0;

	for (off = 0; off < MIG_CHUNK; off += page_size) {
		const void *p = (char *)m->anon + off;
		u32 seed = m->seed + (u32)(off / page_size);

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

/*
 * What the suite needs from the system: the CMA counters of /proc/meminfo
 * and /proc/self/pagemap.  Returns 0, or -1 with the suite skipped.
 */
static int mig_open(struct ktap *k, struct mig *m, long long *cma_total,
		    long long *mem_total)
{
	struct rlimit nofile;

	*cma_total = meminfo_kb("CmaTotal");
	m->cma_free0 = meminfo_kb("CmaFree");
	*mem_total = meminfo_kb("MemTotal");
	if (*cma_total <= 0 || m->cma_free0 < 0 || *mem_total <= 0) {
		snprintf(k->skip_reason, sizeof(k->skip_reason),
			 "no CmaTotal/CmaFree in /proc/meminfo");
		return -1;
	}
	/* One memfd per shmem chunk: a 3 GiB board needs more than 1024. */
	if (!getrlimit(RLIMIT_NOFILE, &nofile) &&
	    nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	m->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (m->pagemap < 0) {
		snprintf(k->skip_reason, sizeof(k->skip_reason),
			 "/proc/self/pagemap: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* How far to fill, and where to stop; reported as diagnostics. */
static void mig_plan(struct ktap *k, struct ctx *c, struct mig *m,
		     long long cma_total, long long mem_total)
{
	struct statfs sfs;
	u64 minfree = 0;

	ctx_refresh(c);
	m->free0 = c->area.free_pages;
	m->want = area_max_alloc(c);
	/* Stop filling once our pages hold 7/8 of the area's free pages. */
	m->target = m->free0 - m->free0 / 8;
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
	m->floor_kb = (long long)minfree + 2048;
	if (m->floor_kb < 4096)
		m->floor_kb = 4096;
	kt_diag(k,
		"MemTotal=%lld kB CmaTotal=%lld kB CmaFree=%lld kB area %s free_pages=%llu target alloc=%llu bytes",
		mem_total, cma_total, m->cma_free0, c->area.name, m->free0,
		m->want);

	m->maxchunks = (size_t)(mem_total / (MIG_CHUNK / 1024)) + 1;
	m->chunks = xmalloc(m->maxchunks * sizeof(*m->chunks));
	m->pagebuf = xmalloc(page_size);
}

/*
 * Fill memory with movable pages, alternating anonymous memory and shmem
 * page cache, until our own pages hold most of the area or memory outside
 * CMA runs low.  Where each page landed is read from /proc/self/pagemap,
 * so the proof does not depend on CmaFree (which misses CMA pages parked on
 * per-cpu lists).  The page allocator only dips into CMA for movable pages
 * once about half of the free memory is CMA, so most of memory has to be
 * filled.  Chunks with no page in the area are "ballast": they are released
 * before the big allocation so that the pages in the area have somewhere to
 * migrate to.
 */
static void mig_fill_memory(struct ktap *k, struct ctx *c, struct mig *m)
{
	size_t nanon = 0, nfile = 0;
	long long cma_free;
	u64 t0 = now_ns();
	int ret;
	long cnt;

	while (m->n < m->maxchunks && m->ours < m->target) {
		struct mig_chunk *mc = &m->chunks[m->n];
		long long mem_free = meminfo_kb("MemFree");
		long long avail = meminfo_kb("MemAvailable");

		cma_free = meminfo_kb("CmaFree");
		if (mem_free - cma_free < m->floor_kb)
			break;
		/*
		 * MemFree counts pages a user allocation may not take: on a
		 * HIGHMEM board, lowmem_reserve keeps tens of MiB of lowmem from
		 * highmem-capable allocations once HighMem is full.  MemAvailable
		 * subtracts those reserves; below the floor the next chunk could
		 * wake the OOM killer.
		 */
		if (avail >= 0 && avail < m->floor_kb) {
			m->stopped_low = true;
			break;
		}
		ret = mig_fill(mc, (u32)m->n * 0x10001u + 7, m->n & 1,
			       m->pagebuf);
		if (ret) {
			kt_diag(k, "fill chunk %zu: %s", m->n, errname(-ret));
			break;
		}
		cnt = mig_in_area(mc, m->pagemap, &c->area);
		if (cnt < 0) {
			kt_diag(k, "pagemap of chunk %zu: %s", m->n,
				errname((int)-cnt));
			cnt = 0;
		}
		mc->in_area = cnt;
		m->ours += (u64)cnt;
		if (!cnt)
			m->nballast++;
		if (mc->anon)
			nanon++;
		else
			nfile++;
		m->n++;
	}
	kt_diag(k,
		"filled %zu MiB (%zu anon, %zu shmem file) in %llu ms; CmaFree %lld -> %lld kB, MemFree %lld kB, MemAvailable %lld kB%s",
		m->n, nanon, nfile, (now_ns() - t0) / 1000000, m->cma_free0,
		meminfo_kb("CmaFree"), meminfo_kb("MemFree"),
		meminfo_kb("MemAvailable"),
		m->stopped_low ? " (stopped: MemAvailable at the floor)" : "");
}

/* The allocation has to migrate everything we put into the area. */
static int mig_alloc_area(struct ktap *k, struct ctx *c, struct mig *m,
			  u32 *h, u64 *phys)
{
	int ret = -ENOMEM, attempt;
	u64 us;

	for (attempt = 1; attempt <= 3; attempt++) {
		ret = dev_alloc(c->fd, c->area.name, m->want, 0, h, phys, &us);
		if (!ret)
			break;
		lat_add(&m->lat, us);
		kt_diag(k, "attempt %d: alloc %llu bytes: %s after %llu us",
			attempt, m->want, errname(-ret), us);
	}
	if (!ret) {
		lat_add(&m->lat, us);
		kt_diag(k,
			"allocated %llu bytes at 0x%llx in %llu us (attempt %d); CmaFree now %lld kB",
			m->want, *phys, us, attempt, meminfo_kb("CmaFree"));
	}
	kt_result(k, !ret, "alloc-whole-area");
	return ret;
}

/* Our pages still inside the allocated range [phys, phys + want). */
static u64 mig_left_in_range(struct ctx *c, struct mig *m, u64 phys)
{
	struct area got = c->area;
	u64 left = 0;
	size_t i;
	long cnt;

	got.base = phys;
	got.size = m->want;
	for (i = 0; i < m->n; i++) {
		if (!m->chunks[i].in_area)
			continue;
		cnt = mig_in_area(&m->chunks[i], m->pagemap, &got);
		if (cnt > 0)
			left += (u64)cnt;
	}
	return left;
}

/*
 * Every page of ours that was in the area must have been migrated out of
 * the allocated range and must still hold its pattern.
 */
static void mig_check_moved(struct ktap *k, struct ctx *c, struct mig *m,
			    int ret, u64 phys)
{
	size_t i, bad = 0;
	u64 left = 0;

	if (!ret)
		left = mig_left_in_range(c, m, phys);
	for (i = 0; i < m->n; i++)
		if (m->chunks[i].in_area)
			bad += mig_verify(&m->chunks[i], m->pagebuf);
	if (ret) {
		kt_skip(k, "moved-pages-left-area", "the allocation failed");
	} else {
		if (left)
			kt_diag(k, "%llu of our pages still in the allocated range",
				left);
		kt_result(k, m->ours && !left, "moved-pages-left-area");
	}
	if (bad)
		kt_diag(k, "%zu corrupted pages", bad);
	if (!m->ours)
		kt_diag(k, "none of our pages were in the area: nothing was migrated");
	kt_result(k, m->ours && !bad, "moved-pages-intact");
}

static void mig_release_all(struct mig *m)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		mig_release(&m->chunks[i]);
	free(m->chunks);
	free(m->pagebuf);
	close(m->pagemap);
}

void suite_migrate(struct ktap *k, struct ctx *c)
{
	long long cma_total, mem_total;
	struct mig m = { 0 };
	u64 phys = 0;
	size_t i;
	int ret;
	u32 h;

	if (mig_open(k, &m, &cma_total, &mem_total))
		return;
	mig_plan(k, c, &m, cma_total, mem_total);
	mig_fill_memory(k, c, &m);

	/* "Mostly occupied": our pages hold at least half of the free area. */
	kt_diag(k,
		"pagemap: %llu of our pages lie in area %s (%llu pages free at the start, %llu%%)",
		m.ours, c->area.name, m.free0,
		m.free0 ? m.ours * 100 / m.free0 : 0);
	kt_result(k, m.free0 && m.ours * 2 >= m.free0,
		  "cma-occupied-by-movable-pages");

	for (i = 0; i < m.n; i++)
		if (!m.chunks[i].in_area)
			mig_release(&m.chunks[i]);
	kt_diag(k, "released %lld MiB of ballast; CmaFree now %lld kB, MemFree %lld kB",
		m.nballast, meminfo_kb("CmaFree"), meminfo_kb("MemFree"));

	ret = mig_alloc_area(k, c, &m, &h, &phys);
	mig_check_moved(k, c, &m, ret, phys);
	if (!ret) {
		ret = dev_free(c->fd, h);
		if (ret)
			kt_diag(k, "free: %s", errname(-ret));
	}
	mig_release_all(&m);
	check_restored(k, c, m.free0, -1, "area-restored");
	kt_latency(k, NULL, &m.lat);
	lat_free(&m.lat);
}
