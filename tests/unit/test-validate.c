/* SPDX-License-Identifier: MIT */
/*
 * vm_validate_create / vm_validate_update / vm_validate_json_text: each bad
 * payload must be refused with -EINVAL and a message naming the property
 * path; the good kvm and joyent payloads must pass.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "vm/props.h"

#define IMG "0d2b2a16-7a2e-11ee-9d3a-3b7a8f4c0001"
#define UUID1 "7c71e11b-871d-40d7-a1a8-25b6900785e3"
#define MAC1 "52:54:00:12:34:56"
#define MAC2 "52:54:00:ab:cd:ef"

static json_t *load(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &e);

	if (!v) {
		fprintf(stderr, "test payload is not JSON (%s): %s\n", e.text, text);
		exit(2);
	}
	return v;
}

struct bad_case {
	const char *name;
	const char *brand; /* the -b brand, or NULL */
	const char *payload;
	const char *msg; /* a part of the message that must appear */
};

/* Run one named case the way RUN does, printing ok / not ok. */
#define RUN_CASE(label, body)                                                              \
	do {                                                                               \
		check_current_failed = 0;                                                  \
		body;                                                                      \
		if (check_current_failed) {                                                \
			check_failed_total++;                                              \
			printf("not ok - %s: %s\n", label, check_why);                     \
		} else                                                                     \
			printf("ok - %s\n", label);                                        \
		fflush(stdout);                                                            \
	} while (0)

static void expect_fail(int (*fn)(json_t *, const char *, struct vm_error *),
			const struct bad_case *bc)
{
	struct vm_error err;
	json_t *p = load(bc->payload);
	int r;

	vm_error_clear(&err);
	r = fn(p, bc->brand, &err);
	json_decref(p);
	CHECK(r == -EINVAL);
	CHECK(err.code == EINVAL);
	CHECK_HAS(err.msg, bc->msg);
}

