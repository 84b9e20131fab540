/* SPDX-License-Identifier: MIT */
/* Cleanup attributes and ownership helpers, in the systemd/crun style. */
#pragma once

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

/* DEFINE_CLEANUP(struct archive, archive_read_free) defines
 * archive_read_freep(struct archive **p), which calls archive_read_free(*p)
 * unless *p is NULL: the one way to make a cleanup function for
 * _cleanup_(...) from a library's free function. */
#define DEFINE_CLEANUP(type, func)                                                                 \
	static inline void func##p(type **p)                                                       \
	{                                                                                          \
		if (*p)                                                                            \
			func(*p);                                                                  \
	}

static inline void freep(void *p)
{
	free(*(void **)p);
}
static inline void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
DEFINE_CLEANUP(FILE, fclose)
DEFINE_CLEANUP(DIR, closedir)

/* A NULL-terminated vector of malloc'ed strings. */
void strv_free(char **v);
DEFINE_CLEANUP(char *, strv_free)

#define _cleanup_free_	   _cleanup_(freep)
#define _cleanup_close_	   _cleanup_(closep)
#define _cleanup_fclose_   _cleanup_(fclosep)
#define _cleanup_closedir_ _cleanup_(closedirp)
#define _cleanup_json_	   _cleanup_(json_decrefp)
#define _cleanup_strv_	   _cleanup_(strv_freep)

/* Hand ownership to the caller: the cleanup attribute then sees NULL / -1. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		typeof(p) _p_ = (p);                                                               \
		(p) = NULL;                                                                        \
		_p_;                                                                               \
	})
#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int _fd_ = (fd);                                                                   \
		(fd) = -1;                                                                         \
		_fd_;                                                                              \
	})

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define streq(a, b)   (strcmp((a), (b)) == 0)
