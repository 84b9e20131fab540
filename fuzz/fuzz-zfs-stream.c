/* SPDX-License-Identifier: MIT */
/*
 * fuzz-zfs-stream: the input is a `zfs send` stream (plain, or compound as
 * `zfs send -p` writes it), as the zfs pool's receive hands it, record by
 * record, to the checker of storage/zfs-stream.h before `zfs receive` may
 * see it. Each input is checked three ways:
 *
 *   as a full stream, to the snapshot its first BEGIN names (else @s1),
 *   in a pool without volumes;
 *   as an incremental one from the guid its substream's BEGIN names (so
 *   that mutations get past the base check to the records), in a pool with
 *   volumes;
 *   as an incremental one from a guid it does not name.
 *
 * Besides ASan and UBSan, the harness holds the checker to its promises
 * with an oracle of its own, written from the format (OpenZFS
 * include/sys/zfs_ioctl.h), not from the checker: an accepted stream
 * begins with BEGIN, has exactly one substream BEGIN, of the expected base
 * and snapshot, with no clone flag and none of the features whose records
 * read otherwise (dedup, embedded, resuming, redacted, compressed, raw),
 * ends with END and nothing after it, and holds no record of type 6, 8, 9,
 * 10 or above; its records are framed by the payload sizes the format
 * gives (what `zfs receive` would read). What it forwards is that
 * substream, byte for byte, and a fresh checker accepts it whole, every
 * record forwarded.
 */
#include <byteswap.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "storage/zfs-stream.h"
#include "util/macros.h"

#define REC ZFS_STREAM_RECORD_SIZE

/* A guid no seed names. */
#define GUID_OTHER 0x5eed5eed5eed5eedULL

/* dmu_replay_record_t (include/sys/zfs_ioctl.h): u32 type, u32 payload
 * length, the union at byte 8. */
#define DRR_PAYLOADLEN	      4
#define BEGIN_MAGIC	      8
#define BEGIN_VERSIONINFO     16
#define BEGIN_TYPE	      32
#define BEGIN_FLAGS	      36
#define BEGIN_TOGUID	      40
#define BEGIN_FROMGUID	      48
#define BEGIN_TONAME	      56
#define END_TOGUID	      40
#define OBJECT_BONUSLEN	      28
#define OBJECT_RAW_BONUSLEN   36
#define WRITE_LOGICAL_SIZE    32
#define WRITE_COMPRESSIONTYPE 50
#define WRITE_COMPRESSED_SIZE 96
#define SPILL_LENGTH	      16
#define SPILL_COMPRESSED_SIZE 40
#define WRITE_EMBEDDED_PSIZE  52
#define NAME_LEN	      256
#define DMU_SUBSTREAM	      1
#define DMU_COMPOUNDSTREAM    2
#define DRR_FLAG_CLONE	      (1u << 0)
#define DMU_OST_ZFS	      2
#define DMU_OST_ZVOL	      3
/* features after which records are framed or applied otherwise: dedup,
 * embedded data, resuming, redacted, compressed, raw */
#define FEATURES_NEVER ((1u << 0) | (1u << 16) | (1u << 20) | (1u << 21) | (1u << 22) | (1u << 24))

static uint32_t rd32(const uint8_t *p, bool swapped)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return swapped ? bswap_32(v) : v;
}

static uint64_t rd64(const uint8_t *p, bool swapped)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return swapped ? bswap_64(v) : v;
}

/* The byte order of a BEGIN, from its magic: false if there is none. */
static bool begin_order(const uint8_t *r, bool *ret_swapped)
{
	uint64_t m;

	memcpy(&m, r + BEGIN_MAGIC, sizeof(m));
	if (m == ZFS_STREAM_MAGIC)
		*ret_swapped = false;
	else if (m == bswap_64(ZFS_STREAM_MAGIC))
		*ret_swapped = true;
	else
		return false;
	return true;
}

/* The payload after record r, as `zfs receive` reads it (the
 * DRR_*_PAYLOAD_SIZE macros of the format). */
