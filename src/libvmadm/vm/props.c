/* SPDX-License-Identifier: MIT */
/*
 * The property tables: SmartOS vmadm names, with SmartOS units (ram,
 * max_physical_memory and disk sizes in MiB, quota in GiB, cpu_cap in
 * percent of one CPU). Rules that a type and a range cannot say (enums,
 * formats, cross-property rules) live in validate.c.
 */
#include "props.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdio.h>

#include "util/json.h"
#include "util/macros.h"

#define KVM VM_PF_KVM
#define JOY VM_PF_JOYENT
#define BOTH VM_PF_BOTH
#define C VM_PF_CREATE
#define U VM_PF_UPDATE
#define COMP VM_PF_COMPUTED
#define REQ VM_PF_REQUIRED

#define MIB_16TIB (16LL * 1024 * 1024)

/* clang-format off */
const struct vm_prop vm_props[] = {
	{ "uuid", VM_PT_UUID, BOTH | C, 0, 0, "the VM's UUID (default: random)" },
	{ "alias", VM_PT_STRING, BOTH | C | U, 0, 0, "a name for humans, not unique" },
	{ "brand", VM_PT_STRING, BOTH | C | REQ, 0, 0, "kvm (QEMU) or joyent (container)" },
	{ "owner_uuid", VM_PT_UUID, BOTH | C | U, 0, 0, "the owner's UUID, informational" },
	{ "state", VM_PT_STRING, BOTH | COMP, 0, 0, "running, stopped, ... (live)" },
	{ "zone_state", VM_PT_STRING, BOTH | COMP, 0, 0, "installed, running, ... (live)" },
	{ "zonepath", VM_PT_STRING, BOTH | COMP, 0, 0, "mountpoint of the VM's dataset" },
	{ "zfs_filesystem", VM_PT_STRING, BOTH | COMP, 0, 0, "the VM's dataset, zones/UUID" },
	{ "zpool", VM_PT_STRING, BOTH | C, 0, 0, "the pool; must be \"zones\"" },
	{ "pid", VM_PT_INT, BOTH | COMP, 0, INT_MAX, "pid of QEMU or of the container's init" },
	{ "create_timestamp", VM_PT_TIMESTAMP, BOTH | COMP, 0, 0, "when the VM was created" },
	{ "last_modified", VM_PT_TIMESTAMP, BOTH | COMP, 0, 0, "when the record last changed" },
	{ "transition", VM_PT_STRING, BOTH | COMP, 0, 0, "creating, deleting, receiving" },
	{ "server_uuid", VM_PT_UUID, BOTH | COMP, 0, 0, "the node the VM lives on" },
	{ "quota", VM_PT_INT, BOTH | C | U, 0, 1048576, "quota of the dataset, GiB (0: none)" },
	{ "ram", VM_PT_INT, KVM | C | U, 16, 1048576, "guest memory, MiB" },
	{ "max_physical_memory", VM_PT_INT, BOTH | C | U, 16, 2097152, "memory limit, MiB" },
	{ "vcpus", VM_PT_INT, KVM | C | U, 1, 64, "number of virtual CPUs" },
	{ "cpu_cap", VM_PT_INT, BOTH | C | U, 0, 6400, "percent of one CPU (0: none)" },
	{ "cpu_type", VM_PT_STRING, KVM | C | U, 0, 0, "QEMU CPU model, e.g. qemu64 or host" },
	{ "boot", VM_PT_STRING, KVM | C | U, 0, 0, "boot order, e.g. \"order=cd\"" },
	{ "autoboot", VM_PT_BOOL, BOTH | C | U, 0, 0, "start the VM when the node starts" },
	{ "hostname", VM_PT_STRING, BOTH | C | U, 0, 0, "the guest's hostname" },
	{ "image_uuid", VM_PT_UUID, JOY | C, 0, 0, "image of the root (none: empty)" },
	{ "customer_metadata", VM_PT_OBJECT, BOTH | C | U, 0, 0, "metadata the guest may read" },
	{ "internal_metadata", VM_PT_OBJECT, BOTH | C | U, 0, 0, "metadata for the operator" },
	{ "tags", VM_PT_OBJECT, BOTH | C | U, 0, 0, "free-form tags" },
	{ "resolvers", VM_PT_STRLIST, BOTH | C | U, 0, 0, "DNS resolvers, IP addresses" },
	{ "nics", VM_PT_NICS, BOTH | C, 0, 0, "network interfaces" },
	{ "disks", VM_PT_DISKS, KVM | C, 0, 0, "virtual disks" },
	{ "delegate_dataset", VM_PT_BOOL, JOY | C, 0, 0, "give the container zones/UUID/data" },
	{ "datasets", VM_PT_STRLIST, JOY | COMP, 0, 0, "datasets delegated to the container" },
	{ "filesystems", VM_PT_FILESYSTEMS, JOY | C, 0, 0, "host directories to mount" },
	{ "migrated_to", VM_PT_OBJECT, BOTH | COMP, 0, 0, "where this VM was migrated to" },
	{ "accel", VM_PT_STRING, KVM | COMP, 0, 0, "accelerator QEMU runs with: kvm or tcg" },
	{ "received_at", VM_PT_TIMESTAMP, BOTH | COMP, 0, 0, "when this node received the VM" },
	{ NULL, 0, 0, 0, 0, NULL },
};

