/* SPDX-License-Identifier: MIT */
/* Unit tests of vm/list.c: fields, filters and sorting for list/lookup. */
#include <errno.h>
#include <stdlib.h>

#include "check.h"
#include "util/macros.h"
#include "vm/list.h"

static json_t *vms(void)
{
	return json_loads(
		"[{\"uuid\":\"b\",\"brand\":\"kvm\",\"ram\":512,\"alias\":\"web1\","
		"\"tags\":{\"role\":\"web\"},\"nics\":[{\"ip\":\"10.0.0.2\"}]},"
		" {\"uuid\":\"a\",\"brand\":\"joyent\",\"max_physical_memory\":128,\"alias\":\"db\","
		"\"tags\":{\"role\":\"db\"},\"autoboot\":false},"
		" {\"uuid\":\"c\",\"brand\":\"kvm\",\"ram\":64,\"alias\":\"web2\"}]",
		0, NULL);
}

static void fields(void)
{
	_cleanup_json_ json_t *list = vms();
	json_t *kvm = json_array_get(list, 0), *os = json_array_get(list, 1);
	_cleanup_free_ char *t1 = vm_field_string(kvm, "type");
	_cleanup_free_ char *t2 = vm_field_string(os, "type");
	_cleanup_free_ char *ram = vm_field_string(os, "ram");
	_cleanup_free_ char *ip = vm_field_string(kvm, "nics.0.ip");
	_cleanup_free_ char *tag = vm_field_string(kvm, "tags.role");
	_cleanup_free_ char *none = vm_field_string(kvm, "nics.5.ip");
	_cleanup_free_ char *b = vm_field_string(os, "autoboot");
	_cleanup_free_ char *obj = vm_field_string(kvm, "tags");

	CHECK_STR(t1, "KVM");
	CHECK_STR(t2, "OS");
	CHECK_STR(ram, "128"); /* a joyent VM's ram is its max_physical_memory */
	CHECK_STR(ip, "10.0.0.2");
	CHECK_STR(tag, "web");
	CHECK_STR(none, "-");
	CHECK_STR(b, "false");
	CHECK_STR(obj, "{\"role\":\"web\"}");
}

static size_t count_matching(json_t *list, char **args, int n)
{
	_cleanup_json_ json_t *filters = NULL;
	struct vm_error err = { 0 };
	json_t *vm;
	size_t i, c = 0;

	if (vm_filters_parse(args, n, &filters, &err) < 0)
		return 999;
	json_array_foreach(list, i, vm)
		c += vm_filters_match(vm, filters);
	return c;
}

static void filters(void)
{
	_cleanup_json_ json_t *list = vms();
	char *brand[] = { "brand=kvm" };
	char *re[] = { "alias=~^web[0-9]$" };
	char *both[] = { "brand=kvm", "ram=512" };
	char *tag[] = { "tags.role=db" };
	char *nothing[] = { "alias=nope" };

	CHECK(count_matching(list, brand, 1) == 2);
	CHECK(count_matching(list, re, 1) == 2);
	CHECK(count_matching(list, both, 2) == 1);
	CHECK(count_matching(list, tag, 1) == 1);
	CHECK(count_matching(list, nothing, 1) == 0);
}

static void bad_filters(void)
{
	_cleanup_json_ json_t *f = NULL;
	struct vm_error err = { 0 };
	char *noeq[] = { "brand" };
	char *badre[] = { "alias=~(" };

	CHECK(vm_filters_parse(noeq, 1, &f, &err) == -EINVAL);
	CHECK_HAS(err.msg, "expected FIELD=VALUE");
	CHECK(vm_filters_parse(badre, 1, &f, &err) == -EINVAL);
	CHECK_HAS(err.msg, "invalid regex");
}

static void sorting(void)
{
	_cleanup_json_ json_t *list = vms();
	struct vm_error err = { 0 };

	CHECK(vm_sort(list, "ram", &err) == 0);
	/* numeric, not lexical: 64 < 128 < 512 */
	CHECK_STR(json_string_value(json_object_get(json_array_get(list, 0), "uuid")), "c");
	CHECK_STR(json_string_value(json_object_get(json_array_get(list, 2), "uuid")), "b");
	CHECK(vm_sort(list, "-ram", &err) == 0);
	CHECK_STR(json_string_value(json_object_get(json_array_get(list, 0), "uuid")), "b");
	CHECK(vm_sort(list, "brand,-alias", &err) == 0);
	CHECK_STR(json_string_value(json_object_get(json_array_get(list, 0), "uuid")), "a");
	CHECK_STR(json_string_value(json_object_get(json_array_get(list, 1), "uuid")), "c");
}

int main(void)
{
	RUN(fields);
	RUN(filters);
	RUN(bad_filters);
	RUN(sorting);
	CHECK_EXIT();
}