static const struct bad_case create_bad[] = {
	{ "ram-negative", NULL, "{\"brand\":\"kvm\",\"ram\":-5}",
	  "property 'ram': must be an integer from 16 to 1048576, got -5" },
	{ "ram-string", NULL, "{\"brand\":\"kvm\",\"ram\":\"1024\"}",
	  "property 'ram': must be an integer from 16 to 1048576, got \"1024\"" },
	{ "ram-real", NULL, "{\"brand\":\"kvm\",\"ram\":1024.5}",
	  "property 'ram': must be an integer from 16 to 1048576, got 1024.5" },
	{ "ram-too-big", NULL, "{\"brand\":\"kvm\",\"ram\":1048577}",
	  "property 'ram': must be an integer from 16 to 1048576, got 1048577" },
	{ "ram-joyent", NULL, "{\"brand\":\"joyent\",\"ram\":1024}",
	  "property 'ram' is not valid for brand joyent" },
	{ "vcpus-zero", NULL, "{\"brand\":\"kvm\",\"vcpus\":0}",
	  "property 'vcpus': must be an integer from 1 to 64, got 0" },
	{ "vcpus-65", NULL, "{\"brand\":\"kvm\",\"vcpus\":65}", "property 'vcpus'" },
	{ "vcpus-joyent", NULL, "{\"brand\":\"joyent\",\"vcpus\":2}",
	  "property 'vcpus' is not valid for brand joyent" },
	{ "quota-negative", NULL, "{\"brand\":\"joyent\",\"quota\":-1}",
	  "property 'quota': must be an integer from 0 to 1048576, got -1" },
	{ "max-physical-memory-small", NULL, "{\"brand\":\"joyent\",\"max_physical_memory\":8}",
	  "property 'max_physical_memory': must be an integer from 16" },
	{ "cpu-cap-big", NULL, "{\"brand\":\"joyent\",\"cpu_cap\":7000}", "property 'cpu_cap'" },
	{ "unknown", NULL, "{\"brand\":\"kvm\",\"foo\":1}", "unknown property 'foo'" },
	{ "unknown-tags-dot", NULL, "{\"brand\":\"kvm\",\"tags.foo\":\"bar\"}",
	  "unknown property 'tags.foo'" },
	{ "disks-joyent", NULL, "{\"brand\":\"joyent\",\"disks\":[{\"size\":1024}]}",
	  "property 'disks' is not valid for brand joyent" },
	{ "image-uuid-kvm", NULL, "{\"brand\":\"kvm\",\"image_uuid\":\"" IMG "\"}",
	  "property 'image_uuid' is not valid for brand kvm" },
	{ "state", NULL, "{\"brand\":\"kvm\",\"state\":\"running\"}",
	  "property 'state' is set by vmadm and cannot be given" },
	{ "zone-state", NULL, "{\"brand\":\"kvm\",\"zone_state\":\"running\"}",
	  "property 'zone_state' is set by vmadm" },
	{ "zonepath", NULL, "{\"brand\":\"kvm\",\"zonepath\":\"/zones/x\"}",
	  "property 'zonepath' is set by vmadm" },
	{ "zfs-filesystem", NULL, "{\"brand\":\"kvm\",\"zfs_filesystem\":\"zones/x\"}",
	  "property 'zfs_filesystem' is set by vmadm" },
	{ "pid", NULL, "{\"brand\":\"kvm\",\"pid\":1}", "property 'pid' is set by vmadm" },
	{ "create-timestamp", NULL,
	  "{\"brand\":\"kvm\",\"create_timestamp\":\"2026-01-01T00:00:00.000Z\"}",
	  "property 'create_timestamp' is set by vmadm" },
	{ "last-modified", NULL, "{\"brand\":\"kvm\",\"last_modified\":\"x\"}",
	  "property 'last_modified' is set by vmadm" },
	{ "transition", NULL, "{\"brand\":\"kvm\",\"transition\":\"creating\"}",
	  "property 'transition' is set by vmadm" },
	{ "server-uuid", NULL, "{\"brand\":\"kvm\",\"server_uuid\":\"" UUID1 "\"}",
	  "property 'server_uuid' is set by vmadm" },
	{ "datasets", NULL, "{\"brand\":\"joyent\",\"datasets\":[\"zones/x/data\"]}",
	  "property 'datasets' is set by vmadm" },
	{ "migrated-to", NULL, "{\"brand\":\"kvm\",\"migrated_to\":{}}",
	  "property 'migrated_to' is set by vmadm" },
	{ "accel", NULL, "{\"brand\":\"kvm\",\"accel\":\"tcg\"}",
	  "property 'accel' is set by vmadm" },
	{ "uuid-bad", NULL, "{\"brand\":\"kvm\",\"uuid\":\"abc\"}",
	  "property 'uuid': not a valid UUID: \"abc\"" },
	{ "uuid-number", NULL, "{\"brand\":\"kvm\",\"uuid\":5}",
	  "property 'uuid': not a valid UUID: 5" },
	{ "uuid-short", NULL,
	  "{\"brand\":\"kvm\",\"uuid\":\"7c71e11b-871d-40d7-a1a8-25b6900785e\"}",
	  "property 'uuid': not a valid UUID" },
	{ "brand-missing", NULL, "{\"ram\":1024}", "missing required property 'brand'" },
	{ "brand-bhyve", NULL, "{\"brand\":\"bhyve\"}",
	  "property 'brand': unknown brand \"bhyve\" (valid: kvm, joyent)" },
	{ "brand-number", NULL, "{\"brand\":5}", "property 'brand': must be a string, got 5" },
	{ "brand-arg-bhyve", "bhyve", "{}",
	  "property 'brand': unknown brand \"bhyve\" (valid: kvm, joyent)" },
	{ "brand-arg-mismatch", "kvm", "{\"brand\":\"joyent\"}",
	  "property 'brand': payload has \"joyent\", validating for brand kvm" },
	{ "payload-array", NULL, "[]", "payload must be a JSON object, got an array" },
	{ "payload-string", NULL, "\"x\"", "payload must be a JSON object, got a string" },
	{ "autoboot-string", NULL, "{\"brand\":\"kvm\",\"autoboot\":\"yes\"}",
	  "property 'autoboot': must be true or false, got \"yes\"" },
	{ "delegate-dataset-string", NULL, "{\"brand\":\"joyent\",\"delegate_dataset\":\"true\"}",
	  "property 'delegate_dataset': must be true or false" },
	{ "delegate-dataset-kvm", NULL, "{\"brand\":\"kvm\",\"delegate_dataset\":true}",
	  "property 'delegate_dataset' is not valid for brand kvm" },
	{ "zpool-data", NULL, "{\"brand\":\"kvm\",\"zpool\":\"data\"}",
	  "property 'zpool': must be \"zones\"" },
	{ "alias-number", NULL, "{\"brand\":\"kvm\",\"alias\":7}",
	  "property 'alias': must be a string, got 7" },
	{ "alias-newline", NULL, "{\"brand\":\"kvm\",\"alias\":\"a\\nb\"}",
	  "property 'alias': must not contain control characters" },
	{ "hostname-bad", NULL, "{\"brand\":\"joyent\",\"hostname\":\"bad_host!\"}",
	  "property 'hostname': not a valid host name" },
	{ "hostname-dash", NULL, "{\"brand\":\"joyent\",\"hostname\":\"-web\"}",
	  "property 'hostname'" },
	{ "boot-bad", NULL, "{\"brand\":\"kvm\",\"boot\":\"order=z\"}",
	  "property 'boot': must be like \"order=cd\"" },
	{ "boot-joyent", NULL, "{\"brand\":\"joyent\",\"boot\":\"order=c\"}",
	  "property 'boot' is not valid for brand joyent" },
	{ "cpu-type-comma", NULL, "{\"brand\":\"kvm\",\"cpu_type\":\"qemu64,+vmx\"}",
	  "property 'cpu_type': not a QEMU CPU model name" },
	{ "customer-metadata-array", NULL, "{\"brand\":\"kvm\",\"customer_metadata\":[1]}",
	  "property 'customer_metadata': must be an object, got [1]" },
	{ "customer-metadata-nested", NULL,
	  "{\"brand\":\"kvm\",\"customer_metadata\":{\"ok\":\"1\",\"x\":{\"y\":1}}}",
	  "property 'customer_metadata.x': must be a string, number or boolean, got {\"y\":1}" },
	{ "internal-metadata-null", NULL, "{\"brand\":\"kvm\",\"internal_metadata\":{\"k\":null}}",
	  "property 'internal_metadata.k': must be a string, number or boolean, got null" },
	{ "tags-string", NULL, "{\"brand\":\"kvm\",\"tags\":\"a=b\"}",
	  "property 'tags': must be an object" },
	{ "resolvers-number", NULL, "{\"brand\":\"kvm\",\"resolvers\":[\"8.8.8.8\",5]}",
	  "property 'resolvers[1]': must be a string, got 5" },
	{ "resolvers-name", NULL, "{\"brand\":\"kvm\",\"resolvers\":[\"dns.google\"]}",
	  "property 'resolvers[0]': not an IP address, got \"dns.google\"" },
	{ "resolvers-string", NULL, "{\"brand\":\"kvm\",\"resolvers\":\"8.8.8.8\"}",
	  "property 'resolvers': must be an array of strings" },
	{ "nics-object", NULL, "{\"brand\":\"kvm\",\"nics\":{}}",
	  "property 'nics': must be an array of nic objects" },
	{ "nics-element-string", NULL, "{\"brand\":\"kvm\",\"nics\":[\"net0\"]}",
	  "property 'nics[0]': must be an object, got \"net0\"" },
	{ "nic-mac-short", NULL, "{\"brand\":\"kvm\",\"nics\":[{\"mac\":\"52:54:00:12:34\"}]}",
	  "property 'nics[0].mac': not a unicast MAC address" },
	{ "nic-mac-multicast", NULL,
	  "{\"brand\":\"kvm\",\"nics\":[{\"mac\":\"01:00:5e:00:00:01\"}]}",
	  "property 'nics[0].mac': not a unicast MAC address" },
	{ "nic-mac-zero", NULL, "{\"brand\":\"kvm\",\"nics\":[{\"mac\":\"00:00:00:00:00:00\"}]}",
	  "property 'nics[0].mac'" },
	{ "nic-mac-dashes", NULL, "{\"brand\":\"kvm\",\"nics\":[{\"mac\":\"52-54-00-12-34-56\"}]}",
	  "property 'nics[0].mac'" },
	{ "nic-ip-bad", NULL,
	  "{\"brand\":\"kvm\",\"nics\":[{\"ip\":\"dhcp\"},{\"ip\":\"10.0.0.256\","
	  "\"netmask\":\"255.0.0.0\"}]}",
	  "property 'nics[1].ip': must be \"dhcp\" or an IPv4 address, got \"10.0.0.256\"" },
	{ "nic-netmask-holes", NULL,
	  "{\"brand\":\"kvm\",\"nics\":[{\"ip\":\"10.0.0.5\",\"netmask\":\"255.0.255.0\"}]}",
	  "property 'nics[0].netmask': not an IPv4 netmask" },
	{ "nic-gateway-bad", NULL, "{\"brand\":\"kvm\",\"nics\":[{\"gateway\":\"gw\"}]}",
	  "property 'nics[0].gateway': not an IPv4 address" },
	{ "nic-static-no-netmask", NULL, "{\"brand\":\"kvm\",\"nics\":[{\"ip\":\"10.0.0.5\"}]}",
	  "nics[0]: ip 10.0.0.5 needs a netmask" },
	{ "nic-model-joyent", NULL, "{\"brand\":\"joyent\",\"nics\":[{\"model\":\"virtio\"}]}",
	  "property 'nics[0].model' is not valid for brand joyent" },
	{ "nic-model-pcnet", NULL, "{\"brand\":\"kvm\",\"nics\":[{\"model\":\"pcnet\"}]}",
	  "property 'nics[0].model': must be one of virtio, e1000, rtl8139, got \"pcnet\"" },
	{ "nic-vlan-4095", NULL, "{\"brand\":\"kvm\",\"nics\":[{\"vlan_id\":4095}]}",
	  "property 'nics[0].vlan_id': must be an integer from 0 to 4094, got 4095" },
	{ "nic-primary-string", NULL, "{\"brand\":\"kvm\",\"nics\":[{\"primary\":\"1\"}]}",
	  "property 'nics[0].primary': must be true or false" },
	{ "nic-interface", NULL, "{\"brand\":\"kvm\",\"nics\":[{\"interface\":\"net0\"}]}",
	  "property 'nics[0].interface' is set by vmadm" },
	{ "nic-unknown", NULL, "{\"brand\":\"kvm\",\"nics\":[{},{\"ips\":[]}]}",
	  "unknown property 'nics[1].ips'" },
	{ "nic-tag-empty", NULL, "{\"brand\":\"kvm\",\"nics\":[{\"nic_tag\":\"\"}]}",
	  "property 'nics[0].nic_tag'" },
	{ "nic-duplicate-mac", NULL,
	  "{\"brand\":\"kvm\",\"nics\":[{\"mac\":\"" MAC1 "\"},{\"mac\":\"52:54:00:12:34:56\"}]}",
	  "property 'nics[1].mac': duplicate MAC 52:54:00:12:34:56, also in nics[0]" },
	{ "nic-duplicate-mac-case", NULL,
	  "{\"brand\":\"kvm\",\"nics\":[{\"mac\":\"52:54:00:ab:cd:ef\"},"
	  "{\"mac\":\"52:54:00:AB:CD:EF\"}]}",
	  "property 'nics[1].mac': duplicate MAC" },
	{ "nic-two-primaries", NULL,
	  "{\"brand\":\"kvm\",\"nics\":[{\"primary\":true},{\"primary\":true}]}",
	  "property 'nics': more than one nic has primary=true" },
	{ "disks-object", NULL, "{\"brand\":\"kvm\",\"disks\":{\"size\":1}}",
	  "property 'disks': must be an array of disk objects" },
	{ "disks-element-number", NULL, "{\"brand\":\"kvm\",\"disks\":[{\"size\":1},7]}",
	  "property 'disks[1]': must be an object, got 7" },
	{ "disk-model-nvme", NULL,
	  "{\"brand\":\"kvm\",\"disks\":[{\"size\":1024},{\"size\":1024,\"model\":\"nvme\"}]}",
	  "property 'disks[1].model': must be one of virtio, ide, scsi, got \"nvme\"" },
	{ "disk-no-size", NULL, "{\"brand\":\"kvm\",\"disks\":[{\"model\":\"virtio\"}]}",
	  "disks[0]: needs size or image_uuid" },
	{ "disk-second-no-size", NULL,
	  "{\"brand\":\"kvm\",\"disks\":[{\"size\":10},{\"boot\":false}]}",
	  "disks[1]: needs size or image_uuid" },
	{ "disk-two-boot", NULL,
	  "{\"brand\":\"kvm\",\"disks\":[{\"size\":10,\"boot\":true},{\"size\":10,\"boot\":true}]}",
	  "more than one disk has boot=true" },
	{ "disk-size-zero", NULL, "{\"brand\":\"kvm\",\"disks\":[{\"size\":0}]}",
	  "property 'disks[0].size': must be an integer from 1 to 16777216, got 0" },
	{ "disk-size-17tib", NULL, "{\"brand\":\"kvm\",\"disks\":[{\"size\":17825792}]}",
	  "property 'disks[0].size': must be an integer from 1 to 16777216" },
	{ "disk-size-string", NULL, "{\"brand\":\"kvm\",\"disks\":[{\"size\":\"10G\"}]}",
	  "property 'disks[0].size': must be an integer from 1 to 16777216, got \"10G\"" },
	{ "disk-block-size-odd", NULL,
	  "{\"brand\":\"kvm\",\"disks\":[{\"size\":10,\"block_size\":1000}]}",
	  "property 'disks[0].block_size': must be a power of two, got 1000" },
	{ "disk-block-size-small", NULL,
	  "{\"brand\":\"kvm\",\"disks\":[{\"size\":10,\"block_size\":256}]}",
	  "property 'disks[0].block_size': must be an integer from 512 to 131072" },
	{ "disk-media-floppy", NULL,
	  "{\"brand\":\"kvm\",\"disks\":[{\"size\":10,\"media\":\"floppy\"}]}",
	  "property 'disks[0].media': must be one of disk, cdrom, got \"floppy\"" },
	{ "disk-compression", NULL,
	  "{\"brand\":\"kvm\",\"disks\":[{\"size\":10,\"compression\":\"brotli\"}]}",
	  "property 'disks[0].compression': must be one of off, on, lz4" },
	{ "disk-image-uuid-bad", NULL, "{\"brand\":\"kvm\",\"disks\":[{\"image_uuid\":\"nope\"}]}",
	  "property 'disks[0].image_uuid': not a valid UUID: \"nope\"" },
	{ "disk-path", NULL, "{\"brand\":\"kvm\",\"disks\":[{\"size\":10,\"path\":\"/dev/x\"}]}",
	  "property 'disks[0].path' is set by vmadm and cannot be given" },
	{ "disk-image-size", NULL,
	  "{\"brand\":\"kvm\",\"disks\":[{\"size\":10,\"image_size\":10}]}",
	  "property 'disks[0].image_size' is set by vmadm" },
	{ "disk-unknown", NULL, "{\"brand\":\"kvm\",\"disks\":[{\"size\":10,\"foo\":1}]}",
	  "unknown property 'disks[0].foo'" },
	{ "disk-boot-string", NULL,
	  "{\"brand\":\"kvm\",\"disks\":[{\"size\":10,\"boot\":\"yes\"}]}",
	  "property 'disks[0].boot': must be true or false" },
	{ "filesystems-relative", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"/srv\",\"target\":\"srv\"}]}",
	  "property 'filesystems[0].target': must be an absolute path" },
	{ "filesystems-dotdot", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"/srv\",\"target\":\"/a/../..\"}]}",
	  "property 'filesystems[0].target'" },
	{ "filesystems-no-source", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"target\":\"/srv\"}]}",
	  "filesystems[0]: needs source and target" },
	{ "filesystems-unknown", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"/a\",\"target\":\"/b\","
	  "\"raw\":1}]}",
	  "unknown property 'filesystems[0].raw'" },
	{ "filesystems-options", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"/a\",\"target\":\"/b\","
	  "\"options\":\"ro\"}]}",
	  "property 'filesystems[0].options': must be an array of strings" },
	{ "filesystems-kvm", NULL, "{\"brand\":\"kvm\",\"filesystems\":[]}",
	  "property 'filesystems' is not valid for brand kvm" },
	/* a type that is not a bind mount of a host path or memory: a host
	 * device, host kernel state, a network mount */
	{ "filesystems-type-ext4", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"/dev/sda1\","
	  "\"target\":\"/b\",\"type\":\"ext4\"}]}",
	  "property 'filesystems[0].type': must be one of lofs, bind, tmpfs, got \"ext4\"" },
	{ "filesystems-type-proc", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"proc\","
	  "\"target\":\"/p\",\"type\":\"proc\"}]}",
	  "property 'filesystems[0].type': must be one of lofs, bind, tmpfs" },
	{ "filesystems-option-rbind", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"/a\",\"target\":\"/b\","
	  "\"options\":[\"ro\",\"rbind\"]}]}",
	  "property 'filesystems[0].options[1]': must be one of ro, rw, nodev" },
	{ "filesystems-option-size-lofs", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"/a\",\"target\":\"/b\","
	  "\"options\":[\"size=1m\"]}]}",
	  "property 'filesystems[0].options[0]'" },
	{ "filesystems-option-size-bad", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"tmpfs\",\"target\":\"/b\","
	  "\"type\":\"tmpfs\",\"options\":[\"size=1m,uid=0\"]}]}",
	  "property 'filesystems[0].options[0]'" },
	{ "filesystems-source-relative", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"srv\",\"target\":\"/b\"}]}",
	  "property 'filesystems[0].source': must be an absolute path without '..'" },
	{ "filesystems-source-dotdot", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"/srv/../etc\","
	  "\"target\":\"/b\",\"type\":\"bind\"}]}",
	  "property 'filesystems[0].source': must be an absolute path without '..'" },
	/* one lxc.mount.entry line: a blank would start the next field */
	{ "filesystems-source-blank", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"/a b\",\"target\":\"/b\"}]}",
	  "property 'filesystems[0].source': must not hold blanks" },
	{ "filesystems-target-newline", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"/a\","
	  "\"target\":\"/b\\n/etc\"}]}",
	  "property 'filesystems[0].target': must not hold blanks" },
	{ "filesystems-target-dot", NULL,
	  "{\"brand\":\"joyent\",\"filesystems\":[{\"source\":\"/a\",\"target\":\"/b/./..\"}]}",
	  "property 'filesystems[0].target': must be an absolute path without '..'" },
};

