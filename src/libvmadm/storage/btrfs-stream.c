/* SPDX-License-Identifier: MIT */
/* The btrfs send stream checker (see btrfs-stream.h). */
#include "storage/btrfs-stream.h"

#include <errno.h>
#include <isa-l/crc.h>
#include <stdio.h>
#include <string.h>

#define SEND_MAGIC	 "btrfs-stream"
#define SEND_VERSION_MAX 3
#define PATH_MAX_LEN	 4095
#define NAME_MAX_LEN	 255

/* Inode flags of FILEATTR (BTRFS_INODE_*, not in the uapi headers). */
#define INODE_IMMUTABLE (1u << 6)
#define INODE_APPEND	(1u << 7)

/* The newest command and attribute of each version. */
static const unsigned cmd_max[SEND_VERSION_MAX + 1] = {0, 22, 25, 26};
static const unsigned attr_max[SEND_VERSION_MAX + 1] = {0, 24, 31, 35};

#define BIT(a) (1ull << (a))

struct attr_type {
	const char *name;
	uint16_t size; /* 0: any length */
	bool string;   /* text: no NUL byte */
};

static const struct attr_type attrs[BTRFS_SEND_A_MAX + 1] = {
    [BTRFS_SEND_A_UUID] = {"uuid", 16},
    [BTRFS_SEND_A_CTRANSID] = {"ctransid", 8},
    [BTRFS_SEND_A_INO] = {"ino", 8},
    [BTRFS_SEND_A_SIZE] = {"size", 8},
    [BTRFS_SEND_A_MODE] = {"mode", 8},
    [BTRFS_SEND_A_UID] = {"uid", 8},
    [BTRFS_SEND_A_GID] = {"gid", 8},
    [BTRFS_SEND_A_RDEV] = {"rdev", 8},
    [BTRFS_SEND_A_CTIME] = {"ctime", 12},
    [BTRFS_SEND_A_MTIME] = {"mtime", 12},
    [BTRFS_SEND_A_ATIME] = {"atime", 12},
    [BTRFS_SEND_A_OTIME] = {"otime", 12},
    [BTRFS_SEND_A_XATTR_NAME] = {"xattr_name", 0, true},
    [BTRFS_SEND_A_XATTR_DATA] = {"xattr_data", 0},
    [BTRFS_SEND_A_PATH] = {"path", 0, true},
    [BTRFS_SEND_A_PATH_TO] = {"path_to", 0, true},
    [BTRFS_SEND_A_PATH_LINK] = {"path_link", 0, true},
    [BTRFS_SEND_A_FILE_OFFSET] = {"file_offset", 8},
    [BTRFS_SEND_A_DATA] = {"data", 0},
    [BTRFS_SEND_A_CLONE_UUID] = {"clone_uuid", 16},
    [BTRFS_SEND_A_CLONE_CTRANSID] = {"clone_ctransid", 8},
    [BTRFS_SEND_A_CLONE_PATH] = {"clone_path", 0, true},
    [BTRFS_SEND_A_CLONE_OFFSET] = {"clone_offset", 8},
    [BTRFS_SEND_A_CLONE_LEN] = {"clone_len", 8},
    [BTRFS_SEND_A_FALLOCATE_MODE] = {"fallocate_mode", 4},
    [BTRFS_SEND_A_FILEATTR] = {"fileattr", 8},
    [BTRFS_SEND_A_UNENCODED_FILE_LEN] = {"unencoded_file_len", 8},
    [BTRFS_SEND_A_UNENCODED_LEN] = {"unencoded_len", 8},
    [BTRFS_SEND_A_UNENCODED_OFFSET] = {"unencoded_offset", 8},
    [BTRFS_SEND_A_COMPRESSION] = {"compression", 4},
    [BTRFS_SEND_A_ENCRYPTION] = {"encryption", 4},
    [BTRFS_SEND_A_VERITY_ALGORITHM] = {"verity_algorithm", 1},
    [BTRFS_SEND_A_VERITY_BLOCK_SIZE] = {"verity_block_size", 4},
    [BTRFS_SEND_A_VERITY_SALT_DATA] = {"verity_salt_data", 0},
    [BTRFS_SEND_A_VERITY_SIG_DATA] = {"verity_sig_data", 0},
};

