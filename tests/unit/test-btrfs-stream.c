/* SPDX-License-Identifier: MIT */
/*
 * The btrfs send stream checker (storage/btrfs-stream.h): real streams of
 * `btrfs send` (tests/unit/data/btrfs, full and incremental, versions 1 and
 * 2) are accepted; crafted commands that leave the subvolume, name another
 * subvolume, come out of order, or are malformed are refused, each with the
 * message that names the command, its byte offset and the reason.
 */
#include <errno.h>
#include <isa-l/crc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "storage/btrfs-stream.h"
#include "util/fs.h"
#include "util/macros.h"

static const uint8_t U_SUB[16] = {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
				  0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11};
static const uint8_t U_BASE[16] = {0xba, 0x5e, 0xba, 0x5e, 0xba, 0x5e, 0xba, 0x5e,
				   0xba, 0x5e, 0xba, 0x5e, 0xba, 0x5e, 0xba, 0x5e};
static const uint8_t U_OTHER[16] = {0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e,
				    0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e};
static const struct btrfs_stream_subvol BASE = {
    .uuid = {0xba, 0x5e, 0xba, 0x5e, 0xba, 0x5e, 0xba, 0x5e, 0xba, 0x5e, 0xba, 0x5e, 0xba, 0x5e,
	     0xba, 0x5e},
    .ctransid = 7,
};

/* ---- a stream builder ---- */

struct sb {
	uint8_t buf[600 * 1024];
	size_t len, cmd;
};
static struct sb S;

static void put(struct sb *s, const void *p, size_t n)
{
	if (s->len + n > sizeof(s->buf))
		abort();
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}
static void put_le16(struct sb *s, uint16_t v)
{
	uint8_t b[2] = {v & 0xff, v >> 8};
	put(s, b, 2);
}
static void put_le32(struct sb *s, uint32_t v)
{
	uint8_t b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24};
	put(s, b, 4);
}
static void put_le64(struct sb *s, uint64_t v)
{
	put_le32(s, (uint32_t)v);
	put_le32(s, (uint32_t)(v >> 32));
}

static void header(struct sb *s, uint32_t version)
{
	s->len = 0;
	put(s, "btrfs-stream", 13);
	put_le32(s, version);
}
static void cmd(struct sb *s, uint16_t type)
{
	s->cmd = s->len;
	put_le32(s, 0);
	put_le16(s, type);
	put_le32(s, 0);
}
static void attr(struct sb *s, uint16_t type, const void *v, size_t n)
{
	put_le16(s, type);
	put_le16(s, (uint16_t)n);
	put(s, v, n);
}
static void str(struct sb *s, uint16_t type, const char *v)
{
	attr(s, type, v, strlen(v));
}
static void u64(struct sb *s, uint16_t type, uint64_t v)
{
	put_le16(s, type);
	put_le16(s, 8);
	put_le64(s, v);
}
/* Length and CRC of the command begun last: the raw CRC-32C register of
 * the command with a zero CRC field, as btrfs send writes it. */
static void done(struct sb *s)
{
	uint8_t *c = s->buf + s->cmd;
	uint32_t len = (uint32_t)(s->len - s->cmd - 10), crc;

	c[0] = len & 0xff, c[1] = (len >> 8) & 0xff, c[2] = (len >> 16) & 0xff, c[3] = len >> 24;
	crc = crc32_iscsi(c, (int)(s->len - s->cmd), 0);
	c[6] = crc & 0xff, c[7] = (crc >> 8) & 0xff, c[8] = (crc >> 16) & 0xff, c[9] = crc >> 24;
}

