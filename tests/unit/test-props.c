/* SPDX-License-Identifier: MIT */
/* The property tables, lookups, MAC/IPv4 checks and PROP=VALUE parsing. */
#include <errno.h>
#include <stdlib.h>

#include "check.h"
#include "vm/props.h"

static size_t table_len(const struct vm_prop *t)
{
	size_t n = 0;

	while (t[n].name)
		n++;
	return n;
}

/* Every row is coherent: a brand, a doc line, computed rows settable by no
 * payload, ranges ordered, names unique. */
static void check_table(const struct vm_prop *t)
{
	size_t n = table_len(t);

	CHECK(n > 0);
	for (size_t i = 0; i < n; i++) {
		const struct vm_prop *p = &t[i];

		CHECK(p->flags & VM_PF_BOTH);
		CHECK(p->doc && *p->doc);
		if (p->flags & VM_PF_COMPUTED)
			CHECK(!(p->flags & (VM_PF_CREATE | VM_PF_UPDATE | VM_PF_REQUIRED)));
		else
			CHECK(p->flags & VM_PF_CREATE);
		if (p->type == VM_PT_INT)
			CHECK(p->min <= p->max);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(t[j].name, p->name) != 0);
		CHECK(vm_prop_lookup(t, p->name) == p);
	}
}

static void tables_coherent(void)
{
	check_table(vm_props);
	check_table(vm_nic_props);
	check_table(vm_disk_props);
}

static void lookup_known(void)
{
	const struct vm_prop *p;

	p = vm_prop_lookup(vm_props, "ram");
	CHECK(p && p->type == VM_PT_INT && p->min == 16 && p->max == 1048576);
	CHECK(p && (p->flags & VM_PF_KVM) && !(p->flags & VM_PF_JOYENT));
	CHECK(p && (p->flags & VM_PF_UPDATE));
	p = vm_prop_lookup(vm_props, "brand");
	CHECK(p && (p->flags & VM_PF_REQUIRED) && !(p->flags & VM_PF_UPDATE));
	p = vm_prop_lookup(vm_props, "state");
	CHECK(p && (p->flags & VM_PF_COMPUTED));
	p = vm_prop_lookup(vm_props, "datasets");
	CHECK(p && (p->flags & VM_PF_COMPUTED) && p->type == VM_PT_STRLIST);
	p = vm_prop_lookup(vm_props, "disks");
	CHECK(p && p->type == VM_PT_DISKS && (p->flags & VM_PF_BOTH) == VM_PF_KVM);
	p = vm_prop_lookup(vm_props, "delegate_dataset");
	CHECK(p && p->type == VM_PT_BOOL && (p->flags & VM_PF_BOTH) == VM_PF_JOYENT);
	p = vm_prop_lookup(vm_props, "autoboot");
	CHECK(p && p->type == VM_PT_BOOL && (p->flags & VM_PF_BOTH) == VM_PF_BOTH);
	p = vm_prop_lookup(vm_props, "uuid");
	CHECK(p && p->type == VM_PT_UUID && (p->flags & VM_PF_CREATE));
	p = vm_prop_lookup(vm_disk_props, "size");
	CHECK(p && p->min == 1 && p->max == 16LL * 1024 * 1024);
	p = vm_prop_lookup(vm_nic_props, "interface");
	CHECK(p && (p->flags & VM_PF_COMPUTED));
	p = vm_prop_lookup(vm_nic_props, "model");
	CHECK(p && (p->flags & VM_PF_BOTH) == VM_PF_KVM);
}

static void lookup_unknown(void)
{
	CHECK(vm_prop_lookup(vm_props, "foo") == NULL);
	CHECK(vm_prop_lookup(vm_props, "") == NULL);
	CHECK(vm_prop_lookup(vm_props, NULL) == NULL);
	CHECK(vm_prop_lookup(vm_props, "RAM") == NULL);
	/* nic and disk names are not top-level names */
	CHECK(vm_prop_lookup(vm_props, "mac") == NULL);
	CHECK(vm_prop_lookup(vm_nic_props, "size") == NULL);
	CHECK(vm_prop_lookup(vm_disk_props, "mac") == NULL);
}

