/* SPDX-License-Identifier: MIT */
/*
 * Payload validation. One walker serves three modes: a create payload, an
 * update payload, and a stored record (where computed properties are
 * allowed). Every message starts with the property's path
 * ("property 'disks[1].model': ...") so that a user finds the bad value in
 * a long payload; the first problem found is reported.
 */
#include "props.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "node/node.h"
#include "util/macros.h"
#include "util/uuid.h"

enum mode {
	MODE_CREATE,
	MODE_UPDATE,
	MODE_RECORD,
	MODE_RECEIVED, /* a record from another node: a record, held to create's rules */
};

struct ctx {
	enum mode mode;
	unsigned brand;         /* VM_PF_KVM or VM_PF_JOYENT */
	const char *brand_name; /* for messages */
	struct vm_error *err;
};

#define PATH_MAX_LEN 256
#define SHOW_MAX 80

/* A stored record may hold computed properties. */
static bool stored(const struct ctx *c)
{
	return c->mode == MODE_RECORD || c->mode == MODE_RECEIVED;
}

/* A value as it appears in JSON, cut to SHOW_MAX characters, for "got ...". */
static const char *show(const json_t *v, char buf[SHOW_MAX + 4])
{
	_cleanup_free_ char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

	if (!s)
		snprintf(buf, SHOW_MAX + 4, "(unprintable)");
	else if (strlen(s) > SHOW_MAX)
		snprintf(buf, SHOW_MAX + 4, "%.*s...", SHOW_MAX, s);
	else
		snprintf(buf, SHOW_MAX + 4, "%s", s);
	return buf;
}

static int bad(struct ctx *c, const char *path, const char *what, const json_t *v)
{
	char b[SHOW_MAX + 4];

	return vm_error_setx(c->err, EINVAL, "property '%s': %s, got %s", path, what, show(v, b));
}

static const char *type_word(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
	default:
		return "null";
	}
}

static void join_path(char out[PATH_MAX_LEN], const char *prefix, const char *key)
{
	if (prefix && *prefix)
		snprintf(out, PATH_MAX_LEN, "%s.%s", prefix, key);
	else
		snprintf(out, PATH_MAX_LEN, "%s", key);
}

static int check_enum(struct ctx *c, const char *path, json_t *v, const char *const *values)
{
	char list[256] = "";
	size_t n = 0;

	for (const char *const *e = values; *e; e++) {
		if (streq(json_string_value(v), *e))
			return 0;
		n += snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "", *e);
	}
	char what[300];
	snprintf(what, sizeof(what), "must be one of %s", list);
	return bad(c, path, what, v);
}

static bool token_valid(const char *s, size_t max, const char *extra)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
			return false;
	return true;
}

/* RFC 1123 host name: labels of letters, digits and inner hyphens. */
static bool hostname_valid(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (ch == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
		} else if (isalnum((unsigned char)ch) || ch == '-') {
			if (ch == '-' && label == 0)
				return false;
			if (++label > 63)
				return false;
		} else
			return false;
	}
	return s[n - 1] != '-' && s[n - 1] != '.';
}

/* "order=cd" or "order=c,once=d": QEMU's -boot letters, a, c, d, n. */
static bool boot_valid(const char *s)
{
	bool seen_order = false;
	_cleanup_free_ char *copy = strdup(s);
	char *save = NULL;

	if (!copy)
		return false;
	for (char *opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
		const char *letters;

		if (strncmp(opt, "order=", 6) == 0) {
			if (seen_order)
				return false;
			seen_order = true;
			letters = opt + 6;
		} else if (strncmp(opt, "once=", 5) == 0)
			letters = opt + 5;
		else
			return false;
		if (!*letters || strspn(letters, "acdn") != strlen(letters))
			return false;
	}
	return seen_order;
}

static bool netmask_valid(const char *s)
{
	struct in_addr a;
	uint32_t m;

	if (inet_pton(AF_INET, s, &a) != 1)
		return false;
	m = ntohl(a.s_addr);
	/* contiguous ones from the top: ~m + 1 is a power of two (or 0) */
	return m != 0 && ((~m + 1) & ~m) == 0;
}

static bool ip_valid(const char *s)
{
	struct in6_addr a6;

	return vm_ipv4_valid(s) || inet_pton(AF_INET6, s, &a6) == 1;
}