static uint64_t payload_of(const uint8_t *r, uint32_t type, bool sw)
{
	uint64_t n;

	switch (type) {
	case ZFS_DRR_BEGIN:
		return rd32(r + DRR_PAYLOADLEN, sw);
	case ZFS_DRR_OBJECT:
		n = rd32(r + OBJECT_RAW_BONUSLEN, sw);
		return n ? n : ((uint64_t)rd32(r + OBJECT_BONUSLEN, sw) + 7) & ~7ull;
	case ZFS_DRR_WRITE:
		return r[WRITE_COMPRESSIONTYPE] ? rd64(r + WRITE_COMPRESSED_SIZE, sw)
						: rd64(r + WRITE_LOGICAL_SIZE, sw);
	case ZFS_DRR_SPILL:
		n = rd64(r + SPILL_COMPRESSED_SIZE, sw);
		return n ? n : rd64(r + SPILL_LENGTH, sw);
	case ZFS_DRR_WRITE_EMBEDDED:
		return ((uint64_t)rd32(r + WRITE_EMBEDDED_PSIZE, sw) + 7) & ~7ull;
	default:
		return 0;
	}
}

/* The snapshot name after '@' in the toname of the BEGIN at r, into buf;
 * false if it has none (no '@', or no NUL in its 256 bytes). */
static bool toname_snap(const uint8_t *r, char buf[NAME_LEN])
{
	const char *name = (const char *)r + BEGIN_TONAME;
	size_t len = strnlen(name, NAME_LEN);
	const char *at = memchr(name, '@', len);

	if (len == NAME_LEN || !at)
		return false;
	memcpy(buf, at + 1, len - (size_t)(at + 1 - name));
	buf[len - (size_t)(at + 1 - name)] = '\0';
	return true;
}

struct expect {
	uint64_t from;
	const char *snap;
	bool volumes;
	const char *what;
};

/* The oracle, on a stream the checker accepted: the substream's place in
 * it, [*ret_sub, *ret_sub_end). */
static void check_accepted(const uint8_t *data, size_t size, const struct expect *e,
			   size_t *ret_sub, size_t *ret_sub_end)
{
	size_t pos = 0, sub = 0, sub_end = 0;
	bool sw = false, compound, in_sub = false;
	unsigned begins = 0, ends_after = 0;
	uint32_t type = 0;
	uint64_t to = 0;
	char snap[NAME_LEN];

	if (size < REC || rd32(data, false) != ZFS_DRR_BEGIN || !begin_order(data, &sw))
		fuzz_die("%s: accepted a stream that does not begin with BEGIN", e->what);
	compound = (rd64(data + BEGIN_VERSIONINFO, sw) & 3) == DMU_COMPOUNDSTREAM;
	for (uint64_t n = 1; pos < size; n++) {
		const uint8_t *r = data + pos;
		uint64_t payload;

		if (size - pos < REC)
			fuzz_die("%s: accepted, but record %llu is cut", e->what,
				 (unsigned long long)n);
		type = rd32(r, sw);
		if (type == ZFS_DRR_BEGIN && !begin_order(r, &sw))
			fuzz_die("%s: accepted record %llu, a BEGIN without the magic", e->what,
				 (unsigned long long)n);
		type = rd32(r, sw);
		if (type == ZFS_DRR_WRITE_BYREF || type >= ZFS_DRR_WRITE_EMBEDDED)
			fuzz_die("%s: accepted record %llu of type %u", e->what,
				 (unsigned long long)n, type);
		if (compound && n == 2 && type != ZFS_DRR_END)
			fuzz_die("%s: accepted a compound header without its END", e->what);
		payload = payload_of(r, type, sw);
		if (payload > size - pos - REC)
			fuzz_die("%s: accepted, but the payload of record %llu (%llu bytes) is cut",
				 e->what, (unsigned long long)n, (unsigned long long)payload);
		if (type == ZFS_DRR_BEGIN && n > 1) {
			if (!compound || n != 3)
				fuzz_die("%s: accepted a BEGIN as record %llu", e->what,
					 (unsigned long long)n);
		}
		if (type == ZFS_DRR_BEGIN && (n == 3 || !compound)) {
			uint64_t vi = rd64(r + BEGIN_VERSIONINFO, sw);
			uint32_t ot = rd32(r + BEGIN_TYPE, sw);

			begins++;
			in_sub = true;
			sub = pos;
			to = rd64(r + BEGIN_TOGUID, sw);
			if ((vi & 3) != DMU_SUBSTREAM)
				fuzz_die("%s: accepted a dataset BEGIN of header type %u", e->what,
					 (unsigned)(vi & 3));
			if ((vi >> 2) & FEATURES_NEVER)
				fuzz_die("%s: accepted features 0x%llx", e->what,
					 (unsigned long long)(vi >> 2));
			if (rd32(r + BEGIN_FLAGS, sw) & DRR_FLAG_CLONE)
				fuzz_die("%s: accepted a clone stream", e->what);
			if (payload != 0)
				fuzz_die("%s: accepted a dataset BEGIN with a payload", e->what);
			if (ot != DMU_OST_ZFS && !(ot == DMU_OST_ZVOL && e->volumes))
				fuzz_die("%s: accepted a dataset of type %u", e->what, ot);
			if (rd64(r + BEGIN_FROMGUID, sw) != e->from)
				fuzz_die("%s: accepted a stream from guid 0x%llx, not 0x%llx",
					 e->what, (unsigned long long)rd64(r + BEGIN_FROMGUID, sw),
					 (unsigned long long)e->from);
			if (!toname_snap(r, snap) || strcmp(snap, e->snap) != 0)
				fuzz_die("%s: accepted a stream to another snapshot than @%s",
					 e->what, e->snap);
			if (to == 0)
				fuzz_die("%s: accepted a snapshot guid 0", e->what);
		} else if (type == ZFS_DRR_END && in_sub) {
			if (rd64(r + END_TOGUID, sw) != to)
				fuzz_die("%s: accepted an END of another snapshot", e->what);
			in_sub = false;
			sub_end = pos + REC;
		} else if (type == ZFS_DRR_END && sub_end) {
			ends_after++;
		} else if (type != ZFS_DRR_END && !in_sub && n > 1) {
			fuzz_die("%s: accepted record %llu (type %u) outside the substream",
				 e->what, (unsigned long long)n, type);
		}
		pos += REC + payload;
	}
	if (type != ZFS_DRR_END)
		fuzz_die("%s: accepted a stream that does not end with END", e->what);
	if (begins != 1 || !sub_end)
		fuzz_die("%s: accepted a stream with %u datasets", e->what, begins);
	if (ends_after != (compound ? 1 : 0))
		fuzz_die("%s: accepted %u ENDs after the substream's", e->what, ends_after);
	*ret_sub = sub;
	*ret_sub_end = sub_end;
}

