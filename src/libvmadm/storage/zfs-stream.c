/* SPDX-License-Identifier: MIT */
/* The ZFS send stream checker (see zfs-stream.h). */
#include "storage/zfs-stream.h"

#include <byteswap.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* drr_versioninfo: the header type in bits 0-1, features in 2-31 */
#define HDR_SUBSTREAM 1
#define HDR_COMPOUND  2

/* Features a stream may have (bits of the feature field, versioninfo >> 2): spill blocks of system
 * attributes, lz4 and large blocks or dnodes in the pool (data still plain), the 128 KiB split
 * switch. Not: dedup, embedded data, resuming, redacted, compressed, raw,
 * zstd, holds, or any bit not known. */
#define FEAT_SA_SPILL	  (1u << 2)
#define FEAT_LZ4	  (1u << 17)
#define FEAT_LARGE_BLOCKS (1u << 19)
#define FEAT_LARGE_DNODE  (1u << 23)
#define FEAT_SWITCH_LARGE (1u << 27)
/* only where the check was told to expect the rest of a cut stream */
#define FEAT_RESUMING (1u << 20)
#define FEAT_ALLOWED                                                                               \
	(FEAT_SA_SPILL | FEAT_LZ4 | FEAT_LARGE_BLOCKS | FEAT_LARGE_DNODE | FEAT_SWITCH_LARGE)

/* BEGIN's drr_flags: a clone (its origin found by guid in the receiver's
 * pool) is refused; case-insensitive data, free records and spill-block
 * flags describe the stream only. */
#define FLAG_CLONE   (1u << 0)
#define FLAG_ALLOWED ((1u << 1) | (1u << 2) | (1u << 3))

#define OLD_BLOCK_MAX (128u << 10)
#define NAME_LEN      256

/* Field offsets in a record (the union starts at 8). */
#define OFF_TYPE       0
#define OFF_PAYLOADLEN 4
#define B_MAGIC	       8
#define B_VERSIONINFO  16
#define B_OBJTYPE      32
#define B_FLAGS	       36
#define B_TOGUID       40
#define B_FROMGUID     48
#define B_TONAME       56
#define E_TOGUID       40
#define O_BONUSLEN     28
#define O_RAW_BONUSLEN 36
#define W_LOGICAL_SIZE 32
#define W_COMPRESSION  50
#define S_LENGTH       16
#define S_COMPRESSED   40

enum phase {
	P_START = 0,	/* the first BEGIN */
	P_COMPOUND_END, /* the END of the compound header */
	P_SUB_BEGIN,	/* the substream's BEGIN */
	P_SUB,		/* the substream's records, up to its END */
	P_FINAL_END,	/* the compound stream's last END */
	P_DONE,		/* nothing more */
};

static const char *const rec_names[] = {
    [ZFS_DRR_BEGIN] = "BEGIN",
    [ZFS_DRR_OBJECT] = "OBJECT",
    [ZFS_DRR_FREEOBJECTS] = "FREEOBJECTS",
    [ZFS_DRR_WRITE] = "WRITE",
    [ZFS_DRR_FREE] = "FREE",
    [ZFS_DRR_END] = "END",
    [ZFS_DRR_WRITE_BYREF] = "WRITE_BYREF",
    [ZFS_DRR_SPILL] = "SPILL",
    [ZFS_DRR_WRITE_EMBEDDED] = "WRITE_EMBEDDED",
    [ZFS_DRR_OBJECT_RANGE] = "OBJECT_RANGE",
    [ZFS_DRR_REDACT] = "REDACT",
};

static const char *rec_name(uint32_t type)
{
	return type < sizeof(rec_names) / sizeof(rec_names[0]) ? rec_names[type] : "unknown";
}

static uint32_t get32(const struct zfs_stream_check *c, const uint8_t *rec, size_t off)
{
	uint32_t v;

	memcpy(&v, rec + off, sizeof(v));
	return c->swapped ? bswap_32(v) : v;
}

static uint64_t get64(const struct zfs_stream_check *c, const uint8_t *rec, size_t off)
{
	uint64_t v;

	memcpy(&v, rec + off, sizeof(v));
	return c->swapped ? bswap_64(v) : v;
}