/* ISO 8601 as vmadm writes it: 2026-11-27T05:39:01(.fraction)(Z|+hh:mm). */
static bool timestamp_valid(const char *s)
{
	const char *shape = "dddd-dd-ddTdd:dd:dd";
	size_t i;

	for (i = 0; shape[i]; i++) {
		if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
			return false;
	}
	s += i;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return false;
		while (isdigit((unsigned char)*s))
			s++;
	}
	if (streq(s, "Z"))
		return true;
	return (s[0] == '+' || s[0] == '-') && isdigit((unsigned char)s[1]) &&
	       isdigit((unsigned char)s[2]) && s[3] == ':' && isdigit((unsigned char)s[4]) &&
	       isdigit((unsigned char)s[5]) && s[6] == '\0';
}

static const char *const nic_models[] = { "virtio", "e1000", "rtl8139", NULL };
static const char *const disk_models[] = { "virtio", "ide", "scsi", NULL };
static const char *const disk_media[] = { "disk", "cdrom", NULL };
static const char *const compressions[] = { "off", "on", "lz4", "lzjb", "zle", "gzip",
					    "gzip-1", "gzip-2", "gzip-3", "gzip-4", "gzip-5",
					    "gzip-6", "gzip-7", "gzip-8", "gzip-9", "zstd",
					    "lzo", "zlib", NULL };

/* The rules a type and a range cannot say, by table and name. v has the
 * table's type already. */
static int check_special(struct ctx *c, const struct vm_prop *table, const struct vm_prop *p,
			 const char *path, json_t *v)
{
	const char *s = json_string_value(v);

	if (table == vm_props) {
		if (streq(p->name, "brand") && !vm_brand_flag(s)) {
			char b[SHOW_MAX + 4];

			return vm_error_setx(c->err, EINVAL,
					     "property '%s': unknown brand %s (valid: kvm, joyent)",
					     path, show(v, b));
		}
		if (streq(p->name, "zpool") && !streq(s, "zones"))
			return bad(c, path, "must be \"zones\" (the only pool of a node)", v);
		if (streq(p->name, "hostname") && !hostname_valid(s))
			return bad(c, path,
				   "not a valid host name (letters, digits, '-' and '.', "
				   "labels of at most 63)",
				   v);
		if (streq(p->name, "alias")) {
			for (const char *q = s; *q; q++)
				if ((unsigned char)*q < 0x20 || *q == 0x7f)
					return bad(c, path, "must not contain control characters",
						   v);
		}
		if (streq(p->name, "cpu_type") && !token_valid(s, 64, "_.-"))
			return bad(c, path, "not a QEMU CPU model name (e.g. qemu64, host)", v);
		if (streq(p->name, "boot") && !boot_valid(s))
			return bad(c, path, "must be like \"order=cd\" or \"order=c,once=d\"", v);
		if (streq(p->name, "resolvers")) {
			size_t i;
			json_t *e;
			char ep[PATH_MAX_LEN];

			json_array_foreach(v, i, e) {
				if (!ip_valid(json_string_value(e))) {
					snprintf(ep, sizeof(ep), "%s[%zu]", path, i);
					return bad(c, ep, "not an IP address", e);
				}
			}
		}
		if (streq(p->name, "datasets")) {
			size_t i;
			json_t *e;
			char ep[PATH_MAX_LEN];

			json_array_foreach(v, i, e) {
				if (!*json_string_value(e)) {
					snprintf(ep, sizeof(ep), "%s[%zu]", path, i);
					return bad(c, ep, "must not be empty", e);
				}
			}
		}
	} else if (table == vm_nic_props) {
		if (streq(p->name, "mac") && !vm_mac_valid(s))
			return bad(c, path, "not a unicast MAC address xx:xx:xx:xx:xx:xx", v);
		if (streq(p->name, "ip") && !streq(s, "dhcp") && !vm_ipv4_valid(s))
			return bad(c, path, "must be \"dhcp\" or an IPv4 address", v);
		if (streq(p->name, "netmask") && !netmask_valid(s))
			return bad(c, path, "not an IPv4 netmask", v);
		if (streq(p->name, "gateway") && !vm_ipv4_valid(s))
			return bad(c, path, "not an IPv4 address", v);
		if (streq(p->name, "nic_tag") && !token_valid(s, 31, "_.-"))
			return bad(c, path, "must be 1 to 31 letters, digits, '_', '.' or '-'", v);
		if (streq(p->name, "model"))
			return check_enum(c, path, v, nic_models);
	} else if (table == vm_disk_props) {
		if (streq(p->name, "model"))
			return check_enum(c, path, v, disk_models);
		if (streq(p->name, "media"))
			return check_enum(c, path, v, disk_media);
		if (streq(p->name, "compression"))
			return check_enum(c, path, v, compressions);
		if (streq(p->name, "block_size")) {
			json_int_t n = json_integer_value(v);

			if (n & (n - 1))
				return bad(c, path, "must be a power of two", v);
		}
	}
	return 0;
}

