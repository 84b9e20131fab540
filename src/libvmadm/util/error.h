/* SPDX-License-Identifier: MIT */
/*
 * The error object every fallible libvmadm call takes last.
 *
 * Functions return an int: >= 0 on success, a negative errno on failure, and
 * on failure they fill the error object with a message that says what failed,
 * on which VM or dataset, and why. The library never prints; the front ends
 * print err->msg once, at the top.
 *
 *     return vm_error_set(err, errno, "open %s", path);
 *
 * appends ": <strerror(errno)>" to the message and returns -errno.
 */
#pragma once

#include <stdarg.h>

struct vm_error {
	int code;       /* positive errno of the failure, 0 when none */
	char msg[2048]; /* human message, without a trailing newline */
};

/* Set the error to "FMT: strerror(code)" and return -code. code may be
 * given as a positive or negative errno; 0 is taken as EIO. */
int vm_error_set(struct vm_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like vm_error_set, without the strerror suffix: for failures whose reason
 * is already in the message ("unknown property 'foo'"). */
int vm_error_setx(struct vm_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepend "FMT: " to the message already set and return -err->code, so a
 * caller adds context ("receive zones/UUID-disk0") to a callee's error. */
int vm_error_prefix(struct vm_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline void vm_error_clear(struct vm_error *err)
{
	err->code = 0;
	err->msg[0] = '\0';
}
