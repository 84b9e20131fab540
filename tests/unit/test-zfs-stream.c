/* SPDX-License-Identifier: MIT */
/*
 * The zfs send stream checker (storage/zfs-stream.h): real streams of
 * zfs-fuse (tests/unit/data/zfs: full and incremental, plain and `-p`) are
 * accepted, the compound header of a `-p` stream is kept from the tool and
 * its substream forwarded byte for byte; crafted records (a builder below:
 * 312-byte records in either byte order) that the receiver may not apply
 * are refused, each with the message that names the record's number, its
 * type, its byte offset and the reason.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "storage/zfs-stream.h"
#include "util/fs.h"
#include "util/macros.h"

#define REC ZFS_STREAM_RECORD_SIZE

/* The guids of the real streams (tests/unit/data/zfs/README) and one that
 * names neither. */
#define GUID_S1	   0xc0b1551148241d5aULL
#define GUID_S2	   0x4d3bb0b8ef02321fULL
#define GUID_OTHER 0x0123456789abcdefULL

/* Field offsets of dmu_replay_record_t (OpenZFS include/sys/zfs_ioctl.h):
 * a u32 type, a u32 payload length, then the union at byte 8. */
enum {
	DRR_TYPE = 0,
	DRR_PAYLOADLEN = 4,
	BEGIN_MAGIC = 8,
	BEGIN_VERSIONINFO = 16,
	BEGIN_CREATION_TIME = 24,
	BEGIN_TYPE = 32,
	BEGIN_FLAGS = 36,
	BEGIN_TOGUID = 40,
	BEGIN_FROMGUID = 48,
	BEGIN_TONAME = 56,
	END_CHECKSUM = 8,
	END_TOGUID = 40,
	OBJECT_OBJECT = 8,
	OBJECT_TYPE = 16,
	OBJECT_BONUSTYPE = 20,
	OBJECT_BLKSZ = 24,
	OBJECT_BONUSLEN = 28,
	OBJECT_RAW_BONUSLEN = 36,
	OBJECT_TOGUID = 40,
	OBJECT_MAXBLKID = 56,
	FREEOBJECTS_FIRSTOBJ = 8,
	FREEOBJECTS_NUMOBJS = 16,
	FREEOBJECTS_TOGUID = 24,
	WRITE_OBJECT = 8,
	WRITE_TYPE = 16,
	WRITE_OFFSET = 24,
	WRITE_LOGICAL_SIZE = 32,
	WRITE_TOGUID = 40,
	WRITE_COMPRESSIONTYPE = 50,
	WRITE_KEY = 56,
	WRITE_COMPRESSED_SIZE = 96,
	FREE_OBJECT = 8,
	FREE_OFFSET = 16,
	FREE_LENGTH = 24,
	FREE_TOGUID = 32,
	SPILL_OBJECT = 8,
	SPILL_LENGTH = 16,
	SPILL_TOGUID = 24,
	SPILL_COMPRESSED_SIZE = 40,
	CHECKSUM_TRAILER = 280, /* drr_checksum of every record but BEGIN */
};

/* drr_versioninfo: header type in bits 0-1, feature flags in 2-31 */
#define VI(hdrtype, features) ((uint64_t)(hdrtype) | (uint64_t)(features) << 2)
#define SUBSTREAM	      1
#define COMPOUND	      2
#define F_SA_SPILL	      (1u << 2)
#define F_LZ4		      (1u << 17)
#define F_LARGE_BLOCKS	      (1u << 19)
#define F_LARGE_DNODE	      (1u << 23)
#define F_SWITCH_LARGE	      (1u << 27)

static const char *type_name(uint32_t t)
{
	static const char *const names[] = {
	    "BEGIN",	   "OBJECT", "FREEOBJECTS",    "WRITE",	       "FREE",	 "END",
	    "WRITE_BYREF", "SPILL",  "WRITE_EMBEDDED", "OBJECT_RANGE", "REDACT",
	};
	return t < ARRAY_SIZE(names) ? names[t] : "unknown";
}

/* ---- a stream builder ---- */

struct sb {
	uint8_t buf[(16u << 20) + (1u << 20)];
	size_t len;
	size_t rec;	 /* offset of the record begun last */
	unsigned nrecs;	 /* records so far */
	bool be;	 /* fields big-endian: a big-endian sender */
	uint64_t toguid; /* the substream's snapshot, for its records */
};
static struct sb S;

static void reset(bool be)
{
	S.len = 0;
	S.rec = 0;
	S.nrecs = 0;
	S.be = be;
	S.toguid = 0;
}

static void field(size_t off, uint64_t v, unsigned width)
{
	uint8_t *p = S.buf + S.rec + off;

	for (unsigned i = 0; i < width; i++)
		p[S.be ? width - 1 - i : i] = (uint8_t)(v >> (8 * i));
}
static void set32(size_t off, uint32_t v)
{
	field(off, v, 4);
}
static void set64(size_t off, uint64_t v)
{
	field(off, v, 8);
}

static void rec(uint32_t type)
{
	if (S.len + REC > sizeof(S.buf))
		abort();
	S.rec = S.len;
	memset(S.buf + S.len, 0, REC);
	S.len += REC;
	S.nrecs++;
	set32(DRR_TYPE, type);
}

static void payload(size_t n)
{
	if (S.len + n > sizeof(S.buf))
		abort();
	for (size_t i = 0; i < n; i++)
		S.buf[S.len + i] = (uint8_t)(i * 7 + 1);
	S.len += n;
}

static void begin(uint64_t vi, uint32_t objtype, uint64_t toguid, uint64_t fromguid,
		  const char *toname)
{
	rec(ZFS_DRR_BEGIN);
	set64(BEGIN_MAGIC, ZFS_STREAM_MAGIC);
	set64(BEGIN_VERSIONINFO, vi);
	set64(BEGIN_CREATION_TIME, 1764770000);
	set32(BEGIN_TYPE, objtype);
	set64(BEGIN_TOGUID, toguid);
	set64(BEGIN_FROMGUID, fromguid);
	memcpy(S.buf + S.rec + BEGIN_TONAME, toname, strlen(toname));
	if (vi != VI(COMPOUND, 0))
		S.toguid = toguid;
}
static void end(uint64_t toguid)
{
	rec(ZFS_DRR_END);
	set64(END_CHECKSUM, 0x1234);
	set64(END_TOGUID, toguid);
}
static void object(uint64_t obj, uint32_t bonuslen)
{
	rec(ZFS_DRR_OBJECT);
	set64(OBJECT_OBJECT, obj);
	set32(OBJECT_TYPE, 19);	     /* DMU_OT_PLAIN_FILE_CONTENTS */
	set32(OBJECT_BONUSTYPE, 44); /* DMU_OT_ZNODE */
	set32(OBJECT_BLKSZ, 512);
	set32(OBJECT_BONUSLEN, bonuslen);
	set64(OBJECT_TOGUID, S.toguid);
	payload(bonuslen < (1u << 20) ? ((size_t)bonuslen + 7) & ~(size_t)7 : (1u << 20));
}
static void freeobjects(uint64_t first, uint64_t n)
{
	rec(ZFS_DRR_FREEOBJECTS);
	set64(FREEOBJECTS_FIRSTOBJ, first);
	set64(FREEOBJECTS_NUMOBJS, n);
	set64(FREEOBJECTS_TOGUID, S.toguid);
}
/* A WRITE of size bytes. Here and in OBJECT and SPILL, a payload of more
 * than 16 MiB (1 MiB) is cut: the record is refused before it is read. */
