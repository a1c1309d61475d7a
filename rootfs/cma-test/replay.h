/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Replay sequences: text files of alloc/free/fill/verify/check steps, run
 * by "cma-test replay FILE..." and the replay suite.  The format is in
 * README.md next to this file.
 */
#ifndef _CMA_TEST_REPLAY_H
#define _CMA_TEST_REPLAY_H

#include "cmadev.h"

#define MAX_LABELS	512
#define SEQ_DIR		"/usr/share/cma-test/sequences"	/* replay suite */

struct label {
	char name[32];
	char area[CMA_DEV_NAME_LEN];
	u32 handle;
	u64 phys, size;
	u32 seed;
	bool live, filled;
};

struct replay {
	int fd;
	struct label labels[MAX_LABELS];
	size_t nlabels;
	struct area areas[MAX_AREAS];
	u64 start_free[MAX_AREAS];
	u32 nareas;
	u32 max_order;
	const struct area *win;	/* area with a window, or NULL */
	u64 win_start;		/* first page of the window, from the base */
	u64 win_pages;		/* size of the window */
	struct lat lat;
	int steps;
	bool skip;
	char msg[256];		/* first failure, or skip reason */
};

int replay_file(const char *path, struct replay *r);

#endif /* _CMA_TEST_REPLAY_H */
