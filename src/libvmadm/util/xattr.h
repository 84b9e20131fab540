/* SPDX-License-Identifier: MIT */
/* Extended attributes (user.*, security.*, trusted.*, POSIX ACLs) of a
 * path, not following a final symlink: copy them, compare them. */
#pragma once

#include <stdbool.h>

#include "error.h"

/* Give dst every attribute src has, with the same value. Attributes dst
 * has and src lacks stay. A filesystem without attributes on either side
 * is success when src has none. */
int xattr_copy(const char *src, const char *dst, struct vm_error *err);

/* Do a and b carry the same set of attributes with the same values?
 * Anything unreadable counts as a difference. */
bool xattr_equal(const char *a, const char *b);