static void write_rec(uint64_t obj, uint64_t size)
{
	rec(ZFS_DRR_WRITE);
	set64(WRITE_OBJECT, obj);
	set32(WRITE_TYPE, 19);
	set64(WRITE_OFFSET, 0);
	set64(WRITE_LOGICAL_SIZE, size);
	set64(WRITE_TOGUID, S.toguid);
	payload(size < (16u << 20) ? size : (16u << 20));
}
static void free_rec(uint64_t obj)
{
	rec(ZFS_DRR_FREE);
	set64(FREE_OBJECT, obj);
	set64(FREE_OFFSET, 512);
	set64(FREE_LENGTH, UINT64_MAX);
	set64(FREE_TOGUID, S.toguid);
}
static void spill(uint64_t obj, uint64_t len)
{
	rec(ZFS_DRR_SPILL);
	set64(SPILL_OBJECT, obj);
	set64(SPILL_LENGTH, len);
	set64(SPILL_TOGUID, S.toguid);
	payload(len < (1u << 20) ? len : (1u << 20));
}

/* A substream's first record: full (to @s1) or incremental (@s1 to @s2). */
static void full(void)
{
	reset(false);
	begin(VI(SUBSTREAM, 0), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
}
static void incr(void)
{
	reset(false);
	begin(VI(SUBSTREAM, 0), ZFS_STREAM_OST_ZFS, GUID_S2, GUID_S1, "zones/ds@s2");
}
/* What a small file system's substream holds between BEGIN and END. */
static void body(void)
{
	freeobjects(0, 1);
	object(1, 264);
	free_rec(1);
	write_rec(1, 512);
	free_rec(1);
	freeobjects(2, 30);
}
/* `zfs send -p`: properties of props bytes, END, then the substream's
 * BEGIN (full, to @s1). */
static void compound(uint32_t props)
{
	reset(false);
	begin(VI(COMPOUND, 0), 0, 0, 0, "zones/ds@s1");
	set32(DRR_PAYLOADLEN, props);
	payload(props);
	end(0);
	begin(VI(SUBSTREAM, 0), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
}

static int check_full(struct vm_error *err)
{
	return zfs_stream_check_buffer(S.buf, S.len, 0, "s1", false, err);
}
static int check_incr(struct vm_error *err)
{
	return zfs_stream_check_buffer(S.buf, S.len, GUID_S1, "s2", false, err);
}

/* Where the record begun last is: for the message expected of it. */
struct at {
	unsigned n;
	size_t byte;
	uint32_t type;
};
static struct at here(uint32_t type)
{
	return (struct at){.n = S.nrecs, .byte = S.rec, .type = type};
}

/* r is -EPROTO, and the message names the record at a, then says why. */
#define CHECK_REFUSED(r, err, a, why)                                                              \
	do {                                                                                       \
		char _want[600];                                                                   \
		snprintf(_want, sizeof(_want),                                                     \
			 "zfs stream record %u (%s, type %u) at byte %zu: %s", (a).n,              \
			 type_name((a).type), (a).type, (a).byte, (why));                          \
		CHECK((r) == -EPROTO);                                                             \
		CHECK_HAS((err).msg, _want);                                                       \
	} while (0)

/* Case k of a table failed: say which. */
static bool failed_case(size_t k)
{
	if (!check_current_failed)
		return false;
	snprintf(check_why + strlen(check_why), sizeof(check_why) - strlen(check_why),
		 " (case %zu)", k);
	return true;
}

/* ---- real streams ---- */

static uint8_t *slurp(const char *name, size_t *len)
{
	char path[4096];
	const char *top = getenv("TOP");
	struct vm_error err;
	char *buf = NULL;

	snprintf(path, sizeof(path), "%s/tests/unit/data/zfs/%s", top ? top : ".", name);
	if (fs_read_file(path, 1 << 20, &buf, len, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return NULL;
	}
	return (uint8_t *)buf;
}

static uint32_t le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* What a walk of a stream saw: the bytes it would forward (records and
 * payloads), the numbers (from 1) of the records kept back (up to 8 of
 * them), the number of records. */
struct walked {
	uint8_t *fwd;
	size_t fwd_len;
	unsigned kept[8], nkept, nrecs;
};

/* Check buf record by record as storage/zfs.c does, into *ret (its fwd
 * malloc'ed). */
static int walk(const uint8_t *buf, size_t len, uint64_t from, const char *snap, struct walked *ret,
		struct vm_error *err)
{
	_cleanup_free_ uint8_t *fwd = malloc(len ? len : 1);
	struct zfs_stream_check c;
	size_t pos = 0, flen = 0;
	unsigned nkept = 0, n;

	if (!fwd)
		abort();
	zfs_stream_check_init(&c, from, snap, false);
	for (n = 1; pos < len; n++) {
		uint64_t payload = 0;
		bool forward = false;
		int r;

		if (len - pos < REC)
			return vm_error_setx(err, EPROTO, "cut record at %zu", pos);
		r = zfs_stream_check_record(&c, buf + pos, &payload, &forward, err);
		if (r < 0)
			return r;
		if (payload > len - pos - REC)
			return vm_error_setx(err, EPROTO, "cut payload at %zu", pos);
		if (forward) {
			memcpy(fwd + flen, buf + pos, REC + payload);
			flen += REC + payload;
		} else if (nkept < 8) {
			ret->kept[nkept++] = n;
		}
		pos += REC + payload;
		if (zfs_stream_ended(&c))
			break;
	}
	if (!zfs_stream_ended(&c) || pos != len)
		return vm_error_setx(err, EPROTO, "not ended at %zu of %zu", pos, len);
	ret->fwd = TAKE_PTR(fwd);
	ret->fwd_len = flen;
	ret->nkept = nkept;
	ret->nrecs = n;
	return 0;
}

static void swap_field(uint8_t *r, size_t off, unsigned width)
{
	for (unsigned i = 0; i < width / 2; i++) {
		uint8_t t = r[off + i];
		r[off + i] = r[off + width - 1 - i];
		r[off + width - 1 - i] = t;
	}
}

/* The little-endian stream buf as a big-endian sender would write it:
 * every field of the record types the real streams hold swapped, payloads
 * as they are (their bytes are the objects', not the record's). */
static void swap_stream(uint8_t *buf, size_t len)
{
	static const struct {
		uint32_t type;
		uint8_t fields[16][2]; /* offset, width; width 0 ends */
	} layouts[] = {
	    {ZFS_DRR_BEGIN, {{8, 8}, {16, 8}, {24, 8}, {32, 4}, {36, 4}, {40, 8}, {48, 8}}},
	    {ZFS_DRR_OBJECT,
	     {{8, 8}, {16, 4}, {20, 4}, {24, 4}, {28, 4}, {36, 4}, {40, 8}, {56, 8}}},
	    {ZFS_DRR_FREEOBJECTS, {{8, 8}, {16, 8}, {24, 8}}},
	    {ZFS_DRR_WRITE,
	     {{8, 8},
	      {16, 4},
	      {24, 8},
	      {32, 8},
	      {40, 8},
	      {56, 8},
	      {64, 8},
	      {72, 8},
	      {80, 8},
	      {88, 8},
	      {96, 8}}},
	    {ZFS_DRR_FREE, {{8, 8}, {16, 8}, {24, 8}, {32, 8}}},
	    {ZFS_DRR_END, {{8, 8}, {16, 8}, {24, 8}, {32, 8}, {40, 8}}},
	    {ZFS_DRR_SPILL, {{8, 8}, {16, 8}, {24, 8}, {40, 8}}},
	};
	size_t pos = 0;

	while (pos <= len && len - pos >= REC) {
		uint8_t *r = buf + pos;
		uint32_t type = le32(r);
		uint64_t payload = 0;

		switch (type) {
		case ZFS_DRR_BEGIN:
			payload = le32(r + DRR_PAYLOADLEN);
			break;
		case ZFS_DRR_OBJECT:
			payload = ((uint64_t)le32(r + OBJECT_BONUSLEN) + 7) & ~7ull;
			break;
		case ZFS_DRR_WRITE:
			payload = le64(r + WRITE_LOGICAL_SIZE);
			break;
		case ZFS_DRR_SPILL:
			payload = le64(r + SPILL_LENGTH);
			break;
		}
		swap_field(r, DRR_TYPE, 4);
		swap_field(r, DRR_PAYLOADLEN, 4);
		for (size_t k = 0; k < ARRAY_SIZE(layouts); k++) {
			if (layouts[k].type != type)
				continue;
			for (size_t f = 0; f < 16 && layouts[k].fields[f][1]; f++)
				swap_field(r, layouts[k].fields[f][0], layouts[k].fields[f][1]);
		}
		if (type != ZFS_DRR_BEGIN)
			for (size_t off = CHECKSUM_TRAILER; off < REC; off += 8)
				swap_field(r, off, 8);
		pos += REC + payload;
	}
}

static void real(const char *name, uint64_t from, const char *snap, const char *plain)
{
	_cleanup_free_ uint8_t *buf = NULL, *want = NULL;
	size_t len = 0, wlen = 0;
	struct vm_error err = {0};
	struct walked w = {0};

	buf = slurp(name, &len);
	CHECK(buf != NULL);
	if (!buf)
		return;
	CHECK(zfs_stream_check_buffer(buf, len, from, snap, false, &err) == 0);
	CHECK_STR(err.msg, "");
	CHECK(zfs_stream_check_buffer(buf, len, from, snap, true, &err) == 0);
	CHECK(walk(buf, len, from, snap, &w, &err) == 0);
	CHECK_STR(err.msg, "");
	if (!plain) {
		/* a plain stream goes to the tool whole */
		CHECK(w.nkept == 0);
		CHECK(w.fwd_len == len && w.fwd && memcmp(w.fwd, buf, len) == 0);
	} else {
		/* the compound header's BEGIN and END, and the last END, stay
		 * back; what goes is the plain stream, byte for byte */
		want = slurp(plain, &wlen);
		CHECK(want != NULL);
		CHECK(w.nkept == 3);
		CHECK(w.kept[0] == 1 && w.kept[1] == 2 && w.kept[2] == w.nrecs);
		CHECK(want && w.fwd_len == wlen && memcmp(w.fwd, want, wlen) == 0);
	}
	free(w.fwd);

	/* the other kind, another base, another snapshot: refused */
	CHECK(zfs_stream_check_buffer(buf, len, from ? 0 : GUID_S1, snap, false, &err) == -EPROTO);
	CHECK_HAS(err.msg, "zfs stream record ");
	CHECK(zfs_stream_check_buffer(buf, len, GUID_OTHER, snap, false, &err) == -EPROTO);
	CHECK_HAS(err.msg, "zfs stream record ");
	CHECK(zfs_stream_check_buffer(buf, len, from, "other", false, &err) == -EPROTO);
	CHECK_HAS(err.msg, "but @other was expected");
	/* cut anywhere before its end, it is incomplete */
	for (size_t cut = 0; cut < len; cut += 97) {
		CHECK(zfs_stream_check_buffer(buf, cut, from, snap, false, &err) == -EPROTO);
		CHECK_HAS(err.msg, "truncated");
	}
	CHECK(zfs_stream_check_buffer(buf, len - 1, from, snap, false, &err) == -EPROTO);
	CHECK_HAS(err.msg, "zfs stream truncated at byte");

	/* from a big-endian sender */
	swap_stream(buf, len);
	CHECK(le32(buf) == 0 && memcmp(buf + 8, "\x00\x00\x00\x02\xf5\xba\xcb\xac", 8) == 0);
	CHECK(zfs_stream_check_buffer(buf, len, from, snap, false, &err) == 0);
}

static void real_full(void)
{
	real("full.zs", 0, "s1", NULL);
}
static void real_full_p(void)
{
	real("full-p.zs", 0, "s1", "full.zs");
}
static void real_incr(void)
{
	real("incr.zs", GUID_S1, "s2", NULL);
}
static void real_incr_p(void)
{
	real("incr-p.zs", GUID_S1, "s2", "incr.zs");
}

/* Record by record, the forward flag of each: false for the compound
 * header's BEGIN and END and for the last END, true for the substream's. */
static void real_forward_flags(void)
{
	size_t len = 0;
	_cleanup_free_ uint8_t *buf = slurp("full-p.zs", &len);
	struct zfs_stream_check c;
	struct vm_error err = {0};
	size_t pos = 0;
	unsigned n = 0, sub_begin = 0, sub_end = 0, last = 0;

	CHECK(buf != NULL);
	if (!buf)
		return;
	zfs_stream_check_init(&c, 0, "s1", false);
	while (pos < len && !zfs_stream_ended(&c)) {
		uint64_t payload = 99;
		bool forward = false;
		uint32_t type = le32(buf + pos);

		n++;
		CHECK(zfs_stream_check_record(&c, buf + pos, &payload, &forward, &err) == 0);
		if (n == 1 || n == 2) {
			CHECK(!forward);
		} else if (type == ZFS_DRR_BEGIN) {
			sub_begin = n;
			CHECK(forward);
		} else if (type == ZFS_DRR_END && !sub_end) {
			sub_end = n;
			CHECK(forward);
		} else if (type == ZFS_DRR_END) {
			last = n;
			CHECK(!forward);
		} else {
			CHECK(forward);
		}
		CHECK(c.nrecs == n);
		pos += REC + payload;
		CHECK(c.offset == pos);
	}
	CHECK_STR(err.msg, "");
	CHECK(zfs_stream_ended(&c) && pos == len);
	CHECK(c.compound);
	CHECK(c.to_guid == GUID_S1);
	CHECK(sub_begin == 3 && sub_end == n - 1 && last == n);
}

/* ---- the builder's streams, as a baseline ---- */

static void built_accepted(void)
{
	struct vm_error err = {0};

	full();
	body();
	end(GUID_S1);
	CHECK(check_full(&err) == 0);
	CHECK_STR(err.msg, "");

	incr();
	body();
	end(GUID_S2);
	CHECK(check_incr(&err) == 0);
	CHECK_STR(err.msg, "");

	compound(100);
	body();
	end(GUID_S1);
	end(0);
	CHECK(check_full(&err) == 0);
	CHECK_STR(err.msg, "");

	/* every record kind taken, the features and flags that describe the
	 * stream only */
	reset(false);
	begin(VI(SUBSTREAM, F_SA_SPILL | F_LZ4 | F_LARGE_DNODE | F_SWITCH_LARGE),
	      ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
	set32(BEGIN_FLAGS, (1u << 1) | (1u << 2) | (1u << 3));
	body();
	spill(1, 512);
	object(2, 0);
	write_rec(2, 128u << 10);
	spill(2, 128u << 10);
	end(GUID_S1);
	CHECK(check_full(&err) == 0);
	CHECK_STR(err.msg, "");
}

/* ---- the first record ---- */

static void first_record(void)
{
	struct vm_error err = {0};
	struct at a;

	full();
	a = here(ZFS_DRR_BEGIN);
	S.buf[BEGIN_MAGIC] ^= 1;
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "bad magic 0x2f5bacbad: not a zfs send stream");

	/* a record with the magic where BEGIN's is, but of another type */
	full();
	set32(DRR_TYPE, ZFS_DRR_OBJECT);
	a = here(ZFS_DRR_OBJECT);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "a stream must begin with BEGIN");
	full();
	set32(DRR_TYPE, ZFS_DRR_END);
	a = here(ZFS_DRR_END);
	CHECK_REFUSED(check_full(&err), err, a, "a stream must begin with BEGIN");

	/* header types 0 and 3 are neither a substream nor a compound one */
	full();
	set64(BEGIN_VERSIONINFO, VI(0, F_LZ4));
	a = here(ZFS_DRR_BEGIN);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a,
		      "header type 0 where one dataset's substream was expected");
	full();
	set64(BEGIN_VERSIONINFO, VI(3, 0));
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a,
		      "header type 3 where one dataset's substream was expected");

	/* nothing at all, or less than a record */
	CHECK(zfs_stream_check_buffer(S.buf, 0, 0, "s1", false, &err) == -EPROTO);
	CHECK_HAS(err.msg, "zfs stream truncated at byte 0");
	CHECK(zfs_stream_check_buffer(S.buf, REC - 1, 0, "s1", false, &err) == -EPROTO);
	CHECK_HAS(err.msg, "zfs stream truncated at byte 0");
}