static void subvol(struct sb *s, const char *name)
{
	cmd(s, BTRFS_SEND_C_SUBVOL);
	str(s, BTRFS_SEND_A_PATH, name);
	attr(s, BTRFS_SEND_A_UUID, U_SUB, 16);
	u64(s, BTRFS_SEND_A_CTRANSID, 10);
	done(s);
}
static void snapshot(struct sb *s, const uint8_t parent[16], uint64_t parent_ct)
{
	cmd(s, BTRFS_SEND_C_SNAPSHOT);
	str(s, BTRFS_SEND_A_PATH, "sv");
	attr(s, BTRFS_SEND_A_UUID, U_SUB, 16);
	u64(s, BTRFS_SEND_A_CTRANSID, 10);
	attr(s, BTRFS_SEND_A_CLONE_UUID, parent, 16);
	u64(s, BTRFS_SEND_A_CLONE_CTRANSID, parent_ct);
	done(s);
}
static void end(struct sb *s)
{
	cmd(s, BTRFS_SEND_C_END);
	done(s);
}
static void full(struct sb *s)
{
	header(s, 1);
	subvol(s, "sv");
}
static void incr(struct sb *s)
{
	header(s, 1);
	snapshot(s, U_BASE, 7);
}
static void mkfile(struct sb *s, const char *path)
{
	cmd(s, BTRFS_SEND_C_MKFILE);
	str(s, BTRFS_SEND_A_PATH, path);
	u64(s, BTRFS_SEND_A_INO, 300);
	done(s);
}
static void clone_cmd(struct sb *s, const uint8_t src[16], uint64_t ct, const char *from)
{
	cmd(s, BTRFS_SEND_C_CLONE);
	u64(s, BTRFS_SEND_A_FILE_OFFSET, 0);
	u64(s, BTRFS_SEND_A_CLONE_LEN, 4096);
	str(s, BTRFS_SEND_A_PATH, "f");
	attr(s, BTRFS_SEND_A_CLONE_UUID, src, 16);
	u64(s, BTRFS_SEND_A_CLONE_CTRANSID, ct);
	str(s, BTRFS_SEND_A_CLONE_PATH, from);
	u64(s, BTRFS_SEND_A_CLONE_OFFSET, 0);
	done(s);
}

static int check_full(struct vm_error *err)
{
	return btrfs_stream_check_buffer(S.buf, S.len, NULL, err);
}
static int check_incr(struct vm_error *err)
{
	return btrfs_stream_check_buffer(S.buf, S.len, &BASE, err);
}

/* ---- real streams ---- */