static int check_nics(struct ctx *c, const char *path, json_t *v, bool need_mac);
static int check_disks(struct ctx *c, const char *path, json_t *v);
static int check_filesystems(struct ctx *c, const char *path, json_t *v);

/* A flat object: metadata and tags hold strings, numbers and booleans. */
static int check_flat_object(struct ctx *c, const char *path, json_t *v)
{
	const char *k;
	json_t *e;

	if (!json_is_object(v))
		return bad(c, path, "must be an object", v);
	json_object_foreach(v, k, e) {
		if (!json_is_string(e) && !json_is_number(e) && !json_is_boolean(e)) {
			char ep[PATH_MAX_LEN];

			join_path(ep, path, k);
			return bad(c, ep, "must be a string, number or boolean", e);
		}
	}
	return 0;
}

static int check_string_list(struct ctx *c, const char *path, json_t *v)
{
	size_t i;
	json_t *e;

	if (!json_is_array(v))
		return bad(c, path, "must be an array of strings", v);
	json_array_foreach(v, i, e) {
		if (!json_is_string(e)) {
			char ep[PATH_MAX_LEN];

			snprintf(ep, sizeof(ep), "%s[%zu]", path, i);
			return bad(c, ep, "must be a string", e);
		}
	}
	return 0;
}

/* The value of property p (of table) at path, by type, then special rules. */
static int check_value(struct ctx *c, const struct vm_prop *table, const struct vm_prop *p,
		       const char *path, json_t *v)
{
	char what[128];
	int r = 0;

	switch (p->type) {
	case VM_PT_STRING:
		if (!json_is_string(v))
			return bad(c, path, "must be a string", v);
		break;
	case VM_PT_INT:
		if (!json_is_integer(v) || json_integer_value(v) < p->min ||
		    json_integer_value(v) > p->max) {
			snprintf(what, sizeof(what), "must be an integer from %lld to %lld",
				 (long long)p->min, (long long)p->max);
			return bad(c, path, what, v);
		}
		break;
	case VM_PT_BOOL:
		if (!json_is_boolean(v))
			return bad(c, path, "must be true or false", v);
		break;
	case VM_PT_UUID:
		if (!json_is_string(v) || !vm_uuid_valid(json_string_value(v))) {
			char b[SHOW_MAX + 4];

			return vm_error_setx(c->err, EINVAL, "property '%s': not a valid UUID: %s",
					     path, show(v, b));
		}
		break;
	case VM_PT_TIMESTAMP:
		if (!json_is_string(v) || !timestamp_valid(json_string_value(v)))
			return bad(c, path,
				   "must be an ISO 8601 timestamp like 2026-11-27T05:39:01.000Z",
				   v);
		break;
	case VM_PT_OBJECT:
		/* migrated_to is ours and may nest; metadata and tags are flat */
		if (streq(p->name, "migrated_to"))
			return json_is_object(v) ? 0 : bad(c, path, "must be an object", v);
		return check_flat_object(c, path, v);
	case VM_PT_STRLIST:
		r = check_string_list(c, path, v);
		break;
	case VM_PT_NICS:
		return check_nics(c, path, v, false);
	case VM_PT_DISKS:
		return check_disks(c, path, v);
	case VM_PT_FILESYSTEMS:
		return check_filesystems(c, path, v);
	}
	if (r < 0)
		return r;
	return check_special(c, table, p, path, v);
}

/*
 * One key of an object checked against table: known, not computed (unless
 * a record), valid for the brand, settable in this mode (top level only:
 * nested nic and disk properties follow their array), then its value.
 */
