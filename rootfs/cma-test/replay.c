// SPDX-License-Identifier: GPL-2.0
/*
 * Replay sequences; see replay.h.
 */
#include "replay.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#define MAX_WORDS	16

/* One line of a sequence: its words, and its key=value options. */
struct step {
	char *argv[MAX_WORDS];
	int argc;
	const char *expect_s, *order_s, *at_s;
	int lineno;
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
	u32 i;

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
		       u64 *out)
{
	u64 num, den, span = 0;
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

static int replay_order(struct replay *r, const char *s, u32 *out)
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

/* Records the first failure of the sequence, at line @line. */
static void __printf(3, 4)
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
static u64 replay_held(struct replay *r, const char *area)
{
	u64 pages = 0;
	size_t i;

	for (i = 0; i < r->nlabels; i++)
		if (r->labels[i].live && !strcmp(r->labels[i].area, area))
			pages += page_align(r->labels[i].size) / page_size;
	return pages;
}

static int replay_check_area(struct replay *r, const char *name, int line)
{
	struct area *a = replay_area(r, name);
	u64 now, want;

	if (!a) {
		replay_fail(r, line, "check: unknown area %s", name);
		return -1;
	}
	now = area_free(r->fd, a);
	want = r->start_free[a - r->areas] - replay_held(r, name);
	if (now != want) {
		replay_fail(r, line, "check %s: %llu free pages, expected %llu",
			    name, now, want);
		return -1;
	}
	return 0;
}

/* Holds @pad pages at page @first of area @a, from label (window-pad). */
static int replay_window_pad(struct replay *r, const struct area *a,
			     u64 first, u64 pad, int lineno)
{
	struct label *l = find_label(r, "(window-pad)", true);
	int ret;

	if (!l || l->live) {
		replay_fail(r, lineno, "window: used twice");
		return -1;
	}
	ret = dev_alloc(r->fd, a->name, pad * page_size, 0, &l->handle,
			&l->phys, NULL);
	if (ret || l->phys != a->base + first * page_size) {
		if (!ret)
			dev_free(r->fd, l->handle);
		replay_fail(r, lineno, "window: pad of %llu pages: %s", pad,
			    errname(-ret));
		return -1;
	}
	l->live = true;
	l->size = pad * page_size;
	snprintf(l->area, sizeof(l->area), "%s", a->name);
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
static int replay_window(struct replay *r, const struct step *s)
{
	const char *name = s->argv[1];
	u64 phys, first, pad;
	struct area *a;
	u32 order, h;
	int ret;

	a = replay_area(r, name);
	if (!a || replay_order(r, s->order_s, &order) || order > 20) {
		replay_fail(r, s->lineno, "window: bad area or order");
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
	if (pad && replay_window_pad(r, a, first, pad, s->lineno))
		return -1;
	r->win = a;
	r->win_start = first + pad;
	r->win_pages = a->total_pages - first - pad;
	return 0;
}

/* require-free AREA: skip the sequence unless AREA was entirely free. */
static int replay_require_free(struct replay *r, const struct step *s,
			       int *ret)
{
	struct area *a = replay_area(r, s->argv[1]);

	(void)ret;
	if (!a || r->start_free[a - r->areas] != a->total_pages) {
		r->skip = true;
		snprintf(r->msg, sizeof(r->msg),
			 "area %s missing or not entirely free", s->argv[1]);
		return -1;
	}
	return 0;
}

static int replay_check(struct replay *r, const struct step *s, int *ret)
{
	(void)ret;
	return replay_check_area(r, s->argv[1], s->lineno);
}

static int replay_window_cmd(struct replay *r, const struct step *s,
			     int *ret)
{
	(void)ret;
	return replay_window(r, s);
}

/* A label for a new buffer: unknown so far, or freed. */
static struct label *replay_new_label(struct replay *r, const struct step *s)
{
	struct label *l = find_label(r, s->argv[1], true);

	if (!l || l->live) {
		replay_fail(r, s->lineno, "label %s unusable", s->argv[1]);
		return NULL;
	}
	return l;
}

/* Label @l now holds a buffer of @size bytes in @area. */
static void replay_hold(struct replay *r, struct label *l, u64 size,
			const char *area, u64 us)
{
	lat_add(&r->lat, us);
	l->live = true;
	l->filled = false;
	l->size = size;
	snprintf(l->area, sizeof(l->area), "%s", area);
}

/* The buffer of @l lies in @a, aligned to @order, and at at= if given. */
static int replay_placement(struct replay *r, const struct step *s,
			    const struct label *l, const struct area *a,
			    u64 size, u32 order)
{
	u64 at, at0;

	if (!a || !in_area(a, l->phys, page_align(size)) ||
	    l->phys % ((u64)page_size << order)) {
		replay_fail(r, s->lineno, "%s: bad placement 0x%llx",
			    s->argv[1], l->phys);
		return -1;
	}
	if (a == r->win)
		at0 = a->base + r->win_start * page_size;
	else
		at0 = a->base;
	if (s->at_s && (replay_size(r, s->at_s, a, &at) ||
			l->phys - at0 != at)) {
		replay_fail(r, s->lineno, "%s: at +0x%llx, expected at=%s",
			    s->argv[1], l->phys - at0, s->at_s);
		return -1;
	}
	return 0;
}

/* alloc LABEL AREA SIZE [order=N] [at=OFFSET] */
static int replay_alloc(struct replay *r, const struct step *s, int *ret)
{
	struct area *a = replay_area(r, s->argv[2]);
	struct label *l;
	u64 size, us;
	u32 order;

	if (replay_size(r, s->argv[3], a, &size) ||
	    replay_order(r, s->order_s, &order)) {
		replay_fail(r, s->lineno, "bad size or order");
		return -1;
	}
	l = replay_new_label(r, s);
	if (!l)
		return -1;
	*ret = dev_alloc(r->fd, s->argv[2], size, order, &l->handle, &l->phys,
			 &us);
	if (*ret)
		return 0;
	replay_hold(r, l, size, s->argv[2], us);
	return replay_placement(r, s, l, a, size, order);
}

/* dma LABEL SIZE */
static int replay_dma(struct replay *r, const struct step *s, int *ret)
{
	struct area *a = replay_area(r, DEFAULT_AREA);
	struct label *l;
	u64 size, dma, us;

	if (replay_size(r, s->argv[2], a, &size)) {
		replay_fail(r, s->lineno, "bad size");
		return -1;
	}
	l = replay_new_label(r, s);
	if (!l)
		return -1;
	*ret = dev_dma_alloc(r->fd, size, &l->handle, &dma, &l->phys, &us);
	if (!*ret)
		replay_hold(r, l, size, DEFAULT_AREA, us);
	return 0;
}

/* free LABEL */
static int replay_free(struct replay *r, const struct step *s, int *ret)
{
	struct label *l = find_label(r, s->argv[1], false);

	if (!l) {
		replay_fail(r, s->lineno, "unknown label %s", s->argv[1]);
		return -1;
	}
	/* A dead label keeps its old handle: double free. */
	*ret = dev_free(r->fd, l->handle);
	if (!*ret)
		l->live = false;
	return 0;
}

/* fill LABEL, verify LABEL: a pattern through mmap(), or check it. */
static int replay_fill_verify(struct replay *r, const struct step *s,
			      int *ret)
{
	struct label *l = find_label(r, s->argv[1], false);
	size_t len;
	void *p;
	int err;

	if (!l || !l->live) {
		replay_fail(r, s->lineno, "%s: no live label %s", s->argv[0],
			    s->argv[1]);
		return -1;
	}
	len = page_align(l->size);
	p = dev_map(r->fd, l->handle, len, &err);
	*ret = err;
	if (!p)
		return 0;
	if (s->argv[0][0] == 'f') {
		l->seed = (u32)l->phys ^ (u32)s->lineno;
		fill_pattern(p, len, l->seed);
		l->filled = true;
	} else if (!l->filled || check_pattern(p, len, l->seed) >= 0) {
		replay_fail(r, s->lineno, "verify %s: %s", s->argv[1],
			    l->filled ? "content changed" : "never filled");
		munmap(p, len);
		return -1;
	}
	if (munmap(p, len))
		*ret = -errno;
	return 0;
}

/*
 * The commands: each returns -1 when the sequence ends here (it failed
 * or is skipped), else 0 with the step's result in *ret (0 or -errno),
 * which must match expect= if @checked.
 */
static const struct replay_cmd {
	const char *name;
	int argc;
	bool checked;
	int (*run)(struct replay *r, const struct step *s, int *ret);
} replay_cmds[] = {
	{ "require-free", 2, false, replay_require_free },
	{ "check", 2, false, replay_check },
	{ "window", 2, false, replay_window_cmd },
	{ "alloc", 4, true, replay_alloc },
	{ "dma", 3, true, replay_dma },
	{ "free", 2, true, replay_free },
	{ "fill", 2, true, replay_fill_verify },
	{ "verify", 2, true, replay_fill_verify },
};

/* Splits @line into words and options; a '#' starts a comment. */
static void replay_words(char *line, int lineno, struct step *s)
{
	char *save = NULL, *tok;

	memset(s, 0, sizeof(*s));
	s->expect_s = "ok";
	s->order_s = "0";
	s->lineno = lineno;
	tok = strchr(line, '#');
	if (tok)
		*tok = '\0';
	for (tok = strtok_r(line, " \t\r\n", &save); tok && s->argc < MAX_WORDS;
	     tok = strtok_r(NULL, " \t\r\n", &save)) {
		if (!strncmp(tok, "expect=", 7))
			s->expect_s = tok + 7;
		else if (!strncmp(tok, "order=", 6))
			s->order_s = tok + 6;
		else if (!strncmp(tok, "at=", 3))
			s->at_s = tok + 3;
		else
			s->argv[s->argc++] = tok;
	}
}

/* The failure of a step whose result @ret is not its expect=. */
static void replay_unexpected(struct replay *r, const struct step *s,
			      int ret)
{
	size_t n;
	int i;

	replay_fail(r, s->lineno, "%s", s->argv[0]);
	for (i = 1; i < s->argc; i++) {
		n = strlen(r->msg);
		snprintf(r->msg + n, sizeof(r->msg) - n, " %s", s->argv[i]);
	}
	n = strlen(r->msg);
	snprintf(r->msg + n, sizeof(r->msg) - n, " gave %s, expected %s",
		 errname(ret < 0 ? -ret : ret), s->expect_s);
}

static int replay_line(struct replay *r, char *line, int lineno)
{
	const struct replay_cmd *cmd = NULL;
	int expect = 0, ret = 0;
	struct step s;
	size_t i;

	replay_words(line, lineno, &s);
	if (!s.argc)
		return 0;
	if (parse_errname(s.expect_s, &expect)) {
		replay_fail(r, lineno, "bad expect=%s", s.expect_s);
		return -1;
	}
	r->steps++;
	for (i = 0; i < ARRAY_SIZE(replay_cmds) && !cmd; i++)
		if (!strcmp(s.argv[0], replay_cmds[i].name) &&
		    s.argc == replay_cmds[i].argc)
			cmd = &replay_cmds[i];
	if (!cmd) {
		replay_fail(r, lineno, "cannot parse \"%s\" with %d words",
			    s.argv[0], s.argc);
		return -1;
	}
	if (cmd->run(r, &s, &ret))
		return -1;
	if (cmd->checked && ret != -expect) {
		replay_unexpected(r, &s, ret);
		return -1;
	}
	return 0;
}

/* The areas and their free pages at the start of the sequence. */
static int replay_snapshot(struct replay *r)
{
	struct cma_dev_info info;
	u32 i;

	if (dev_info(r->fd, &info)) {
		snprintf(r->msg, sizeof(r->msg), "CMA_DEV_IOC_INFO failed");
		return -1;
	}
	r->max_order = info.max_align_order;
	for (i = 0; i < info.nr_areas && i < MAX_AREAS; i++) {
		if (dev_area(r->fd, i, &r->areas[i]))
			break;
		r->start_free[i] = r->areas[i].free_pages;
	}
	r->nareas = i;
	return 0;
}

/* Frees what is left, then every area must be back where it was. */
static void replay_cleanup(struct replay *r, int lineno)
{
	u32 i;

	for (i = 0; i < r->nlabels; i++)
		if (r->labels[i].live && !dev_free(r->fd, r->labels[i].handle))
			r->labels[i].live = false;
	if (!r->msg[0])
		for (i = 0; i < r->nareas; i++)
			if (replay_check_area(r, r->areas[i].name, lineno))
				break;
}

/*
 * Runs one sequence file on its own open file.  Returns 1 on success,
 * 0 on failure and -1 if skipped; r->msg tells why.
 */
int replay_file(const char *path, struct replay *r)
{
	char line[512];
	int lineno = 0;
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
	if (!replay_snapshot(r)) {
		while (fgets(line, sizeof(line), f)) {
			lineno++;
			if (replay_line(r, line, lineno))
				break;
		}
	}
	replay_cleanup(r, lineno);
	close(r->fd);
	fclose(f);
	if (r->skip)
		return -1;
	return r->msg[0] ? 0 : 1;
}