/* ---- BEGIN: flags, features, version, dataset type ---- */

static void begin_flags(void)
{
	static const uint32_t bad[] = {1u << 4, 1u << 7, 1u << 24, 1u << 31};
	struct vm_error err = {0};
	struct at a;
	char why[100];

	full();
	set32(BEGIN_FLAGS, 1); /* DRR_FLAG_CLONE */
	a = here(ZFS_DRR_BEGIN);
	body();
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a,
		      "a clone stream (its origin would be looked up in this pool)");
	/* with flags that are fine, still a clone */
	full();
	set32(BEGIN_FLAGS, 1 | (1u << 2));
	end(GUID_S1);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "a clone stream");

	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		full();
		set32(BEGIN_FLAGS, bad[k]);
		a = here(ZFS_DRR_BEGIN);
		end(GUID_S1);
		snprintf(why, sizeof(why), "unknown flags 0x%x", bad[k]);
		CHECK_REFUSED(check_full(&err), err, a, why);
		if (failed_case(k))
			return;
	}
}

static void begin_features(void)
{
	/* DMU_BACKUP_FEATURE_* that are refused, and bits that name nothing
	 * known: 3-15 (closed-source implementations), 18, 28, 29 */
	static const uint32_t bad[] = {
	    1u << 0,  /* dedup */
	    1u << 1,  /* dedup properties */
	    1u << 16, /* embedded data */
	    1u << 20, /* resuming */
	    1u << 21, /* redacted */
	    1u << 22, /* compressed */
	    1u << 24, /* raw */
	    1u << 25, /* zstd */
	    1u << 26, /* holds */
	    1u << 3,  1u << 15, 1u << 18, 1u << 28, 1u << 29,
	};
	struct vm_error err = {0};
	struct at a;
	char why[100];

	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		full();
		set64(BEGIN_VERSIONINFO, VI(SUBSTREAM, bad[k] | F_LZ4));
		a = here(ZFS_DRR_BEGIN);
		body();
		end(GUID_S1);
		snprintf(why, sizeof(why), "stream features 0x%x are not taken here", bad[k]);
		CHECK_REFUSED(check_full(&err), err, a, why);
		/* in a compound stream's header as well */
		compound(8);
		set64(BEGIN_VERSIONINFO, VI(SUBSTREAM, bad[k]));
		a = here(ZFS_DRR_BEGIN);
		end(GUID_S1);
		end(0);
		CHECK_REFUSED(check_full(&err), err, a, why);
		reset(false);
		begin(VI(COMPOUND, bad[k]), 0, 0, 0, "zones/ds@s1");
		a = here(ZFS_DRR_BEGIN);
		end(0);
		CHECK_REFUSED(check_full(&err), err, a, why);
		if (failed_case(k))
			return;
	}

	/* the reserved bits 32-63 */
	full();
	set64(BEGIN_VERSIONINFO, VI(SUBSTREAM, 0) | 1ull << 32);
	a = here(ZFS_DRR_BEGIN);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "reserved version bits set (0x100000001)");
	full();
	set64(BEGIN_VERSIONINFO, VI(SUBSTREAM, F_LZ4) | 1ull << 63);
	a = here(ZFS_DRR_BEGIN);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "reserved version bits set (0x8000000000080001)");
}