static uint8_t *slurp(const char *name, size_t *len)
{
	char path[4096];
	const char *top = getenv("TOP");
	struct vm_error err;
	char *buf = NULL;

	snprintf(path, sizeof(path), "%s/tests/unit/data/btrfs/%s", top ? top : ".", name);
	if (fs_read_file(path, 1 << 20, &buf, len, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return NULL;
	}
	return (uint8_t *)buf;
}

/* The base an incremental stream builds on, as the receiver of the full
 * stream holds it: the full stream's SUBVOL uuid and ctransid. */
static struct btrfs_stream_subvol base_of(const uint8_t *full)
{
	struct btrfs_stream_subvol b = {0};
	const uint8_t *p = full + 17 + 10, *end = p + (full[17] | (full[18] << 8));

	while (p < end) {
		unsigned t = p[0] | (p[1] << 8), n = p[2] | (p[3] << 8);
		if (t == BTRFS_SEND_A_UUID)
			memcpy(b.uuid, p + 4, 16);
		if (t == BTRFS_SEND_A_CTRANSID)
			for (int i = 7; i >= 0; i--)
				b.ctransid = (b.ctransid << 8) | p[4 + i];
		p += 4 + n;
	}
	return b;
}

static void golden(const char *fullname, const char *incrname)
{
	_cleanup_free_ uint8_t *f = NULL, *i = NULL;
	struct btrfs_stream_subvol base, wrong;
	struct vm_error err = {0};
	size_t flen = 0, ilen = 0;

	f = slurp(fullname, &flen);
	i = slurp(incrname, &ilen);
	CHECK(f && i);
	if (!f || !i)
		return;
	base = base_of(f);
	CHECK(base.ctransid != 0);
	CHECK(btrfs_stream_check_buffer(f, flen, NULL, &err) == 0);
	CHECK_STR(err.msg, "");
	CHECK(btrfs_stream_check_buffer(i, ilen, &base, &err) == 0);
	CHECK_STR(err.msg, "");
	/* ... and each with the wrong base, or none. */
	CHECK(btrfs_stream_check_buffer(f, flen, &base, &err) == -EPROTO);
	CHECK_HAS(err.msg, "btrfs stream command 1 (subvol) at byte 17: a SUBVOL command in an "
			   "incremental stream");
	CHECK(btrfs_stream_check_buffer(i, ilen, NULL, &err) == -EPROTO);
	CHECK_HAS(err.msg, "a SNAPSHOT command in a full stream");
	wrong = base;
	wrong.uuid[3] ^= 1;
	CHECK(btrfs_stream_check_buffer(i, ilen, &wrong, &err) == -EPROTO);
	CHECK_HAS(err.msg, "is not the base");
	wrong = base;
	wrong.ctransid++;
	CHECK(btrfs_stream_check_buffer(i, ilen, &wrong, &err) == -EPROTO);
	CHECK_HAS(err.msg, "is not the base");
	/* Cut anywhere before its end, it is incomplete. */
	for (size_t cut = 0; cut < ilen; cut += 97) {
		int r = btrfs_stream_check_buffer(i, cut, &base, &err);
		CHECK(r == -EPROTO);
	}
}

static void golden_v1(void)
{
	golden("v1-full.btrfs", "v1-incr.btrfs");
}
static void golden_v2(void)
{
	golden("v2-full.btrfs", "v2-incr.btrfs");
}

/* Command by command, as storage/btrfs.c uses it: the CLONE from the
 * parent is handed back with its source path for the caller to check. */
static void golden_clone_from_base(void)
{
	_cleanup_free_ uint8_t *f = slurp("v1-full.btrfs", &(size_t){0});
	size_t ilen = 0;
	_cleanup_free_ uint8_t *i = slurp("v1-incr.btrfs", &ilen);
	struct btrfs_stream_check c;
	struct btrfs_stream_subvol base;
	struct vm_error err = {0};
	size_t pos = BTRFS_STREAM_HEADER_SIZE;
	int base_clones = 0, own_clones = 0;

	CHECK(f && i);
	if (!f || !i)
		return;
	base = base_of(f);
	btrfs_stream_check_init(&c, &base);
	CHECK(btrfs_stream_check_header(&c, i, BTRFS_STREAM_HEADER_SIZE, &err) == 0);
	while (pos < ilen && !c.ended) {
		struct btrfs_stream_cmd out;
		size_t size;

		CHECK(btrfs_stream_cmd_size(&c, i + pos, &size, &err) == 0);
		CHECK(btrfs_stream_check_cmd(&c, i + pos, size, &out, &err) == 0);
		if (out.cmd == BTRFS_SEND_C_CLONE && out.base_clone_path) {
			base_clones++;
			CHECK(out.base_clone_path_len == 3 &&
			      memcmp(out.base_clone_path, "old", 3) == 0);
		} else if (out.cmd == BTRFS_SEND_C_CLONE) {
			own_clones++;
		}
		pos += size;
	}
	CHECK(c.ended && pos == ilen);
	CHECK(base_clones == 1);
	CHECK(own_clones == 1);
	CHECK(c.offset == ilen);
}

/* ---- paths ---- */

static void paths_refused(void)
{
	static const struct {
		uint16_t cmd, attr;
		const char *path, *why;
	} bad[] = {
	    {BTRFS_SEND_C_MKFILE, BTRFS_SEND_A_PATH, "../../etc/x",
	     "path \"../../etc/x\" has a \"..\" component"},
	    {BTRFS_SEND_C_MKFILE, BTRFS_SEND_A_PATH, "a/../../x", "has a \"..\" component"},
	    {BTRFS_SEND_C_MKFILE, BTRFS_SEND_A_PATH, "a/..", "has a \"..\" component"},
	    {BTRFS_SEND_C_MKFILE, BTRFS_SEND_A_PATH, "/etc/passwd",
	     "path \"/etc/passwd\" is absolute"},
	    {BTRFS_SEND_C_MKFILE, BTRFS_SEND_A_PATH, "", "path \"\" is empty"},
	    {BTRFS_SEND_C_MKFILE, BTRFS_SEND_A_PATH, "a//b", "has an empty component"},
	    {BTRFS_SEND_C_MKFILE, BTRFS_SEND_A_PATH, "a/", "has an empty component"},
	    {BTRFS_SEND_C_MKFILE, BTRFS_SEND_A_PATH, "./a", "has a \".\" component"},
	    {BTRFS_SEND_C_MKDIR, BTRFS_SEND_A_PATH, "..", "has a \"..\" component"},
	    {BTRFS_SEND_C_WRITE, BTRFS_SEND_A_PATH, "../x", "(write)"},
	    {BTRFS_SEND_C_RENAME, BTRFS_SEND_A_PATH_TO, "../../x",
	     "path_to \"../../x\" has a \"..\" component"},
	    {BTRFS_SEND_C_RENAME, BTRFS_SEND_A_PATH, "../../outside",
	     "path \"../../outside\" has a \"..\""},
	    {BTRFS_SEND_C_LINK, BTRFS_SEND_A_PATH_LINK, "../../../etc/shadow",
	     "path_link \"../../../etc/shadow\" has"},
	    {BTRFS_SEND_C_LINK, BTRFS_SEND_A_PATH_LINK, "/etc/shadow", "is absolute"},
	    {BTRFS_SEND_C_CHMOD, BTRFS_SEND_A_PATH, "../secret", "(chmod)"},
	    {BTRFS_SEND_C_UNLINK, BTRFS_SEND_A_PATH, "", "is empty"},
	    {BTRFS_SEND_C_CLONE, BTRFS_SEND_A_CLONE_PATH, "../../other/secret",
	     "clone_path \"../../other/secret\""},
	};

	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		struct vm_error err = {0};
		size_t at;

		full(&S);
		mkfile(&S, "f");
		at = S.len;
		cmd(&S, bad[k].cmd);
		switch (bad[k].cmd) {
		case BTRFS_SEND_C_MKFILE:
		case BTRFS_SEND_C_MKDIR:
			str(&S, BTRFS_SEND_A_PATH, bad[k].path);
			u64(&S, BTRFS_SEND_A_INO, 301);
			break;
		case BTRFS_SEND_C_WRITE:
			str(&S, BTRFS_SEND_A_PATH, bad[k].path);
			u64(&S, BTRFS_SEND_A_FILE_OFFSET, 0);
			attr(&S, BTRFS_SEND_A_DATA, "PWNED", 5);
			break;
		case BTRFS_SEND_C_RENAME:
			str(&S, BTRFS_SEND_A_PATH,
			    bad[k].attr == BTRFS_SEND_A_PATH ? bad[k].path : "f");
			str(&S, BTRFS_SEND_A_PATH_TO,
			    bad[k].attr == BTRFS_SEND_A_PATH_TO ? bad[k].path : "g");
			break;
		case BTRFS_SEND_C_LINK:
			str(&S, BTRFS_SEND_A_PATH, "g");
			str(&S, BTRFS_SEND_A_PATH_LINK, bad[k].path);
			break;
		case BTRFS_SEND_C_CHMOD:
			str(&S, BTRFS_SEND_A_PATH, bad[k].path);
			u64(&S, BTRFS_SEND_A_MODE, 0666);
			break;
		case BTRFS_SEND_C_UNLINK:
			str(&S, BTRFS_SEND_A_PATH, bad[k].path);
			break;
		case BTRFS_SEND_C_CLONE:
			S.len = at;
			clone_cmd(&S, U_SUB, 10, bad[k].path);
			S.cmd = at;
			break;
		}
		if (bad[k].cmd != BTRFS_SEND_C_CLONE)
			done(&S);
		end(&S);
		CHECK(check_full(&err) == -EPROTO);
		CHECK_HAS(err.msg, bad[k].why);
		if (check_current_failed) {
			snprintf(check_why + strlen(check_why),
				 sizeof(check_why) - strlen(check_why), " (case %zu)", k);
			return;
		}
	}
}

