/* SPDX-License-Identifier: MIT */
/*
 * The btrfs send stream, checked command by command before `btrfs receive`
 * applies it: storage/btrfs.c hands the tool only commands that passed.
 *
 * The format (btrfs-progs common/send-stream.c, the kernel's
 * fs/btrfs/send.h): "btrfs-stream\0" and a le32 version (1 to 3), then
 * commands, each a 10-byte header (le32 length of the attributes, le16
 * command, le32 CRC-32C with seed 0 and no final inversion of the header,
 * its CRC field zero, and the attributes) and TLV attributes (le16 type,
 * le16 length, value); from version 2 on, the DATA attribute has no length
 * and runs to the end of the command. The last command is END.
 *
 * What a stream may do here (docs/stream-format.md, section 3, "btrfs"):
 * build exactly one subvolume, named by one plain component, with SUBVOL in
 * a full stream or with SNAPSHOT of the receiver's own base in an
 * incremental one, as its first command; name paths inside that subvolume
 * only (relative, no "." or ".." component, no empty component, no NUL);
 * clone extents only from that subvolume or from the base; set no
 * immutable or append-only flag. Every command is whole (its length within
 * the version's limit, its CRC right), known to the stream's version, with
 * the attributes it needs, of the right sizes, none twice, none it does not
 * take.
 *
 * Pure code: no I/O and no allocation, so it can be unit tested and fuzzed
 * from a buffer (btrfs_stream_check_buffer).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define BTRFS_STREAM_HEADER_SIZE     17
#define BTRFS_STREAM_CMD_HEADER_SIZE 10
/* The largest command, header included: 64 KiB in version 1 (the sender's
 * buffer); from version 2, 16 KiB + 128 KiB of compressed data, rounded up
 * to the page size (192 KiB with 64 KiB pages). */
#define BTRFS_STREAM_CMD_MAX_V1 (64u * 1024)
#define BTRFS_STREAM_CMD_MAX	(192u * 1024)
#define BTRFS_STREAM_UUID_SIZE	16

/* A subvolume as a stream names it. */
struct btrfs_stream_subvol {
	uint8_t uuid[BTRFS_STREAM_UUID_SIZE];
	uint64_t ctransid;
};

/* The state of one stream's check. Fill it with btrfs_stream_check_init. */
struct btrfs_stream_check {
	bool incremental;		   /* a base was given */
	struct btrfs_stream_subvol base;   /* what SNAPSHOT must name */
	uint32_t version;		   /* from the header, 0 before it */
	uint64_t offset;		   /* bytes of the stream checked */
	uint64_t ncmds;			   /* commands checked */
	bool have_subvol;		   /* SUBVOL or SNAPSHOT seen */
	bool ended;			   /* END seen */
	struct btrfs_stream_subvol subvol; /* the subvolume being received */
};

/* What a command that passed leaves to the caller. */
struct btrfs_stream_cmd {
	uint16_t cmd;
	/* A CLONE from the base: the source path inside the base (not
	 * NUL-terminated). The caller must check that it resolves inside the
	 * base without a symlink: `btrfs receive` opens it from the mount,
	 * outside its chroot. NULL otherwise. */
	const char *base_clone_path;
	size_t base_clone_path_len;
};

/* Start the check of a full stream (base NULL) or of an incremental one
 * whose SNAPSHOT must name base: the uuid and ctransid by which `btrfs
 * receive` finds the receiver's copy of the parent (its received uuid and
 * stransid when it was received, else its own uuid and ctransid). */
void btrfs_stream_check_init(struct btrfs_stream_check *c, const struct btrfs_stream_subvol *base);

/* Check the stream header (exactly BTRFS_STREAM_HEADER_SIZE bytes). */
int btrfs_stream_check_header(struct btrfs_stream_check *c, const uint8_t *buf, size_t len,
			      struct vm_error *err);

/* The whole size (header included) of the command whose 10-byte header is
 * hdr; -EPROTO when it is beyond the stream version's limit. */
int btrfs_stream_cmd_size(const struct btrfs_stream_check *c,
			  const uint8_t hdr[BTRFS_STREAM_CMD_HEADER_SIZE], size_t *ret_size,
			  struct vm_error *err);

/* Check one whole command (header included, len bytes) and advance. 0 when
 * it may be applied (ret, if not NULL, says what the caller must still
 * check), -EPROTO with the reason, naming the command's number, name and
 * byte offset, when not. Once a check failed, the stream is refused: do not
 * call again. */
int btrfs_stream_check_cmd(struct btrfs_stream_check *c, const uint8_t *cmd, size_t len,
			   struct btrfs_stream_cmd *ret, struct vm_error *err);

/* Check a whole stream held in a buffer: the header, every command up to
 * END, nothing after it. For tests and fuzzers; base as for init. */
int btrfs_stream_check_buffer(const uint8_t *buf, size_t len,
			      const struct btrfs_stream_subvol *base, struct vm_error *err);