static void begin_dataset_type(void)
{
	static const uint32_t other[] = {0, 1, 4, 5, 0xffffffff};
	struct vm_error err = {0};
	struct at a;
	char why[100];

	/* a volume: only where the pool has volumes */
	full();
	set32(BEGIN_TYPE, ZFS_STREAM_OST_ZVOL);
	a = here(ZFS_DRR_BEGIN);
	body();
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "dataset type 3: a filesystem is expected");
	err.msg[0] = '\0';
	CHECK(zfs_stream_check_buffer(S.buf, S.len, 0, "s1", true, &err) == 0);
	CHECK_STR(err.msg, "");
	/* a file system, where the pool has volumes too */
	full();
	body();
	end(GUID_S1);
	CHECK(zfs_stream_check_buffer(S.buf, S.len, 0, "s1", true, &err) == 0);

	for (size_t k = 0; k < ARRAY_SIZE(other); k++) {
		full();
		set32(BEGIN_TYPE, other[k]);
		a = here(ZFS_DRR_BEGIN);
		end(GUID_S1);
		snprintf(why, sizeof(why), "dataset type %u: a filesystem is expected", other[k]);
		CHECK_REFUSED(check_full(&err), err, a, why);
		snprintf(why, sizeof(why), "dataset type %u: a filesystem or a volume is expected",
			 other[k]);
		CHECK_REFUSED(zfs_stream_check_buffer(S.buf, S.len, 0, "s1", true, &err), err, a,
			      why);
		if (failed_case(k))
			return;
	}
}