/* The message says which command, where, and why. */
static void message_names_command_and_byte(void)
{
	struct vm_error err = {0};
	char want[200];
	size_t at;

	full(&S);
	mkfile(&S, "ok");
	at = S.len;
	mkfile(&S, "../../etc/x");
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	snprintf(want, sizeof(want),
		 "btrfs stream command 3 (mkfile) at byte %zu: path \"../../etc/x\" has a \"..\" "
		 "component",
		 at);
	CHECK_STR(err.msg, want);
	/* A hostile path is shown escaped and cut. */
	full(&S);
	mkfile(&S, "/\x1b[2J\n");
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "path \"/\\x1b[2J\\x0a\" is absolute");
}

static void paths_allowed(void)
{
	struct vm_error err = {0};

	full(&S);
	/* The root's own attributes come with an empty path. */
	cmd(&S, BTRFS_SEND_C_UTIMES);
	str(&S, BTRFS_SEND_A_PATH, "");
	attr(&S, BTRFS_SEND_A_ATIME, "123456789012", 12);
	attr(&S, BTRFS_SEND_A_MTIME, "123456789012", 12);
	attr(&S, BTRFS_SEND_A_CTIME, "123456789012", 12);
	done(&S);
	cmd(&S, BTRFS_SEND_C_CHMOD);
	str(&S, BTRFS_SEND_A_PATH, "");
	u64(&S, BTRFS_SEND_A_MODE, 0755);
	done(&S);
	/* A symlink's target is data: absolute or with "..", it is never
	 * followed by the receiver (and could not leave its chroot). */
	cmd(&S, BTRFS_SEND_C_SYMLINK);
	str(&S, BTRFS_SEND_A_PATH, "o300");
	u64(&S, BTRFS_SEND_A_INO, 300);
	str(&S, BTRFS_SEND_A_PATH_LINK, "/");
	done(&S);
	cmd(&S, BTRFS_SEND_C_SYMLINK);
	str(&S, BTRFS_SEND_A_PATH, "o301");
	u64(&S, BTRFS_SEND_A_INO, 301);
	str(&S, BTRFS_SEND_A_PATH_LINK, "../../../../etc/shadow");
	done(&S);
	mkfile(&S, "dir.with..dots/.hidden/..x/x..");
	cmd(&S, BTRFS_SEND_C_RENAME);
	str(&S, BTRFS_SEND_A_PATH, "o300");
	str(&S, BTRFS_SEND_A_PATH_TO, "a/b/c");
	done(&S);
	end(&S);
	CHECK(check_full(&err) == 0);
	CHECK_STR(err.msg, "");
}