static const char *kvm_good =
	"{\"brand\":\"kvm\",\"alias\":\"web01\",\"uuid\":\"" UUID1 "\",\"zpool\":\"zones\","
	"\"ram\":1024,\"max_physical_memory\":1280,\"vcpus\":2,\"cpu_cap\":200,\"quota\":20,"
	"\"autoboot\":false,\"hostname\":\"web01.example.com\",\"cpu_type\":\"qemu64\","
	"\"boot\":\"order=c,once=d\",\"resolvers\":[\"8.8.8.8\",\"2001:4860:4860::8888\"],"
	"\"customer_metadata\":{\"user-script\":\"#!/bin/sh\\necho hi\",\"n\":1,\"b\":true},"
	"\"internal_metadata\":{},\"tags\":{\"role\":\"web\"},\"owner_uuid\":\"" IMG "\","
	"\"disks\":[{\"image_uuid\":\"" IMG "\",\"boot\":true,\"model\":\"virtio\","
	"\"compression\":\"lz4\",\"size\":10240},"
	"{\"size\":20480,\"model\":\"scsi\",\"block_size\":8192,\"media\":\"disk\"},"
	"{\"size\":1,\"model\":\"ide\"}],"
	"\"nics\":[{\"mac\":\"" MAC1 "\",\"ip\":\"10.0.0.5\",\"netmask\":\"255.255.255.0\","
	"\"gateway\":\"10.0.0.1\",\"nic_tag\":\"admin\",\"model\":\"virtio\",\"primary\":true,"
	"\"vlan_id\":0},{\"ip\":\"dhcp\",\"nic_tag\":\"external\",\"model\":\"e1000\","
	"\"vlan_id\":42}]}";