/* ---- BEGIN: the base and the snapshot ---- */

static void begin_guids(void)
{
	struct vm_error err = {0};
	struct at a;

	/* incremental where full was expected */
	incr();
	a = here(ZFS_DRR_BEGIN);
	body();
	end(GUID_S2);
	CHECK_REFUSED(zfs_stream_check_buffer(S.buf, S.len, 0, "s2", false, &err), err, a,
		      "an incremental stream (from guid 0xc0b1551148241d5a) where a full one was "
		      "expected");
	/* from another base */
	CHECK_REFUSED(zfs_stream_check_buffer(S.buf, S.len, GUID_OTHER, "s2", false, &err), err, a,
		      "incremental from guid 0xc0b1551148241d5a, but the base here is "
		      "0x123456789abcdef");
	/* full where incremental was expected */
	full();
	a = here(ZFS_DRR_BEGIN);
	body();
	end(GUID_S1);
	CHECK_REFUSED(zfs_stream_check_buffer(S.buf, S.len, GUID_OTHER, "s1", false, &err), err, a,
		      "a full stream where an incremental one from guid 0x123456789abcdef was "
		      "expected");

	/* the snapshot's guid: 0 is none */
	full();
	set64(BEGIN_TOGUID, 0);
	a = here(ZFS_DRR_BEGIN);
	end(0);
	CHECK_REFUSED(check_full(&err), err, a, "snapshot guid 0");

	/* a substream's BEGIN carries no payload (a raw or resuming stream's
	 * nvlist) */
	full();
	set32(DRR_PAYLOADLEN, 16);
	a = here(ZFS_DRR_BEGIN);
	payload(16);
	body();
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "a substream's BEGIN carries a payload");
}

static void begin_names(void)
{
	static const struct {
		const char *name, *why;
	} bad[] = {
	    {"zones/ds@s9", "snapshot \"zones/ds@s9\", but @s1 was expected"},
	    {"zones/ds@s1x", "snapshot \"zones/ds@s1x\", but @s1 was expected"},
	    {"zones/ds@", "snapshot \"zones/ds@\", but @s1 was expected"},
	    {"zones/ds", "snapshot \"zones/ds\", but @s1 was expected"},
	    {"", "snapshot \"\", but @s1 was expected"},
	    {"zones/ds@s9@s1", "snapshot \"zones/ds@s9@s1\", but @s1 was expected"},
	    /* a hostile name is shown escaped */
	    {"zones/\x1b[2J@\n", "snapshot \"zones/\\x1b[2J@\\x0a\", but @s1 was expected"},
	};
	struct vm_error err = {0};
	char name[260];
	struct at a;

	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		full();
		memset(S.buf + S.rec + BEGIN_TONAME, 0, 256);
		memcpy(S.buf + S.rec + BEGIN_TONAME, bad[k].name, strlen(bad[k].name));
		a = here(ZFS_DRR_BEGIN);
		body();
		end(GUID_S1);
		CHECK_REFUSED(check_full(&err), err, a, bad[k].why);
		if (failed_case(k))
			return;
	}

	/* 256 bytes and no NUL */
	full();
	memset(S.buf + S.rec + BEGIN_TONAME, 'a', 256);
	memcpy(S.buf + S.rec + BEGIN_TONAME + 250, "ds@s1", 5);
	a = here(ZFS_DRR_BEGIN);
	end(GUID_S1);
	CHECK(S.rec + BEGIN_TONAME + 256 == S.rec + REC);
	CHECK_REFUSED(check_full(&err), err, a, "snapshot name not terminated");

	/* 255 bytes and a NUL: taken */
	memset(name, 'a', 250);
	memcpy(name + 250, "ds@s1", 6);
	full();
	memcpy(S.buf + S.rec + BEGIN_TONAME, name, 256);
	end(GUID_S1);
	CHECK(check_full(&err) == 0);

	/* a long hostile name: cut in the message */
	full();
	memset(S.buf + S.rec + BEGIN_TONAME, '\x1b', 255);
	end(GUID_S1);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "\"\\x1b\\x1b");
	CHECK_HAS(err.msg, "\\x1b...\", but @s1 was expected");
	CHECK(strchr(err.msg, '\x1b') == NULL);
	CHECK(strlen(err.msg) < 1000);
}

/* ---- records inside the substream ---- */

