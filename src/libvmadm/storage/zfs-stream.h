/* SPDX-License-Identifier: MIT */
/*
 * The ZFS send stream, checked record by record before `zfs receive`
 * applies it: storage/zfs.c hands the tool only records that passed.
 *
 * The format (OpenZFS include/sys/zfs_ioctl.h, the same since pool version
 * 23 for what is taken here): records of ZFS_STREAM_RECORD_SIZE bytes in
 * the sender's byte order (a u32 type, a u32 payload length that only
 * BEGIN uses, and a union), some followed by a payload whose size the
 * record gives: OBJECT its bonus buffer (rounded up to 8 bytes), WRITE and
 * SPILL their data, BEGIN of a compound stream its packed nvlist.
 *
 * `zfs send -p` writes a compound stream: a BEGIN (header type compound)
 * whose payload is the dataset's properties, an END, then one substream
 * (BEGIN, the dataset's records, END), then a final END. A plain `zfs
 * send` writes the substream alone.
 *
 * What a stream may do here (docs/stream-format.md, section 3, "zfs"):
 * carry exactly one substream, of one filesystem (or a volume where the
 * pool has volumes), full or incremental from the receiver's own base (its
 * guid), to the snapshot name the receiver expects; no clone origin, no
 * dedup (WRITE_BYREF), no raw (encrypted), compressed, embedded or
 * redacted records, no feature this checker does not know. The compound
 * header is taken apart and never reaches the tool: a stream's properties
 * (mountpoint, quota, reservation, sharenfs, ...) are never applied; the
 * receiver sets what it owns itself. Every record is known, its payload
 * within bounds; nothing may follow the last END.
 *
 * What is not checked: the objects' contents (the tool applies them as they
 * are, with its own checksums). A VM's datasets live under the pool's mount
 * point, mode 0700 (storage/pool-private.h).
 *
 * Pure code: no I/O and no allocation, so it can be unit tested and fuzzed
 * from a buffer (zfs_stream_check_buffer).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define ZFS_STREAM_RECORD_SIZE 312
#define ZFS_STREAM_MAGIC       0x2F5bacbacULL
/* The largest payload taken: a 16 MiB block for WRITE (large_blocks; 128
 * KiB without), 128 KiB for SPILL, 1 MiB of properties for the compound
 * header, 64 KiB of bonus. */
#define ZFS_STREAM_DATA_MAX  (16u << 20)
#define ZFS_STREAM_PROPS_MAX (1u << 20)
#define ZFS_STREAM_BONUS_MAX (64u << 10)

enum zfs_stream_rec {
	ZFS_DRR_BEGIN = 0,
	ZFS_DRR_OBJECT = 1,
	ZFS_DRR_FREEOBJECTS = 2,
	ZFS_DRR_WRITE = 3,
	ZFS_DRR_FREE = 4,
	ZFS_DRR_END = 5,
	ZFS_DRR_WRITE_BYREF = 6,
	ZFS_DRR_SPILL = 7,
	ZFS_DRR_WRITE_EMBEDDED = 8,
	ZFS_DRR_OBJECT_RANGE = 9,
	ZFS_DRR_REDACT = 10,
};

/* BEGIN's objset types (dmu_objset_type_t) */
#define ZFS_STREAM_OST_ZFS  2
#define ZFS_STREAM_OST_ZVOL 3

/* The state of one stream's check. Fill it with zfs_stream_check_init. */
struct zfs_stream_check {
	/* what the receiver expects */
	uint64_t from_guid; /* the base snapshot's guid, 0 for a full stream */
	const char *snap;   /* the snapshot name after '@' */
	bool volumes;	    /* a zvol stream is taken (the pool has volumes) */
	bool resuming;	    /* set after init: the rest of a cut stream (`zfs send
			     * -t`, OpenZFS) is expected, and nothing else: its
			     * BEGIN has the resuming feature and a payload (where
			     * it goes on) that passes to the tool */

	/* what the stream said so far */
	int phase;	   /* private: where in the stream the next record is */
	bool swapped;	   /* the sender's byte order is not ours */
	bool compound;	   /* a `zfs send -p` stream */
	bool large_blocks; /* the substream's feature */
	uint64_t to_guid;  /* the substream's snapshot */
	bool sub_ended;	   /* the substream's END passed (the tool's last record) */
	uint64_t offset;   /* bytes checked (records and payloads) */
	uint64_t nrecs;	   /* records checked */
};

/* Start the check of a full stream (from_guid 0) or of an incremental one
 * from the snapshot whose guid is from_guid, to snapshot snap (borrowed;
 * it must outlive the check). */
void zfs_stream_check_init(struct zfs_stream_check *c, uint64_t from_guid, const char *snap,
			   bool volumes);

/* Check one record (exactly ZFS_STREAM_RECORD_SIZE bytes) and advance. On
 * 0, *ret_payload is the size of the payload that follows it (to be passed
 * on as it is, unchecked) and *ret_forward says whether the record and its
 * payload go to the tool (false for the compound header's parts). -EPROTO
 * with the reason, naming the record's number, type and byte offset, when
 * it may not be applied. Once a check failed, the stream is refused: do not
 * call again. */
int zfs_stream_check_record(struct zfs_stream_check *c, const uint8_t *rec, uint64_t *ret_payload,
			    bool *ret_forward, struct vm_error *err);

/* Has the stream ended (its last END checked)? Any byte after it is
 * refused by the caller. */
bool zfs_stream_ended(const struct zfs_stream_check *c);

/* Check a whole stream held in a buffer: every record and payload up to the
 * last END, nothing after it. For tests and fuzzers; arguments as for
 * init. */
int zfs_stream_check_buffer(const uint8_t *buf, size_t len, uint64_t from_guid, const char *snap,
			    bool volumes, struct vm_error *err);