static const char *joyent_good =
	"{\"brand\":\"joyent\",\"alias\":\"db\",\"image_uuid\":\"" IMG "\","
	"\"delegate_dataset\":true,\"max_physical_memory\":512,\"quota\":10,\"cpu_cap\":100,"
	"\"autoboot\":true,\"hostname\":\"db\",\"resolvers\":[\"1.1.1.1\"],"
	"\"filesystems\":[{\"source\":\"/srv/data\",\"target\":\"/data\",\"type\":\"lofs\","
	"\"options\":[\"nodevice\",\"ro\"]}],"
	"\"nics\":[{\"mac\":\"" MAC2 "\",\"ip\":\"192.168.7.9\",\"netmask\":\"255.255.255.0\","
	"\"nic_tag\":\"admin\",\"primary\":true}],"
	"\"customer_metadata\":{\"root_authorized_keys\":\"ssh-ed25519 AAAA\"}}";

static void expect_ok(int (*fn)(json_t *, const char *, struct vm_error *), const char *brand,
		      const char *text)
{
	struct vm_error err;
	json_t *p = load(text);
	int r;

	vm_error_clear(&err);
	r = fn(p, brand, &err);
	json_decref(p);
	CHECK_STR(err.msg, "");
	CHECK(r == 0);
}

