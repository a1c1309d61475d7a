// SPDX-License-Identifier: GPL-2.0
/*
 * The KTAP report of "cma-test suite"; see ktap.h.
 */
#include "ktap.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void kt_init(struct ktap *k)
{
	memset(k, 0, sizeof(*k));
	k->out = open_memstream(&k->buf, &k->len);
	if (!k->out) {
		perror("open_memstream");
		exit(1);
	}
}

/* A diagnostic line of the suite; CMA_TEST_VERBOSE copies it to stderr. */
void kt_diag(struct ktap *k, const char *fmt, ...)
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

/* The next subtest, named by @fmt, passed if @ok; returns @ok. */
bool kt_result(struct ktap *k, bool ok, const char *fmt, ...)
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

/* The next subtest, @name, skipped for the reason @fmt. */
void kt_skip(struct ktap *k, const char *name, const char *fmt, ...)
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

void kt_latency(struct ktap *k, const char *what, struct lat *l)
{
	if (!l->n) {
		kt_diag(k, "latency_us%s%s n=0", what ? " " : "",
			what ? what : "");
		return;
	}
	lat_sort(l);
	kt_diag(k, "latency_us%s%s min=%llu median=%llu max=%llu n=%zu",
		what ? " " : "", what ? what : "",
		l->us[0], l->us[l->n / 2], l->us[l->n - 1], l->n);
}

/* Prints the finished suite as subtest @num; returns true if it passed. */
bool kt_finish(struct ktap *k, int num, const char *name)
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