/* Check data record by record, as the pool's receive does; what it
 * forwards to fwd (size bytes at least), its length returned. The stream
 * was accepted whole: so must it be here. */
static size_t forwarded(const uint8_t *data, size_t size, const struct expect *e, uint8_t *fwd,
			bool want_all)
{
	struct vm_error err = {0};
	struct zfs_stream_check c;
	size_t pos = 0, flen = 0;

	zfs_stream_check_init(&c, e->from, e->snap, e->volumes);
	while (!zfs_stream_ended(&c)) {
		uint64_t payload = 0;
		bool forward = false;

		if (size - pos < REC)
			fuzz_die("%s: the record check ran past the stream", e->what);
		if (zfs_stream_check_record(&c, data + pos, &payload, &forward, &err) < 0)
			fuzz_die("%s: the record check refused what the buffer check took: %s",
				 e->what, err.msg);
		if (payload > size - pos - REC)
			fuzz_die("%s: a payload runs past the stream", e->what);
		if (want_all && !forward)
			fuzz_die("%s: a forwarded substream's record at byte %zu is not forwarded",
				 e->what, pos);
		if (forward) {
			memcpy(fwd + flen, data + pos, REC + payload);
			flen += REC + payload;
		}
		pos += REC + payload;
	}
	if (pos != size)
		fuzz_die("%s: the record check ended at byte %zu of %zu", e->what, pos, size);
	return flen;
}

static void run(const uint8_t *data, size_t size, const struct expect *e)
{
	struct vm_error err = {0};
	int r = zfs_stream_check_buffer(data, size, e->from, e->snap, e->volumes, &err);
	_cleanup_free_ uint8_t *fwd = NULL, *again = NULL;
	size_t sub = 0, sub_end = 0, flen;

	fuzz_check_error(r, &err, e->what);
	if (r < 0)
		return;
	check_accepted(data, size, e, &sub, &sub_end);
	fwd = malloc(size);
	again = malloc(size);
	if (!fwd || !again)
		fuzz_die("out of memory");
	flen = forwarded(data, size, e, fwd, false);
	if (flen != sub_end - sub || memcmp(fwd, data + sub, flen) != 0)
		fuzz_die("%s: what is forwarded is not the substream (bytes %zu to %zu)", e->what,
			 sub, sub_end);
	r = zfs_stream_check_buffer(fwd, flen, e->from, e->snap, e->volumes, &err);
	if (r < 0)
		fuzz_die("%s: the forwarded substream is refused: %s", e->what, err.msg);
	if (forwarded(fwd, flen, e, again, true) != flen || memcmp(again, fwd, flen) != 0)
		fuzz_die("%s: the forwarded substream is not forwarded whole", e->what);
}