const struct vm_prop vm_nic_props[] = {
	{ "mac", VM_PT_STRING, BOTH | C | U, 0, 0, "MAC xx:xx:xx:xx:xx:xx (default: random)" },
	{ "ip", VM_PT_STRING, BOTH | C | U, 0, 0, "\"dhcp\" or an IPv4 address" },
	{ "netmask", VM_PT_STRING, BOTH | C | U, 0, 0, "IPv4 netmask, needed with a static ip" },
	{ "gateway", VM_PT_STRING, BOTH | C | U, 0, 0, "IPv4 default gateway" },
	{ "nic_tag", VM_PT_STRING, BOTH | C | U, 0, 0, "the host network the nic joins" },
	{ "model", VM_PT_STRING, KVM | C | U, 0, 0, "virtio, e1000 or rtl8139" },
	{ "primary", VM_PT_BOOL, BOTH | C | U, 0, 0, "the nic holding the default route" },
	{ "vlan_id", VM_PT_INT, BOTH | C | U, 0, 4094, "802.1Q VLAN (0: untagged)" },
	{ "interface", VM_PT_STRING, BOTH | COMP, 0, 0, "net0, net1, ... by position" },
	{ NULL, 0, 0, 0, 0, NULL },
};

const struct vm_prop vm_disk_props[] = {
	{ "size", VM_PT_INT, KVM | C, 1, MIB_16TIB, "disk size, MiB" },
	{ "model", VM_PT_STRING, KVM | C, 0, 0, "virtio, ide or scsi" },
	{ "boot", VM_PT_BOOL, KVM | C, 0, 0, "the disk to boot from" },
	{ "image_uuid", VM_PT_UUID, KVM | C, 0, 0, "image the disk is cloned from" },
	{ "media", VM_PT_STRING, KVM | C, 0, 0, "disk or cdrom" },
	{ "compression", VM_PT_STRING, KVM | C, 0, 0, "off, on, lz4, gzip[-N], zstd, ..." },
	{ "block_size", VM_PT_INT, KVM | C, 512, 131072, "volume block size, bytes" },
	{ "path", VM_PT_STRING, KVM | COMP, 0, 0, "the volume's path on the node" },
	{ "zfs_filesystem", VM_PT_STRING, KVM | COMP, 0, 0, "the volume, zones/UUID-diskN" },
	{ "image_size", VM_PT_INT, KVM | COMP, 0, MIB_16TIB, "size of the image, MiB" },
	{ "refreservation", VM_PT_INT, KVM | COMP, 0, MIB_16TIB, "space reserved, MiB" },
	{ NULL, 0, 0, 0, 0, NULL },
};
/* clang-format on */

const struct vm_prop *vm_prop_lookup(const struct vm_prop *table, const char *name)
{
	if (!name)
		return NULL;
	for (const struct vm_prop *p = table; p->name; p++)
		if (streq(p->name, name))
			return p;
	return NULL;
}

unsigned vm_brand_flag(const char *brand)
{
	if (!brand)
		return 0;
	if (streq(brand, "kvm"))
		return VM_PF_KVM;
	if (streq(brand, "joyent"))
		return VM_PF_JOYENT;
	return 0;
}