static void create_good_kvm(void) { expect_ok(vm_validate_create, NULL, kvm_good); }
static void create_good_kvm_with_b(void) { expect_ok(vm_validate_create, "kvm", kvm_good); }
static void create_good_joyent(void) { expect_ok(vm_validate_create, NULL, joyent_good); }

static void create_good_minimal(void)
{
	expect_ok(vm_validate_create, NULL, "{\"brand\":\"joyent\"}");
	expect_ok(vm_validate_create, NULL, "{\"brand\":\"kvm\"}");
	/* -b names the brand, so the payload need not */
	expect_ok(vm_validate_create, "joyent", "{\"alias\":\"x\"}");
	/* joyent without image: an empty root */
	expect_ok(vm_validate_create, NULL, "{\"brand\":\"joyent\",\"nics\":[{\"ip\":\"dhcp\"}]}");
}

/* Every computed top-level property is refused at create, by the table. */
static void create_refuses_all_computed(void)
{
	for (const struct vm_prop *p = vm_props; p->name; p++) {
		struct vm_error err;
		json_t *pl;
		char want[128];
		int r;

		if (!(p->flags & VM_PF_COMPUTED))
			continue;
		pl = json_pack("{s:s, s:s}", "brand", p->flags & VM_PF_KVM ? "kvm" : "joyent",
			       p->name, "x");
		vm_error_clear(&err);
		r = vm_validate_create(pl, NULL, &err);
		json_decref(pl);
		snprintf(want, sizeof(want), "property '%s' is set by vmadm", p->name);
		CHECK(r == -EINVAL);
		CHECK_HAS(err.msg, want);
	}
}

/* The payload is not changed by validation. */
static void create_leaves_payload(void)
{
	json_t *p = load(kvm_good), *copy = json_deep_copy(p);
	struct vm_error err;

	CHECK(vm_validate_create(p, NULL, &err) == 0);
	CHECK(json_equal(p, copy));
	json_decref(p);
	json_decref(copy);
}

static void create_null_payload(void)
{
	struct vm_error err;

	CHECK(vm_validate_create(NULL, NULL, &err) == -EINVAL);
	CHECK_HAS(err.msg, "payload");
}