static void record_types(void)
{
	static const struct {
		uint32_t type;
		const char *why;
	} bad[] = {
	    {ZFS_DRR_WRITE_BYREF, "dedup reference (to data found by guid)"},
	    {ZFS_DRR_WRITE_EMBEDDED, "record type not taken here"},
	    {ZFS_DRR_OBJECT_RANGE, "record type not taken here"},
	    {ZFS_DRR_REDACT, "record type not taken here"},
	    {11, "record type not taken here"},
	    {0x100, "record type not taken here"},
	    {0xffffffff, "record type not taken here"},
	    {ZFS_DRR_BEGIN, "a second BEGIN inside the substream"},
	};
	struct vm_error err = {0};
	struct at a;

	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		full();
		body();
		if (bad[k].type == ZFS_DRR_BEGIN)
			begin(VI(SUBSTREAM, 0), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
		else
			rec(bad[k].type);
		a = here(bad[k].type);
		end(GUID_S1);
		CHECK_REFUSED(check_full(&err), err, a, bad[k].why);
		if (failed_case(k))
			return;
	}
}

static void end_guid(void)
{
	struct vm_error err = {0};
	struct at a;

	full();
	body();
	end(GUID_S2);
	a = here(ZFS_DRR_END);
	CHECK_REFUSED(check_full(&err), err, a,
		      "END of snapshot guid 0x4d3bb0b8ef02321f, not 0xc0b1551148241d5a");
	full();
	end(0);
	a = here(ZFS_DRR_END);
	CHECK_REFUSED(check_full(&err), err, a, "END of snapshot guid 0x0, not 0xc0b1551148241d5a");
}

static void write_sizes(void)
{
	struct vm_error err = {0};
	struct at a;

	full();
	write_rec(1, 0);
	a = here(ZFS_DRR_WRITE);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "data of 0 bytes (1 to 131072)");

	full();
	write_rec(1, 128u << 10);
	write_rec(1, (128u << 10) + 1);
	a = here(ZFS_DRR_WRITE);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "data of 131073 bytes (1 to 131072)");

	/* large blocks: up to 16 MiB */
	reset(false);
	begin(VI(SUBSTREAM, F_LARGE_BLOCKS), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
	write_rec(1, 16u << 20);
	end(GUID_S1);
	CHECK(check_full(&err) == 0);
	reset(false);
	begin(VI(SUBSTREAM, F_LARGE_BLOCKS), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
	write_rec(1, (16u << 20) + 1);
	a = here(ZFS_DRR_WRITE);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "data of 16777217 bytes (1 to 16777216)");
	reset(false);
	begin(VI(SUBSTREAM, F_LARGE_BLOCKS), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
	write_rec(1, UINT64_MAX);
	a = here(ZFS_DRR_WRITE);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "data of 18446744073709551615 bytes");

	/* compressed data: its payload would be another size */
	full();
	write_rec(1, 512);
	S.buf[S.rec + WRITE_COMPRESSIONTYPE] = 15; /* lz4 */
	set64(WRITE_COMPRESSED_SIZE, 100);
	a = here(ZFS_DRR_WRITE);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "compressed data (compression 15)");
}

static void object_bonus(void)
{
	struct vm_error err = {0};
	struct at a;

	full();
	object(1, 264);
	set32(OBJECT_RAW_BONUSLEN, 272);
	a = here(ZFS_DRR_OBJECT);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "a raw (encrypted) bonus buffer");

	full();
	object(1, 64u << 10);
	object(2, (64u << 10) + 1);
	a = here(ZFS_DRR_OBJECT);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "bonus of 65537 bytes (at most 65536)");
	full();
	object(1, UINT32_MAX);
	a = here(ZFS_DRR_OBJECT);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "bonus of 4294967295 bytes (at most 65536)");
}

/* The payload of an OBJECT is its bonus buffer rounded up to 8 bytes. */
static void object_payload_rounding(void)
{
	static const struct {
		uint32_t bonuslen;
		uint64_t payload;
	} cases[] = {{0, 0}, {1, 8}, {7, 8}, {8, 8}, {9, 16}, {264, 264}, {268, 272}};
	struct vm_error err = {0};

	for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
		struct zfs_stream_check c;
		uint64_t payload = 12345;
		bool forward = false;

		full();
		object(1, cases[k].bonuslen);
		zfs_stream_check_init(&c, 0, "s1", false);
		CHECK(zfs_stream_check_record(&c, S.buf, &payload, &forward, &err) == 0);
		CHECK(payload == 0 && forward);
		CHECK(zfs_stream_check_record(&c, S.buf + REC, &payload, &forward, &err) == 0);
		CHECK(payload == cases[k].payload && forward);
		CHECK(c.offset == 2 * REC + cases[k].payload);
		CHECK(S.len == 2 * REC + cases[k].payload);
		end(GUID_S1);
		CHECK(check_full(&err) == 0);
		if (failed_case(k))
			return;
	}
}

static void spill_sizes(void)
{
	struct vm_error err = {0};
	struct at a;

	full();
	spill(1, 512);
	set64(SPILL_COMPRESSED_SIZE, 100);
	a = here(ZFS_DRR_SPILL);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "a compressed or raw spill block");

	full();
	spill(1, 0);
	a = here(ZFS_DRR_SPILL);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "spill block of 0 bytes (1 to 131072)");

	/* 128 KiB at most, large blocks or not */
	reset(false);
	begin(VI(SUBSTREAM, F_LARGE_BLOCKS | F_SA_SPILL), ZFS_STREAM_OST_ZFS, GUID_S1, 0,
	      "zones/ds@s1");
	spill(1, 128u << 10);
	spill(1, (128u << 10) + 1);
	a = here(ZFS_DRR_SPILL);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "spill block of 131073 bytes (1 to 131072)");
}

/* ---- the compound stream of `zfs send -p` ---- */

