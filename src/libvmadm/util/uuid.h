/* SPDX-License-Identifier: MIT */
#pragma once
#include <stdbool.h>

#define VM_UUID_LEN 36

/* Is s a UUID in canonical lower- or upper-case 8-4-4-4-12 hex form? */
bool vm_uuid_valid(const char *s);

/* Write a new random (version 4) UUID, lower case, into out[37]. */
int vm_uuid_generate(char out[VM_UUID_LEN + 1]);