/* ---- the subvolume: first, once, SUBVOL only in a full stream, SNAPSHOT
 * only of the base ---- */

static void subvolume_order(void)
{
	struct vm_error err = {0};

	header(&S, 1);
	mkfile(&S, "f");
	subvol(&S, "sv");
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "btrfs stream command 1 (mkfile) at byte 17: comes before the "
			   "subvolume (SUBVOL or SNAPSHOT)");

	header(&S, 1);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "(end) at byte 17: comes before the subvolume");

	full(&S);
	subvol(&S, "second");
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "command 2 (subvol) at byte");
	CHECK_HAS(err.msg, "a second subvolume");

	incr(&S);
	snapshot(&S, U_BASE, 7);
	end(&S);
	CHECK(check_incr(&err) == -EPROTO);
	CHECK_HAS(err.msg, "a second subvolume");

	full(&S);
	end(&S);
	CHECK(check_incr(&err) == -EPROTO);
	CHECK_HAS(err.msg, "a SUBVOL command in an incremental stream");

	header(&S, 1);
	snapshot(&S, U_OTHER, 5);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "(snapshot) at byte 17: a SNAPSHOT command in a full stream");

	incr(&S);
	end(&S);
	CHECK(check_incr(&err) == 0);
}

static void snapshot_of_another_subvolume(void)
{
	struct vm_error err = {0};

	header(&S, 1);
	snapshot(&S, U_OTHER, 7);
	end(&S);
	CHECK(check_incr(&err) == -EPROTO);
	CHECK_HAS(err.msg, "its parent 0e0e0e0e-0e0e-0e0e-0e0e-0e0e0e0e0e0e (ctransid 7) is not "
			   "the base ba5eba5e-ba5e-ba5e-ba5e-ba5eba5eba5e (ctransid 7)");
	header(&S, 1);
	snapshot(&S, U_BASE, 8);
	end(&S);
	CHECK(check_incr(&err) == -EPROTO);
	CHECK_HAS(err.msg, "(ctransid 8) is not the base");
}

static void subvolume_names(void)
{
	static const char *bad[] = {"", "a/b", "..", ".", "../sv"};
	struct vm_error err = {0};

	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		header(&S, 1);
		subvol(&S, bad[k]);
		end(&S);
		CHECK(check_full(&err) == -EPROTO);
		CHECK_HAS(err.msg, "subvolume name");
	}
	header(&S, 1);
	subvol(&S, "@vmadm-send-I1-x");
	end(&S);
	CHECK(check_full(&err) == 0);
}

/* ---- clones: from the subvolume itself, or from the base ---- */