static int check_key(struct ctx *c, const struct vm_prop *table, const char *prefix,
		     const char *key, json_t *v)
{
	char path[PATH_MAX_LEN];
	const struct vm_prop *p = vm_prop_lookup(table, key);

	join_path(path, prefix, key);
	if (!p)
		return vm_error_setx(c->err, EINVAL, "unknown property '%s'", path);
	if ((p->flags & VM_PF_COMPUTED) && !stored(c))
		return vm_error_setx(c->err, EINVAL,
				     "property '%s' is set by vmadm and cannot be given", path);
	if (!(p->flags & c->brand))
		return vm_error_setx(c->err, EINVAL, "property '%s' is not valid for brand %s",
				     path, c->brand_name);
	if (table == vm_props && c->mode == MODE_UPDATE && !(p->flags & VM_PF_UPDATE))
		return vm_error_setx(c->err, EINVAL, "property '%s' cannot be updated", path);
	if (table == vm_props && c->mode == MODE_CREATE && !(p->flags & VM_PF_CREATE))
		return vm_error_setx(c->err, EINVAL, "property '%s' cannot be set at create",
				     path);
	return check_value(c, table, p, path, v);
}

static int check_object_keys(struct ctx *c, const struct vm_prop *table, const char *path,
			     json_t *obj)
{
	const char *k;
	json_t *v;
	int r;

	json_object_foreach(obj, k, v) {
		r = check_key(c, table, path, k, v);
		if (r < 0)
			return r;
	}
	return 0;
}

static int check_nics(struct ctx *c, const char *path, json_t *v, bool need_mac)
{
	/* MACs seen so far (lower case) -> their index: one hash lookup per
	 * nic, so that a config of 100k nics costs 100k lookups, not 5e9
	 * comparisons. jansson seeds its hash at random, so the keys a
	 * stream chooses cannot make the table degenerate. */
	_cleanup_json_ json_t *seen = json_object();
	char ep[PATH_MAX_LEN];
	size_t i, primaries = 0;
	json_t *nic;
	int r;

	if (!seen)
		return vm_error_set(c->err, ENOMEM, "property '%s'", path);
	if (!json_is_array(v))
		return bad(c, path, "must be an array of nic objects", v);
	json_array_foreach(v, i, nic) {
		const char *mac;
		json_t *ip, *prev;
		char key[18];

		snprintf(ep, sizeof(ep), "%s[%zu]", path, i);
		if (!json_is_object(nic))
			return bad(c, ep, "must be an object", nic);
		r = check_object_keys(c, vm_nic_props, ep, nic);
		if (r < 0)
			return r;
		if (need_mac && !json_object_get(nic, "mac"))
			return vm_error_setx(c->err, EINVAL, "%s: needs mac to name the nic", ep);
		ip = json_object_get(nic, "ip");
		if (ip && !streq(json_string_value(ip), "dhcp") &&
		    !json_object_get(nic, "netmask") && c->mode != MODE_UPDATE)
			return vm_error_setx(c->err, EINVAL, "%s: ip %s needs a netmask", ep,
					     json_string_value(ip));
		if (json_is_true(json_object_get(nic, "primary")))
			primaries++;
		mac = json_string_value(json_object_get(nic, "mac"));
		if (!mac)
			continue;
		/* checked above: 17 characters */
		for (size_t k = 0; k < sizeof(key); k++)
			key[k] = (char)tolower((unsigned char)mac[k]);
		prev = json_object_get(seen, key);
		if (prev)
			return vm_error_setx(
			    c->err, EINVAL, "property '%s.mac': duplicate MAC %s, also in %s[%lld]",
			    ep, mac, path, (long long)json_integer_value(prev));
		if (json_object_set_new(seen, key, json_integer((json_int_t)i)) < 0)
			return vm_error_set(c->err, ENOMEM, "property '%s'", ep);
	}
	if (primaries > 1)
		return vm_error_setx(c->err, EINVAL, "property '%s': more than one nic has "
				     "primary=true", path);
	return 0;
}