static const struct bad_case update_bad[] = {
	{ "update-brand", "kvm", "{\"brand\":\"joyent\"}", "property 'brand' cannot be updated" },
	{ "update-uuid", "kvm", "{\"uuid\":\"" UUID1 "\"}", "property 'uuid' cannot be updated" },
	{ "update-disks", "kvm", "{\"disks\":[{\"size\":10}]}",
	  "property 'disks' cannot be updated" },
	{ "update-nics", "kvm", "{\"nics\":[]}", "property 'nics' cannot be updated" },
	{ "update-delegate-dataset", "joyent", "{\"delegate_dataset\":true}",
	  "property 'delegate_dataset' cannot be updated" },
	{ "update-image-uuid", "joyent", "{\"image_uuid\":\"" IMG "\"}",
	  "property 'image_uuid' cannot be updated" },
	{ "update-zpool", "kvm", "{\"zpool\":\"zones\"}", "property 'zpool' cannot be updated" },
	{ "update-state", "kvm", "{\"state\":\"stopped\"}",
	  "property 'state' is set by vmadm and cannot be given" },
	{ "update-ram-joyent", "joyent", "{\"ram\":1024}",
	  "property 'ram' is not valid for brand joyent" },
	{ "update-ram-range", "kvm", "{\"ram\":1}",
	  "property 'ram': must be an integer from 16 to 1048576, got 1" },
	{ "update-autoboot", "kvm",
	  "{\"autoboot\":1}", "property 'autoboot': must be true or false" },
	{ "update-unknown", "kvm", "{\"add_disks\":[]}", "unknown property 'add_disks'" },
	{ "update-set-cm-array", "kvm", "{\"set_customer_metadata\":[1]}",
	  "property 'set_customer_metadata': must be an object" },
	{ "update-set-tags-nested", "kvm", "{\"set_tags\":{\"a\":[1]}}",
	  "property 'set_tags.a': must be a string, number or boolean" },
	{ "update-remove-tags-number", "kvm", "{\"remove_tags\":[1]}",
	  "property 'remove_tags[0]': must be a string, got 1" },
	{ "update-remove-im-object", "joyent", "{\"remove_internal_metadata\":{}}",
	  "property 'remove_internal_metadata': must be an array of strings" },
	{ "update-set-and-whole", "kvm",
	  "{\"customer_metadata\":{},\"set_customer_metadata\":{\"a\":\"b\"}}",
	  "property 'set_customer_metadata' conflicts with 'customer_metadata'" },
	{ "update-set-and-remove-same", "kvm",
	  "{\"set_tags\":{\"a\":\"b\"},\"remove_tags\":[\"c\",\"a\"]}",
	  "property 'remove_tags[1]': is also in set_" },
	{ "update-add-nics-bad-mac", "kvm", "{\"add_nics\":[{\"mac\":\"bad\"}]}",
	  "property 'add_nics[0].mac': not a unicast MAC address xx:xx:xx:xx:xx:xx, got \"bad\"" },
	{ "update-add-nics-static", "kvm", "{\"add_nics\":[{\"ip\":\"10.1.1.1\"}]}",
	  "add_nics[0]: ip 10.1.1.1 needs a netmask" },
	{ "update-add-nics-model-joyent", "joyent", "{\"add_nics\":[{\"model\":\"virtio\"}]}",
	  "property 'add_nics[0].model' is not valid for brand joyent" },
	{ "update-add-nics-interface", "kvm", "{\"add_nics\":[{\"interface\":\"net3\"}]}",
	  "property 'add_nics[0].interface' is set by vmadm" },
	{ "update-add-nics-object", "kvm", "{\"add_nics\":{}}",
	  "property 'add_nics': must be an array of nic objects" },
	{ "update-remove-nics-bad", "kvm", "{\"remove_nics\":[\"" MAC1 "\",\"zz\"]}",
	  "property 'remove_nics[1]': not a unicast MAC address xx:xx:xx:xx:xx:xx, got \"zz\"" },
	{ "update-remove-nics-object", "kvm", "{\"remove_nics\":[{\"mac\":\"" MAC1 "\"}]}",
	  "property 'remove_nics[0]': must be a string" },
	{ "update-update-nics-no-mac", "kvm", "{\"update_nics\":[{\"ip\":\"dhcp\"}]}",
	  "update_nics[0]: needs mac to name the nic" },
	{ "update-update-nics-vlan", "kvm",
	  "{\"update_nics\":[{\"mac\":\"" MAC1 "\",\"vlan_id\":-1}]}",
	  "property 'update_nics[0].vlan_id': must be an integer from 0 to 4094, got -1" },
	{ "update-payload-array", "kvm", "[{\"ram\":1}]", "payload must be a JSON object" },
	{ "update-brand-unknown", "bhyve", "{}", "unknown brand \"bhyve\"" },
	{ "update-brand-null", NULL, "{}", "unknown brand" },
};

static void update_good_kvm(void)
{
	expect_ok(vm_validate_update, "kvm",
		  "{\"ram\":2048,\"vcpus\":4,\"alias\":\"x\",\"autoboot\":false,\"quota\":30,"
		  "\"max_physical_memory\":2304,\"cpu_cap\":0,\"boot\":\"order=d\","
		  "\"set_customer_metadata\":{\"a\":\"b\",\"n\":2},"
		  "\"remove_customer_metadata\":[\"old\"],\"set_tags\":{\"t\":true},"
		  "\"remove_tags\":[\"u\"],\"set_internal_metadata\":{},"
		  "\"remove_internal_metadata\":[],"
		  "\"add_nics\":[{\"ip\":\"dhcp\",\"nic_tag\":\"admin\",\"model\":\"rtl8139\"}],"
		  "\"remove_nics\":[\"" MAC2 "\"],"
		  "\"update_nics\":[{\"mac\":\"" MAC1 "\",\"ip\":\"10.0.0.9\",\"primary\":true}]}");
}

static void update_good_joyent(void)
{
	expect_ok(vm_validate_update, "joyent",
		  "{\"max_physical_memory\":1024,\"hostname\":\"db2\",\"resolvers\":[\"9.9.9.9\"],"
		  "\"tags\":{\"a\":\"b\"},\"customer_metadata\":{\"k\":\"v\"}}");
	expect_ok(vm_validate_update, "joyent", "{}");
}

static void json_text_bad_syntax(void)
{
	struct vm_error err;
	json_t *v = NULL;

	vm_error_clear(&err);
	CHECK(vm_validate_json_text("{\n  \"ram\": 1024,\n  \"alias\": ,\n}\n", &v, &err) ==
	      -EINVAL);
	CHECK(v == NULL);
	CHECK_HAS(err.msg, "invalid JSON at line 3, column ");
}