static void clones(void)
{
	struct vm_error err = {0};
	struct btrfs_stream_check c;
	struct btrfs_stream_cmd out;
	size_t at;

	full(&S);
	mkfile(&S, "f");
	clone_cmd(&S, U_SUB, 10, "g");
	end(&S);
	CHECK(check_full(&err) == 0);

	full(&S);
	mkfile(&S, "f");
	clone_cmd(&S, U_OTHER, 3, "secret");
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "(clone) at byte");
	CHECK_HAS(err.msg, "clone source 0e0e0e0e-0e0e-0e0e-0e0e-0e0e0e0e0e0e (ctransid 3) is "
			   "neither the received subvolume nor its base");

	/* The base exists only for an incremental stream. */
	full(&S);
	mkfile(&S, "f");
	clone_cmd(&S, U_BASE, 7, "old");
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "is neither the received subvolume nor its base");

	/* The subvolume's uuid with another ctransid is not it. */
	full(&S);
	mkfile(&S, "f");
	clone_cmd(&S, U_SUB, 9, "g");
	end(&S);
	CHECK(check_full(&err) == -EPROTO);

	/* From the base: accepted, the path handed back to be resolved. */
	incr(&S);
	mkfile(&S, "f");
	at = S.len;
	clone_cmd(&S, U_BASE, 7, "dir/old");
	end(&S);
	CHECK(check_incr(&err) == 0);
	btrfs_stream_check_init(&c, &BASE);
	CHECK(btrfs_stream_check_header(&c, S.buf, S.len, &err) == 0);
	for (size_t pos = BTRFS_STREAM_HEADER_SIZE, size; pos < S.len; pos += size) {
		CHECK(btrfs_stream_cmd_size(&c, S.buf + pos, &size, &err) == 0);
		CHECK(btrfs_stream_check_cmd(&c, S.buf + pos, size, &out, &err) == 0);
		if (pos == at)
			CHECK(out.cmd == BTRFS_SEND_C_CLONE && out.base_clone_path_len == 7 &&
			      memcmp(out.base_clone_path, "dir/old", 7) == 0);
		else
			CHECK(out.base_clone_path == NULL);
	}
	CHECK(c.ended);
}

/* ---- malformed commands ---- */

static void malformed(void)
{
	struct vm_error err = {0};
	size_t at;

	/* CRC */
	full(&S);
	at = S.len;
	mkfile(&S, "f");
	S.buf[at + 14] ^= 0x20;
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "btrfs stream command 2 (mkfile) at byte 65: checksum mismatch");

	/* unknown command; a version 2 command in a version 1 stream */
	full(&S);
	cmd(&S, 99);
	str(&S, BTRFS_SEND_A_PATH, "f");
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "unknown command 99 for a version 1 stream");
	full(&S);
	cmd(&S, BTRFS_SEND_C_FALLOCATE);
	str(&S, BTRFS_SEND_A_PATH, "f");
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "unknown command 23 for a version 1 stream");

	/* unknown attribute; a version 2 attribute in version 1 */
	full(&S);
	cmd(&S, BTRFS_SEND_C_MKFILE);
	str(&S, BTRFS_SEND_A_PATH, "f");
	u64(&S, BTRFS_SEND_A_INO, 1);
	u64(&S, 40, 1);
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "(mkfile) at byte 65: unknown attribute 40 for a version 1 stream");
	full(&S);
	cmd(&S, BTRFS_SEND_C_MKFILE);
	str(&S, BTRFS_SEND_A_PATH, "f");
	u64(&S, BTRFS_SEND_A_INO, 1);
	u64(&S, BTRFS_SEND_A_FILEATTR, 1);
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "unknown attribute 26");

	/* the same attribute twice: the receiver would take the last one */
	full(&S);
	cmd(&S, BTRFS_SEND_C_MKFILE);
	str(&S, BTRFS_SEND_A_PATH, "innocent");
	u64(&S, BTRFS_SEND_A_INO, 1);
	str(&S, BTRFS_SEND_A_PATH, "../../x");
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "attribute path appears twice");

	/* an attribute the command does not take */
	full(&S);
	cmd(&S, BTRFS_SEND_C_MKFILE);
	str(&S, BTRFS_SEND_A_PATH, "f");
	u64(&S, BTRFS_SEND_A_INO, 1);
	str(&S, BTRFS_SEND_A_CLONE_PATH, "../x");
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "a mkfile command takes no attribute clone_path");

	/* a missing attribute */
	full(&S);
	cmd(&S, BTRFS_SEND_C_RENAME);
	str(&S, BTRFS_SEND_A_PATH, "f");
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "(rename) at byte 65: attribute path_to is missing");

	/* a fixed-size attribute of another size */
	full(&S);
	cmd(&S, BTRFS_SEND_C_TRUNCATE);
	str(&S, BTRFS_SEND_A_PATH, "f");
	attr(&S, BTRFS_SEND_A_SIZE, "1234", 4);
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "attribute size has 4 bytes, not 8");

	/* a NUL byte in a path: the receiver would cut it there */
	full(&S);
	cmd(&S, BTRFS_SEND_C_MKFILE);
	attr(&S, BTRFS_SEND_A_PATH, "ok\0/../../x", 11);
	u64(&S, BTRFS_SEND_A_INO, 1);
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "path \"ok\\x00/../../x\" has a NUL byte");

	/* attributes cut short or past the end */
	full(&S);
	cmd(&S, BTRFS_SEND_C_UNLINK);
	str(&S, BTRFS_SEND_A_PATH, "f");
	put_le16(&S, BTRFS_SEND_A_INO);
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "attribute ino is cut short");
	full(&S);
	cmd(&S, BTRFS_SEND_C_UNLINK);
	put_le16(&S, BTRFS_SEND_A_PATH);
	put_le16(&S, 200);
	put(&S, "f", 1);
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "attribute path runs past the command's end");

	/* a command after END; data after END; no END */
	full(&S);
	end(&S);
	mkfile(&S, "late");
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "trailing data after the btrfs stream's END");
	{
		struct btrfs_stream_check c;
		size_t pos = BTRFS_STREAM_HEADER_SIZE, size;
		btrfs_stream_check_init(&c, NULL);
		CHECK(btrfs_stream_check_header(&c, S.buf, S.len, &err) == 0);
		for (int k = 0; k < 2; k++, pos += size) {
			CHECK(btrfs_stream_cmd_size(&c, S.buf + pos, &size, &err) == 0);
			CHECK(btrfs_stream_check_cmd(&c, S.buf + pos, size, NULL, &err) == 0);
		}
		CHECK(btrfs_stream_cmd_size(&c, S.buf + pos, &size, &err) == 0);
		CHECK(btrfs_stream_check_cmd(&c, S.buf + pos, size, NULL, &err) == -EPROTO);
		CHECK_HAS(err.msg, "a command after END");
	}
	full(&S);
	mkfile(&S, "f");
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "btrfs stream truncated at byte");
}

