/* SPDX-License-Identifier: MIT */
/*
 * The zfs commands whose shape depends on what the ZFS at hand can do: the
 * OpenZFS-only ones (volumes, resumable receives) and the send/receive pair.
 * Pure: each fills an argv for the spawn helper and runs nothing, so that
 * unit tests hold every one to its exact words (tests/unit/test-zfs-cmd.c);
 * the OpenZFS-only paths cannot run on these machines (zfs-fuse has neither
 * volumes nor resume tokens), and the tests are what checks them here.
 *
 * Only syntax that OpenZFS documents (zfs-create(8), zfs-send(8),
 * zfs-receive(8), zfs-set(8)); where zfs-fuse shares it, the same words.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZFS_ARGV_MAX 12

/* An argv and the storage for the strings it formats (sizes, name=value).
 * argv[] points into the caller's strings and into buf: keep the caller's
 * strings alive while it is used. */
struct zfs_argv {
	const char *argv[ZFS_ARGV_MAX];
	char buf[2][96];
};

/* zfs create -s -V SIZE ZDS: a sparse volume (OpenZFS; no reservation, as
 * the other pools' images are sparse). */
void zfs_cmd_create_volume(struct zfs_argv *a, const char *zds, uint64_t size);

/* zfs set volsize=SIZE ZDS: grow a volume (a disk of a VM cloned from an
 * image, made larger than the image). */
void zfs_cmd_set_volsize(struct zfs_argv *a, const char *zds, uint64_t size);

/* zfs set quota=BYTES ZDS (quota=none for 0): ZFS's own quota, on a
 * dataset and its children. */
void zfs_cmd_set_quota(struct zfs_argv *a, const char *zds, uint64_t bytes);

/* zfs send -p [-i @FROM] ZDS@SNAP (from_snap NULL: a full stream). */
void zfs_cmd_send(struct zfs_argv *a, const char *zsnap, const char *from_snap);

/* zfs send -t TOKEN: the rest of a cut stream, from the receiver's token
 * (OpenZFS). */
void zfs_cmd_send_resume(struct zfs_argv *a, const char *token);

/* zfs receive -u [-F] [-s] ZDS@SNAP: -u mounts nothing, -F (incremental)
 * rolls the dataset back to its latest snapshot first, -s (resumable, where
 * the pool keeps resume state: OpenZFS) keeps a cut receive's state for a
 * later `zfs send -t`. */
void zfs_cmd_receive(struct zfs_argv *a, const char *zsnap, bool incremental, bool resumable);

/* zfs receive -A ZDS: drop the resume state of a cut receive into ZDS. */
void zfs_cmd_receive_abort(struct zfs_argv *a, const char *zds);

/* zfs get -H -o value receive_resume_token ZDS: "-" when there is none. */
void zfs_cmd_resume_token(struct zfs_argv *a, const char *zds);

/* zfs get -Hp -o value logicalreferenced ZDS@SNAP (OpenZFS), or, where
 * there is no such property (zfs-fuse), referenced,compressratio: what a
 * full send of the snapshot carries at most, without reading it. */
void zfs_cmd_snapshot_size(struct zfs_argv *a, const char *zsnap, bool openzfs);

/* From what zfs_cmd_snapshot_size's command printed: OpenZFS's one number,
 * or zfs-fuse's referenced times its compressratio ("N\nR.RRx"), which
 * counts blocks compressed below a sector at their compressed size, so
 * overstates such data (a bound still). -EINVAL for anything else, a ratio
 * below 1 or above what any block and sector make (16 MiB / 512 B). */
int zfs_snapshot_size_parse(const char *text, bool openzfs, uint64_t *ret);

/* zfs version: succeeds on OpenZFS (0.8 and later), not on zfs-fuse. */
void zfs_cmd_version(struct zfs_argv *a);

/* The stable name of volume ZDS's block device: /dev/zvol/ZDS (malloc'ed;
 * NULL on ENOMEM). */
char *zfs_zvol_path(const char *zds);

/* Is token what a receive_resume_token looks like ("1-" and hex, dashes:
 * VERSION-CHECKSUM-LENGTH-DATA, at most 64 KiB)? A token comes from the
 * peer: checked before it reaches a command line. */
bool zfs_resume_token_ok(const char *token);

/* zfs send -nvt TOKEN: what a token resumes, printed and not sent. */
void zfs_cmd_resume_contents(struct zfs_argv *a, const char *token);

/* From what `zfs send -nvt TOKEN` printed (its "resume token contents",
 * an nvlist as "\tNAME = VALUE" lines): the snapshot the stream goes to
 * ("toname", into toname of size len) and the base's guid ("fromguid", 0
 * when the token has none: a full stream). -EINVAL when there is no
 * toname, or it does not fit. */
int zfs_resume_contents_parse(const char *text, char *toname, size_t len, uint64_t *ret_fromguid);