static int check_disks(struct ctx *c, const char *path, json_t *v)
{
	char ep[PATH_MAX_LEN];
	size_t i, boots = 0;
	json_t *disk;
	int r;

	if (!json_is_array(v))
		return bad(c, path, "must be an array of disk objects", v);
	/* Disk N is dataset zones/UUID-diskN, and a stream names no N past
	 * 999 (docs/stream-format.md): a longer list could not move. */
	if (json_array_size(v) > VM_DISKS_MAX)
		return vm_error_setx(c->err, EINVAL,
				     "property '%s': %zu disks, at most %d (dataset names "
				     "zones/UUID-diskN end at N = %d)",
				     path, json_array_size(v), VM_DISKS_MAX, VM_DISKS_MAX - 1);
	json_array_foreach(v, i, disk) {
		snprintf(ep, sizeof(ep), "%s[%zu]", path, i);
		if (!json_is_object(disk))
			return bad(c, ep, "must be an object", disk);
		r = check_object_keys(c, vm_disk_props, ep, disk);
		if (r < 0)
			return r;
		/* A received disk is a volume the stream brings: its size is
		 * what the volume must be (no image is cloned here). */
		if (c->mode == MODE_RECEIVED && !json_object_get(disk, "size"))
			return vm_error_setx(c->err, EINVAL,
					     "%s: needs size (the size of the volume the stream "
					     "brings)",
					     ep);
		if (!json_object_get(disk, "size") && !json_object_get(disk, "image_uuid") &&
		    !stored(c))
			return vm_error_setx(c->err, EINVAL, "%s: needs size or image_uuid", ep);
		if (json_is_true(json_object_get(disk, "boot")))
			boots++;
	}
	if (boots > 1)
		return vm_error_setx(c->err, EINVAL,
				     "property '%s': more than one disk has boot=true", path);
	return 0;
}

/*
 * filesystems: [{source, target, type, options}] as SmartOS has them, as
 * far as LXC can mount them safely (brand/joyent.c writes each as an
 * lxc.mount.entry line, so no value may hold a blank, a backslash or a
 * control character). Types: lofs and bind (a host directory or file
 * bind-mounted; lofs is SmartOS's name for it) and tmpfs (memory, charged
 * to the container's memory limit; no host object). Anything else would
 * hand the container a host device (ext4 of /dev/sdb1), the host's kernel
 * state (proc, sysfs, cgroup) or a network mount made with the host's
 * credentials (nfs, cifs), and is refused. Options: those that only take
 * rights away, plus tmpfs's size and mode.
 */
static const char *const fs_types[] = {"lofs", "bind", "tmpfs", NULL};
static const char *const fs_options[] = {"ro",	      "rw",	"nodev",  "nodevice",
					 "nodevices", "nosuid", "noexec", NULL};

/* No blank, backslash or control character: one field of a mount entry. */
static bool mount_field_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '\\')
			return false;
	return true;
}

/* An absolute path without "." or ".." components. */
static bool clean_absolute(const char *s)
{
	if (s[0] != '/')
		return false;
	for (const char *p = s; *p;) {
		size_t n;

		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
	}
	return true;
}

static bool fs_option_ok(const char *type, const char *o)
{
	for (const char *const *a = fs_options; *a; a++)
		if (streq(o, *a))
			return true;
	if (type && streq(type, "tmpfs") && strncmp(o, "size=", 5) == 0) {
		const char *n = o + 5;
		size_t d = strspn(n, "0123456789");

		return d > 0 && (!n[d] || (strchr("kKmMgG%", n[d]) && !n[d + 1]));
	}
	if (type && streq(type, "tmpfs") && strncmp(o, "mode=", 5) == 0) {
		const char *n = o + 5;

		return *n && strlen(n) <= 4 && strspn(n, "01234567") == strlen(n);
	}
	return false;
}