static void lengths(void)
{
	static uint8_t big[200 * 1024];
	struct vm_error err = {0};

	/* version 1: 64 KiB, header included */
	full(&S);
	cmd(&S, BTRFS_SEND_C_WRITE);
	str(&S, BTRFS_SEND_A_PATH, "f");
	u64(&S, BTRFS_SEND_A_FILE_OFFSET, 0);
	attr(&S, BTRFS_SEND_A_DATA, big, 65536 - 10 - 5 - 12 - 4);
	done(&S);
	end(&S);
	CHECK(check_full(&err) == 0);
	full(&S);
	cmd(&S, BTRFS_SEND_C_WRITE);
	str(&S, BTRFS_SEND_A_PATH, "f");
	u64(&S, BTRFS_SEND_A_FILE_OFFSET, 0);
	attr(&S, BTRFS_SEND_A_DATA, big, 65536 - 10 - 5 - 12 - 4 + 1);
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "btrfs stream command 2 at byte 65 is 65537 bytes long, more than the "
			   "65536 a version 1 stream allows");

	/* version 2: DATA runs to the end of the command, up to 192 KiB */
	header(&S, 2);
	subvol(&S, "sv");
	cmd(&S, BTRFS_SEND_C_WRITE);
	str(&S, BTRFS_SEND_A_PATH, "f");
	u64(&S, BTRFS_SEND_A_FILE_OFFSET, 0);
	put_le16(&S, BTRFS_SEND_A_DATA);
	put(&S, big, 150 * 1024);
	done(&S);
	end(&S);
	CHECK(check_full(&err) == 0);
	header(&S, 2);
	subvol(&S, "sv");
	cmd(&S, BTRFS_SEND_C_WRITE);
	str(&S, BTRFS_SEND_A_PATH, "f");
	u64(&S, BTRFS_SEND_A_FILE_OFFSET, 0);
	put_le16(&S, BTRFS_SEND_A_DATA);
	put(&S, big, 192 * 1024);
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "more than the 196608 a version 2 stream allows");

	/* a length of 4 GiB - 1 is refused from its header alone */
	{
		struct btrfs_stream_check c;
		const uint8_t hdr[10] = {0xff, 0xff, 0xff, 0xff, BTRFS_SEND_C_WRITE, 0};
		size_t size = 0;
		btrfs_stream_check_init(&c, NULL);
		c.version = 1;
		CHECK(btrfs_stream_cmd_size(&c, hdr, &size, &err) == -EPROTO);
		CHECK(size == 0);
	}
}