static void brand_flags(void)
{
	CHECK(vm_brand_flag("kvm") == VM_PF_KVM);
	CHECK(vm_brand_flag("joyent") == VM_PF_JOYENT);
	CHECK(vm_brand_flag("bhyve") == 0);
	CHECK(vm_brand_flag("KVM") == 0);
	CHECK(vm_brand_flag("") == 0);
	CHECK(vm_brand_flag(NULL) == 0);
}

static void mac_addresses(void)
{
	CHECK(vm_mac_valid("52:54:00:12:34:56"));
	CHECK(vm_mac_valid("52:54:00:AB:cd:EF"));
	CHECK(vm_mac_valid("02:00:00:00:00:01"));
	CHECK(!vm_mac_valid("01:00:5e:00:00:01")); /* multicast */
	CHECK(!vm_mac_valid("ff:ff:ff:ff:ff:ff")); /* broadcast */
	CHECK(!vm_mac_valid("00:00:00:00:00:00"));
	CHECK(!vm_mac_valid("52:54:00:12:34"));
	CHECK(!vm_mac_valid("52:54:00:12:34:567"));
	CHECK(!vm_mac_valid("52-54-00-12-34-56"));
	CHECK(!vm_mac_valid("52:54:00:12:34:5g"));
	CHECK(!vm_mac_valid("5:254:00:12:34:56"));
	CHECK(!vm_mac_valid(""));
	CHECK(!vm_mac_valid(NULL));
}

static void ipv4_addresses(void)
{
	CHECK(vm_ipv4_valid("10.0.0.1"));
	CHECK(vm_ipv4_valid("255.255.255.255"));
	CHECK(!vm_ipv4_valid("10.0.0.256"));
	CHECK(!vm_ipv4_valid("10.0.0"));
	CHECK(!vm_ipv4_valid("dhcp"));
	CHECK(!vm_ipv4_valid("::1"));
	CHECK(!vm_ipv4_valid(NULL));
}

static int parse(const char *arg, char **key, json_t **value, struct vm_error *err)
{
	*key = NULL;
	*value = NULL;
	vm_error_clear(err);
	return vm_prop_parse_assignment(arg, key, value, err);
}

static void assign_int(void)
{
	struct vm_error err;
	char *key;
	json_t *v;

	CHECK(parse("ram=1024", &key, &v, &err) == 0);
	CHECK_STR(key, "ram");
	CHECK(json_is_integer(v) && json_integer_value(v) == 1024);
	free(key);
	json_decref(v);
	CHECK(parse("quota=-5", &key, &v, &err) == 0);
	CHECK(json_is_integer(v) && json_integer_value(v) == -5);
	free(key);
	json_decref(v);
}

static void assign_int_not_a_number(void)
{
	struct vm_error err;
	char *key;
	json_t *v;

	/* kept as a string: validation then names the property and the range */
	CHECK(parse("ram=1G", &key, &v, &err) == 0);
	CHECK(json_is_string(v));
	CHECK_STR(json_string_value(v), "1G");
	free(key);
	json_decref(v);
	CHECK(parse("vcpus=", &key, &v, &err) == 0);
	CHECK(json_is_string(v));
	free(key);
	json_decref(v);
	CHECK(parse("vcpus= 2", &key, &v, &err) == 0);
	CHECK(json_is_string(v));
	free(key);
	json_decref(v);
	CHECK(parse("ram=99999999999999999999999", &key, &v, &err) == 0);
	CHECK(json_is_string(v));
	free(key);
	json_decref(v);
}

static void assign_bool(void)
{
	struct vm_error err;
	char *key;
	json_t *v;

	CHECK(parse("autoboot=false", &key, &v, &err) == 0);
	CHECK_STR(key, "autoboot");
	CHECK(json_is_false(v));
	free(key);
	json_decref(v);
	CHECK(parse("autoboot=true", &key, &v, &err) == 0);
	CHECK(json_is_true(v));
	free(key);
	json_decref(v);
	CHECK(parse("autoboot=yes", &key, &v, &err) == 0);
	CHECK(json_is_string(v));
	free(key);
	json_decref(v);
}