static int check_filesystems(struct ctx *c, const char *path, json_t *v)
{
	char ep[PATH_MAX_LEN], kp[PATH_MAX_LEN];
	size_t i, j;
	json_t *fs, *e, *o;
	const char *k;
	int r;

	if (!json_is_array(v))
		return bad(c, path, "must be an array of filesystem objects", v);
	json_array_foreach(v, i, fs) {
		const char *type, *source;

		snprintf(ep, sizeof(ep), "%s[%zu]", path, i);
		if (!json_is_object(fs))
			return bad(c, ep, "must be an object", fs);
		json_object_foreach(fs, k, e) {
			join_path(kp, ep, k);
			if (streq(k, "source") || streq(k, "type")) {
				if (!json_is_string(e) || !*json_string_value(e))
					return bad(c, kp, "must be a non-empty string", e);
				if (!mount_field_ok(json_string_value(e)))
					return bad(c, kp,
						   "must not hold blanks, backslashes or control "
						   "characters",
						   e);
			} else if (streq(k, "target")) {
				if (!json_is_string(e) || !clean_absolute(json_string_value(e)))
					return bad(c, kp, "must be an absolute path without '..'",
						   e);
				if (!mount_field_ok(json_string_value(e)))
					return bad(c, kp,
						   "must not hold blanks, backslashes or control "
						   "characters",
						   e);
			} else if (streq(k, "options")) {
				r = check_string_list(c, kp, e);
				if (r < 0)
					return r;
			} else
				return vm_error_setx(c->err, EINVAL, "unknown property '%s'", kp);
		}
		if (!json_object_get(fs, "source") || !json_object_get(fs, "target"))
			return vm_error_setx(c->err, EINVAL, "%s: needs source and target", ep);
		type = json_string_value(json_object_get(fs, "type"));
		source = json_string_value(json_object_get(fs, "source"));
		if (type) {
			join_path(kp, ep, "type");
			r = check_enum(c, kp, json_object_get(fs, "type"), fs_types);
			if (r < 0)
				return r;
		}
		if (vm_filesystem_type_is_bind(type) && !clean_absolute(source)) {
			join_path(kp, ep, "source");
			return bad(c, kp,
				   "must be an absolute path without '..' (a host directory "
				   "or file)",
				   json_object_get(fs, "source"));
		}
		json_array_foreach (json_object_get(fs, "options"), j, o) {
			if (!fs_option_ok(type, json_string_value(o))) {
				char what[256];

				snprintf(kp, sizeof(kp), "%s.options[%zu]", ep, j);
				snprintf(what, sizeof(what),
					 "must be one of ro, rw, nodev, nodevice(s), nosuid, "
					 "noexec%s",
					 type && streq(type, "tmpfs") ? ", size=N[kmg%], mode=OCTAL"
								      : "");
				return bad(c, kp, what, o);
			}
		}
	}
	return 0;
}

static int check_is_object(json_t *payload, struct vm_error *err)
{
	if (!payload)
		return vm_error_setx(err, EINVAL, "payload is empty");
	if (!json_is_object(payload))
		return vm_error_setx(err, EINVAL, "payload must be a JSON object, got %s",
				     type_word(payload));
	return 0;
}

/* Resolve the brand to validate for: the caller's, else the payload's. */
static int resolve_brand(struct ctx *c, json_t *payload, const char *brand, bool required)
{
	json_t *pb = json_object_get(payload, "brand");
	char b[SHOW_MAX + 4];

	if (pb && !json_is_string(pb))
		return bad(c, "brand", "must be a string", pb);
	if (brand) {
		if (!vm_brand_flag(brand))
			return vm_error_setx(c->err, EINVAL,
					     "property 'brand': unknown brand \"%s\" (valid: kvm, "
					     "joyent)",
					     brand);
		if (pb && !streq(json_string_value(pb), brand))
			return vm_error_setx(c->err, EINVAL,
					     "property 'brand': payload has %s, validating for "
					     "brand %s",
					     show(pb, b), brand);
	} else if (pb) {
		brand = json_string_value(pb);
	} else if (required) {
		return vm_error_setx(c->err, EINVAL, "missing required property 'brand'");
	} else {
		return vm_error_setx(c->err, EINVAL, "no brand to validate for");
	}
	c->brand = vm_brand_flag(brand);
	if (!c->brand)
		return vm_error_setx(c->err, EINVAL,
				     "property 'brand': unknown brand %s (valid: kvm, joyent)",
				     show(pb, b));
	c->brand_name = c->brand == VM_PF_KVM ? "kvm" : "joyent";
	return 0;
}

/* brand_given: the caller named the brand, so the payload need not. */
static int check_required(struct ctx *c, json_t *payload, bool brand_given)
{
	for (const struct vm_prop *p = vm_props; p->name; p++)
		if ((p->flags & VM_PF_REQUIRED) && (p->flags & c->brand) &&
		    !(brand_given && streq(p->name, "brand")) &&
		    !json_object_get(payload, p->name))
			return vm_error_setx(c->err, EINVAL, "missing required property '%s'",
					     p->name);
	return 0;
}