static void compound_stream(void)
{
	struct vm_error err = {0};
	struct at a;

	/* properties: 1 MiB at most */
	compound(1u << 20);
	body();
	end(GUID_S1);
	end(0);
	CHECK(check_full(&err) == 0);
	reset(false);
	begin(VI(COMPOUND, 0), 0, 0, 0, "zones/ds@s1");
	set32(DRR_PAYLOADLEN, (1u << 20) + 1);
	a = here(ZFS_DRR_BEGIN);
	payload((1u << 20) + 1);
	end(0);
	CHECK_REFUSED(check_full(&err), err, a, "properties of 1048577 bytes (at most 1048576)");

	/* a second substream */
	compound(64);
	body();
	end(GUID_S1);
	begin(VI(SUBSTREAM, 0), ZFS_STREAM_OST_ZFS, GUID_S2, GUID_S1, "zones/ds@s2");
	a = here(ZFS_DRR_BEGIN);
	body();
	end(GUID_S2);
	end(0);
	CHECK_REFUSED(check_full(&err), err, a,
		      "a second dataset (one stream carries one dataset here)");

	/* a second BEGIN inside the substream */
	compound(64);
	freeobjects(0, 1);
	begin(VI(SUBSTREAM, 0), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
	a = here(ZFS_DRR_BEGIN);
	end(GUID_S1);
	end(0);
	CHECK_REFUSED(check_full(&err), err, a, "a second BEGIN inside the substream");

	/* the header's END, then the dataset's BEGIN */
	reset(false);
	begin(VI(COMPOUND, 0), 0, 0, 0, "zones/ds@s1");
	freeobjects(0, 1);
	a = here(ZFS_DRR_FREEOBJECTS);
	CHECK_REFUSED(check_full(&err), err, a, "END expected after the stream's properties");
	reset(false);
	begin(VI(COMPOUND, 0), 0, 0, 0, "zones/ds@s1");
	end(0);
	freeobjects(0, 1);
	a = here(ZFS_DRR_FREEOBJECTS);
	CHECK_REFUSED(check_full(&err), err, a, "the dataset's BEGIN expected");
	/* the dataset's BEGIN is a substream's, with its own checks */
	reset(false);
	begin(VI(COMPOUND, 0), 0, 0, 0, "zones/ds@s1");
	end(0);
	begin(VI(COMPOUND, 0), 0, 0, 0, "zones/ds@s1");
	a = here(ZFS_DRR_BEGIN);
	end(0);
	CHECK_REFUSED(check_full(&err), err, a, "header type 2 where one dataset's substream");
	compound(0);
	set64(BEGIN_MAGIC, 0x2f5bacbacULL + 1);
	a = here(ZFS_DRR_BEGIN);
	end(GUID_S1);
	end(0);
	CHECK_REFUSED(check_full(&err), err, a, "bad magic");
	compound(0);
	set32(BEGIN_FLAGS, 1);
	a = here(ZFS_DRR_BEGIN);
	end(GUID_S1);
	end(0);
	CHECK_REFUSED(check_full(&err), err, a, "a clone stream");
	compound(0);
	set64(BEGIN_FROMGUID, GUID_OTHER);
	a = here(ZFS_DRR_BEGIN);
	end(GUID_S1);
	end(0);
	CHECK_REFUSED(check_full(&err), err, a, "an incremental stream (from guid");

	/* the forward flags of the builder's compound stream */
	{
		struct walked w = {0};
		size_t sub;

		compound(40);
		sub = S.rec;
		body();
		end(GUID_S1);
		end(0);
		CHECK(walk(S.buf, S.len, 0, "s1", &w, &err) == 0);
		CHECK(w.nkept == 3 && w.kept[0] == 1 && w.kept[1] == 2 && w.kept[2] == S.nrecs);
		CHECK(w.fwd && w.fwd_len == S.len - sub - REC &&
		      memcmp(w.fwd, S.buf + sub, w.fwd_len) == 0);
		CHECK(w.fwd &&
		      zfs_stream_check_buffer(w.fwd, w.fwd_len, 0, "s1", false, &err) == 0);
		free(w.fwd);
	}
}

/* ---- the end ---- */

static void after_the_end(void)
{
	struct vm_error err = {0};
	struct zfs_stream_check c;
	uint64_t payload;
	bool forward;
	size_t pos = 0;
	struct at a;
	char want[200];

	full();
	body();
	end(GUID_S1);
	free_rec(1);
	a = here(ZFS_DRR_FREE);
	CHECK(check_full(&err) == -EPROTO);
	snprintf(want, sizeof(want), "trailing data after the zfs stream's END at byte %zu",
		 a.byte);
	CHECK_HAS(err.msg, want);
	/* one byte after END is one too many */
	full();
	end(GUID_S1);
	S.buf[S.len++] = 0;
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "trailing data after the zfs stream's END at byte 624");

	/* a record after the last END, through the record check */
	full();
	body();
	end(GUID_S1);
	free_rec(1);
	a = here(ZFS_DRR_FREE);
	zfs_stream_check_init(&c, 0, "s1", false);
	while (!zfs_stream_ended(&c)) {
		CHECK(zfs_stream_check_record(&c, S.buf + pos, &payload, &forward, &err) == 0);
		pos += REC + payload;
	}
	CHECK(pos == a.byte);
	CHECK_REFUSED(zfs_stream_check_record(&c, S.buf + pos, &payload, &forward, &err), err, a,
		      "data after the stream's last END");

	/* after a compound stream's last END */
	compound(8);
	body();
	end(GUID_S1);
	end(0);
	end(0);
	a = here(ZFS_DRR_END);
	zfs_stream_check_init(&c, 0, "s1", false);
	pos = 0;
	while (!zfs_stream_ended(&c)) {
		CHECK(zfs_stream_check_record(&c, S.buf + pos, &payload, &forward, &err) == 0);
		pos += REC + payload;
	}
	CHECK_REFUSED(zfs_stream_check_record(&c, S.buf + pos, &payload, &forward, &err), err, a,
		      "data after the stream's last END");
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "trailing data after the zfs stream's END");

	/* a compound stream without its last END */
	compound(8);
	body();
	end(GUID_S1);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "truncated");
}

static void truncated(void)
{
	struct vm_error err = {0};
	char want[200];
	size_t wr;

	full();
	body();
	wr = S.len;
	write_rec(1, 4096);
	end(GUID_S1);
	CHECK(check_full(&err) == 0);
	/* in a record */
	CHECK(zfs_stream_check_buffer(S.buf, REC + 100, 0, "s1", false, &err) == -EPROTO);
	CHECK_STR(err.msg, "zfs stream truncated at byte 312 (no last END)");
	CHECK(zfs_stream_check_buffer(S.buf, wr + REC - 1, 0, "s1", false, &err) == -EPROTO);
	snprintf(want, sizeof(want), "zfs stream truncated at byte %zu (no last END)", wr);
	CHECK_STR(err.msg, want);
	/* in a payload */
	CHECK(zfs_stream_check_buffer(S.buf, wr + REC + 4095, 0, "s1", false, &err) == -EPROTO);
	snprintf(want, sizeof(want), "zfs stream truncated at byte %zu (in a payload)",
		 wr + REC + 4095);
	CHECK_STR(err.msg, want);
	/* at a record's boundary, before the END */
	CHECK(zfs_stream_check_buffer(S.buf, wr + REC + 4096, 0, "s1", false, &err) == -EPROTO);
	CHECK_HAS(err.msg, "truncated");
	/* the compound header's properties cut */
	compound(1000);
	CHECK(zfs_stream_check_buffer(S.buf, REC + 999, 0, "s1", false, &err) == -EPROTO);
	CHECK_HAS(err.msg, "(in a payload)");
}