static void json_text_column(void)
{
	struct vm_error err;
	json_t *v = NULL;

	/* jansson counts the column of the character it stopped at */
	CHECK(vm_validate_json_text("{\"a\": tru}", &v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "invalid JSON at line 1, column ");
	CHECK(v == NULL);
}

static void json_text_empty(void)
{
	struct vm_error err;
	json_t *v = NULL;

	CHECK(vm_validate_json_text("", &v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "invalid JSON at line 1");
	CHECK(vm_validate_json_text(NULL, &v, &err) == -EINVAL);
}

static void json_text_not_object(void)
{
	struct vm_error err;
	json_t *v = NULL;

	CHECK(vm_validate_json_text("[1, 2]", &v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "payload must be a JSON object, got an array");
	CHECK(vm_validate_json_text("42", &v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "got a number");
	CHECK(vm_validate_json_text("null", &v, &err) == -EINVAL);
	CHECK(v == NULL);
}

static void json_text_duplicate_key(void)
{
	struct vm_error err;
	json_t *v = NULL;

	CHECK(vm_validate_json_text("{\"ram\": 1, \"ram\": 2}", &v, &err) == -EINVAL);
	CHECK_HAS(err.msg, "invalid JSON at line 1");
	CHECK_HAS(err.msg, "duplicate");
}

/* 16 MiB of config (the CONFIG record's limit) of nics with distinct
 * MACs: the duplicate check is a hash lookup per nic. The quadratic check
 * took 2 s for 8000 nics, so hours for these; 5 s is a bound for a busy
 * machine that the old code could not meet, not a measurement. */
static void nics_16mib_linear(void)
{
	const char *nic = "{\"mac\":\"02:00:00:00:00:00\"},";
	size_t per = strlen(nic), n = ((16u << 20) - 64) / per, len = 0;
	char *text = malloc(n * per + 64);
	struct vm_error err;
	struct timespec t0, t1;
	json_t *p;
	double secs;
	int r;

	CHECK(text != NULL);
	if (!text)
		return;
	len += sprintf(text, "{\"brand\":\"kvm\",\"nics\":[");
	for (size_t i = 0; i < n; i++)
		len += sprintf(text + len, "{\"mac\":\"02:%02x:%02x:%02x:%02x:%02x\"},",
			       (unsigned)(i >> 32) & 0xff, (unsigned)(i >> 24) & 0xff,
			       (unsigned)(i >> 16) & 0xff, (unsigned)(i >> 8) & 0xff,
			       (unsigned)i & 0xff);
	text[len - 1] = ']';
	strcpy(text + len, "}");
	CHECK(strlen(text) <= 16u << 20);
	p = load(text);
	free(text);
	CHECK(json_array_size(json_object_get(p, "nics")) == n);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	vm_error_clear(&err);
	r = vm_validate_create(p, NULL, &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK_STR(err.msg, "");
	CHECK(r == 0);
	CHECK(secs < 5.0);
	printf("# %zu nics validated in %.2f s\n", n, secs);

	/* the same list with its last MAC equal to its first: found, named */
	json_object_set_new(json_array_get(json_object_get(p, "nics"), n - 1), "mac",
			    json_string("02:00:00:00:00:00"));
	vm_error_clear(&err);
	CHECK(vm_validate_create(p, NULL, &err) == -EINVAL);
	{
		char want[128];

		snprintf(want, sizeof(want),
			 "property 'nics[%zu].mac': duplicate MAC 02:00:00:00:00:00, also in "
			 "nics[0]",
			 n - 1);
		CHECK_HAS(err.msg, want);
	}
	json_decref(p);
}

static void disks_at_most_1000(void)
{
	json_t *p = json_pack("{s:s, s:[]}", "brand", "kvm", "disks");
	struct vm_error err;

	for (int i = 0; i < 1001; i++)
		json_array_append_new(json_object_get(p, "disks"), json_pack("{s:i}", "size", 1));
	CHECK(vm_validate_create(p, NULL, &err) == -EINVAL);
	CHECK_HAS(err.msg, "property 'disks': 1001 disks, at most 1000");
	json_array_remove(json_object_get(p, "disks"), 0);
	vm_error_clear(&err);
	CHECK(vm_validate_create(p, NULL, &err) == 0);
	json_decref(p);
}

static void filesystems_good(void)
{
	expect_ok(vm_validate_create, NULL,
		  "{\"brand\":\"joyent\",\"filesystems\":["
		  "{\"source\":\"/srv/a\",\"target\":\"/a\"},"
		  "{\"source\":\"/srv/b\",\"target\":\"/b\",\"type\":\"bind\","
		  "\"options\":[\"rw\",\"nosuid\",\"nodev\",\"noexec\",\"nodevices\"]},"
		  "{\"source\":\"tmpfs\",\"target\":\"/tmp\",\"type\":\"tmpfs\","
		  "\"options\":[\"size=64m\",\"mode=1777\",\"nosuid\"]}]}");
}

/* A record as another node would send it (computed properties and all). */
#define RECEIVED_KVM                                                                        \
	"{\"brand\":\"kvm\",\"uuid\":\"" UUID1 "\",\"state\":\"stopped\","                  \
	"\"zone_state\":\"installed\",\"zonepath\":\"/elsewhere/zones/" UUID1 "\","           \
	"\"zfs_filesystem\":\"zones/" UUID1 "\",\"create_timestamp\":"                       \
	"\"2026-11-27T05:39:01.000Z\",\"received_at\":\"2026-11-28T05:39:01.000Z\","           \
	"\"disks\":[{\"size\":64,\"boot\":true,\"path\":\"/elsewhere/d0\","                  \
	"\"zfs_filesystem\":\"zones/" UUID1 "-disk0\",\"image_uuid\":\"" IMG "\"}],"          \
	"\"nics\":[{\"mac\":\"" MAC1 "\",\"interface\":\"net0\",\"nic_tag\":\"admin\"}]}"

static void expect_received(const char *text, const char *msg)
{
	json_t *p = load(text);
	struct vm_error err;
	int r;

	vm_error_clear(&err);
	r = vm_validate_received(p, &err);
	json_decref(p);
	if (!msg) {
		CHECK_STR(err.msg, "");
		CHECK(r == 0);
	} else {
		CHECK(r == -EINVAL);
		CHECK_HAS(err.msg, msg);
	}
}

static void received_good(void)
{
	expect_received(RECEIVED_KVM, NULL);
	expect_received("{\"brand\":\"joyent\",\"uuid\":\"" UUID1 "\",\"delegate_dataset\":true,"
			"\"datasets\":[\"zones/" UUID1 "/data\"]}",
			NULL);
	expect_received("{\"brand\":\"joyent\",\"uuid\":\"" UUID1 "\"}", NULL);
}

/* A received record is held to create's rules (and a shape vmadm makes). */
static void received_bad(void)
{
	/* the volume's size comes from the config: it must say it */
	expect_received("{\"brand\":\"kvm\",\"uuid\":\"" UUID1 "\","
			"\"disks\":[{\"image_uuid\":\"" IMG "\"}]}",
			"disks[0]: needs size");
	expect_received("{\"brand\":\"joyent\",\"uuid\":\"" UUID1 "\","
			"\"datasets\":[\"zones/" UUID1 "/data\",\"zones/" UUID1 "/more\"],"
			"\"delegate_dataset\":true}",
			"property 'datasets': a VM delegates its own zones/" UUID1 "/data or nothing");
	expect_received("{\"brand\":\"joyent\",\"uuid\":\"" UUID1 "\","
			"\"datasets\":[\"zones/" UUID1 "/etc\"],\"delegate_dataset\":true}",
			"property 'datasets'");
	/* a delegated data directory that is no dataset: a path the stream's
	 * archive could make a symlink */
	expect_received("{\"brand\":\"joyent\",\"uuid\":\"" UUID1 "\",\"delegate_dataset\":true}",
			"property 'delegate_dataset' is true, but 'datasets' does not list");
	expect_received("{\"brand\":\"joyent\",\"uuid\":\"" UUID1 "\","
			"\"filesystems\":[{\"source\":\"/dev/sda\",\"target\":\"/x\","
			"\"type\":\"ext4\"}]}",
			"property 'filesystems[0].type'");
	expect_received("{\"brand\":\"kvm\",\"uuid\":\"" UUID1 "\",\"ram\":99999999}",
			"property 'ram'");
	expect_received("{\"brand\":\"kvm\",\"uuid\":\"" UUID1 "\",\"nics\":[{\"mac\":\"" MAC1
			"\"},{\"mac\":\"" MAC1 "\"}]}",
			"duplicate MAC");
	expect_received("{\"brand\":\"bhyve\",\"uuid\":\"" UUID1 "\"}", "unknown brand");
	expect_received("{\"brand\":\"kvm\"}", "missing required property 'uuid'");
}

static void nic_tags_defined(void)
{
	json_t *tags = load("{\"admin\":\"br0\",\"external\":\"br1\"}");
	json_t *good = load("[{\"nic_tag\":\"admin\"},{},{\"nic_tag\":\"external\"}]");
	json_t *other = load("[{\"nic_tag\":\"admin\"},{\"nic_tag\":\"docker0\"}]");
	struct vm_error err;

	vm_error_clear(&err);
	CHECK(vm_validate_nic_tags(tags, good, "nics", &err) == 0);
	CHECK(vm_validate_nic_tags(tags, other, "nics", &err) == -EINVAL);
	CHECK_HAS(err.msg, "property 'nics[1].nic_tag': nic tag \"docker0\" is not defined on "
			   "this node (vmadm.conf \"nic_tags\" defines ");
	CHECK_HAS(err.msg, "admin");
	CHECK_HAS(err.msg, "external");
	/* an empty definition defines nothing */
	json_decref(tags);
	tags = json_object();
	CHECK(vm_validate_nic_tags(tags, good, "add_nics", &err) == -EINVAL);
	CHECK_HAS(err.msg, "property 'add_nics[0].nic_tag'");
	CHECK_HAS(err.msg, "defines none");
	/* no nic_tags at all: no host network, tags are labels */
	vm_error_clear(&err);
	CHECK(vm_validate_nic_tags(NULL, other, "nics", &err) == 0);
	json_decref(tags);
	json_decref(good);
	json_decref(other);
}

static void json_text_good(void)
{
	struct vm_error err;
	json_t *v = NULL;

	CHECK(vm_validate_json_text(kvm_good, &v, &err) == 0);
	CHECK(json_is_object(v));
	CHECK(v && json_integer_value(json_object_get(v, "ram")) == 1024);
	CHECK(v && vm_validate_create(v, NULL, &err) == 0);
	json_decref(v);
}

int main(void)
{
	char label[128];

	for (size_t i = 0; i < sizeof(create_bad) / sizeof(create_bad[0]); i++) {
		snprintf(label, sizeof(label), "create-%s", create_bad[i].name);
		RUN_CASE(label, expect_fail(vm_validate_create, &create_bad[i]));
	}
	for (size_t i = 0; i < sizeof(update_bad) / sizeof(update_bad[0]); i++)
		RUN_CASE(update_bad[i].name, expect_fail(vm_validate_update, &update_bad[i]));
	RUN(create_good_kvm);
	RUN(create_good_kvm_with_b);
	RUN(create_good_joyent);
	RUN(create_good_minimal);
	RUN(create_refuses_all_computed);
	RUN(create_leaves_payload);
	RUN(create_null_payload);
	RUN(update_good_kvm);
	RUN(update_good_joyent);
	RUN(json_text_bad_syntax);
	RUN(json_text_column);
	RUN(json_text_empty);
	RUN(json_text_not_object);
	RUN(json_text_duplicate_key);
	RUN(json_text_good);
	RUN(nics_16mib_linear);
	RUN(disks_at_most_1000);
	RUN(filesystems_good);
	RUN(received_good);
	RUN(received_bad);
	RUN(nic_tags_defined);
	CHECK_EXIT();
}