/* The rest of a cut stream (`zfs send -t`), as a resumed receive checks it:
 * accepted, it is one substream whose BEGIN has the resuming feature (and
 * none the checker never takes but that one), every record goes to the
 * tool, payloads stay inside the input, no record of a type never taken,
 * and it ends with the END of its BEGIN's snapshot. */
#define FEAT_RESUMING (1u << 20)
static void run_resuming(const uint8_t *data, size_t size, uint64_t from, const char *snap)
{
	struct vm_error err = {0};
	struct zfs_stream_check c;
	size_t pos = 0;
	bool sw = false;
	uint64_t to = 0;
	uint32_t type = 0;

	zfs_stream_check_init(&c, from, snap, false);
	c.resuming = true;
	while (!zfs_stream_ended(&c)) {
		uint64_t payload = 0;
		bool forward = false;
		int r;

		if (size - pos < REC)
			return; /* cut: refused by the feed */
		r = zfs_stream_check_record(&c, data + pos, &payload, &forward, &err);
		fuzz_check_error(r, &err, "resumed");
		if (r < 0)
			return;
		if (!forward)
			fuzz_die("resumed: record at byte %zu not passed to the tool", pos);
		if (pos == 0) {
			uint64_t vi;

			if (!begin_order(data, &sw))
				fuzz_die("resumed: accepted a first record without the magic");
			vi = rd64(data + BEGIN_VERSIONINFO, sw);
			if ((vi & 3) != DMU_SUBSTREAM || !((vi >> 2) & FEAT_RESUMING) ||
			    ((vi >> 2) & (FEATURES_NEVER & ~FEAT_RESUMING)))
				fuzz_die("resumed: accepted a BEGIN of version info 0x%llx",
					 (unsigned long long)vi);
			if (rd32(data + BEGIN_FLAGS, sw) & DRR_FLAG_CLONE)
				fuzz_die("resumed: accepted a clone stream");
			to = rd64(data + BEGIN_TOGUID, sw);
		} else {
			type = rd32(data + pos, sw);
			if (type == ZFS_DRR_BEGIN || type == ZFS_DRR_WRITE_BYREF ||
			    type >= ZFS_DRR_WRITE_EMBEDDED)
				fuzz_die("resumed: accepted record type %u at byte %zu", type, pos);
		}
		if (payload > size - pos - REC)
			return; /* cut in a payload: refused by the feed */
		pos += REC + payload;
	}
	if (type != ZFS_DRR_END || rd64(data + pos - REC + END_TOGUID, sw) != to)
		fuzz_die("resumed: accepted a stream that does not end with its snapshot's END");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char snap[NAME_LEN] = "s1";
	uint64_t from = 0;
	struct expect e;

	if (size >= REC && data[0] == 0 && data[1] == 0 && data[2] == 0 && data[3] == 0) {
		bool sw = false;
		size_t sub = 0;

		if (!toname_snap(data, snap))
			strcpy(snap, "s1");
		/* the substream's BEGIN: the first record, or the third of a
		 * compound stream (after the properties and their END) */
		if (begin_order(data, &sw) &&
		    (rd64(data + BEGIN_VERSIONINFO, sw) & 3) == DMU_COMPOUNDSTREAM) {
			uint64_t plen = rd32(data + DRR_PAYLOADLEN, sw);

			sub = plen <= size - REC && size - REC - plen >= 2 * REC ? REC + plen + REC
										 : SIZE_MAX;
		}
		if (sub != SIZE_MAX && begin_order(data + sub, &sw))
			from = rd64(data + sub + BEGIN_FROMGUID, sw);
	}

	e = (struct expect){.from = 0, .snap = snap, .volumes = false, .what = "full"};
	run(data, size, &e);
	e = (struct expect){
	    .from = from, .snap = snap, .volumes = true, .what = "from its own base (volumes)"};
	run(data, size, &e);
	e = (struct expect){
	    .from = GUID_OTHER, .snap = snap, .volumes = false, .what = "from another base"};
	run(data, size, &e);
	run_resuming(data, size, from, snap);
	return 0;
}