static void headers(void)
{
	struct vm_error err = {0};

	header(&S, 0);
	subvol(&S, "sv");
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "btrfs send stream version 0 not supported");
	header(&S, 4);
	subvol(&S, "sv");
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "version 4 not supported");
	full(&S);
	end(&S);
	S.buf[3] = 'X';
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "not a btrfs send stream (bad magic)");
	CHECK(btrfs_stream_check_buffer(S.buf, 5, NULL, &err) == -EPROTO);
}

/* ---- flags ---- */

static void fileattr(void)
{
	struct vm_error err = {0};

	header(&S, 2);
	subvol(&S, "sv");
	mkfile(&S, "f");
	cmd(&S, BTRFS_SEND_C_FILEATTR);
	str(&S, BTRFS_SEND_A_PATH, "f");
	u64(&S, BTRFS_SEND_A_FILEATTR, 1u << 6);
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "(fileattr) at byte");
	CHECK_HAS(err.msg, "path \"f\" would be made immutable or append-only (flags 0x40)");

	header(&S, 2);
	subvol(&S, "sv");
	cmd(&S, BTRFS_SEND_C_FILEATTR);
	str(&S, BTRFS_SEND_A_PATH, "");
	u64(&S, BTRFS_SEND_A_FILEATTR, 1u << 7);
	done(&S);
	end(&S);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "append-only (flags 0x80)");

	/* nodatacow, noatime: harmless */
	header(&S, 2);
	subvol(&S, "sv");
	mkfile(&S, "f");
	cmd(&S, BTRFS_SEND_C_FILEATTR);
	str(&S, BTRFS_SEND_A_PATH, "f");
	u64(&S, BTRFS_SEND_A_FILEATTR, (1u << 1) | (1u << 9));
	done(&S);
	end(&S);
	CHECK(check_full(&err) == 0);
}

/* Every refusal leaves the checker where it was: a caller stops there. A
 * valid command of every kind the kernel sends passes. */
static void every_command_kind(void)
{
	struct vm_error err = {0};

	full(&S);
	mkfile(&S, "f");
	cmd(&S, BTRFS_SEND_C_MKDIR);
	str(&S, BTRFS_SEND_A_PATH, "d");
	u64(&S, BTRFS_SEND_A_INO, 2);
	done(&S);
	cmd(&S, BTRFS_SEND_C_MKNOD);
	str(&S, BTRFS_SEND_A_PATH, "d/null");
	u64(&S, BTRFS_SEND_A_INO, 3);
	u64(&S, BTRFS_SEND_A_MODE, 020644);
	u64(&S, BTRFS_SEND_A_RDEV, 0x103);
	done(&S);
	cmd(&S, BTRFS_SEND_C_SET_XATTR);
	str(&S, BTRFS_SEND_A_PATH, "f");
	str(&S, BTRFS_SEND_A_XATTR_NAME, "user.x");
	attr(&S, BTRFS_SEND_A_XATTR_DATA, "\0\1", 2);
	done(&S);
	cmd(&S, BTRFS_SEND_C_WRITE);
	str(&S, BTRFS_SEND_A_PATH, "f");
	u64(&S, BTRFS_SEND_A_FILE_OFFSET, 0);
	attr(&S, BTRFS_SEND_A_DATA, "hello", 5);
	done(&S);
	cmd(&S, BTRFS_SEND_C_LINK);
	str(&S, BTRFS_SEND_A_PATH, "d/hard");
	str(&S, BTRFS_SEND_A_PATH_LINK, "f");
	done(&S);
	cmd(&S, BTRFS_SEND_C_UNLINK);
	str(&S, BTRFS_SEND_A_PATH, "f");
	done(&S);
	end(&S);
	CHECK(check_full(&err) == 0);
	CHECK_STR(err.msg, "");
}

int main(void)
{
	RUN(golden_v1);
	RUN(golden_v2);
	RUN(golden_clone_from_base);
	RUN(paths_refused);
	RUN(message_names_command_and_byte);
	RUN(paths_allowed);
	RUN(subvolume_order);
	RUN(snapshot_of_another_subvolume);
	RUN(subvolume_names);
	RUN(clones);
	RUN(malformed);
	RUN(lengths);
	RUN(headers);
	RUN(fileattr);
	RUN(every_command_kind);
	CHECK_EXIT();
}
