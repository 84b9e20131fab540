/* SPDX-License-Identifier: MIT */
/*
 * VM records as JSON: what vmadm stores must load back equal, byte-stable
 * under sorted keys, with unicode, large integers and nested metadata intact;
 * vm_validate_record accepts whole records (with computed properties) and
 * refuses damaged ones.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "vm/props.h"

#define DUMP_FLAGS (JSON_SORT_KEYS | JSON_INDENT(2))

static json_t *kvm_record(void)
{
	json_error_t e;
	json_t *v = json_pack_ex(
		&e, 0,
		"{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:I, s:I, s:I,"
		" s:i, s:i, s:b, s:s, s:s, s:[s,s], s:{s:s, s:s}, s:{s:s}, s:{s:b, s:i},"
		" s:[{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:i}],"
		" s:[{s:s, s:s, s:I, s:b, s:s, s:s, s:s, s:I, s:I}, {s:s, s:s, s:I, s:s, s:i}]}",
		"uuid", "7c71e11b-871d-40d7-a1a8-25b6900785e3", "alias", "web01", "brand", "kvm",
		"state", "running", "zone_state", "running", "zonepath",
		"/zones/7c71e11b-871d-40d7-a1a8-25b6900785e3", "zfs_filesystem",
		"zones/7c71e11b-871d-40d7-a1a8-25b6900785e3", "zpool", "zones", "pid", 4242,
		"create_timestamp", "2026-11-27T05:39:01.000Z", "last_modified",
		"2026-11-27T05:40:12.345Z", "server_uuid", "0d2b2a16-7a2e-11ee-9d3a-3b7a8f4c0001",
		"ram", (json_int_t)1024, "max_physical_memory", (json_int_t)1280, "quota",
		(json_int_t)10, "vcpus", 2, "cpu_cap", 0, "autoboot", 1, "accel", "tcg", "boot",
		"order=cd", "resolvers", "8.8.8.8", "8.8.4.4", "customer_metadata", "user-script",
		"#!/bin/sh\necho \"hi\" > /tmp/x\n", "json", "{\"nested\":[1,2,{\"k\":\"v\"}]}",
		"internal_metadata", "origin", "imgadm", "tags", "web", 1, "tier", 3, "nics", "mac",
		"52:54:00:12:34:56", "ip", "10.0.0.5", "netmask", "255.255.255.0", "gateway",
		"10.0.0.1", "nic_tag", "admin", "interface", "net0", "primary", 1, "vlan_id", 0,
		"disks", "path", "/zones/7c71e11b-871d-40d7-a1a8-25b6900785e3-disk0", "model",
		"virtio", "size", (json_int_t)10240, "boot", 1, "image_uuid",
		"0d2b2a16-7a2e-11ee-9d3a-3b7a8f4c0002", "zfs_filesystem",
		"zones/7c71e11b-871d-40d7-a1a8-25b6900785e3-disk0", "compression", "lz4",
		"image_size", (json_int_t)8192, "refreservation", (json_int_t)10240, "path",
		"/zones/7c71e11b-871d-40d7-a1a8-25b6900785e3-disk1", "model", "scsi", "size",
		(json_int_t)16 * 1024 * 1024, "media", "disk", "block_size", 4096);

	if (!v) {
		fprintf(stderr, "json_pack: %s\n", e.text);
		exit(2);
	}
	return v;
}

static json_t *joyent_record(void)
{
	json_error_t e;
	json_t *v = json_loads(
		"{\"uuid\":\"5f3c1a2b-0000-4000-8000-00000000abcd\",\"brand\":\"joyent\","
		"\"alias\":\"db\",\"state\":\"stopped\",\"zone_state\":\"installed\","
		"\"zonepath\":\"/zones/5f3c1a2b-0000-4000-8000-00000000abcd\","
		"\"zfs_filesystem\":\"zones/5f3c1a2b-0000-4000-8000-00000000abcd\","
		"\"zpool\":\"zones\",\"pid\":0,\"transition\":\"receiving\","
		"\"create_timestamp\":\"2026-11-27T05:39:01Z\","
		"\"last_modified\":\"2026-11-27T05:39:01.5+01:00\","
		"\"image_uuid\":\"0d2b2a16-7a2e-11ee-9d3a-3b7a8f4c0001\","
		"\"delegate_dataset\":true,"
		"\"datasets\":[\"zones/5f3c1a2b-0000-4000-8000-00000000abcd/data\"],"
		"\"max_physical_memory\":512,\"quota\":5,\"hostname\":\"db\","
		"\"filesystems\":[{\"source\":\"/srv\",\"target\":\"/srv\",\"type\":\"lofs\","
		"\"options\":[\"ro\"]}],"
		"\"nics\":[{\"mac\":\"52:54:00:ab:cd:ef\",\"ip\":\"dhcp\",\"interface\":\"net0\","
		"\"primary\":true,\"nic_tag\":\"admin\"}],"
		"\"migrated_to\":{\"host\":\"node2\",\"at\":\"2026-11-27T06:00:00Z\","
		"\"detail\":{\"bytes\":123456789012}},"
		"\"customer_metadata\":{},\"internal_metadata\":{},\"tags\":{}}",
		0, &e);

	if (!v) {
		fprintf(stderr, "json_loads: %s\n", e.text);
		exit(2);
	}
	return v;
}

/* dump sorted, load, compare; dump again and compare the bytes */
static void round_trip(json_t *v, size_t flags)
{
	char *s1 = json_dumps(v, flags), *s2 = NULL;
	json_error_t e;
	json_t *back = s1 ? json_loads(s1, JSON_REJECT_DUPLICATES, &e) : NULL;

	CHECK(s1 != NULL);
	CHECK(back != NULL);
	CHECK(json_equal(v, back));
	if (back)
		s2 = json_dumps(back, flags);
	CHECK_STR(s1, s2);
	free(s1);
	free(s2);
	json_decref(back);
}

