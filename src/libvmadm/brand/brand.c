/* SPDX-License-Identifier: MIT */
#include "brand.h"

#include <string.h>

static const struct vm_brand_ops *const brands[] = { &kvm_brand_ops, &joyent_brand_ops };

const struct vm_brand_ops *vm_brand_ops_by_name(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof(brands) / sizeof(brands[0]); i++)
		if (strcmp(brands[i]->name, name) == 0)
			return brands[i];
	return NULL;
}