/* ---- byte order ---- */

static void byte_order(void)
{
	struct vm_error err = {0};
	struct at a;

	/* the builder's streams, fields big-endian */
	reset(true);
	begin(VI(SUBSTREAM, F_LZ4), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
	CHECK(memcmp(S.buf + 8, "\x00\x00\x00\x02\xf5\xba\xcb\xac", 8) == 0);
	body();
	spill(1, 600);
	end(GUID_S1);
	CHECK(check_full(&err) == 0);
	CHECK_STR(err.msg, "");

	reset(true);
	begin(VI(COMPOUND, 0), 0, 0, 0, "zones/ds@s2");
	set32(DRR_PAYLOADLEN, 100);
	payload(100);
	end(0);
	begin(VI(SUBSTREAM, 0), ZFS_STREAM_OST_ZFS, GUID_S2, GUID_S1, "zones/ds@s2");
	body();
	end(GUID_S2);
	end(0);
	CHECK(check_incr(&err) == 0);
	CHECK_STR(err.msg, "");

	/* its refusals are those of a little-endian one */
	reset(true);
	begin(VI(SUBSTREAM, 0), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
	write_rec(1, (128u << 10) + 1);
	a = here(ZFS_DRR_WRITE);
	end(GUID_S1);
	CHECK_REFUSED(check_full(&err), err, a, "data of 131073 bytes (1 to 131072)");
	reset(true);
	begin(VI(SUBSTREAM, 0), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
	body();
	end(GUID_S2);
	a = here(ZFS_DRR_END);
	CHECK_REFUSED(check_full(&err), err, a,
		      "END of snapshot guid 0x4d3bb0b8ef02321f, not 0xc0b1551148241d5a");

	/* the magic swapped, nothing else: refused somewhere, not taken */
	full();
	for (int i = 0; i < 4; i++) {
		uint8_t t = S.buf[BEGIN_MAGIC + i];
		S.buf[BEGIN_MAGIC + i] = S.buf[BEGIN_MAGIC + 7 - i];
		S.buf[BEGIN_MAGIC + 7 - i] = t;
	}
	body();
	end(GUID_S1);
	CHECK(check_full(&err) == -EPROTO);
	CHECK_HAS(err.msg, "zfs stream record ");
	/* ... and the other way round */
	reset(true);
	begin(VI(SUBSTREAM, 0), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
	S.be = false;
	set64(BEGIN_MAGIC, ZFS_STREAM_MAGIC);
	S.be = true;
	body();
	end(GUID_S1);
	CHECK(check_full(&err) == -EPROTO);
}

/* The rest of a cut stream (`zfs send -t`, OpenZFS): taken only where the
 * check expects one, with its BEGIN's resume payload passed to the tool; a
 * whole stream is refused there, and a resumed one everywhere else. */
#define F_RESUMING (1u << 20)
static int check_resumed(uint64_t from, const char *snap, struct vm_error *err)
{
	struct zfs_stream_check c;
	size_t pos = 0;

	zfs_stream_check_init(&c, from, snap, false);
	c.resuming = true;
	while (!zfs_stream_ended(&c)) {
		uint64_t payload;
		bool fwd;
		int r;

		if (S.len - pos < REC)
			return -99;
		r = zfs_stream_check_record(&c, S.buf + pos, &payload, &fwd, err);
		if (r < 0)
			return r;
		if (!fwd)
			return -98; /* every record of a resumed substream goes to the tool */
		if (pos == 0 && payload != 200)
			return -97; /* the resume state passes on */
		pos += REC + payload;
	}
	return pos == S.len ? 0 : -96;
}

static void resumed_stream(void)
{
	struct vm_error err = {0};
	struct at a;

	/* a resumed full stream: resuming feature, 200 bytes of resume state */
	reset(false);
	begin(VI(SUBSTREAM, F_RESUMING), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
	set32(DRR_PAYLOADLEN, 200);
	payload(200);
	body();
	end(GUID_S1);
	CHECK(check_resumed(0, "s1", &err) == 0);
	/* ... refused where a whole stream is expected */
	a = (struct at){.n = 1, .byte = 0, .type = ZFS_DRR_BEGIN};
	CHECK_REFUSED(check_full(&err), err, a, "stream features 0x100000 are not taken here");

	/* a resumed incremental, from the right base */
	reset(false);
	begin(VI(SUBSTREAM, F_RESUMING), ZFS_STREAM_OST_ZFS, GUID_S2, GUID_S1, "zones/ds@s2");
	set32(DRR_PAYLOADLEN, 200);
	payload(200);
	body();
	end(GUID_S2);
	CHECK(check_resumed(GUID_S1, "s2", &err) == 0);
	/* from another base: refused as any incremental is */
	CHECK(check_resumed(GUID_OTHER, "s2", &err) == -EPROTO);
	CHECK_HAS(err.msg, "but the base here is");

	/* where the rest of a cut stream is expected, a whole one is refused */
	full();
	body();
	end(GUID_S1);
	CHECK(check_resumed(0, "s1", &err) == -EPROTO);
	CHECK_HAS(err.msg, "a whole stream where the rest of a cut one was expected");

	/* a compound stream (properties first) is no resumed stream */
	compound(64);
	body();
	end(GUID_S1);
	end(0);
	CHECK(check_resumed(0, "s1", &err) == -EPROTO);
	CHECK_HAS(err.msg, "a stream with properties where the rest of a cut one was expected");

	/* resume state within bounds */
	reset(false);
	begin(VI(SUBSTREAM, F_RESUMING), ZFS_STREAM_OST_ZFS, GUID_S1, 0, "zones/ds@s1");
	set32(DRR_PAYLOADLEN, ZFS_STREAM_PROPS_MAX + 1);
	CHECK(check_resumed(0, "s1", &err) == -EPROTO);
	CHECK_HAS(err.msg, "resume state of 1048577 bytes (at most 1048576)");
}

int main(void)
{
	RUN(real_full);
	RUN(real_full_p);
	RUN(real_incr);
	RUN(real_incr_p);
	RUN(real_forward_flags);
	RUN(built_accepted);
	RUN(first_record);
	RUN(begin_flags);
	RUN(begin_features);
	RUN(begin_dataset_type);
	RUN(begin_guids);
	RUN(begin_names);
	RUN(record_types);
	RUN(end_guid);
	RUN(write_sizes);
	RUN(object_bonus);
	RUN(object_payload_rounding);
	RUN(spill_sizes);
	RUN(compound_stream);
	RUN(after_the_end);
	RUN(truncated);
	RUN(byte_order);
	RUN(resumed_stream);
	CHECK_EXIT();
}