int vm_validate_create(json_t *payload, const char *brand, struct vm_error *err)
{
	struct ctx c = { .mode = MODE_CREATE, .err = err };
	int r;

	r = check_is_object(payload, err);
	if (r < 0)
		return r;
	r = resolve_brand(&c, payload, brand, true);
	if (r < 0)
		return r;
	r = check_required(&c, payload, brand != NULL);
	if (r < 0)
		return r;
	return check_object_keys(&c, vm_props, NULL, payload);
}

int vm_validate_record(json_t *vm, struct vm_error *err)
{
	struct ctx c = { .mode = MODE_RECORD, .err = err };
	json_t *uuid;
	int r;

	r = check_is_object(vm, err);
	if (r < 0)
		return r;
	r = resolve_brand(&c, vm, NULL, true);
	if (r < 0)
		return r;
	uuid = json_object_get(vm, "uuid");
	if (!uuid)
		return vm_error_setx(err, EINVAL, "missing required property 'uuid'");
	return check_object_keys(&c, vm_props, NULL, vm);
}

/* What a VM delegates is its own zones/UUID/data or nothing (vmadm makes
 * no other), and delegate_dataset says which: a received record may not
 * bring more datasets (each would be a receive) nor point the brand's
 * ZONEPATH/data bind mount at a path that is not a dataset. */
static int check_received_datasets(struct ctx *c, json_t *vm)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	json_t *ds = json_object_get(vm, "datasets");
	bool delegate = json_is_true(json_object_get(vm, "delegate_dataset"));
	size_t n = json_array_size(ds);
	char want[64], b[SHOW_MAX + 4];

	snprintf(want, sizeof(want), "zones/%s/data", uuid);
	if (n > 1 || (n == 1 && !streq(json_string_value(json_array_get(ds, 0)), want)))
		return vm_error_setx(c->err, EINVAL,
				     "property 'datasets': a VM delegates its own %s or nothing, "
				     "got %s",
				     want, show(ds, b));
	if (delegate != (n == 1))
		return vm_error_setx(
		    c->err, EINVAL, "property 'delegate_dataset' is %s, but 'datasets' %s %s",
		    delegate ? "true" : "false", n ? "lists" : "does not list", want);
	return 0;
}

int vm_validate_received(json_t *vm, struct vm_error *err)
{
	struct ctx c = {.mode = MODE_RECEIVED, .err = err};
	int r;

	r = check_is_object(vm, err);
	if (r < 0)
		return r;
	r = resolve_brand(&c, vm, NULL, true);
	if (r < 0)
		return r;
	if (!json_object_get(vm, "uuid"))
		return vm_error_setx(err, EINVAL, "missing required property 'uuid'");
	r = check_object_keys(&c, vm_props, NULL, vm);
	if (r < 0)
		return r;
	return check_received_datasets(&c, vm);
}

int vm_validate_nic_tags(json_t *nic_tags, json_t *nics, const char *path, struct vm_error *err)
{
	json_t *nic;
	size_t i;

	/* A node without nic_tags has no host networks: every nic is on an
	 * isolated network whatever its tag (brand/kvm.c), so a tag is a
	 * label that harms nothing. */
	if (!nic_tags)
		return 0;
	json_array_foreach (nics, i, nic) {
		const char *tag = json_string_value(json_object_get(nic, "nic_tag"));
		char defined[256] = "";
		size_t n = 0;
		const char *k;
		json_t *v;

		if (!tag || json_object_get(nic_tags, tag))
			continue;
		json_object_foreach (nic_tags, k, v) {
			if (n + strlen(k) + 8 >= sizeof(defined)) {
				snprintf(defined + n, sizeof(defined) - n, ", ...");
				break;
			}
			n += snprintf(defined + n, sizeof(defined) - n, "%s%s", n ? ", " : "", k);
		}
		return vm_error_setx(err, EINVAL,
				     "property '%s[%zu].nic_tag': nic tag \"%s\" is not defined on "
				     "this node (vmadm.conf \"nic_tags\" defines %s)",
				     path, i, tag, n ? defined : "none");
	}
	return 0;
}