static void assign_string(void)
{
	struct vm_error err;
	char *key;
	json_t *v;

	CHECK(parse("alias=web=01", &key, &v, &err) == 0);
	CHECK_STR(key, "alias");
	CHECK_STR(json_string_value(v), "web=01");
	free(key);
	json_decref(v);
	/* a string property stays a string even when it looks like a number */
	CHECK(parse("alias=1234", &key, &v, &err) == 0);
	CHECK(json_is_string(v));
	CHECK_STR(json_string_value(v), "1234");
	free(key);
	json_decref(v);
	CHECK(parse("alias=", &key, &v, &err) == 0);
	CHECK_STR(json_string_value(v), "");
	free(key);
	json_decref(v);
}

static void assign_unknown(void)
{
	struct vm_error err;
	char *key;
	json_t *v;

	CHECK(parse("tags.foo=bar", &key, &v, &err) == 0);
	CHECK_STR(key, "tags.foo");
	CHECK_STR(json_string_value(v), "bar");
	free(key);
	json_decref(v);
	CHECK(parse("foo=12", &key, &v, &err) == 0);
	CHECK(json_is_string(v));
	free(key);
	json_decref(v);
}

static void assign_lists_and_objects(void)
{
	struct vm_error err;
	char *key;
	json_t *v;

	CHECK(parse("resolvers=8.8.8.8,8.8.4.4", &key, &v, &err) == 0);
	CHECK(json_is_array(v) && json_array_size(v) == 2);
	CHECK_STR(json_string_value(json_array_get(v, 1)), "8.8.4.4");
	free(key);
	json_decref(v);
	CHECK(parse("resolvers=[\"1.1.1.1\"]", &key, &v, &err) == 0);
	CHECK(json_is_array(v) && json_array_size(v) == 1);
	free(key);
	json_decref(v);
	CHECK(parse("resolvers=", &key, &v, &err) == 0);
	CHECK(json_is_array(v) && json_array_size(v) == 0);
	free(key);
	json_decref(v);
	CHECK(parse("tags={\"role\":\"db\"}", &key, &v, &err) == 0);
	CHECK(json_is_object(v));
	CHECK_STR(json_string_value(json_object_get(v, "role")), "db");
	free(key);
	json_decref(v);
	/* not JSON: stays a string for validation to refuse */
	CHECK(parse("tags=role", &key, &v, &err) == 0);
	CHECK(json_is_string(v));
	free(key);
	json_decref(v);
}

static void assign_then_validate(void)
{
	struct vm_error err;
	char *key;
	json_t *v, *payload = json_object();

	CHECK(parse("ram=1G", &key, &v, &err) == 0);
	json_object_set_new(payload, key, v);
	free(key);
	CHECK(vm_validate_update(payload, "kvm", &err) == -EINVAL);
	CHECK_HAS(err.msg, "property 'ram': must be an integer from 16 to 1048576, got \"1G\"");
	json_decref(payload);
}

static void assign_bad(void)
{
	struct vm_error err;
	char *key;
	json_t *v;

	CHECK(parse("ram", &key, &v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "\"ram\": expected PROPERTY=VALUE");
	CHECK(key == NULL && v == NULL);
	CHECK(parse("=5", &key, &v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "empty property name");
	CHECK(key == NULL && v == NULL);
	CHECK(parse("alias=\xff\xfe", &key, &v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "property 'alias': value is not valid UTF-8");
	CHECK(key == NULL && v == NULL);
}

int main(void)
{
	RUN(tables_coherent);
	RUN(lookup_known);
	RUN(lookup_unknown);
	RUN(brand_flags);
	RUN(mac_addresses);
	RUN(ipv4_addresses);
	RUN(assign_int);
	RUN(assign_int_not_a_number);
	RUN(assign_bool);
	RUN(assign_string);
	RUN(assign_unknown);
	RUN(assign_lists_and_objects);
	RUN(assign_then_validate);
	RUN(assign_bad);
	CHECK_EXIT();
}