bool vm_mac_valid(const char *s)
{
	unsigned first = 0, any = 0;

	if (!s || strlen(s) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2) {
			if (s[i] != ':')
				return false;
			continue;
		}
		if (!isxdigit((unsigned char)s[i]))
			return false;
		if (s[i] != '0')
			any = 1;
	}
	first = (unsigned)strtoul(s, NULL, 16) & 0xff;
	/* The low bit of the first octet marks a multicast address: QEMU
	 * and the bridge would accept it and the guest would get no traffic. */
	return any && !(first & 1);
}

bool vm_ipv4_valid(const char *s)
{
	struct in_addr a;

	return s && inet_pton(AF_INET, s, &a) == 1;
}

/* An integer in decimal, all of s, no sign games beyond a leading '-'. */
static bool parse_int(const char *s, json_int_t *ret)
{
	char *end;
	long long v;

	if (!*s || isspace((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*ret = v;
	return true;
}

/* "a,b,c" -> ["a","b","c"]; empty items are kept, for validation to refuse. */
static json_t *split_commas(const char *s)
{
	json_t *a = json_array();
	const char *p = s;

	if (!a)
		return NULL;
	if (!*s)
		return a;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);

		if (json_array_append_new(a, json_stringn(p, n)) < 0) {
			json_decref(a);
			return NULL;
		}
		if (!comma)
			return a;
		p = comma + 1;
	}
}

int vm_prop_parse_assignment(const char *arg, char **ret_key, json_t **ret_value,
			     struct vm_error *err)
{
	_cleanup_free_ char *key = NULL;
	_cleanup_json_ json_t *value = NULL;
	const struct vm_prop *p;
	const char *eq, *val;
	json_int_t i;

	eq = arg ? strchr(arg, '=') : NULL;
	if (!eq)
		return vm_error_setx(err, EINVAL, "\"%s\": expected PROPERTY=VALUE",
				     arg ? arg : "");
	if (eq == arg)
		return vm_error_setx(err, EINVAL, "\"%s\": empty property name", arg);
	key = strndup(arg, eq - arg);
	if (!key)
		return vm_error_set(err, ENOMEM, "parse \"%s\"", arg);
	val = eq + 1;

	p = vm_prop_lookup(vm_props, key);
	switch (p ? p->type : VM_PT_STRING) {
	case VM_PT_INT:
		if (parse_int(val, &i))
			value = json_integer(i);
		break;
	case VM_PT_BOOL:
		if (streq(val, "true"))
			value = json_true();
		else if (streq(val, "false"))
			value = json_false();
		break;
	case VM_PT_OBJECT:
	case VM_PT_NICS:
	case VM_PT_DISKS:
	case VM_PT_FILESYSTEMS:
		/* Only JSON can say these; a non-JSON value stays a string and
		 * validation names the property and the expected type. */
		value = json_loads(val, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
		break;
	case VM_PT_STRLIST:
		/* SmartOS takes resolvers=8.8.8.8,8.8.4.4 as well as JSON. */
		if (val[0] == '[')
			value = json_loads(val, 0, NULL);
		else
			value = split_commas(val);
		break;
	case VM_PT_STRING:
	case VM_PT_UUID:
	case VM_PT_TIMESTAMP:
		break;
	}
	if (!value)
		value = json_string(val);
	if (!value)
		return vm_error_setx(err, EINVAL, "property '%s': value is not valid UTF-8",
				     key);
	*ret_key = TAKE_PTR(key);
	*ret_value = TAKE_PTR(value);
	return 0;
}

void vm_timestamp_now(char buf[32])
{
	struct timespec ts;
	struct tm tm;
	char tmp[24];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, 32, "%s.%03ldZ", tmp, ts.tv_nsec / 1000000);
}

json_t *vm_datasets(json_t *vm)
{
	json_t *names = json_array(), *v, *disk;
	size_t i;

	if (jstr(vm, "zfs_filesystem"))
		json_array_append_new(names, json_string(jstr(vm, "zfs_filesystem")));
	json_array_foreach(json_object_get(vm, "datasets"), i, v)
		if (json_is_string(v))
			json_array_append(names, v);
	json_array_foreach(json_object_get(vm, "disks"), i, disk)
		if (jstr(disk, "zfs_filesystem"))
			json_array_append_new(names, json_string(jstr(disk, "zfs_filesystem")));
	return names;
}
