/* SPDX-License-Identifier: MIT */
/* Small readers of jansson values that the whole library shares. */
#pragma once

#include <jansson.h>

/* The string member key of object o, borrowed from o; NULL when o is not an
 * object, has no such member, or the member is not a string. */
static inline const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}
