/* SPDX-License-Identifier: MIT */
#include "list.h"

#include <errno.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "util/fs.h"
#include "util/macros.h"

json_t *vm_field(json_t *vm, const char *field, json_t **scratch)
{
	_cleanup_free_ char *copy = strdup(field);
	char *save = NULL, *part;
	json_t *cur = vm;

	json_decref(*scratch);
	*scratch = NULL;
	if (streq(field, "type")) {
		const char *brand = json_string_value(json_object_get(vm, "brand"));
		*scratch = json_string(brand && streq(brand, "kvm") ? "KVM" : "OS");
		return *scratch;
	}
	if (streq(field, "ram") && !json_object_get(vm, "ram"))
		return json_object_get(vm, "max_physical_memory");
	if (!copy)
		return NULL;
	for (part = strtok_r(copy, ".", &save); part && cur; part = strtok_r(NULL, ".", &save)) {
		if (json_is_object(cur))
			cur = json_object_get(cur, part);
		else if (json_is_array(cur)) {
			char *end;
			unsigned long idx = strtoul(part, &end, 10);
			cur = *end ? NULL : json_array_get(cur, idx);
		} else
			cur = NULL;
	}
	return cur;
}

char *vm_field_string(json_t *vm, const char *field)
{
	_cleanup_json_ json_t *scratch = NULL;
	json_t *v = vm_field(vm, field, &scratch);

	if (!v || json_is_null(v))
		return strdup("-");
	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_integer(v))
		return strdup_printf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
	if (json_is_real(v))
		return strdup_printf("%g", json_real_value(v));
	if (json_is_boolean(v))
		return strdup(json_is_true(v) ? "true" : "false");
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

int vm_filters_parse(char **args, int n, json_t **ret, struct vm_error *err)
{
	_cleanup_json_ json_t *filters = json_array();

	for (int i = 0; i < n; i++) {
		const char *eq = strchr(args[i], '=');
		_cleanup_free_ char *field = NULL;
		bool re;

		if (!eq || eq == args[i])
			return vm_error_setx(err, EINVAL, "bad filter \"%s\": expected FIELD=VALUE",
					     args[i]);
		field = strndup(args[i], eq - args[i]);
		re = eq[1] == '~';
		if (re) {
			regex_t rx;
			if (regcomp(&rx, eq + 2, REG_EXTENDED | REG_NOSUB) != 0)
				return vm_error_setx(err, EINVAL, "bad filter \"%s\": invalid regex",
						     args[i]);
			regfree(&rx);
		}
		json_array_append_new(filters, json_pack("{s:s, s:s, s:b}", "field", field,
							 "value", re ? eq + 2 : eq + 1, "regex",
							 re));
	}
	*ret = TAKE_PTR(filters);
	return 0;
}

bool vm_filters_match(json_t *vm, json_t *filters)
{
	json_t *f;
	size_t i;

	json_array_foreach(filters, i, f) {
		const char *field = json_string_value(json_object_get(f, "field"));
		const char *want = json_string_value(json_object_get(f, "value"));
		_cleanup_free_ char *have = vm_field_string(vm, field);

		if (json_is_true(json_object_get(f, "regex"))) {
			regex_t rx;
			bool m;
			if (regcomp(&rx, want, REG_EXTENDED | REG_NOSUB) != 0)
				return false;
			m = regexec(&rx, have, 0, NULL, 0) == 0;
			regfree(&rx);
			if (!m)
				return false;
		} else if (!streq(have, want))
			return false;
	}
	return true;
}

static const char *sort_keys;

static int compare_field(json_t *a, json_t *b, const char *field)
{
	_cleanup_json_ json_t *sa = NULL, *sb = NULL;
	json_t *va = vm_field(a, field, &sa), *vb = vm_field(b, field, &sb);

	if (json_is_number(va) && json_is_number(vb)) {
		double x = json_number_value(va), y = json_number_value(vb);
		return x < y ? -1 : x > y;
	}
	{
		_cleanup_free_ char *x = vm_field_string(a, field), *y = vm_field_string(b, field);
		return strcmp(x, y);
	}
}

static int compare_vms(const void *pa, const void *pb)
{
	json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
	_cleanup_free_ char *keys = strdup(sort_keys);
	char *save = NULL;

	for (char *k = strtok_r(keys, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
		bool desc = k[0] == '-';
		int c = compare_field(a, b, desc ? k + 1 : k);
		if (c)
			return desc ? -c : c;
	}
	return 0;
}

int vm_sort(json_t *vms, const char *keys, struct vm_error *err)
{
	size_t n = json_array_size(vms);
	_cleanup_free_ json_t **items = calloc(n ? n : 1, sizeof(*items));

	if (!items)
		return vm_error_set(err, ENOMEM, "sort");
	for (size_t i = 0; i < n; i++)
		items[i] = json_incref(json_array_get(vms, i));
	sort_keys = keys;
	qsort(items, n, sizeof(*items), compare_vms);
	json_array_clear(vms);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(vms, items[i]);
	return 0;
}
