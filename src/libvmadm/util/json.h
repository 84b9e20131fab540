/* SPDX-License-Identifier: MIT */
/* Small readers of jansson values that the whole library shares. */
#pragma once

#include <jansson.h>
#include <string.h>
#include <sys/types.h>

/* The string member key of object o, borrowed from o; NULL when o is not an
 * object, has no such member, or the member is not a string. */
static inline const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* The index of the first string s in array list, or -1 (members that are
 * not strings never match; a list that is not an array has none). */
static inline ssize_t jstrv_index(const json_t *list, const char *s)
{
	json_t *x;
	size_t i;

	json_array_foreach (list, i, x)
		if (json_is_string(x) && strcmp(json_string_value(x), s) == 0)
			return (ssize_t)i;
	return -1;
}