int vm_validate_node_nics(struct vm_node *node, json_t *nics, const char *path,
			  struct vm_error *err)
{
	json_t *tags;
	int r;

	if (!nics)
		return 0;
	r = vm_node_nic_tags(node, &tags, err);
	if (r < 0)
		return r;
	return vm_validate_nic_tags(tags, nics, path, err);
}

/* The SmartOS update keys that are not properties themselves. */
static int check_update_key(struct ctx *c, json_t *payload, const char *key, json_t *v,
			    bool *handled)
{
	static const char *const meta[] = { "customer_metadata", "internal_metadata", "tags",
					    NULL };
	size_t i;
	json_t *e;
	int r;

	*handled = true;
	for (const char *const *m = meta; *m; m++) {
		char set[64], rem[64], ep[PATH_MAX_LEN];

		snprintf(set, sizeof(set), "set_%s", *m);
		snprintf(rem, sizeof(rem), "remove_%s", *m);
		if (!streq(key, set) && !streq(key, rem))
			continue;
		if (json_object_get(payload, *m))
			return vm_error_setx(c->err, EINVAL,
					     "property '%s' conflicts with '%s': give one", key,
					     *m);
		if (streq(key, set))
			return check_flat_object(c, key, v);
		r = check_string_list(c, key, v);
		if (r < 0)
			return r;
		json_array_foreach(v, i, e) {
			json_t *s = json_object_get(payload, set);

			if (s && json_object_get(s, json_string_value(e))) {
				snprintf(ep, sizeof(ep), "%s[%zu]", key, i);
				return bad(c, ep, "is also in set_ of the same update", e);
			}
		}
		return 0;
	}
	if (streq(key, "add_nics")) {
		r = check_nics(c, key, v, false);
		if (r < 0)
			return r;
		/* an added static ip needs its netmask, as at create */
		json_array_foreach(v, i, e) {
			json_t *ip = json_object_get(e, "ip");

			if (ip && !streq(json_string_value(ip), "dhcp") &&
			    !json_object_get(e, "netmask"))
				return vm_error_setx(c->err, EINVAL,
						     "%s[%zu]: ip %s needs a netmask", key, i,
						     json_string_value(ip));
		}
		return 0;
	}
	if (streq(key, "update_nics"))
		return check_nics(c, key, v, true);
	if (streq(key, "remove_nics")) {
		r = check_string_list(c, key, v);
		if (r < 0)
			return r;
		json_array_foreach(v, i, e) {
			if (!vm_mac_valid(json_string_value(e))) {
				char ep[PATH_MAX_LEN];

				snprintf(ep, sizeof(ep), "%s[%zu]", key, i);
				return bad(c, ep, "not a unicast MAC address xx:xx:xx:xx:xx:xx", e);
			}
		}
		return 0;
	}
	*handled = false;
	return 0;
}

int vm_validate_update(json_t *payload, const char *brand, struct vm_error *err)
{
	struct ctx c = { .mode = MODE_UPDATE, .err = err };
	const char *k;
	json_t *v;
	int r;

	r = check_is_object(payload, err);
	if (r < 0)
		return r;
	if (!vm_brand_flag(brand))
		return vm_error_setx(err, EINVAL, "unknown brand \"%s\" (valid: kvm, joyent)",
				     brand ? brand : "(none)");
	c.brand = vm_brand_flag(brand);
	c.brand_name = brand;
	json_object_foreach(payload, k, v) {
		bool handled;

		r = check_update_key(&c, payload, k, v, &handled);
		if (r < 0)
			return r;
		if (handled)
			continue;
		r = check_key(&c, vm_props, NULL, k, v);
		if (r < 0)
			return r;
	}
	return 0;
}

int vm_validate_json_text(const char *text, json_t **ret, struct vm_error *err)
{
	json_error_t jerr;
	json_t *v;
	int r;

	v = json_loads(text ? text : "", JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!v)
		return vm_error_setx(err, EINVAL, "invalid JSON at line %d, column %d: %s",
				     jerr.line, jerr.column, jerr.text);
	r = check_is_object(v, err);
	if (r < 0) {
		json_decref(v);
		return r;
	}
	*ret = v;
	return 0;
}
