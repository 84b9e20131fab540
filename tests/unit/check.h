/* SPDX-License-Identifier: MIT */
/*
 * A minimal unit-test harness: each TEST is a function; CHECK records a
 * failure with file, line and the expression; RUN prints one "ok - NAME" or
 * "not ok - NAME: WHY" line per test, which tests/run counts.
 */
#pragma once

#include <stdio.h>
#include <string.h>

static int check_failed_total;
static int check_current_failed;
static char check_why[512];

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond) && !check_current_failed) {                                    \
			check_current_failed = 1;                                          \
			snprintf(check_why, sizeof(check_why), "%s:%d: %s", __FILE__,      \
				 __LINE__, #cond);                                         \
		}                                                                          \
	} while (0)

#define CHECK_STR(a, b)                                                                    \
	do {                                                                               \
		const char *_a = (a), *_b = (b);                                           \
		if ((!_a || !_b || strcmp(_a, _b) != 0) && !check_current_failed) {       \
			check_current_failed = 1;                                          \
			snprintf(check_why, sizeof(check_why), "%s:%d: \"%s\" != \"%s\"",  \
				 __FILE__, __LINE__, _a ? _a : "(null)", _b ? _b : "(null)");\
		}                                                                          \
	} while (0)

/* The string a contains b. */
#define CHECK_HAS(a, b)                                                                    \
	do {                                                                               \
		const char *_a = (a), *_b = (b);                                           \
		if ((!_a || !strstr(_a, _b)) && !check_current_failed) {                   \
			check_current_failed = 1;                                          \
			snprintf(check_why, sizeof(check_why), "%s:%d: \"%s\" lacks \"%s\"", \
				 __FILE__, __LINE__, _a ? _a : "(null)", _b);              \
		}                                                                          \
	} while (0)

#define RUN(fn)                                                                            \
	do {                                                                               \
		check_current_failed = 0;                                                  \
		fn();                                                                      \
		if (check_current_failed) {                                                \
			check_failed_total++;                                              \
			printf("not ok - %s: %s\n", #fn, check_why);                       \
		} else                                                                     \
			printf("ok - %s\n", #fn);                                          \
		fflush(stdout);                                                            \
	} while (0)

#define CHECK_EXIT() return check_failed_total ? 1 : 0
