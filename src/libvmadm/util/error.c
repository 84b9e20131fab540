/* SPDX-License-Identifier: MIT */
#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int normalize(int code)
{
	if (code < 0)
		code = -code;
	return code ? code : EIO;
}

int vm_error_set(struct vm_error *err, int code, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	code = normalize(code);
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	n = strlen(err->msg);
	snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(code));
	return -code;
}

int vm_error_setx(struct vm_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	err->code = normalize(code);
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -err->code;
}

int vm_error_prefix(struct vm_error *err, const char *fmt, ...)
{
	char prefix[512], old[sizeof(err->msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
	err->code = normalize(err->code);
	return -err->code;
}
