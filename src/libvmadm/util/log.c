/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static vm_log_handler handler;
static void *handler_data;

void vm_log_set_handler(vm_log_handler fn, void *userdata)
{
	handler = fn;
	handler_data = userdata;
}

void vm_log(int level, const char *fmt, ...)
{
	char line[4096];
	va_list ap;

	if (!handler)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	handler(level, line, handler_data);
}