static void kvm_round_trip(void)
{
	json_t *v = kvm_record();

	round_trip(v, DUMP_FLAGS);
	round_trip(v, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(v);
}

static void joyent_round_trip(void)
{
	json_t *v = joyent_record();

	round_trip(v, DUMP_FLAGS);
	round_trip(v, JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	json_decref(v);
}

static void sorted_keys_order(void)
{
	json_t *v = kvm_record();
	char *s = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT);

	CHECK(s && strstr(s, "\"accel\"") && strstr(s, "\"zpool\""));
	CHECK(s && strstr(s, "\"accel\"") < strstr(s, "\"alias\""));
	CHECK(s && strstr(s, "\"vcpus\"") < strstr(s, "\"zone_state\""));
	free(s);
	json_decref(v);
}

static void unicode_alias(void)
{
	json_t *v = kvm_record(), *back;
	const char *alias = "w\xc3\xa9" "b \xe2\x98\x83 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80";
	char *ascii;
	struct vm_error err;

	json_object_set_new(v, "alias", json_string(alias));
	round_trip(v, DUMP_FLAGS);
	/* escaped to ASCII (the rocket as a surrogate pair) and back */
	ascii = json_dumps(v, JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	CHECK(ascii && strcasestr(ascii, "\\ud83d\\ude80"));
	back = ascii ? json_loads(ascii, 0, NULL) : NULL;
	CHECK(back && json_equal(v, back));
	CHECK_STR(json_string_value(json_object_get(back, "alias")), alias);
	CHECK(vm_validate_record(v, &err) == 0);
	free(ascii);
	json_decref(back);
	json_decref(v);
}

static void large_integers(void)
{
	json_t *v = json_object(), *back;
	char *s;

	json_object_set_new(v, "max", json_integer(INT64_MAX));
	json_object_set_new(v, "min", json_integer(INT64_MIN));
	json_object_set_new(v, "above_2_53", json_integer(9007199254740993LL));
	json_object_set_new(v, "disk_bytes", json_integer(16LL << 40));
	s = json_dumps(v, JSON_SORT_KEYS);
	CHECK(s && strstr(s, "9223372036854775807"));
	CHECK(s && strstr(s, "9007199254740993"));
	back = s ? json_loads(s, 0, NULL) : NULL;
	CHECK(back && json_equal(v, back));
	CHECK(json_integer_value(json_object_get(back, "above_2_53")) == 9007199254740993LL);
	CHECK(json_integer_value(json_object_get(back, "min")) == INT64_MIN);
	CHECK(json_is_integer(json_object_get(back, "disk_bytes")));
	free(s);
	json_decref(back);
	json_decref(v);
}

/* a number beyond int64 is refused by the parser, with the place */
static void integer_overflow_refused(void)
{
	struct vm_error err;
	json_t *v = NULL;

	CHECK(vm_validate_json_text("{\"ram\":\n 99999999999999999999}", &v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "invalid JSON at line 2");
	CHECK(v == NULL);
}

static void nested_metadata(void)
{
	json_t *v = joyent_record(), *md = json_object(), *back;
	char *s;

	json_object_set_new(md, "script", json_string("line1\nline2\t\"q\" \\ end"));
	json_object_set_new(md, "empty", json_string(""));
	json_object_set_new(md, "num", json_real(1.5));
	json_object_set_new(md, "flag", json_false());
	json_object_set_new(md, "deep", json_string("{\"a\":{\"b\":[1,{\"c\":null}]}}"));
	json_object_set_new(v, "customer_metadata", md);
	round_trip(v, DUMP_FLAGS);
	s = json_dumps(v, JSON_SORT_KEYS);
	back = s ? json_loads(s, 0, NULL) : NULL;
	CHECK_STR(json_string_value(json_object_get(json_object_get(back, "customer_metadata"),
						    "script")),
		  "line1\nline2\t\"q\" \\ end");
	/* migrated_to may nest; customer_metadata is flat, and this one is */
	CHECK(json_integer_value(json_object_get(
		      json_object_get(json_object_get(back, "migrated_to"), "detail"), "bytes")) ==
	      123456789012LL);
	free(s);
	json_decref(back);
	json_decref(v);
}

static void records_validate(void)
{
	struct vm_error err;
	json_t *k = kvm_record(), *j = joyent_record();

	vm_error_clear(&err);
	CHECK(vm_validate_record(k, &err) == 0);
	CHECK_STR(err.msg, "");
	CHECK(vm_validate_record(j, &err) == 0);
	CHECK_STR(err.msg, "");
	/* a stored record is not a create payload: computed props are in it */
	CHECK(vm_validate_create(k, NULL, &err) == -EINVAL);
	CHECK_HAS(err.msg, "is set by vmadm");
	json_decref(k);
	json_decref(j);
}

static void record_text_round_trip(void)
{
	struct vm_error err;
	json_t *k = kvm_record(), *back = NULL;
	char *s = json_dumps(k, DUMP_FLAGS);

	CHECK(vm_validate_json_text(s, &back, &err) == 0);
	CHECK(back && json_equal(k, back));
	CHECK(back && vm_validate_record(back, &err) == 0);
	free(s);
	json_decref(back);
	json_decref(k);
}

static void record_damaged(void)
{
	struct vm_error err;
	json_t *v;

	v = kvm_record();
	json_object_set_new(v, "create_timestamp", json_string("yesterday"));
	CHECK(vm_validate_record(v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "property 'create_timestamp': must be an ISO 8601 timestamp");
	json_decref(v);

	v = kvm_record();
	json_object_del(v, "uuid");
	CHECK(vm_validate_record(v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "missing required property 'uuid'");
	json_decref(v);

	v = kvm_record();
	json_object_set_new(v, "bogus", json_true());
	CHECK(vm_validate_record(v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "unknown property 'bogus'");
	json_decref(v);

	v = joyent_record();
	json_object_set_new(v, "pid", json_string("12"));
	CHECK(vm_validate_record(v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "property 'pid': must be an integer");
	json_decref(v);

	v = joyent_record();
	json_object_set_new(v, "disks", json_array());
	CHECK(vm_validate_record(v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "property 'disks' is not valid for brand joyent");
	json_decref(v);

	v = joyent_record();
	json_object_del(v, "brand");
	CHECK(vm_validate_record(v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "missing required property 'brand'");
	json_decref(v);
}

int main(void)
{
	RUN(kvm_round_trip);
	RUN(joyent_round_trip);
	RUN(sorted_keys_order);
	RUN(unicode_alias);
	RUN(large_integers);
	RUN(integer_overflow_refused);
	RUN(nested_metadata);
	RUN(records_validate);
	RUN(record_text_round_trip);
	RUN(record_damaged);
	CHECK_EXIT();
}
