/* SPDX-License-Identifier: MIT */
#include "util/format.h"

#include <stdio.h>

#include "util/macros.h"

const char *format_size(uint64_t bytes, char buf[FORMAT_SIZE_MAX])
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = bytes;
	size_t u = 0;

	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, FORMAT_SIZE_MAX, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, FORMAT_SIZE_MAX, "%.1f %s", v, units[u]);
	return buf;
}
