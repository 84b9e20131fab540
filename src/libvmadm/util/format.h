/* SPDX-License-Identifier: MIT */
/* Numbers as people read them, for messages and progress lines. */
#pragma once

#include <stdint.h>

/* Room for any format_size() result ("16777216.0 TiB" at the most). */
#define FORMAT_SIZE_MAX 32

/* A byte count in binary units: "512 B", "1.5 KiB", "10.0 MiB", "3.2 GiB",
 * "1.0 TiB" (TiB is the largest unit). Writes buf and returns it, so that a
 * call can stand as a printf argument. */
const char *format_size(uint64_t bytes, char buf[FORMAT_SIZE_MAX]);