/* -EPROTO: "zfs stream record N (TYPE) at byte B: WHY" */
__attribute__((format(printf, 4, 5))) static int
refuse(const struct zfs_stream_check *c, uint32_t type, struct vm_error *err, const char *fmt, ...)
{
	char why[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return vm_error_setx(err, EPROTO, "zfs stream record %llu (%s, type %u) at byte %llu: %s",
			     (unsigned long long)c->nrecs + 1, rec_name(type), type,
			     (unsigned long long)c->offset, why);
}

/* A name from the stream, for a message: quoted, at most 120 bytes of it,
 * each byte that is not printable ASCII (and '"', '\\') as \xNN, so that
 * a hostile name cannot drive the terminal that shows the refusal. */
static const char *quote(const char *p, size_t len, char *buf, size_t size)
{
	size_t o = 0;

	buf[o++] = '"';
	for (size_t i = 0; i < len && o + 8 < size; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (i == 120) {
			o += snprintf(buf + o, size - o, "...");
			break;
		}
		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
			buf[o++] = (char)ch;
		else
			o += snprintf(buf + o, size - o, "\\x%02x", ch);
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

void zfs_stream_check_init(struct zfs_stream_check *c, uint64_t from_guid, const char *snap,
			   bool volumes)
{
	memset(c, 0, sizeof(*c));
	c->from_guid = from_guid;
	c->snap = snap;
	c->volumes = volumes;
	c->phase = P_START;
}

bool zfs_stream_ended(const struct zfs_stream_check *c)
{
	return c->phase == P_DONE;
}

/* The magic in either byte order sets c->swapped; anything else is no
 * zfs stream. */
static int check_magic(struct zfs_stream_check *c, const uint8_t *rec, struct vm_error *err)
{
	uint64_t m;

	memcpy(&m, rec + B_MAGIC, sizeof(m));
	if (m == ZFS_STREAM_MAGIC)
		c->swapped = false;
	else if (m == bswap_64(ZFS_STREAM_MAGIC))
		c->swapped = true;
	else
		return refuse(c, ZFS_DRR_BEGIN, err, "bad magic 0x%llx: not a zfs send stream",
			      (unsigned long long)m);
	return 0;
}

static int check_features(struct zfs_stream_check *c, uint64_t vi, struct vm_error *err)
{
	uint64_t allowed = FEAT_ALLOWED | (c->resuming ? FEAT_RESUMING : 0);
	uint64_t bad = ((vi >> 2) & 0x3fffffffu) & ~allowed;

	if (bad)
		return refuse(c, ZFS_DRR_BEGIN, err,
			      "stream features 0x%llx are not taken here (dedup, embedded, "
			      "resuming, redacted, compressed, raw or unknown)",
			      (unsigned long long)bad);
	if (vi >> 32)
		return refuse(c, ZFS_DRR_BEGIN, err, "reserved version bits set (0x%llx)",
			      (unsigned long long)vi);
	return 0;
}

/* The substream's BEGIN: one dataset, the expected base and snapshot. */
static int check_sub_begin(struct zfs_stream_check *c, const uint8_t *rec, uint64_t *ret_payload,
			   struct vm_error *err)
{
	uint64_t vi = get64(c, rec, B_VERSIONINFO), from = get64(c, rec, B_FROMGUID);
	uint32_t objtype = get32(c, rec, B_OBJTYPE), flags = get32(c, rec, B_FLAGS);
	const char *name = (const char *)rec + B_TONAME, *at;
	size_t len = strnlen(name, NAME_LEN);
	char quoted[4 * 120 + 16];
	int r;

	if ((vi & 3) != HDR_SUBSTREAM)
		return refuse(c, ZFS_DRR_BEGIN, err,
			      "header type %u where one dataset's substream was expected",
			      (unsigned)(vi & 3));
	r = check_features(c, vi, err);
	if (r < 0)
		return r;
	c->large_blocks = (vi >> 2) & FEAT_LARGE_BLOCKS;
	/* A resumed stream (`zfs send -t`) says where it goes on in its
	 * BEGIN's payload, for the tool; any other substream has none. */
	if (c->resuming && !((vi >> 2) & FEAT_RESUMING))
		return refuse(c, ZFS_DRR_BEGIN, err,
			      "a whole stream where the rest of a cut one was expected");
	*ret_payload = get32(c, rec, OFF_PAYLOADLEN);
	if (*ret_payload != 0 && !c->resuming)
		return refuse(c, ZFS_DRR_BEGIN, err, "a substream's BEGIN carries a payload");
	if (*ret_payload > ZFS_STREAM_PROPS_MAX)
		return refuse(c, ZFS_DRR_BEGIN, err, "resume state of %llu bytes (at most %u)",
			      (unsigned long long)*ret_payload, ZFS_STREAM_PROPS_MAX);
	if (objtype != ZFS_STREAM_OST_ZFS && !(objtype == ZFS_STREAM_OST_ZVOL && c->volumes))
		return refuse(c, ZFS_DRR_BEGIN, err, "dataset type %u: a filesystem%s is expected",
			      objtype, c->volumes ? " or a volume" : "");
	if (flags & FLAG_CLONE)
		return refuse(c, ZFS_DRR_BEGIN, err,
			      "a clone stream (its origin would be looked up in this pool)");
	if (flags & ~(uint32_t)(FLAG_CLONE | FLAG_ALLOWED))
		return refuse(c, ZFS_DRR_BEGIN, err, "unknown flags 0x%x", flags);
	if (c->from_guid == 0 && from != 0)
		return refuse(c, ZFS_DRR_BEGIN, err,
			      "an incremental stream (from guid 0x%llx) where a full one was "
			      "expected",
			      (unsigned long long)from);
	if (c->from_guid != 0 && from == 0)
		return refuse(c, ZFS_DRR_BEGIN, err,
			      "a full stream where an incremental one from guid 0x%llx was "
			      "expected",
			      (unsigned long long)c->from_guid);
	if (c->from_guid != 0 && from != c->from_guid)
		return refuse(c, ZFS_DRR_BEGIN, err,
			      "incremental from guid 0x%llx, but the base here is 0x%llx",
			      (unsigned long long)from, (unsigned long long)c->from_guid);
	if (len == NAME_LEN)
		return refuse(c, ZFS_DRR_BEGIN, err, "snapshot name not terminated");
	at = memchr(name, '@', len);
	if (!at || !c->snap || strcmp(at + 1, c->snap) != 0)
		return refuse(c, ZFS_DRR_BEGIN, err, "snapshot %s, but @%s was expected",
			      quote(name, len, quoted, sizeof(quoted)), c->snap ? c->snap : "?");
	c->to_guid = get64(c, rec, B_TOGUID);
	if (c->to_guid == 0)
		return refuse(c, ZFS_DRR_BEGIN, err, "snapshot guid 0");
	return 0;
}

/* The compound header's BEGIN: only its shape; its properties are
 * skipped. */
static int check_compound_begin(struct zfs_stream_check *c, const uint8_t *rec,
				uint64_t *ret_payload, struct vm_error *err)
{
	uint64_t vi = get64(c, rec, B_VERSIONINFO);
	uint32_t plen = get32(c, rec, OFF_PAYLOADLEN);
	int r = check_features(c, vi, err);

	if (r < 0)
		return r;
	if (plen > ZFS_STREAM_PROPS_MAX)
		return refuse(c, ZFS_DRR_BEGIN, err, "properties of %u bytes (at most %u)", plen,
			      ZFS_STREAM_PROPS_MAX);
	*ret_payload = plen;
	return 0;
}

/* A record inside the substream: its payload size, within bounds. */
static int check_sub_record(struct zfs_stream_check *c, uint32_t type, const uint8_t *rec,
			    uint64_t *ret_payload, struct vm_error *err)
{
	uint64_t max = c->large_blocks ? ZFS_STREAM_DATA_MAX : OLD_BLOCK_MAX, n;

	switch (type) {
	case ZFS_DRR_OBJECT:
		if (get32(c, rec, O_RAW_BONUSLEN) != 0)
			return refuse(c, type, err, "a raw (encrypted) bonus buffer");
		n = get32(c, rec, O_BONUSLEN);
		if (n > ZFS_STREAM_BONUS_MAX)
			return refuse(c, type, err, "bonus of %llu bytes (at most %u)",
				      (unsigned long long)n, ZFS_STREAM_BONUS_MAX);
		*ret_payload = (n + 7) & ~7ull;
		return 0;
	case ZFS_DRR_WRITE:
		if (rec[W_COMPRESSION] != 0)
			return refuse(c, type, err, "compressed data (compression %u)",
				      rec[W_COMPRESSION]);
		n = get64(c, rec, W_LOGICAL_SIZE);
		if (n == 0 || n > max)
			return refuse(c, type, err, "data of %llu bytes (1 to %llu)",
				      (unsigned long long)n, (unsigned long long)max);
		*ret_payload = n;
		return 0;
	case ZFS_DRR_SPILL:
		if (get64(c, rec, S_COMPRESSED) != 0)
			return refuse(c, type, err, "a compressed or raw spill block");
		n = get64(c, rec, S_LENGTH);
		if (n == 0 || n > OLD_BLOCK_MAX)
			return refuse(c, type, err, "spill block of %llu bytes (1 to %u)",
				      (unsigned long long)n, OLD_BLOCK_MAX);
		*ret_payload = n;
		return 0;
	case ZFS_DRR_FREEOBJECTS:
	case ZFS_DRR_FREE:
		*ret_payload = 0;
		return 0;
	case ZFS_DRR_BEGIN:
		return refuse(c, type, err, "a second BEGIN inside the substream");
	case ZFS_DRR_WRITE_BYREF:
		return refuse(c, type, err, "dedup reference (to data found by guid)");
	default:
		return refuse(c, type, err, "record type not taken here");
	}
}

int zfs_stream_check_record(struct zfs_stream_check *c, const uint8_t *rec, uint64_t *ret_payload,
			    bool *ret_forward, struct vm_error *err)
{
	uint32_t type;
	int r = 0;

	*ret_payload = 0;
	*ret_forward = true;
	if (c->phase == P_START) {
		r = check_magic(c, rec, err);
		if (r < 0)
			return r;
	}
	type = get32(c, rec, OFF_TYPE);

	switch (c->phase) {
	case P_START:
		if (type != ZFS_DRR_BEGIN)
			return refuse(c, type, err, "a stream must begin with BEGIN");
		if ((get64(c, rec, B_VERSIONINFO) & 3) == HDR_COMPOUND && c->resuming)
			return refuse(c, type, err,
				      "a stream with properties where the rest of a cut one was "
				      "expected");
		if ((get64(c, rec, B_VERSIONINFO) & 3) == HDR_COMPOUND) {
			c->compound = true;
			*ret_forward = false;
			r = check_compound_begin(c, rec, ret_payload, err);
			c->phase = P_COMPOUND_END;
		} else {
			r = check_sub_begin(c, rec, ret_payload, err);
			c->phase = P_SUB;
		}
		break;
	case P_COMPOUND_END:
		if (type != ZFS_DRR_END)
			return refuse(c, type, err, "END expected after the stream's properties");
		*ret_forward = false;
		c->phase = P_SUB_BEGIN;
		break;
	case P_SUB_BEGIN:
		if (type != ZFS_DRR_BEGIN)
			return refuse(c, type, err, "the dataset's BEGIN expected");
		r = check_magic(c, rec, err);
		if (r >= 0)
			r = check_sub_begin(c, rec, ret_payload, err);
		c->phase = P_SUB;
		break;
	case P_SUB:
		if (type == ZFS_DRR_END) {
			if (get64(c, rec, E_TOGUID) != c->to_guid)
				return refuse(c, type, err,
					      "END of snapshot guid 0x%llx, not 0x%llx",
					      (unsigned long long)get64(c, rec, E_TOGUID),
					      (unsigned long long)c->to_guid);
			c->sub_ended = true;
			c->phase = c->compound ? P_FINAL_END : P_DONE;
			break;
		}
		r = check_sub_record(c, type, rec, ret_payload, err);
		break;
	case P_FINAL_END:
		if (type != ZFS_DRR_END)
			return refuse(c, type, err,
				      "a second dataset (one stream carries one dataset here)");
		*ret_forward = false;
		c->phase = P_DONE;
		break;
	default:
		return refuse(c, type, err, "data after the stream's last END");
	}
	if (r < 0)
		return r;
	c->nrecs++;
	c->offset += ZFS_STREAM_RECORD_SIZE + *ret_payload;
	return 0;
}

int zfs_stream_check_buffer(const uint8_t *buf, size_t len, uint64_t from_guid, const char *snap,
			    bool volumes, struct vm_error *err)
{
	struct zfs_stream_check c;
	size_t pos = 0;

	zfs_stream_check_init(&c, from_guid, snap, volumes);
	while (!zfs_stream_ended(&c)) {
		uint64_t payload;
		bool fwd;
		int r;

		if (len - pos < ZFS_STREAM_RECORD_SIZE)
			return vm_error_setx(err, EPROTO,
					     "zfs stream truncated at byte %zu (no last END)", pos);
		r = zfs_stream_check_record(&c, buf + pos, &payload, &fwd, err);
		if (r < 0)
			return r;
		pos += ZFS_STREAM_RECORD_SIZE;
		if (payload > len - pos)
			return vm_error_setx(
			    err, EPROTO, "zfs stream truncated at byte %zu (in a payload)", len);
		pos += payload;
	}
	if (pos != len)
		return vm_error_setx(err, EPROTO,
				     "trailing data after the zfs stream's END at byte %zu", pos);
	return 0;
}