struct cmd_type {
	const char *name;
	uint64_t need; /* attributes it must have */
	uint64_t may;  /* and may have besides */
	bool root_ok;  /* PATH may be "" (the subvolume's root) */
};

#define MK(extra) (BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_INO) | (extra))

/* As `btrfs receive` reads them (btrfs-progs read_and_process_cmd); the
 * attributes a kernel sender adds that the receiver ignores are in may. */
static const struct cmd_type cmds[BTRFS_SEND_C_MAX + 1] = {
    [BTRFS_SEND_C_SUBVOL] = {"subvol", BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_UUID) |
					   BIT(BTRFS_SEND_A_CTRANSID)},
    [BTRFS_SEND_C_SNAPSHOT] = {"snapshot", BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_UUID) |
					       BIT(BTRFS_SEND_A_CTRANSID) |
					       BIT(BTRFS_SEND_A_CLONE_UUID) |
					       BIT(BTRFS_SEND_A_CLONE_CTRANSID)},
    [BTRFS_SEND_C_MKFILE] = {"mkfile", MK(0)},
    [BTRFS_SEND_C_MKDIR] = {"mkdir", MK(0)},
    [BTRFS_SEND_C_MKNOD] = {"mknod", MK(BIT(BTRFS_SEND_A_MODE) | BIT(BTRFS_SEND_A_RDEV))},
    [BTRFS_SEND_C_MKFIFO] = {"mkfifo", MK(0), BIT(BTRFS_SEND_A_MODE) | BIT(BTRFS_SEND_A_RDEV)},
    [BTRFS_SEND_C_MKSOCK] = {"mksock", MK(0), BIT(BTRFS_SEND_A_MODE) | BIT(BTRFS_SEND_A_RDEV)},
    [BTRFS_SEND_C_SYMLINK] = {"symlink", MK(BIT(BTRFS_SEND_A_PATH_LINK))},
    [BTRFS_SEND_C_RENAME] = {"rename", BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_PATH_TO)},
    [BTRFS_SEND_C_LINK] = {"link", BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_PATH_LINK)},
    [BTRFS_SEND_C_UNLINK] = {"unlink", BIT(BTRFS_SEND_A_PATH)},
    [BTRFS_SEND_C_RMDIR] = {"rmdir", BIT(BTRFS_SEND_A_PATH)},
    [BTRFS_SEND_C_SET_XATTR] = {"set_xattr",
				BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_XATTR_NAME) |
				    BIT(BTRFS_SEND_A_XATTR_DATA),
				0, true},
    [BTRFS_SEND_C_REMOVE_XATTR] = {"remove_xattr",
				   BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_XATTR_NAME), 0, true},
    [BTRFS_SEND_C_WRITE] = {"write", BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_FILE_OFFSET) |
					 BIT(BTRFS_SEND_A_DATA)},
    [BTRFS_SEND_C_CLONE] = {"clone",
			    BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_FILE_OFFSET) |
				BIT(BTRFS_SEND_A_CLONE_LEN) | BIT(BTRFS_SEND_A_CLONE_UUID) |
				BIT(BTRFS_SEND_A_CLONE_CTRANSID) | BIT(BTRFS_SEND_A_CLONE_PATH) |
				BIT(BTRFS_SEND_A_CLONE_OFFSET)},
    [BTRFS_SEND_C_TRUNCATE] = {"truncate", BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_SIZE)},
    [BTRFS_SEND_C_CHMOD] = {"chmod", BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_MODE), 0, true},
    [BTRFS_SEND_C_CHOWN] = {"chown",
			    BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_UID) | BIT(BTRFS_SEND_A_GID),
			    0, true},
    [BTRFS_SEND_C_UTIMES] = {"utimes",
			     BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_ATIME) |
				 BIT(BTRFS_SEND_A_MTIME) | BIT(BTRFS_SEND_A_CTIME),
			     BIT(BTRFS_SEND_A_OTIME), true},
    [BTRFS_SEND_C_END] = {"end", 0},
    [BTRFS_SEND_C_UPDATE_EXTENT] = {"update_extent", BIT(BTRFS_SEND_A_PATH) |
							 BIT(BTRFS_SEND_A_FILE_OFFSET) |
							 BIT(BTRFS_SEND_A_SIZE)},
    [BTRFS_SEND_C_FALLOCATE] = {"fallocate",
				BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_FALLOCATE_MODE) |
				    BIT(BTRFS_SEND_A_FILE_OFFSET) | BIT(BTRFS_SEND_A_SIZE)},
    [BTRFS_SEND_C_FILEATTR] = {"fileattr", BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_FILEATTR), 0,
			       true},
    [BTRFS_SEND_C_ENCODED_WRITE] = {"encoded_write",
				    BIT(BTRFS_SEND_A_PATH) | BIT(BTRFS_SEND_A_FILE_OFFSET) |
					BIT(BTRFS_SEND_A_UNENCODED_FILE_LEN) |
					BIT(BTRFS_SEND_A_UNENCODED_LEN) |
					BIT(BTRFS_SEND_A_UNENCODED_OFFSET) | BIT(BTRFS_SEND_A_DATA),
				    BIT(BTRFS_SEND_A_COMPRESSION) | BIT(BTRFS_SEND_A_ENCRYPTION)},
    [BTRFS_SEND_C_ENABLE_VERITY] = {"enable_verity", BIT(BTRFS_SEND_A_PATH) |
							 BIT(BTRFS_SEND_A_VERITY_ALGORITHM) |
							 BIT(BTRFS_SEND_A_VERITY_BLOCK_SIZE) |
							 BIT(BTRFS_SEND_A_VERITY_SALT_DATA) |
							 BIT(BTRFS_SEND_A_VERITY_SIG_DATA)},
};

