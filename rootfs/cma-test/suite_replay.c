// SPDX-License-Identifier: GPL-2.0
/*
 * Suite replay: every *.seq file of the sequence directory, in name order,
 * each on its own open file, as one subtest per file.
 */
#include "replay.h"
#include "suite.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Subtest @path: the sequence ran (1), failed (0) or was skipped (-1). */
static void report_sequence(struct ktap *k, const char *path, int res,
			    const struct replay *r)
{
	const char *base = strrchr(path, '/') + 1;

	if (res < 0) {
		kt_skip(k, base, "%s", r->msg);
		return;
	}
	if (!res)
		kt_diag(k, "%s: %s", base, r->msg);
	else
		kt_diag(k, "%s: %d steps", base, r->steps);
	kt_result(k, res == 1, "%s", base);
}

void suite_replay(struct ktap *k, struct ctx *c)
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
		res = replay_file(files[i], r);
		for (j = 0; j < r->lat.n; j++)
			lat_add(&lat, r->lat.us[j]);
		report_sequence(k, files[i], res, r);
		lat_free(&r->lat);
		free(files[i]);
	}
	free(files);
	free(r);
	kt_latency(k, NULL, &lat);
	lat_free(&lat);
}
