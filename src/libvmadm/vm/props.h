/* SPDX-License-Identifier: MIT */
/*
 * The VM model: SmartOS vmadm property names, types and rules, for brands
 * kvm and joyent. A VM is a JSON object (jansson) whose keys are these
 * properties; this table says which a payload may set, at create or update,
 * for which brand, and which are computed by vmadm.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "util/error.h"

enum vm_prop_type {
	VM_PT_STRING,
	VM_PT_INT,      /* integer within [min, max] */
	VM_PT_BOOL,
	VM_PT_UUID,
	VM_PT_OBJECT,   /* flat object of string/number/bool values (metadata, tags) */
	VM_PT_STRLIST,  /* array of strings (resolvers, datasets) */
	VM_PT_NICS,     /* array of nic objects, see vm_nic_props */
	VM_PT_DISKS,    /* array of disk objects, see vm_disk_props */
	VM_PT_FILESYSTEMS, /* array of {source, target, type, options} */
	VM_PT_TIMESTAMP,   /* ISO 8601 string */
};

enum vm_prop_flags {
	VM_PF_KVM = 1 << 0,      /* valid for brand kvm */
	VM_PF_JOYENT = 1 << 1,   /* valid for brand joyent */
	VM_PF_CREATE = 1 << 2,   /* a create payload may set it */
	VM_PF_UPDATE = 1 << 3,   /* an update payload may set it */
	VM_PF_COMPUTED = 1 << 4, /* set by vmadm; refused in payloads */
	VM_PF_REQUIRED = 1 << 5, /* a create payload must set it */
};
#define VM_PF_BOTH (VM_PF_KVM | VM_PF_JOYENT)

/* At most this many disks: disk N is dataset zones/UUID-diskN, and stream
 * dataset names stop at N = 999 (docs/stream-format.md). */
#define VM_DISKS_MAX 1000

struct vm_node;

struct vm_prop {
	const char *name;
	enum vm_prop_type type;
	unsigned flags;
	int64_t min, max; /* for VM_PT_INT */
	const char *doc;  /* one line, for `vmadm validate` messages and docs */
};

/* The top-level properties, and the properties of one nic and one disk. */
extern const struct vm_prop vm_props[];
extern const struct vm_prop vm_nic_props[];
extern const struct vm_prop vm_disk_props[];

/* Look a property up in a NULL-name-terminated table; NULL if unknown. */
const struct vm_prop *vm_prop_lookup(const struct vm_prop *table, const char *name);

/* Brand name to VM_PF_KVM / VM_PF_JOYENT, 0 if unknown. */
unsigned vm_brand_flag(const char *brand);

/* Is s a unicast MAC address "xx:xx:xx:xx:xx:xx" (hex, either case, not
 * multicast, not all zeros)? */
bool vm_mac_valid(const char *s);

/* Is s a dotted-quad IPv4 address? */
bool vm_ipv4_valid(const char *s);

/*
 * Validate a create payload. brand is the brand to validate for (`validate
 * -b`), or NULL to take it from the payload, where it is then required.
 * Refuses unknown properties, properties of the other brand, computed ones,
 * wrong types, out-of-range numbers, bad UUIDs or MACs, duplicate nic MACs,
 * more than one primary nic, more than one boot disk, kvm disks with neither
 * size nor image_uuid, more than VM_DISKS_MAX disks, filesystems of a type
 * other than lofs, bind or tmpfs, with options other than those that take
 * rights away, or with values that cannot be one field of a mount entry.
 * The message names the property ("disks[1].size") and the reason. Disks
 * are named by position (their path is computed), so two equal disk objects
 * are two disks, not a duplicate. Linear in the payload (duplicate MACs are
 * found with a hash table).
 */
int vm_validate_create(json_t *payload, const char *brand, struct vm_error *err);

/* Validate an update payload for a VM of the given brand: only VM_PF_UPDATE
 * properties, plus the SmartOS update keys set_customer_metadata,
 * remove_customer_metadata, set_internal_metadata, remove_internal_metadata,
 * set_tags, remove_tags, add_nics, remove_nics, update_nics. */
int vm_validate_update(json_t *payload, const char *brand, struct vm_error *err);

/* Parse a "PROP=VALUE" command-line assignment into key and JSON value, with
 * the type the table gives (ints, bools, strings); unknown props are kept as
 * strings for validation to refuse. */
int vm_prop_parse_assignment(const char *arg, char **ret_key, json_t **ret_value,
			     struct vm_error *err);

/* Parse text as a payload. Invalid JSON is -EINVAL with "invalid JSON at
 * line L, column C: REASON"; duplicate keys and non-objects are refused too.
 * Does not validate properties (see vm_validate_create/update). */
int vm_validate_json_text(const char *text, json_t **ret, struct vm_error *err);

/* Check a stored VM record (as vm_store_save writes it): every key known,
 * valid for the record's brand, and of the right type and range; computed
 * properties are allowed here. For loading records and for tests. */
int vm_validate_record(json_t *vm, struct vm_error *err);

/* Check a record that came from another node (a stream's CONFIG, a
 * migration's BEGIN, `vmadm receive < UUID.json`): a record as above, held
 * to create's rules on what create can set, plus: every disk has its size
 * (the size of the volume the stream brings), and the VM delegates its own
 * zones/UUID/data or nothing, as delegate_dataset says. The node's policy
 * (nic tags, filesystems) is vm_record_localize's. */
int vm_validate_received(json_t *vm, struct vm_error *err);

/* Is a filesystems[] entry of this type (NULL: none given, lofs) a bind
 * mount of a host path? (Inline: brand/joyent.c links without this part.) */
static inline bool vm_filesystem_type_is_bind(const char *type)
{
	return !type || strcmp(type, "lofs") == 0 || strcmp(type, "bind") == 0;
}

/* Every nic in nics (an array of nic objects; path names it in messages,
 * e.g. "nics", "add_nics") names a tag of nic_tags (the node's vmadm.conf
 * "nic_tags" object) or none. nic_tags NULL (the node defines no tags, so
 * no nic reaches a host network) accepts any tag. */
int vm_validate_nic_tags(json_t *nic_tags, json_t *nics, const char *path, struct vm_error *err);

/* The same with the node's setting (vm_node_nic_tags); nics NULL is fine. */
int vm_validate_node_nics(struct vm_node *node, json_t *nics, const char *path,
			  struct vm_error *err);

/* The dataset names a VM owns, in the order they must be created (the VM's
 * zones/UUID first, then children and volumes), as a JSON array of strings. */
json_t *vm_datasets(json_t *vm);

/* The current time as SmartOS prints timestamps: 2026-11-27T05:39:01.000Z */
void vm_timestamp_now(char buf[32]);