/* Attributes that name a path inside the received subvolume (PATH_LINK of
 * SYMLINK is the link's target: data, never followed by the receiver). */
static bool names_path(unsigned cmd, unsigned attr)
{
	return attr == BTRFS_SEND_A_PATH || attr == BTRFS_SEND_A_PATH_TO ||
	       attr == BTRFS_SEND_A_CLONE_PATH ||
	       (attr == BTRFS_SEND_A_PATH_LINK && cmd != BTRFS_SEND_C_SYMLINK);
}

static uint32_t le32(const uint8_t *p)
{
	return p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint16_t le16(const uint8_t *p)
{
	return p[0] | (p[1] << 8);
}

static uint64_t le64(const uint8_t *p)
{
	return le32(p) | ((uint64_t)le32(p + 4) << 32);
}

/* The raw CRC-32C register (seed 0, no inversion), as btrfs send computes
 * it, of the command with its CRC field taken as zero. ISA-L's
 * crc32_iscsi keeps the raw register too. */
static uint32_t cmd_crc(const uint8_t *cmd, size_t len)
{
	uint8_t hdr[BTRFS_STREAM_CMD_HEADER_SIZE];
	uint32_t crc;

	memcpy(hdr, cmd, 6);
	memset(hdr + 6, 0, 4);
	crc = crc32_iscsi(hdr, sizeof(hdr), 0);
	return crc32_iscsi((unsigned char *)cmd + sizeof(hdr), (int)(len - sizeof(hdr)), crc);
}

/* p as a quoted C-like string for messages: at most 120 bytes of it,
 * non-printable bytes as \xNN. */
static const char *quote(const uint8_t *p, size_t len, char *buf, size_t size)
{
	size_t o = 0;

	buf[o++] = '"';
	for (size_t i = 0; i < len && o + 8 < size; i++) {
		if (i == 120) {
			o += snprintf(buf + o, size - o, "...");
			break;
		}
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
			buf[o++] = (char)p[i];
		else
			o += snprintf(buf + o, size - o, "\\x%02x", p[i]);
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

static void uuid_str(const uint8_t u[16], char out[37])
{
	static const int dash[] = {4, 6, 8, 10};
	size_t o = 0;

	for (int i = 0, d = 0; i < 16; i++) {
		if (d < 4 && i == dash[d]) {
			out[o++] = '-';
			d++;
		}
		o += snprintf(out + o, 37 - o, "%02x", u[i]);
	}
}

/* Why path (len bytes) does not name something inside the subvolume, or
 * NULL when it does. empty_ok: "" (the subvolume's root) is allowed. */
static const char *path_problem(const uint8_t *p, size_t len, bool empty_ok)
{
	size_t start = 0;

	if (len == 0)
		return empty_ok ? NULL : "is empty";
	if (p[0] == '/')
		return "is absolute";
	if (len > PATH_MAX_LEN)
		return "is longer than 4095 bytes";
	for (size_t i = 0; i <= len; i++) {
		if (i < len && p[i] != '/')
			continue;
		if (i == start)
			return "has an empty component";
		if (i - start == 2 && p[start] == '.' && p[start + 1] == '.')
			return "has a \"..\" component";
		if (i - start == 1 && p[start] == '.')
			return "has a \".\" component";
		start = i + 1;
	}
	return NULL;
}

/* Why name does not name a new subvolume in the receive directory. */
static const char *name_problem(const uint8_t *p, size_t len)
{
	if (len == 0)
		return "is empty";
	if (len > NAME_MAX_LEN)
		return "is longer than 255 bytes";
	if (memchr(p, '/', len))
		return "is not one name (it has a \"/\")";
	if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
		return "is not a name";
	return NULL;
}

void btrfs_stream_check_init(struct btrfs_stream_check *c, const struct btrfs_stream_subvol *base)
{
	memset(c, 0, sizeof(*c));
	if (base) {
		c->incremental = true;
		c->base = *base;
	}
}

int btrfs_stream_check_header(struct btrfs_stream_check *c, const uint8_t *buf, size_t len,
			      struct vm_error *err)
{
	uint32_t version;

	if (len < BTRFS_STREAM_HEADER_SIZE || memcmp(buf, SEND_MAGIC, sizeof(SEND_MAGIC)) != 0)
		return vm_error_setx(err, EPROTO, "not a btrfs send stream (bad magic)");
	version = le32(buf + sizeof(SEND_MAGIC));
	if (version < 1 || version > SEND_VERSION_MAX)
		return vm_error_setx(err, EPROTO, "btrfs send stream version %u not supported",
				     version);
	c->version = version;
	c->offset = BTRFS_STREAM_HEADER_SIZE;
	return 0;
}

int btrfs_stream_cmd_size(const struct btrfs_stream_check *c,
			  const uint8_t hdr[BTRFS_STREAM_CMD_HEADER_SIZE], size_t *ret_size,
			  struct vm_error *err)
{
	uint64_t size = (uint64_t)le32(hdr) + BTRFS_STREAM_CMD_HEADER_SIZE;
	uint32_t max = c->version >= 2 ? BTRFS_STREAM_CMD_MAX : BTRFS_STREAM_CMD_MAX_V1;

	if (size > max)
		return vm_error_setx(err, EPROTO,
				     "btrfs stream command %llu at byte %llu is %llu bytes long, "
				     "more than the %u a version %u stream allows",
				     (unsigned long long)c->ncmds + 1,
				     (unsigned long long)c->offset, (unsigned long long)size, max,
				     c->version);
	*ret_size = (size_t)size;
	return 0;
}

struct parsed {
	const uint8_t *val[BTRFS_SEND_A_MAX + 1];
	uint16_t len[BTRFS_SEND_A_MAX + 1];
	uint32_t data_len; /* DATA may be longer than 65535 from version 2 */
	uint64_t have;
};

/* The frame: whole, its checksum right, a command the version knows, not
 * after END. Fills where, the command as messages name it, and *ret_ct. */
static int check_frame(struct btrfs_stream_check *c, const uint8_t *cmd, size_t len,
		       const struct cmd_type **ret_ct, char where[96], struct vm_error *err)
{
	const struct cmd_type *ct;
	unsigned type;
	size_t size;
	int r;

	if (len < BTRFS_STREAM_CMD_HEADER_SIZE)
		return vm_error_setx(err, EPROTO,
				     "btrfs stream command %llu at byte %llu: "
				     "its header is incomplete",
				     (unsigned long long)c->ncmds + 1,
				     (unsigned long long)c->offset);
	r = btrfs_stream_cmd_size(c, cmd, &size, err);
	if (r < 0)
		return r;
	type = le16(cmd + 4);
	ct = type <= BTRFS_SEND_C_MAX && type <= cmd_max[c->version] && cmds[type].name
		 ? &cmds[type]
		 : NULL;
	if (ct)
		snprintf(where, 96, "btrfs stream command %llu (%s) at byte %llu",
			 (unsigned long long)c->ncmds + 1, ct->name, (unsigned long long)c->offset);
	else
		snprintf(where, 96, "btrfs stream command %llu at byte %llu",
			 (unsigned long long)c->ncmds + 1, (unsigned long long)c->offset);
	if (size != len)
		return vm_error_setx(err, EPROTO, "%s: %zu bytes where its header says %zu", where,
				     len, size);
	if (cmd_crc(cmd, len) != le32(cmd + 6))
		return vm_error_setx(err, EPROTO, "%s: checksum mismatch", where);
	if (c->ended)
		return vm_error_setx(err, EPROTO, "%s: a command after END", where);
	if (!ct)
		return vm_error_setx(err, EPROTO, "%s: unknown command %u for a version %u stream",
				     where, type, c->version);
	*ret_ct = ct;
	return 0;
}

/* The attributes: known to the version, each once, of its size, and all
 * that the command needs. */
static int parse_attrs(const struct btrfs_stream_check *c, const struct cmd_type *ct,
		       const uint8_t *cmd, size_t len, struct parsed *a, const char *where,
		       struct vm_error *err)
{
	size_t pos = BTRFS_STREAM_CMD_HEADER_SIZE;
	char q[512];

	while (pos < len) {
		unsigned at;
		size_t alen;

		if (len - pos < 2)
			return vm_error_setx(err, EPROTO, "%s: an attribute is cut short", where);
		at = le16(cmd + pos);
		pos += 2;
		if (at == 0 || at > attr_max[c->version] || !attrs[at].name)
			return vm_error_setx(err, EPROTO,
					     "%s: unknown attribute %u for a version %u stream",
					     where, at, c->version);
		if (c->version >= 2 && at == BTRFS_SEND_A_DATA) {
			alen = len - pos; /* the rest of the command */
		} else {
			if (len - pos < 2)
				return vm_error_setx(err, EPROTO, "%s: attribute %s is cut short",
						     where, attrs[at].name);
			alen = le16(cmd + pos);
			pos += 2;
			if (alen > len - pos)
				return vm_error_setx(err, EPROTO,
						     "%s: attribute %s runs past the command's end",
						     where, attrs[at].name);
		}
		if (a->have & BIT(at))
			return vm_error_setx(err, EPROTO, "%s: attribute %s appears twice", where,
					     attrs[at].name);
		if (!((ct->need | ct->may) & BIT(at)))
			return vm_error_setx(err, EPROTO, "%s: a %s command takes no attribute %s",
					     where, ct->name, attrs[at].name);
		if (attrs[at].size && alen != attrs[at].size)
			return vm_error_setx(err, EPROTO, "%s: attribute %s has %zu bytes, not %u",
					     where, attrs[at].name, alen, attrs[at].size);
		if (attrs[at].string && memchr(cmd + pos, '\0', alen))
			return vm_error_setx(err, EPROTO, "%s: %s %s has a NUL byte", where,
					     attrs[at].name, quote(cmd + pos, alen, q, sizeof(q)));
		a->have |= BIT(at);
		a->val[at] = cmd + pos;
		if (at == BTRFS_SEND_A_DATA)
			a->data_len = (uint32_t)alen;
		else
			a->len[at] = (uint16_t)alen;
		pos += alen;
	}
	if ((a->have & ct->need) != ct->need) {
		for (unsigned at = 1; at <= BTRFS_SEND_A_MAX; at++)
			if ((ct->need & BIT(at)) && !(a->have & BIT(at)))
				return vm_error_setx(err, EPROTO, "%s: attribute %s is missing",
						     where, attrs[at].name);
	}
	return 0;
}

/* SUBVOL and SNAPSHOT: the subvolume first, once; a snapshot only of the
 * receiver's own base. Every other command comes after it. */
static int check_subvol(struct btrfs_stream_check *c, unsigned type, const struct parsed *a,
			const char *where, struct vm_error *err)
{
	const char *why;
	char q[512];

	if (type != BTRFS_SEND_C_SUBVOL && type != BTRFS_SEND_C_SNAPSHOT) {
		if (!c->have_subvol)
			return vm_error_setx(err, EPROTO,
					     "%s: comes before the subvolume (SUBVOL or SNAPSHOT)",
					     where);
		return 0;
	}
	why = name_problem(a->val[BTRFS_SEND_A_PATH], a->len[BTRFS_SEND_A_PATH]);
	if (c->have_subvol)
		return vm_error_setx(err, EPROTO,
				     "%s: a second subvolume (a stream here holds one)", where);
	if (type == BTRFS_SEND_C_SUBVOL && c->incremental)
		return vm_error_setx(err, EPROTO, "%s: a SUBVOL command in an incremental stream",
				     where);
	if (type == BTRFS_SEND_C_SNAPSHOT && !c->incremental)
		return vm_error_setx(err, EPROTO, "%s: a SNAPSHOT command in a full stream", where);
	if (why)
		return vm_error_setx(
		    err, EPROTO, "%s: subvolume name %s %s", where,
		    quote(a->val[BTRFS_SEND_A_PATH], a->len[BTRFS_SEND_A_PATH], q, sizeof(q)), why);
	if (type == BTRFS_SEND_C_SNAPSHOT &&
	    (memcmp(a->val[BTRFS_SEND_A_CLONE_UUID], c->base.uuid, BTRFS_STREAM_UUID_SIZE) != 0 ||
	     le64(a->val[BTRFS_SEND_A_CLONE_CTRANSID]) != c->base.ctransid)) {
		char got[37], want[37];
		uuid_str(a->val[BTRFS_SEND_A_CLONE_UUID], got);
		uuid_str(c->base.uuid, want);
		return vm_error_setx(err, EPROTO,
				     "%s: its parent %s (ctransid %llu) is not the base "
				     "%s (ctransid %llu)",
				     where, got,
				     (unsigned long long)le64(a->val[BTRFS_SEND_A_CLONE_CTRANSID]),
				     want, (unsigned long long)c->base.ctransid);
	}
	memcpy(c->subvol.uuid, a->val[BTRFS_SEND_A_UUID], BTRFS_STREAM_UUID_SIZE);
	c->subvol.ctransid = le64(a->val[BTRFS_SEND_A_CTRANSID]);
	c->have_subvol = true;
	return 0;
}

/* Paths: inside the subvolume (the subvolume's own name was checked as a
 * name). */
static int check_paths(unsigned type, const struct cmd_type *ct, const struct parsed *a,
		       const char *where, struct vm_error *err)
{
	char q[512];

	for (unsigned at = 1; at <= BTRFS_SEND_A_MAX; at++) {
		const char *why;

		if (!(a->have & BIT(at)) || !names_path(type, at) ||
		    ((type == BTRFS_SEND_C_SUBVOL || type == BTRFS_SEND_C_SNAPSHOT) &&
		     at == BTRFS_SEND_A_PATH))
			continue;
		why = path_problem(a->val[at], a->len[at], at == BTRFS_SEND_A_PATH && ct->root_ok);
		if (why)
			return vm_error_setx(err, EPROTO, "%s: %s %s %s", where, attrs[at].name,
					     quote(a->val[at], a->len[at], q, sizeof(q)), why);
	}
	return 0;
}

/* CLONE: only from the subvolume being received or from the base, whose
 * path the caller checks (ret->base_clone_path). */
static int check_clone(const struct btrfs_stream_check *c, const struct parsed *a,
		       struct btrfs_stream_cmd *ret, const char *where, struct vm_error *err)
{
	const uint8_t *u = a->val[BTRFS_SEND_A_CLONE_UUID];
	uint64_t t = le64(a->val[BTRFS_SEND_A_CLONE_CTRANSID]);
	char got[37];

	if (memcmp(u, c->subvol.uuid, BTRFS_STREAM_UUID_SIZE) == 0 && t == c->subvol.ctransid)
		return 0; /* from the subvolume being received */
	if (c->incremental && memcmp(u, c->base.uuid, BTRFS_STREAM_UUID_SIZE) == 0 &&
	    t == c->base.ctransid) {
		if (ret) {
			ret->base_clone_path = (const char *)a->val[BTRFS_SEND_A_CLONE_PATH];
			ret->base_clone_path_len = a->len[BTRFS_SEND_A_CLONE_PATH];
		}
		return 0;
	}
	uuid_str(u, got);
	return vm_error_setx(err, EPROTO,
			     "%s: clone source %s (ctransid %llu) is neither the "
			     "received subvolume nor its base",
			     where, got, (unsigned long long)t);
}

/* FILEATTR: never immutable or append-only, which would stop the host
 * from removing what it received. */
static int check_fileattr(const struct parsed *a, const char *where, struct vm_error *err)
{
	char q[512];

	if (!(le64(a->val[BTRFS_SEND_A_FILEATTR]) & (INODE_IMMUTABLE | INODE_APPEND)))
		return 0;
	return vm_error_setx(
	    err, EPROTO,
	    "%s: path %s would be made immutable or append-only (flags "
	    "0x%llx)",
	    where, quote(a->val[BTRFS_SEND_A_PATH], a->len[BTRFS_SEND_A_PATH], q, sizeof(q)),
	    (unsigned long long)le64(a->val[BTRFS_SEND_A_FILEATTR]));
}

int btrfs_stream_check_cmd(struct btrfs_stream_check *c, const uint8_t *cmd, size_t len,
			   struct btrfs_stream_cmd *ret, struct vm_error *err)
{
	const struct cmd_type *ct = NULL;
	struct parsed a = {0};
	char where[96];
	unsigned type;
	int r;

	r = check_frame(c, cmd, len, &ct, where, err);
	if (r < 0)
		return r;
	type = le16(cmd + 4);
	r = parse_attrs(c, ct, cmd, len, &a, where, err);
	if (r >= 0)
		r = check_subvol(c, type, &a, where, err);
	if (r >= 0)
		r = check_paths(type, ct, &a, where, err);
	if (r < 0)
		return r;
	if (ret) {
		ret->cmd = (uint16_t)type;
		ret->base_clone_path = NULL;
		ret->base_clone_path_len = 0;
	}
	if (type == BTRFS_SEND_C_CLONE)
		r = check_clone(c, &a, ret, where, err);
	if (r >= 0 && type == BTRFS_SEND_C_FILEATTR)
		r = check_fileattr(&a, where, err);
	if (r < 0)
		return r;
	if (type == BTRFS_SEND_C_END)
		c->ended = true;
	c->offset += len;
	c->ncmds++;
	return 0;
}

int btrfs_stream_check_buffer(const uint8_t *buf, size_t len,
			      const struct btrfs_stream_subvol *base, struct vm_error *err)
{
	struct btrfs_stream_check c;
	size_t pos = BTRFS_STREAM_HEADER_SIZE;
	int r;

	btrfs_stream_check_init(&c, base);
	r = btrfs_stream_check_header(&c, buf, len, err);
	if (r < 0)
		return r;
	while (!c.ended) {
		size_t size;

		if (len - pos < BTRFS_STREAM_CMD_HEADER_SIZE)
			return vm_error_setx(err, EPROTO,
					     "btrfs stream truncated at byte %zu (no end command)",
					     len);
		r = btrfs_stream_cmd_size(&c, buf + pos, &size, err);
		if (r < 0)
			return r;
		if (len - pos < size)
			return vm_error_setx(err, EPROTO,
					     "btrfs stream truncated at byte %zu (no end command)",
					     len);
		r = btrfs_stream_check_cmd(&c, buf + pos, size, NULL, err);
		if (r < 0)
			return r;
		pos += size;
	}
	if (pos != len)
		return vm_error_setx(err, EPROTO,
				     "trailing data after the btrfs stream's END at "
				     "byte %zu",
				     pos);
	return 0;
}
